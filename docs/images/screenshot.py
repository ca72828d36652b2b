#!/usr/bin/env python
"""Makes docs/images/digest.png, the README's picture of a digest, from the demo's newest email to ada@example.com
(two topics and a keyword) in var/outbox/.

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
# A page with two title lines, text lines and two figures: (x, y, width, height, colour) per rectangle.
SHAPES = [
    (0, 0, 1200, 630, "#eef0f3"), (330, 40, 540, 590, "#ffffff"), (380, 90, 440, 22, "#9aa4b1"),
    (430, 126, 340, 22, "#9aa4b1"), (380, 190, 440, 10, "#d0d5dc"), (380, 212, 440, 10, "#d0d5dc"),
    (380, 234, 400, 10, "#d0d5dc"), (380, 280, 200, 150, "#c9d6ea"), (600, 280, 220, 150, "#e3d3c4"),
    (380, 460, 440, 10, "#d0d5dc"), (380, 482, 440, 10, "#d0d5dc"), (380, 504, 300, 10, "#d0d5dc"),
]  # fmt: skip
STAND_IN = (
    '<svg xmlns="http://www.w3.org/2000/svg" width="1200" height="630" viewBox="0 0 1200 630">'
    + "".join(f'<rect x="{x}" y="{y}" width="{w}" height="{h}" fill="{fill}"/>' for x, y, w, h, fill in SHAPES)
    + "</svg>"
)


def main():
    emails = sorted((ROOT / "var" / "outbox").glob("*-ada@example.com.html"))  # named by time, then number
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
