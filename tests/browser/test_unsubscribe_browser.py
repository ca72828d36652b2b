"""Unsubscribing from the link in an email, in a real browser: by pointer, by keyboard alone, and with a bad link."""

import pytest
from playwright.sync_api import expect

from subscriptions import tokens
from subscriptions.models import Consent, Subscriber

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def reader(make_reader, site):
    return make_reader("ada@example.com")


def assert_unsubscribed(reader):
    reader.refresh_from_db()
    assert reader.status == Subscriber.Status.UNSUBSCRIBED
    assert reader.unsubscribed_at is not None
    assert reader.consents.filter(action=Consent.Action.UNSUBSCRIBE).count() == 1


def test_the_unsubscribe_button_unsubscribes(open_page, reader, snap_widths):
    page = open_page(tokens.unsubscribe_url(reader))
    button = page.get_by_role("button", name="Unsubscribe")
    expect(button).to_be_visible()
    snap_widths(page, "ask")
    reader.refresh_from_db()
    assert reader.status == Subscriber.Status.ACTIVE, "opening the link alone must not unsubscribe"

    button.click()

    expect(page.get_by_role("heading", name="You are unsubscribed")).to_be_visible()
    snap_widths(page, "done")
    assert_unsubscribed(reader)


def test_unsubscribing_with_the_keyboard_alone(open_page, reader, snap):
    page = open_page(tokens.unsubscribe_url(reader), width=360)
    button = page.get_by_role("button", name="Unsubscribe")
    for _ in range(20):
        page.keyboard.press("Tab")
        if button.evaluate("element => element === document.activeElement"):
            break
    else:
        pytest.fail("Tab never reached the Unsubscribe button")
    snap(page, "focused")

    page.keyboard.press("Enter")

    expect(page.get_by_role("heading", name="You are unsubscribed")).to_be_visible()
    assert_unsubscribed(reader)


def test_a_tampered_link_shows_a_400_page_and_changes_nothing(open_page, reader, console_errors, snap_widths):
    url = tokens.unsubscribe_url(reader)
    token = tokens.make_token(reader, tokens.UNSUBSCRIBE)
    tampered = url.replace(token, token[:-2] + ("xx" if not token.endswith("xx") else "yy"))
    # Chromium logs any 4xx document load as a console error; this one is the point of the test.
    console_errors.allow(r"status of 400")
    page = open_page()

    response = page.goto(tampered)

    assert response.status == 400
    expect(page.get_by_role("heading", name="This link does not work")).to_be_visible()
    expect(page.get_by_role("button", name="Unsubscribe")).to_have_count(0)
    snap_widths(page, "bad-link")
    reader.refresh_from_db()
    assert reader.status == Subscriber.Status.ACTIVE
    assert not reader.consents.exists()
