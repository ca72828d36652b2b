"""A reader's whole journey in a real browser: sign up, confirm from the email, change preferences, pause and resume,
unsubscribe from a digest's link and resubscribe. Also the sign-up with the keyboard alone, and the time zone the
page pre-selects from the browser's."""

import json
import re

import pytest
from django.core import mail
from playwright.sync_api import expect

from subscriptions import tokens
from subscriptions.models import Consent, Subscriber

pytestmark = pytest.mark.django_db(transaction=True)

EMAIL = "ada@example.com"


@pytest.fixture
def topics(make_topic):
    return {
        name: make_topic(name, description=description)
        for name, description in [
            ("Computer vision", "Images, video and 3D."),
            ("Language models", "LLMs, pretraining and alignment."),
            ("Robotics", "Robots that sense and act."),
        ]
    }


@pytest.fixture
def papers(make_paper):
    return [
        make_paper("Scaling sparse attention to a million tokens", upvotes=40),
        make_paper("Folding proteins with a small language model", upvotes=25),
    ]


@pytest.fixture
def emails(site, inline_tasks):
    """The sign-up emails in mail.outbox: tasks run inline, here in the live server's thread, even with REDIS_URL."""
    return lambda: list(mail.outbox)


def only_subscriber():
    return Subscriber.objects.get(email=EMAIL)


def actions(subscriber):
    return list(subscriber.consents.order_by("at", "id").values_list("action", flat=True))


def confirm_link(emails, site):
    [message] = emails()
    assert message.to == [EMAIL]
    assert "Confirm" in message.subject
    links = re.findall(r"https?://[^\s\"'<>]+/confirm/[^/\s\"'<>]+/", message.body)
    assert links, f"no /confirm/<token>/ link in:\n{message.body}"
    assert links[0].startswith(site + "/"), "links in emails start with SITE_URL"
    return links[0]


def tab_to(page, target, *, limit=80):
    """Press Tab until `target` has the focus, as a keyboard user would; fail if it never does.

    On the way, focus must never land on an element people cannot see (the honeypot).
    """
    for _ in range(limit):
        page.keyboard.press("Tab")
        focused_name = page.evaluate("document.activeElement && document.activeElement.name")
        assert focused_name != "website", "Tab reached the honeypot field, which people never see"
        if target.evaluate("element => element === document.activeElement"):
            return
    pytest.fail(f"{limit} presses of Tab never reached {target}")


def test_the_whole_journey(open_page, site, topics, papers, emails, snap_widths):
    # The landing page: what it is, a sample of papers, the form.
    page = open_page("/")
    expect(page.get_by_role("heading", level=1)).to_be_visible()
    expect(page.get_by_text(papers[0].title)).to_be_visible()
    honeypot = page.locator("input[name=website]")
    expect(honeypot).to_have_count(1)
    expect(honeypot).not_to_be_in_viewport()
    assert "website" not in page.get_by_role("textbox").evaluate_all("fields => fields.map(field => field.name)")
    snap_widths(page, "01-landing")

    page.get_by_label("Email address").fill(EMAIL)
    topic_group = page.get_by_role("group", name="Topics")
    topic_group.get_by_role("checkbox", name="Computer vision").check()
    topic_group.get_by_role("checkbox", name="Language models").check()
    page.get_by_label("Keywords").fill("protein folding\nsparse attention")
    page.get_by_label("Time zone").select_option("Europe/Berlin")
    page.get_by_label("Send hour").select_option("7")
    page.get_by_role("radio", name="Weekdays (Monday to Friday)").check()
    page.get_by_label("Papers per email").fill("8")
    snap_widths(page, "02-landing-filled")
    page.get_by_role("button", name="Subscribe").click()

    # Check your inbox: the reader is pending with what they chose, and has the confirmation email.
    expect(page.get_by_role("heading", name="Check your inbox")).to_be_visible()
    snap_widths(page, "03-check-your-inbox")
    reader = only_subscriber()
    assert reader.status == Subscriber.Status.PENDING
    assert sorted(topic.name for topic in reader.topics.all()) == ["Computer vision", "Language models"]
    assert reader.keywords == ["protein folding", "sparse attention"]
    assert (str(reader.time_zone), reader.send_hour, reader.frequency, reader.papers_per_email) == (
        "Europe/Berlin",
        7,
        "weekdays",
        8,
    )
    assert actions(reader) == [Consent.Action.SUBSCRIBE]
    link = confirm_link(emails, site)

    # The confirmation link asks first (mail scanners open links); the button confirms.
    page.goto(link)
    confirm = page.get_by_role("button", name="Confirm my subscription")
    expect(confirm).to_be_visible()
    snap_widths(page, "04-confirm")
    assert only_subscriber().status == Subscriber.Status.PENDING
    confirm.click()
    expect(page.get_by_text(re.compile(r"subscription is active", re.IGNORECASE))).to_be_visible()
    snap_widths(page, "05-confirmed")
    reader = only_subscriber()
    assert reader.status == Subscriber.Status.ACTIVE and reader.confirmed_at is not None
    assert actions(reader)[-1] == Consent.Action.CONFIRM

    # The preference center, reached from the confirmation page.
    page.get_by_role("link", name="Change your preferences").click()
    expect(page).to_have_url(re.compile(r"/manage/[^/]+/$"))
    expect(page.get_by_role("button", name="Save preferences")).to_be_visible()
    expect(page.get_by_label("Email address")).to_have_count(0)
    topic_group = page.get_by_role("group", name="Topics")
    expect(topic_group.get_by_role("checkbox", name="Computer vision")).to_be_checked()
    expect(topic_group.get_by_role("checkbox", name="Robotics")).not_to_be_checked()
    expect(page.get_by_label("Keywords")).to_have_value("protein folding\nsparse attention")
    expect(page.get_by_label("Time zone")).to_have_value("Europe/Berlin")
    expect(page.get_by_label("Send hour")).to_have_value("7")
    expect(page.get_by_role("radio", name="Weekdays (Monday to Friday)")).to_be_checked()
    expect(page.get_by_label("Papers per email")).to_have_value("8")
    snap_widths(page, "06-manage")

    topic_group.get_by_role("checkbox", name="Computer vision").uncheck()
    topic_group.get_by_role("checkbox", name="Robotics").check()
    page.get_by_label("Keywords").fill("graph neural networks")
    page.get_by_label("Time zone").select_option("America/New_York")
    page.get_by_label("Send hour").select_option("18")
    page.get_by_role("radio", name="Once a week").check()
    page.get_by_label("Papers per email").fill("5")
    page.get_by_role("button", name="Save preferences").click()

    expect(page.get_by_text("Your preferences are saved.")).to_be_visible()
    snap_widths(page, "07-manage-saved")
    reader = only_subscriber()
    assert sorted(topic.name for topic in reader.topics.all()) == ["Language models", "Robotics"]
    assert reader.keywords == ["graph neural networks"]
    assert (str(reader.time_zone), reader.send_hour, reader.frequency, reader.papers_per_email) == (
        "America/New_York",
        18,
        "weekly",
        5,
    )
    assert actions(reader)[-1] == Consent.Action.PREFERENCES
    expect(page.get_by_label("Keywords")).to_have_value("graph neural networks")

    # Pause and resume.
    page.get_by_role("button", name="Pause digests").click()
    expect(page.get_by_role("button", name="Resume digests")).to_be_visible()
    snap_widths(page, "08-manage-paused")
    assert only_subscriber().status == Subscriber.Status.PAUSED
    page.get_by_role("button", name="Resume digests").click()
    expect(page.get_by_role("button", name="Pause digests")).to_be_visible()
    assert only_subscriber().status == Subscriber.Status.ACTIVE
    assert actions(only_subscriber())[-2:] == [Consent.Action.PAUSE, Consent.Action.RESUME]

    # Their data, as a JSON download; and the way to delete it.
    with page.expect_download() as download_info:
        page.get_by_role("link", name="Download my data").click()
    data = json.loads(download_info.value.path().read_text(encoding="utf-8"))
    assert EMAIL in json.dumps(data)
    expect(page.get_by_role("link", name="Delete me")).to_be_visible()

    # A digest's unsubscribe link: one button, then a way back.
    page.goto(tokens.unsubscribe_url(only_subscriber()))
    snap_widths(page, "09-unsubscribe")
    page.get_by_role("button", name="Unsubscribe").click()
    expect(page.get_by_role("heading", name="You are unsubscribed")).to_be_visible()
    expect(page.get_by_role("button", name="Resubscribe")).to_be_visible()
    expect(page.get_by_role("link", name="Change preferences instead")).to_have_count(0)
    expect(page.get_by_role("link", name="Download or delete your data")).to_be_visible()
    snap_widths(page, "10-unsubscribed")
    assert only_subscriber().status == Subscriber.Status.UNSUBSCRIBED
    assert actions(only_subscriber())[-1] == Consent.Action.UNSUBSCRIBE

    page.get_by_role("button", name="Resubscribe").click()
    expect(page.get_by_role("button", name="Resubscribe")).to_have_count(0)
    snap_widths(page, "11-resubscribed")
    reader = only_subscriber()
    assert reader.status == Subscriber.Status.ACTIVE
    assert actions(reader)[-1] == Consent.Action.RESUBSCRIBE
    assert sorted(topic.name for topic in reader.topics.all()) == ["Language models", "Robotics"]


def test_signing_up_with_the_keyboard_alone(open_page, site, topics, emails, snap):
    page = open_page("/", timezone_id="Europe/Berlin")

    tab_to(page, page.get_by_label("Email address"))
    page.keyboard.type(EMAIL)
    tab_to(page, page.get_by_role("checkbox", name="Language models"))
    page.keyboard.press("Space")
    tab_to(page, page.get_by_label("Keywords"))
    page.keyboard.type("sparse attention")
    page.keyboard.press("Enter")
    page.keyboard.type("protein folding")
    # The time zone stays as the page pre-selected it from the browser's.
    tab_to(page, page.get_by_label("Send hour"))
    page.keyboard.press("ArrowDown")  # 08:00, the default, to 09:00
    tab_to(page, page.get_by_role("radio", name="Every day"))
    page.keyboard.press("ArrowDown")  # moves to, and chooses, the next radio
    tab_to(page, page.get_by_label("Papers per email"))
    page.keyboard.press("ControlOrMeta+A")
    page.keyboard.type("5")
    subscribe = page.get_by_role("button", name="Subscribe")
    tab_to(page, subscribe)
    snap(page, "focused-subscribe")
    page.keyboard.press("Enter")

    expect(page.get_by_role("heading", name="Check your inbox")).to_be_visible()
    reader = only_subscriber()
    assert reader.status == Subscriber.Status.PENDING
    assert [topic.name for topic in reader.topics.all()] == ["Language models"]
    assert reader.keywords == ["sparse attention", "protein folding"]
    assert (str(reader.time_zone), reader.send_hour, reader.frequency, reader.papers_per_email) == (
        "Europe/Berlin",
        9,
        "weekdays",
        5,
    )
    confirm_link(emails, site)


# Chromium reports the last three by older names (Asia/Calcutta, Europe/Kiev, America/Buenos_Aires), which the list
# leaves out.
@pytest.mark.parametrize(
    "zone",
    [
        "Europe/Berlin",
        "America/New_York",
        "Asia/Tokyo",
        "Asia/Kolkata",
        "Europe/Kyiv",
        "America/Argentina/Buenos_Aires",
    ],
)
def test_the_time_zone_is_pre_selected_from_the_browser(open_page, topics, zone):
    page = open_page("/", timezone_id=zone)
    expect(page.get_by_label("Time zone")).to_have_value(zone)


def test_a_time_zone_the_reader_chose_survives_a_form_error(open_page, topics, console_errors):
    # The form comes back with its errors as a 400, which Chromium logs.
    console_errors.allow(r"status of 400")
    page = open_page("/", timezone_id="Europe/Berlin")
    page.get_by_label("Email address").fill("not an address")
    page.get_by_role("checkbox", name="Robotics").check()
    page.get_by_label("Time zone").select_option("Asia/Tokyo")
    page.get_by_role("button", name="Subscribe").click()

    expect(page.get_by_label("Email address")).to_have_value("not an address")
    expect(page.get_by_label("Time zone")).to_have_value("Asia/Tokyo")
    assert not Subscriber.objects.exists()
