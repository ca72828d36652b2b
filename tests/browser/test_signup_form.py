"""The sign-up form and the preference center's fields in Chromium, with JavaScript on and off: what shows when, and
what is sent."""

from datetime import UTC, datetime

import pytest
import time_machine
from django.core import mail
from playwright.sync_api import expect

from subscriptions import tokens
from subscriptions.models import Subscriber

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.mark.parametrize("javascript", [True, False], ids=["javascript", "no-javascript"])
def test_the_day_for_weekly_digests_shows_only_once_weekly_is_chosen(open_page, make_topic, inline_tasks, javascript):
    make_topic("Robotics")
    page = open_page("/", java_script_enabled=javascript)
    day = page.get_by_label("Day for weekly digests")
    expect(day).to_be_hidden()
    page.get_by_role("radio", name="Once a week").check()
    expect(day).to_be_visible()
    day.select_option(label="Friday")
    page.get_by_role("radio", name="Weekdays (Monday to Friday)").check()
    expect(day).to_be_hidden()
    page.get_by_role("radio", name="Once a week").check()
    expect(day).to_have_value("4")

    page.get_by_label("Email address").fill("ada@example.com")
    page.get_by_role("checkbox", name="Robotics").check()
    page.get_by_role("button", name="Subscribe").click()
    expect(page.get_by_role("heading", name="Check your inbox")).to_be_visible()
    reader = Subscriber.objects.get()
    assert (reader.frequency, reader.weekly_day) == ("weekly", 4)
    assert len(mail.outbox) == 1


@pytest.mark.parametrize("javascript", [True, False], ids=["javascript", "no-javascript"])
def test_a_weekly_reader_sees_their_day_in_the_preference_center(open_page, make_reader, javascript):
    reader = make_reader(frequency="weekly", weekly_day=2)
    page = open_page(tokens.manage_url(reader), java_script_enabled=javascript)
    expect(page.get_by_label("Day for weekly digests")).to_be_visible()
    expect(page.get_by_label("Day for weekly digests")).to_have_value("2")
    page.get_by_role("radio", name="Every day").check()
    expect(page.get_by_label("Day for weekly digests")).to_be_hidden()


def test_check_your_inbox_says_when_to_try_again_in_the_readers_own_time(open_page, settings):
    settings.CONFIRMATION_RESEND_SECONDS = 600
    sent_at = datetime(2026, 12, 4, 5, 0, tzinfo=UTC)
    page = open_page(timezone_id="Asia/Tokyo")
    # The browser's clock too: the page names the day when the time falls on another day than the browser's today,
    # so with the real clock this failed from 15:00 UTC, midnight in Tokyo.
    page.clock.set_fixed_time(sent_at)
    with time_machine.travel(sent_at, tick=False):
        page.goto("/subscribe/sent/")
    expect(page.get_by_role("main")).to_contain_text("sending the form again before 14:10 sends nothing")
    no_script = open_page(java_script_enabled=False, timezone_id="Asia/Tokyo")
    with time_machine.travel(sent_at, tick=False):
        no_script.goto("/subscribe/sent/")
    expect(no_script.get_by_role("main")).to_contain_text("sending the form again before 05:10 UTC sends nothing")
