"""The reader pages the journey does not pass through, in Chromium at both widths: deleting one's data, an expired
confirmation link, the 429 page, the sign-up form's errors, the page in dark mode, and a digest's "Why:" line on a
phone (its view-in-browser page is the email as sent, pixel for pixel)."""

import math
import re
from datetime import timedelta

import pytest
import time_machine
from django.core import mail
from django.core.management import call_command
from django.utils import timezone
from playwright.sync_api import expect

from subscriptions import signup, tokens
from subscriptions.models import MAX_PAPERS_PER_EMAIL, ErasedAddress, Subscriber
from tests.browser.conftest import DESKTOP, PHONE, contrast

pytestmark = pytest.mark.django_db(transaction=True)


def test_delete_me_asks_then_erases(open_page, make_reader, snap_widths):
    reader = make_reader("ada@example.com")
    page = open_page(tokens.manage_url(reader))
    page.get_by_role("link", name="Delete me").click()
    expect(page.get_by_role("heading", name="Delete your data?")).to_be_visible()
    snap_widths(page, "erase")
    assert Subscriber.objects.exists()
    page.get_by_role("button", name="Delete my data").click()
    expect(page.get_by_role("heading", name="Your data is deleted")).to_be_visible()
    snap_widths(page, "erased")
    assert not Subscriber.objects.exists() and ErasedAddress.is_erased("ada@example.com")


def test_keep_my_subscription_goes_back_unchanged(open_page, make_reader):
    reader = make_reader("ada@example.com")
    page = open_page(tokens.manage_url(reader) + "delete/")
    page.get_by_role("link", name="Keep my subscription").click()
    expect(page.get_by_role("heading", name="Your preferences")).to_be_visible()
    assert Subscriber.objects.get().status == Subscriber.Status.ACTIVE


def test_an_expired_confirmation_link_says_so(open_page, make_reader, console_errors, snap_widths):
    console_errors.allow(r"status of 400")
    reader = make_reader("ada@example.com", status=Subscriber.Status.PENDING)
    with time_machine.travel(timezone.now() - timedelta(days=8)):
        link = tokens.confirm_url(reader)
    page = open_page()
    assert page.goto(link).status == 400
    expect(page.get_by_role("heading", name="This link has expired")).to_be_visible()
    snap_widths(page, "expired")
    page.get_by_role("link", name="Sign up again").click()
    expect(page.get_by_role("button", name="Subscribe")).to_be_visible()


def test_too_many_sign_ups_get_a_friendly_page(open_page, make_topic, settings, console_errors, snap_widths):
    console_errors.allow(r"status of 429")
    settings.SUBSCRIBE_RATE_PER_IP = "1/h"
    make_topic("Robotics")
    page = open_page("/")
    for email in ["one@example.com", "two@example.com"]:
        page.goto("/")
        page.get_by_label("Email address").fill(email)
        page.get_by_role("checkbox", name="Robotics").check()
        page.get_by_role("button", name="Subscribe").click()
    expect(page.get_by_role("heading", name="Too many attempts")).to_be_visible()
    snap_widths(page, "rate-limited")
    assert list(Subscriber.objects.values_list("email", flat=True)) == ["one@example.com"]


def test_a_returning_reader_sees_the_choices_to_confirm_full_width_on_a_phone(
    open_page, make_reader, make_topic, snap_widths
):
    topics = [make_topic("Efficient inference"), make_topic("Language models")]
    reader = make_reader("ada.lovelace@example.com", status=Subscriber.Status.UNSUBSCRIBED)
    choices = {**reader.get_preferences(), "topics": topics, "keywords": ["protein folding", "sparse attention"]}
    reader.pending_preferences = signup.pending_json(choices | {"frequency": "weekly", "weekly_day": 4})
    reader.pending_since = timezone.now()
    reader.save()
    page = open_page(tokens.confirm_url(reader), width=PHONE)
    label, value = page.locator("dl.choices dt").first, page.locator("dl.choices dd").first
    expect(value).to_have_text("Efficient inference, Language models")
    expect(page.locator("dl.choices")).to_contain_text("once a week, on Fridays")
    # Each choice under its label, across the phone's width, not squeezed into a column beside it.
    label_box, value_box = label.bounding_box(), value.bounding_box()
    assert value_box["x"] == label_box["x"] and value_box["y"] >= label_box["y"] + label_box["height"]
    assert page.evaluate("document.documentElement.scrollWidth") <= PHONE
    snap_widths(page, "confirm-returning")


def test_too_many_broken_links_say_how_long_to_wait_and_lead_home(
    open_page, make_reader, settings, console_errors, snap_widths
):
    console_errors.allow(r"status of (400|429)")
    settings.BAD_LINK_RATE_PER_IP = "1/h"
    link = tokens.manage_url(make_reader("ada@example.com"))
    page = open_page(width=PHONE)
    assert page.goto(link[:-2] + ("y" if link[-2] == "x" else "x") + "/").status == 400
    refused = page.goto(link)
    assert refused.status == 429
    expect(page.get_by_role("heading", name="Too many broken links")).to_be_visible()
    minutes = math.ceil(int(refused.headers["retry-after"]) / 60)
    expect(page.get_by_role("main")).to_contain_text(f"Please try again in {minutes} minute")
    assert page.evaluate("document.documentElement.scrollWidth") <= PHONE  # nothing wider than the phone
    snap_widths(page, "too-many-bad-links")
    page.get_by_role("link", name="Go to the start page").click()
    expect(page.get_by_role("button", name="Subscribe")).to_be_visible()


def test_the_form_errors_are_listed_linked_and_focused(open_page, make_topic, console_errors, snap_widths):
    console_errors.allow(r"status of 400")
    make_topic("Robotics")
    page = open_page("/")
    page.get_by_label("Email address").fill("ada@example.com\nBcc: x@example.org".replace("\n", " "))
    page.get_by_label("Papers per email").fill("31")
    page.get_by_role("button", name="Subscribe").click()
    summary = page.get_by_role("alert")
    expect(summary).to_contain_text("Please fix 3 problems")
    expect(summary).to_be_focused()
    expect(page).to_have_title(re.compile(r"^Error: "))
    snap_widths(page, "form-errors")
    # Each listed error links to its field, and the field names its error for screen readers.
    summary.get_by_role("link", name=re.compile("Papers per email")).click()
    field = page.get_by_label("Papers per email")
    expect(field).to_be_focused()
    expect(field).to_have_attribute("aria-invalid", "true")
    expect(field).to_have_accessible_description(re.compile(f"less than or equal to {MAX_PAPERS_PER_EMAIL}"))


def test_the_pages_follow_a_dark_colour_scheme(open_page, make_topic, snap):
    make_topic("Robotics")
    page = open_page("/", color_scheme="dark")
    background = page.evaluate("getComputedStyle(document.body).backgroundColor")
    assert background == "rgb(13, 17, 23)"
    snap(page, "landing")


@pytest.mark.parametrize(("scheme", "colour"), [("light", "rgb(48, 54, 61)"), ("dark", "rgb(201, 209, 217)")])
def test_a_digest_says_why_each_paper_is_there_legibly_on_a_phone(
    open_page, site, settings, make_topic, make_paper, make_reader, scheme, colour, snap
):
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    inference = make_topic("Efficient inference", aliases=["KV cache", "speculative decoding"])
    make_paper("Speculative decoding with a compressed KV cache", "Faster LLM serving.", upvotes=30)
    make_reader(topics=[inference], keywords=["<b>speculative</b> decoding & more"])
    call_command("senddigests", "--now", "--no-progress")
    [message] = mail.outbox
    [link] = re.findall(r"View in browser: (\S+)", message.body)

    page = open_page(link.removeprefix(site), width=PHONE, color_scheme=scheme)
    why = page.locator(".why")
    expect(why).to_have_count(1)
    expect(why).to_contain_text(re.compile(r"^Why: .*<b>speculative</b> decoding & more.*about"))
    assert page.locator(".why span").first.evaluate("element => getComputedStyle(element).color") == colour
    assert page.evaluate("document.documentElement.scrollWidth") <= PHONE  # nothing wider than the phone
    snap(page, "digest-why")


@pytest.mark.parametrize("scheme", ["light", "dark"])
@pytest.mark.parametrize("width", [PHONE, DESKTOP])
def test_the_view_in_browser_page_looks_exactly_like_the_email_as_sent(
    open_page, site, settings, make_topic, make_paper, make_reader, snap, scheme, width
):
    """The page is a valid web page, not the email's own markup (test_valid_html.py), yet shows the same pixels as the
    email does in the same browser."""
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    inference = make_topic("Efficient inference", aliases=["KV cache", "speculative decoding"])
    make_paper("Speculative decoding with a compressed KV cache", "Faster LLM serving.", upvotes=30)
    make_paper(
        "A KV cache that fits on a phone", "Quantised attention keys.", upvotes=12, github_url="https://github.com/x/y"
    )
    make_reader("ada@example.com", topics=[inference], keywords=["speculative decoding"])
    call_command("senddigests", "--now", "--no-progress")
    [message] = mail.outbox
    [link] = re.findall(r"View in browser: (\S+)", message.body)

    served = open_page(link.removeprefix(site), width=width, color_scheme=scheme)
    email = open_page(width=width, color_scheme=scheme)
    email.set_content(message.alternatives[0][0])
    assert served.locator(".paper h3").all_text_contents() == email.locator(".paper h3").all_text_contents()
    assert snap(served, "served").read_bytes() == snap(email, "email").read_bytes()


@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_the_delete_button_and_a_wrong_field_read_clearly_in_either_scheme(
    open_page, make_reader, console_errors, scheme
):
    console_errors.allow(r"status of 400")  # the form sent back with its errors
    reader = make_reader("ada@example.com")
    page = open_page(tokens.manage_url(reader).split("/", 3)[3].join(["/", "delete/"]), color_scheme=scheme)
    button = page.get_by_role("button", name="Delete my data")
    colours = button.evaluate("b => [getComputedStyle(b).color, getComputedStyle(b).backgroundColor]")
    assert contrast(*colours) >= 4.5, colours
    # A field with an error is outlined in the error colour, whatever kind of field it is.
    page.goto("/")
    page.get_by_label("Email address").fill("not an address")
    page.get_by_label("Papers per email").fill("0")
    page.get_by_role("button", name="Subscribe").click()
    for label in ("Email address", "Papers per email"):
        field = page.get_by_label(label)
        expect(field).to_have_attribute("aria-invalid", "true")
        width, colour = field.evaluate("f => [getComputedStyle(f).borderTopWidth, getComputedStyle(f).borderTopColor]")
        error = page.locator("ul.errorlist").first.evaluate("e => getComputedStyle(e).color")
        assert (width, colour) == ("2px", error)
