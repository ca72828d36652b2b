"""Browser tests: Playwright for Python driving the system's Chromium against pytest-django's live server.

The browser is Debian's Chromium (`apt-get install chromium`), never one Playwright downloads. Without it these tests
skip, unless BROWSER_TESTS=required (as in CI), which turns the missing browser into a failure.

pytest-socket (the project's addopts) stays in force: Playwright talks to its driver over pipes, the driver to
Chromium over pipes (--remote-debugging-pipe), and Chromium is a separate process that only connects to the live
server on loopback.

Screenshots land in var/test-artifacts/screenshots/ (under VAR_DIR) as <test>-<name>-<width>-<light|dark>.png.
"""

import contextlib
import os
import re

import pytest
from django import db
from django.conf import settings as django_settings
from playwright.sync_api import Page, sync_playwright

CHROMIUM_PATH = os.environ.get("CHROMIUM_PATH", "/usr/bin/chromium")
# The machine running the tests may have no internet: without these, Chromium tries to reach Google's services
# (component updates, sync, field trials, QUIC probes) and waits on them.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

PHONE = 360
DESKTOP = 1280
WIDTHS = (PHONE, DESKTOP)
SCHEMES = ("light", "dark")
HEIGHT = 800
# Everything here is local, so a missing element shows at once rather than after Playwright's 30-second default.
TIMEOUT_MS = 5_000


_console_key = pytest.StashKey["ConsoleErrors"]()


def luminance(css_colour):
    """WCAG relative luminance of an rgb(...) colour as getComputedStyle gives it."""
    channels = [int(part) / 255 for part in re.findall(r"\d+", css_colour)[:3]]
    r, g, b = (c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4 for c in channels)
    return 0.2126 * r + 0.7152 * g + 0.0722 * b


def contrast(one, other):
    """WCAG contrast ratio of two computed colours (1 to 21)."""
    lighter, darker = sorted([luminance(one), luminance(other)], reverse=True)
    return (lighter + 0.05) / (darker + 0.05)


def _chromium_or_skip():
    if os.path.isfile(CHROMIUM_PATH) and os.access(CHROMIUM_PATH, os.X_OK):
        return CHROMIUM_PATH
    message = (
        f"browser tests need Chromium at {CHROMIUM_PATH} (CHROMIUM_PATH): install it with `apt-get install chromium` "
        "or point CHROMIUM_PATH at a Chromium binary"
    )
    if os.environ.get("BROWSER_TESTS") == "required":
        pytest.fail(f"BROWSER_TESTS=required, but {message}", pytrace=False)
    pytest.skip(message)


@pytest.fixture(scope="package")
def browser():
    """One Chromium for all the browser tests, stopped after the last of them.

    Not kept for the whole session: while Playwright runs, its event loop counts as running in this thread (see
    below), and that changes which database connection Django hands out here (asgiref keeps "thread-critical"
    locals per context when a loop runs). A later test that forks, like `senddigests --processes`, would then
    close one connection before forking and let the children share the other.
    """
    executable = _chromium_or_skip()
    # Playwright's sync API runs an asyncio event loop in this thread and leaves it marked as running between calls,
    # for as long as Playwright is started. Django then refuses every ORM call made here (SynchronousOnlyOperation),
    # although the tests and the live server's thread use the ORM synchronously as usual; nothing runs in that loop.
    saved = os.environ.get("DJANGO_ALLOW_ASYNC_UNSAFE")
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=executable, headless=True, args=CHROMIUM_ARGS)
            yield browser
            browser.close()
            # The connections opened while the loop ran, before they become unreachable with it.
            db.connections.close_all()
    finally:
        if saved is None:
            del os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"]
        else:
            os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = saved


@pytest.fixture
def site(live_server, settings):
    """The live server's base URL, which emails and signed links are built from (SITE_URL) during the test.

    The live server answers in its own thread with its own database connection, so the test runs on a
    transactional database (pytest-django gives one to every test using live_server).
    """
    settings.SITE_URL = live_server.url
    return live_server.url


class ConsoleErrors:
    """Errors a test's pages logged: console errors (CSP violations among them) and uncaught exceptions."""

    def __init__(self):
        self.messages = []
        self.allowed = []
        self.pages = []

    def watch(self, page):
        self.pages.append(page)
        page.on("console", lambda message: self._console(page, message))
        page.on("pageerror", lambda error: self.messages.append(f"{page.url}: uncaught {error.name}: {error.message}"))

    def _console(self, page, message):
        source = message.location.get("url") or page.url
        # Chromium asks every site for /favicon.ico; a site without one is not a broken page.
        if message.type == "error" and not source.endswith("/favicon.ico"):
            self.messages.append(f"{source}: {message.text}")

    def allow(self, pattern):
        """Accept console errors matching a regular expression, e.g. the one Chromium logs for an expected 400."""
        self.allowed.append(re.compile(pattern))

    def unexpected(self):
        # A round trip to each open page delivers the console events it sent before.
        for page in self.pages:
            if not page.is_closed():
                page.evaluate("0")
        return [text for text in self.messages if not any(pattern.search(text) for pattern in self.allowed)]


@pytest.fixture
def console_errors(request):
    errors = ConsoleErrors()
    request.node.stash[_console_key] = errors
    return errors


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item):
    """A test passes only if its pages logged no console error and no uncaught exception."""
    result = yield
    errors = item.stash.get(_console_key, None)
    if errors is not None and (unexpected := errors.unexpected()):
        pytest.fail("the page logged errors:\n" + "\n".join(unexpected), pytrace=False)
    return result


@pytest.fixture
def open_page(browser, site, console_errors):
    """open_page(path=None, *, width=DESKTOP, **context_options): a page in a fresh browser context (no cookies).

    The path is opened relative to the live server and must answer 2xx; context options go to browser.new_context
    (timezone_id="...", for one).
    """
    contexts = []

    def open_page(path=None, *, width=DESKTOP, **context_options) -> Page:
        options = {"locale": "en-US", "timezone_id": "UTC", "color_scheme": "light"} | context_options
        context = browser.new_context(base_url=site, viewport={"width": width, "height": HEIGHT}, **options)
        context.set_default_timeout(TIMEOUT_MS)
        contexts.append(context)
        page = context.new_page()
        console_errors.watch(page)
        if path is not None:
            response = page.goto(path)
            assert response.ok, f"{path} answered {response.status} {response.status_text}"
        return page

    yield open_page
    for context in contexts:
        context.close()


@contextlib.contextmanager
def _scroll_kept(page):
    """Put the page back where it was scrolled to.

    With an input focused, a full-page screenshot or a viewport change makes Chromium scroll the page, and its
    compositor keeps the old position: the next click lands where the element used to be. Scrolling back in the page
    brings the two together again.
    """
    position = page.evaluate("[scrollX, scrollY]")
    yield
    page.evaluate("([x, y]) => window.scrollTo(x, y)", position)


def colour_scheme(page):
    """The colour scheme the page is shown in now: "light" or "dark"."""
    return "dark" if page.evaluate("matchMedia('(prefers-color-scheme: dark)').matches") else "light"


@pytest.fixture
def snap(request):
    """snap(page, name): a full-page screenshot at the page's current width and colour scheme, kept as a test
    artifact."""
    test_name = re.sub(r"[^A-Za-z0-9_.-]+", "-", request.node.name).strip("-")

    def snap(page, name):
        folder = django_settings.VAR_DIR / "test-artifacts" / "screenshots"
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"{test_name}-{name}-{page.viewport_size['width']}-{colour_scheme(page)}.png"
        with _scroll_kept(page):
            page.screenshot(path=path, full_page=True)
        return path

    return snap


@pytest.fixture
def snap_widths(snap):
    """snap_widths(page, name): the page as it is now, screenshot at the phone and the desktop width, each in the
    light and the dark colour scheme; then the page is put back at its width and scheme.

    `each(page, width, scheme)`, if given, is called at every width and scheme just before its screenshot (to measure
    something there)."""

    def snap_widths(page, name, widths=WIDTHS, schemes=SCHEMES, each=None):
        original_size, original_scheme = page.viewport_size, colour_scheme(page)
        paths = []
        with _scroll_kept(page):
            for width in widths:
                page.set_viewport_size({"width": width, "height": HEIGHT})
                for scheme in schemes:
                    page.emulate_media(color_scheme=scheme)
                    if each is not None:
                        each(page, width, scheme)
                    paths.append(snap(page, name))
            page.set_viewport_size(original_size)
            page.emulate_media(color_scheme=original_scheme)
        return paths

    return snap_widths
