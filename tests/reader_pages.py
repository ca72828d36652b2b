"""Every page a reader can reach, with realistic data, in their ordinary and error states: one walk through them that
the HTML checker (test_valid_html.py) takes with Django's test client and Chromium (browser/test_screenshots.py)
takes against the live server.

The data are the SMTP tests' papers (one with markup in its title), a sent digest and a reader's feedback.
"""

import re
from datetime import timedelta

import time_machine
from django.core import mail
from django.core.management import call_command
from django.utils import timezone

from subscriptions import signup, tokens
from subscriptions.models import Subscriber
from tests.test_smtp_delivery import seed_papers, seed_readers, seed_topic


def path_of(url):
    return "/" + url.split("/", 3)[3]


def sign_up_form(topic, email):
    """What the sign-up form sends for `email`, reading about `topic` each day."""
    return {
        "email": email,
        "topics": [topic.id],
        "time_zone": "UTC",
        "send_hour": "8",
        "frequency": "daily",
        "weekly_day": "0",
        "papers_per_email": "8",
    }


def walk(visit, settings):
    """Visit every reader page in turn: `visit.get(name, path, status=200)` and `visit.post(name, path, data=None,
    status=200)` each load one page (following redirects) and check its status. Returns the topic the readers read.

    Emails go to mail.outbox: ada's digest among them, and a confirmation email for one@example.com."""
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    seed_papers()
    topic = seed_topic()
    ada, grace = seed_readers(["ada@example.com", "grace@example.com"], topic)
    call_command("senddigests", "--now", "--no-progress", stdout=None)
    message = next(message for message in mail.outbox if message.to == ["ada@example.com"])
    [view_url] = re.findall(r"View in browser: (\S+)", message.body)
    more_url = re.findall(r"More like this: (\S+)", message.body)[0]
    [pending] = seed_readers(["pending@example.com"], topic, status=Subscriber.Status.PENDING)
    with time_machine.travel(timezone.now() - timedelta(days=30)):
        [late] = seed_readers(["late@example.com"], topic, status=Subscriber.Status.PENDING)
        expired_url = tokens.confirm_url(late)
    manage, feed = path_of(tokens.manage_url(ada)), path_of(tokens.feed_url(ada))
    unsubscribe = path_of(tokens.unsubscribe_url(grace))
    today = timezone.now().date()

    visit.get("subscribe", "/")
    visit.post("subscribe-errors", "/", {"email": "not an address", "papers_per_email": "31"}, status=400)
    visit.get("subscribe-sent", "/subscribe/sent/")
    visit.get("confirm", path_of(tokens.confirm_url(pending)))
    visit.post("confirmed", path_of(tokens.confirm_url(pending)))
    visit.get("confirm-returning", path_of(tokens.confirm_url(returning_reader(topic))))
    visit.get("bad-link", "/confirm/not-a-token/", status=400)
    visit.get("expired-link", path_of(expired_url), status=400)
    visit.get("view-in-browser", path_of(view_url))
    visit.get("view-in-browser-gone", path_of(tokens.view_url(ada, today - timedelta(days=3))), status=404)
    visit.get("feedback", path_of(more_url))
    visit.post("feedback-done", path_of(more_url))
    visit.get("manage", manage + "?saved=1")
    visit.post("manage-errors", manage, {"papers_per_email": "0"}, status=400)
    visit.post("manage-paused", manage + "pause/")
    visit.post("manage-feedback-undone", manage + "feedback/undo/", {"feedback": ada.feedback.get().id})
    visit.get("erase", manage + "delete/")
    visit.post("erased", manage + "delete/")
    visit.get("deleted-link", manage, status=410)
    visit.get("feed-gone", feed, status=410)
    visit.get("unsubscribe", unsubscribe)
    visit.post("unsubscribed", unsubscribe)
    visit.get("manage-unsubscribed", path_of(tokens.manage_url(grace)))
    visit.post("resubscribed", unsubscribe + "resubscribe/")
    visit.get("topics", "/topics/")
    visit.get("topic-today", f"/topics/{topic.slug}/")
    visit.get("topic-empty-day", f"/topics/{topic.slug}/{today - timedelta(days=1)}/")
    visit.get("topic-unknown", "/topics/no-such-topic/", status=404)
    visit.get("topic-bad-day", f"/topics/{topic.slug}/2020-02-30/", status=404)
    visit.get("not-found", "/no/such/page/", status=404)

    settings.SUBSCRIBE_RATE_PER_IP = "1/h"
    visit.post(None, "/", sign_up_form(topic, "one@example.com"))
    visit.post("rate-limited", "/", sign_up_form(topic, "two@example.com"), status=429)
    settings.BAD_LINK_RATE_PER_IP = "1/h"
    visit.get(None, "/manage/not-a-token/", status=400)
    visit.get("too-many-bad-links", manage, status=429)
    return topic


def returning_reader(topic):
    """An unsubscribed reader whose new choices, weekly, wait for the confirmation link."""
    [reader] = seed_readers(["back@example.com"], topic, status=Subscriber.Status.UNSUBSCRIBED)
    choices = {**reader.get_preferences(), "topics": [topic], "keywords": ["protein folding"], "frequency": "weekly"}
    reader.pending_preferences = signup.pending_json(choices)
    reader.pending_since = timezone.now()
    reader.save()
    return reader
