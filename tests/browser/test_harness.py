"""The browser harness itself: what fails a browser test must really be caught."""

import pytest

pytestmark = pytest.mark.django_db(transaction=True)

NONCE = "harness-nonce"


def serve(page, path, body, csp=f"default-src 'self'; script-src 'nonce-{NONCE}'"):
    page.route(
        f"**{path}",
        lambda route: route.fulfill(
            status=200, content_type="text/html", headers={"Content-Security-Policy": csp}, body=body
        ),
    )
    page.goto(path)


def test_a_csp_violation_is_caught(open_page, console_errors):
    page = open_page()
    serve(
        page,
        "/harness-csp/",
        f"<script nonce='{NONCE}'>document.title = 'allowed'</script><script>document.title = 'blocked'</script>",
    )
    assert page.title() == "allowed"
    errors = console_errors.unexpected()
    assert len(errors) == 1 and "Content Security Policy" in errors[0]
    console_errors.allow("Content Security Policy")


def test_an_uncaught_exception_and_a_console_error_are_caught(open_page, console_errors):
    page = open_page()
    serve(page, "/harness-errors/", f"<script nonce='{NONCE}'>console.error('logged'); missing();</script>")
    errors = console_errors.unexpected()
    assert any("logged" in error for error in errors)
    assert any("uncaught ReferenceError" in error for error in errors)
    console_errors.allow(".")


def test_screenshots_are_named_after_the_test_width_and_scheme(open_page, snap_widths):
    page = open_page()
    dark = "<style>@media (prefers-color-scheme: dark) { body { background: #000 } }</style>x"
    serve(page, "/harness-snap/", dark, csp="default-src 'self'; style-src 'unsafe-inline'")
    paths = snap_widths(page, "plain")
    name = "test_screenshots_are_named_after_the_test_width_and_scheme-plain"
    assert [path.name for path in paths] == [
        f"{name}-360-light.png",
        f"{name}-360-dark.png",
        f"{name}-1280-light.png",
        f"{name}-1280-dark.png",
    ]
    # Each screenshot in its own scheme: the dark one is not the light one again.
    light, dark = paths[0].read_bytes(), paths[1].read_bytes()
    assert light and dark and light != dark
    assert page.viewport_size["width"] == 1280
    assert page.evaluate("matchMedia('(prefers-color-scheme: light)').matches")
