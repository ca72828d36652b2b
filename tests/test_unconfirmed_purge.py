"""Sign-ups nobody confirms are not kept forever: the scheduled purge deletes them after UNCONFIRMED_SIGNUP_DAYS, and
drops a reader's unconfirmed change of preferences, keeping the reader."""

import logging
from datetime import timedelta

import pytest
import time_machine
from django.utils import timezone
from lxml import html as lxml_html

from subscriptions.models import Consent, MailEvent, PurgeRun, Subscriber
from subscriptions.tasks import purge_unconfirmed

NOW = "2026-11-30 03:00Z"


@pytest.fixture(autouse=True)
def frozen(inline_tasks):
    with time_machine.travel(NOW, tick=False):
        yield


def days_ago(days):
    return timezone.now() - timedelta(days=days)


@pytest.fixture
def readers(make_reader, make_topic):
    vision = make_topic("Computer vision")
    change = {"topics": [vision.pk], "keywords": [], "time_zone": "UTC", "send_hour": 22, "frequency": "daily"}
    made = {
        "stale": make_reader(
            "stale@example.com", status=Subscriber.Status.PENDING, pending_since=days_ago(31), created_at=days_ago(31)
        ),
        "recent": make_reader(
            "recent@example.com", status=Subscriber.Status.PENDING, pending_since=days_ago(29), created_at=days_ago(60)
        ),
        # Signed up before sign-ups recorded when: their age is the row's.
        "old-row": make_reader("old-row@example.com", status=Subscriber.Status.PENDING, created_at=days_ago(45)),
        "old-row-emailed-lately": make_reader(
            "emailed@example.com",
            status=Subscriber.Status.PENDING,
            created_at=days_ago(45),
            signup_email_at=days_ago(3),
        ),
        # Confirmed once, then sent the form again (the old sign-up made such readers pending): never deleted.
        "confirmed-once": make_reader(
            "once@example.com",
            status=Subscriber.Status.PENDING,
            confirmed_at=days_ago(400),
            pending_preferences=change,
            pending_since=days_ago(40),
            send_hour=7,
        ),
        "unsubscribed-stale-change": make_reader(
            "gone@example.com",
            topics=[vision],
            status=Subscriber.Status.UNSUBSCRIBED,
            pending_preferences=change,
            pending_since=days_ago(31),
            send_hour=7,
        ),
        "unsubscribed-recent-change": make_reader(
            "back@example.com",
            status=Subscriber.Status.UNSUBSCRIBED,
            pending_preferences=change,
            pending_since=days_ago(2),
        ),
        "active": make_reader("active@example.com", created_at=days_ago(900)),
    }
    made["stale"].record(Consent.Action.SUBSCRIBE, ip="203.0.113.9")
    MailEvent.objects.create(subscriber=made["stale"], esp="mailgun", event_type="bounced", event_id="b1")
    return made


def rows():
    return {
        reader.email: (reader.status, reader.send_hour, reader.pending_preferences is not None)
        for reader in Subscriber.objects.all()
    }


def test_stale_unconfirmed_sign_ups_go_and_readers_who_ever_confirmed_stay(readers, caplog):
    before = rows()
    assert len(before) == 8
    with caplog.at_level(logging.INFO, logger="subscriptions.signup"):
        result = purge_unconfirmed.delay().get()
    assert result == {"deleted": 2, "dropped": 2}
    after = rows()
    assert set(before) - set(after) == {"stale@example.com", "old-row@example.com"}
    assert after["once@example.com"] == ("pending", 7, False)
    assert after["gone@example.com"] == ("unsubscribed", 7, False)
    assert after["back@example.com"] == before["back@example.com"] == ("unsubscribed", 8, True)
    for email in ["recent@example.com", "emailed@example.com", "active@example.com"]:
        assert after[email] == before[email]
    assert list(Subscriber.objects.get(email="gone@example.com").topics.values_list("name", flat=True)) == [
        "Computer vision"
    ]
    # Their consent records went with them; the provider's report stays for the rates, naming nobody.
    assert not Consent.objects.exists()
    assert MailEvent.objects.get().subscriber is None

    [run] = PurgeRun.objects.all()
    assert (run.deleted_count, run.dropped_count, run.older_than) == (2, 2, days_ago(30))
    assert run.finished_at is not None
    assert (
        "Purged unconfirmed sign-ups older than 30 days: 2 deleted, 2 unconfirmed preference changes dropped"
        in caplog.messages
    )


def test_the_age_limit_is_a_setting(readers, settings):
    settings.UNCONFIRMED_SIGNUP_DAYS = 60
    assert purge_unconfirmed.delay().get() == {"deleted": 0, "dropped": 0}
    settings.UNCONFIRMED_SIGNUP_DAYS = 10
    assert purge_unconfirmed.delay().get() == {"deleted": 3, "dropped": 2}
    assert "recent@example.com" not in rows()


def test_operators_see_each_purge_in_the_admin(readers, admin_client):
    purge_unconfirmed.delay().get()
    page = lxml_html.fromstring(admin_client.get("/admin/subscriptions/purgerun/").content)
    [row] = page.find_class("field-deleted_count")
    assert row.text_content() == "2"
    assert page.find_class("field-dropped_count")[0].text_content() == "2"


def test_purge_runs_are_a_record_operators_cannot_delete(readers, admin_client):
    purge_unconfirmed.delay().get()
    run = PurgeRun.objects.get()
    page = admin_client.get("/admin/subscriptions/purgerun/").content.decode()
    assert 'name="action"' not in page  # no "Delete selected" to choose
    assert admin_client.get(f"/admin/subscriptions/purgerun/{run.pk}/delete/").status_code == 403
    assert (
        'class="deletelink"' not in admin_client.get(f"/admin/subscriptions/purgerun/{run.pk}/change/").content.decode()
    )


def test_a_pending_reader_who_was_ever_sent_a_digest_or_unsubscribed_is_kept(make_reader):
    """Rows an operator made active in the admin (no confirmation recorded), which then went back to pending: an
    unsubscribed reader's sign-up made them so before choices were kept aside. They were readers; their digests,
    feedback and consent records stay."""
    from digest.models import Delivery

    sent_to = make_reader("sent@example.com", status=Subscriber.Status.PENDING, created_at=days_ago(400))
    Delivery.objects.create(subscriber=sent_to, digest_date=days_ago(200).date(), status="sent")
    left = make_reader("left@example.com", status=Subscriber.Status.PENDING, created_at=days_ago(400))
    left.record(Consent.Action.UNSUBSCRIBE)
    left.record(Consent.Action.SUBSCRIBE)
    never = make_reader("never@example.com", status=Subscriber.Status.PENDING, created_at=days_ago(400))
    never.record(Consent.Action.SUBSCRIBE)

    assert purge_unconfirmed.delay().get() == {"deleted": 1, "dropped": 0}
    assert set(rows()) == {"sent@example.com", "left@example.com"}
    assert Delivery.objects.get().subscriber == sent_to
    assert list(left.consents.order_by("id").values_list("action", flat=True)) == ["unsubscribe", "subscribe"]
