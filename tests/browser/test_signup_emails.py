"""The confirmation and manage-link emails in Chromium, as a WebKit or Blink mail client shows them: on a phone and on a
desktop, in light and dark mode, the button is there, big enough to tap, readable, and nothing is wider than the
screen (the long address to copy wraps)."""

import re

import pytest
from playwright.sync_api import expect

from subscriptions import emails
from subscriptions.models import Subscriber
from tests.browser.conftest import DESKTOP, PHONE, contrast, luminance

pytestmark = pytest.mark.django_db(transaction=True)

# WCAG 2.2: 4.5:1 for text (1.4.3), 3:1 for a control against what is around it (1.4.11); 44 px targets (2.5.5).
TEXT_CONTRAST = 4.5
CONTROL_CONTRAST = 3
TARGET_SIZE = 44


def style_of(locator, name):
    return locator.evaluate("(element, name) => getComputedStyle(element)[name]", name)


@pytest.mark.parametrize(
    "kind, status, label",
    [
        (emails.CONFIRM, Subscriber.Status.PENDING, "Confirm my subscription"),
        (emails.MANAGE_LINK, Subscriber.Status.ACTIVE, "Manage your subscription"),
    ],
    ids=["confirm", "manage-link"],
)
@pytest.mark.parametrize("scheme", ["light", "dark"])
@pytest.mark.parametrize("width", [PHONE, DESKTOP])
def test_the_sign_up_emails_button_is_big_readable_and_fits_the_screen(
    open_page, settings, make_reader, snap, kind, status, label, scheme, width
):
    # A production-length address: the one to copy must wrap, not widen the email.
    settings.SITE_URL = "https://papers.digest-of-research.example.org"
    reader = make_reader("ada.lovelace@analytical-engine.example.org", status=status)
    message = emails.make_subscription_email(reader, kind)
    page = open_page(width=width, color_scheme=scheme)
    page.set_content(message.alternatives[0][0])

    button = page.get_by_role("link", name=label)
    expect(button).to_be_visible()
    assert button.bounding_box()["height"] >= TARGET_SIZE
    cell = button.locator("xpath=..")
    page_colour = style_of(page.locator("body"), "backgroundColor")
    assert contrast(style_of(button, "color"), style_of(cell, "backgroundColor")) >= TEXT_CONTRAST
    assert contrast(style_of(cell, "backgroundColor"), page_colour) >= CONTROL_CONTRAST
    assert luminance(page_colour) < 0.05 if scheme == "dark" else luminance(page_colour) > 0.8
    expect(page.locator(".fallback-url")).to_have_text(re.compile(r"^https://papers\.digest-of-research"))
    assert page.evaluate("document.documentElement.scrollWidth") <= width
    snap(page, "email")
