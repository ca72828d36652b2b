#!/usr/bin/env python
"""Makes docs/images/digest.png, the README's picture of a digest, from the newest demo email in var/outbox/.

    make demo && .venv/bin/python docs/images/screenshot.py

Chromium (Debian's, /usr/bin/chromium or CHROMIUM_PATH) shows the email 640 px wide in the light scheme; the picture
is its first 1,400 px. The machine may be offline, so the top pick's picture from Hugging Face is a stand-in drawn
here (a grey page with title lines), as a mail client would show the real one.
"""

import os
import sys
from pathlib import Path

from playwright.sync_api import sync_playwright

ROOT = Path(__file__).resolve().parents[2]
STAND_IN = """<svg xmlns="http://www.w3.org/2000/svg" width="1200" height="630" viewBox="0 0 1200 630">
<rect width="1200" height="630" fill="#eef0f3"/><rect x="330" y="40" width="540" height="590" fill="#ffffff"/>
<rect x="380" y="90" width="440" height="22" fill="#9aa4b1"/><rect x="430" y="126" width="340" height="22" fill="#9aa4b1"/>
<rect x="380" y="190" width="440" height="10" fill="#d0d5dc"/><rect x="380" y="212" width="440" height="10" fill="#d0d5dc"/>
<rect x="380" y="234" width="400" height="10" fill="#d0d5dc"/><rect x="380" y="280" width="200" height="150" fill="#c9d6ea"/>
<rect x="600" y="280" width="220" height="150" fill="#e3d3c4"/><rect x="380" y="460" width="440" height="10" fill="#d0d5dc"/>
<rect x="380" y="482" width="440" height="10" fill="#d0d5dc"/><rect x="380" y="504" width="300" height="10" fill="#d0d5dc"/>
</svg>"""


def main():
    emails = sorted((ROOT / "var" / "outbox").glob("*.html"), key=lambda path: path.stat().st_mtime)
    if not emails:
        sys.exit("No email in var/outbox/: run `make demo` first.")
    target = ROOT / "docs" / "images" / "digest.png"
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=os.environ.get("CHROMIUM_PATH", "/usr/bin/chromium"), args=["--no-sandbox"]
        )
        page = browser.new_page(viewport={"width": 640, "height": 1400}, color_scheme="light")
        page.route("https://**/*", lambda route: route.fulfill(body=STAND_IN, content_type="image/svg+xml"))
        page.goto(emails[-1].as_uri())
        page.screenshot(path=target)
        browser.close()
    print(target.relative_to(ROOT))


if __name__ == "__main__":
    main()
