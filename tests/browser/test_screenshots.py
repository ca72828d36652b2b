"""Every reader page and every email, screenshot at the phone and the desktop width in the light and the dark colour
scheme (var/test-artifacts/screenshots/), so that each can be looked at; and at each of those, nothing is wider than
the window, nothing logs an error, and a page's text is light in the dark scheme.

The pages are tests/reader_pages.py's walk (the one the HTML checker takes), here in Chromium against the live server;
a form is sent the way the page's own would be, with the CSRF token. The emails are loaded as their HTML part. Only
their shape is checked (the subject as the document's title, some text, no overflow): their wording has its own tests.
"""

import re

import pytest
from django.conf import settings as django_settings
from django.core import mail
from django.core.management import call_command
from django.test import RequestFactory
from django.utils import timezone
from django.views.defaults import server_error
from playwright.sync_api import expect

from subscriptions.models import Subscriber
from tests import reader_pages
from tests.test_smtp_delivery import seed_papers, seed_readers, seed_topic

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.screenshots]

# Sends a form to `action` with exactly `fields` ([name, value] pairs), as client.post does, from inside the page.
SUBMIT = """([action, fields]) => {
    const form = document.createElement("form");
    form.method = "post";
    form.action = action;
    for (const [name, value] of fields) {
        const input = document.createElement("input");
        input.type = "hidden";
        input.name = name;
        input.value = value;
        form.append(input);
    }
    document.body.append(form);
    form.submit();
}"""


class Flaws:
    """What is wrong at each width and scheme: wider than the window; with `dark=True`, also dark text in the dark
    scheme (a page left light)."""

    def __init__(self, *, dark=False):
        self.found, self.dark = [], dark

    def measure(self, name):
        def measure(page, width, scheme):
            scroll_width = page.evaluate("document.documentElement.scrollWidth")
            if scroll_width > width:
                self.found.append(f"{name} at {width} px ({scheme}) is {scroll_width} px wide")
            if self.dark and scheme == "dark":
                colour = page.evaluate("getComputedStyle(document.body).color")
                if min(int(part) for part in re.findall(r"\d+", colour)[:3]) < 128:
                    self.found.append(f"{name} at {width} px in the dark scheme has dark text: {colour}")

        return measure


class BrowserVisit:
    """reader_pages.walk's visitor in Chromium: it loads each page, checks its status and screenshots the named ones.

    A page answering 4xx or 5xx makes Chromium log "Failed to load resource" for it; that one line is expected, any
    other error (a missing stylesheet, a CSP violation) is not."""

    def __init__(self, page, console_errors, snap_widths, flaws):
        self.page, self.console_errors, self.snap_widths, self.flaws = page, console_errors, snap_widths, flaws

    def get(self, name, path, status=200):
        self._check(name, f"GET {path}", self.page.goto(path), status)

    def post(self, name, path, data=None, status=200):
        fields = [
            [key, str(value)]
            for key, values in (data or {}).items()
            for value in (values if isinstance(values, list) else [values])
        ]
        cookies = {cookie["name"]: cookie["value"] for cookie in self.page.context.cookies()}
        if token := cookies.get(django_settings.CSRF_COOKIE_NAME):
            fields.append(["csrfmiddlewaretoken", token])
        with self.page.expect_navigation() as navigation:
            self.page.evaluate(SUBMIT, [path, fields])
        self._check(name, f"POST {path}", navigation.value, status)

    def _check(self, name, request, response, status):
        assert response.status == status, f"{request} answered {response.status}, not {status}"
        if status >= 400:
            prefix = re.escape(f"{response.url}: Failed to load resource: the server responded with a status of")
            self.console_errors.allow(rf"^{prefix} {status} ")
        if name is not None:
            expect(self.page.locator("body")).not_to_be_empty()
            self.snap_widths(self.page, name, each=self.flaws.measure(name))


def test_every_reader_page_at_both_widths_in_both_schemes(open_page, settings, console_errors, snap_widths):
    # The view-in-browser page is the email's markup under the email's CSP (images over HTTPS only) and names no icon;
    # Chromium asks for the site's icon anyway, and over the live server's plain HTTP that is refused.
    console_errors.allow(r"Loading the image '[^']*/favicon\.(ico|svg)' violates the following Content Security Policy")
    flaws = Flaws(dark=True)
    page = open_page()
    visit = BrowserVisit(page, console_errors, snap_widths, flaws)
    topic = reader_pages.walk(visit, settings)
    # A form sent without the CSRF cookie (a browser refusing cookies) gets the 403 page.
    page.context.clear_cookies()
    visit.post("csrf-failure", "/", reader_pages.sign_up_form(topic, "three@example.com"), status=403)
    # No route fails on purpose: the 500 page as the server would send it, under the site's CSP.
    csp = page.goto("/").headers["content-security-policy"]
    body = server_error(RequestFactory().get("/")).content.decode()
    page.route(
        "**/server-error/",
        lambda route: route.fulfill(
            status=500, body=body, headers={"Content-Security-Policy": csp, "Content-Type": "text/html; charset=utf-8"}
        ),
    )
    visit.get("server-error", "/server-error/", status=500)
    assert not flaws.found, "\n".join(flaws.found)


def test_every_email_at_both_widths_in_both_schemes(open_page, make_topic, settings, inline_tasks, snap_widths):
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    seed_papers()
    topic = seed_topic()
    [ada] = seed_readers(["ada@example.com"], topic)
    # Nothing is about robots today; this reader asked for an email all the same.
    robotics = make_topic("Robotics", aliases=["robot arm", "legged locomotion"])
    empty = Subscriber.objects.create(
        email="empty@example.com", status=Subscriber.Status.ACTIVE, confirmed_at=timezone.now(), send_when_empty=True
    )
    empty.topics.add(robotics)
    call_command("senddigests", "--now", "--no-progress", stdout=None)
    page = open_page("/")
    for address in ["new@example.com", ada.email]:  # a new reader's confirmation, a known one's preferences link
        page.goto("/")
        page.get_by_label("Email address").fill(address)
        page.get_by_role("checkbox", name=topic.name).check()
        page.get_by_role("button", name="Subscribe").click()
        expect(page).to_have_url(re.compile("/subscribe/sent/$"))

    def one(to, tag):
        [message] = [message for message in mail.outbox if message.to == [to] and tag in message.tags]
        return message

    emails = {
        "digest": one(ada.email, "digest"),
        "digest-empty-day": one(empty.email, "digest"),
        "confirm": one("new@example.com", "confirm"),
        "manage-link": one(ada.email, "manage-link"),
    }
    # A page of its own, not the site's: written into one of the site's pages, the email would be under their CSP.
    page = open_page()
    flaws = Flaws()
    for name, message in emails.items():
        [(html, kind)] = message.alternatives
        assert kind == "text/html"
        page.set_content(html)
        assert page.title() == " ".join(message.subject.split()), f"{name}: the subject is not the HTML's title"
        assert page.locator("body").inner_text().strip(), f"{name} shows no text"
        snap_widths(page, f"email-{name}", each=flaws.measure(name))
    assert not flaws.found, "\n".join(flaws.found)


def test_the_digests_footer_links_on_a_phone_have_no_separator_to_dangle(open_page, live_server, settings):
    """At 360 px the footer's links wrap; the dots between them are hidden there, so none ends or starts a line."""
    from bench.digest_cost import rich_digest

    html = rich_digest(3).alternatives[0][0]
    page = open_page(width=360)
    page.route("https://**/*", lambda route: route.fulfill(status=204))  # the top pick's picture: never the internet
    page.set_content(html)
    links = page.locator(".footer-links")
    assert links.locator("a").count() == 3
    assert [span.is_visible() for span in links.locator("span").all()] == [False, False]
    page.set_viewport_size({"width": 1280, "height": 800})
    assert [span.is_visible() for span in links.locator("span").all()] == [True, True]
