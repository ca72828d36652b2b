"""The operator's health page: today's digests, bounce and complaint rates, readers by status, daily sends."""

import re
from datetime import date, timedelta

import pytest
import time_machine
from django.core import mail
from django.utils import timezone

from digest.models import Delivery, DigestRun
from subscriptions.models import MailEvent, SignupEmail, Subscriber

NOW = "2026-11-30 15:00Z"


@pytest.fixture(autouse=True)
def frozen():
    with time_machine.travel(NOW, tick=False):
        yield


def make_sent(count, *, day=date(2026, 11, 30), status=Delivery.Status.SENT, start=0):
    readers = Subscriber.objects.bulk_create(
        Subscriber(email=f"r{start + n}@example.com", status=Subscriber.Status.ACTIVE) for n in range(count)
    )
    Delivery.objects.bulk_create(
        Delivery(subscriber=reader, digest_date=day, status=status, finished_at=timezone.now()) for reader in readers
    )
    return readers


def complaints(count, readers):
    MailEvent.objects.bulk_create(
        MailEvent(subscriber=reader, esp="mailgun", event_type=MailEvent.EventType.COMPLAINED, event_id=f"c{n}")
        for n, reader in zip(range(count), readers, strict=False)
    )


def models_concat(*parts):
    """Each row's own value, e.g. "<digest-" + id + "@…>", for an update of many rows at once."""
    from django.db.models import CharField, F, Value
    from django.db.models.functions import Cast, Concat

    return Concat(*(Cast(F(part), CharField()) if part == "id" else Value(part) for part in parts))


def text_of(response):
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", response.content.decode()))


def test_the_page_shows_todays_run_readers_and_an_empty_chart(admin_client, make_reader):
    DigestRun.objects.create(planned_count=12, sent_count=9, failed_count=1, skipped_count=2)
    make_reader("paused@example.com", status=Subscriber.Status.PAUSED)
    page = text_of(admin_client.get("/admin/health/"))
    assert "Today's digests 9 sent 12 planned · 1 failed · 2 skipped" in page
    assert "Paused 1" in page and "Active 0" in page
    assert "Digests, last 7 days None sent" in page
    assert "Digests sent per day, last 30 days No digests sent or failed in the last 30 days." in page


def test_no_run_yet_says_how_runs_happen(admin_client, db):
    assert "No run yet today" in text_of(admin_client.get("/admin/health/"))


@pytest.mark.parametrize(
    ("count", "message"),
    [
        (0, None),
        (1, "Complaints are above 0.1 %"),
        (3, "Complaints are at or above 0.3 %, Gmail's limit"),
    ],
)
def test_complaint_rates_warn_at_a_tenth_of_a_percent(admin_client, db, count, message):
    readers = make_sent(1000)
    complaints(count, readers)
    page = text_of(admin_client.get("/admin/health/"))
    assert f"{count / 10:.3f} % complaints" in page
    assert f"{count} complaint{'s' if count != 1 else ''} and 0 bounces (0.00 %) for 1,000 digests sent" in page
    if message:
        assert page.count(message) == 2  # the 7- and the 30-day figures
    else:
        assert "Complaints are" not in page


def test_with_nothing_sent_the_cards_say_so_instead_of_a_zero_rate(admin_client, db):
    report("bounced", "<someone-elses@mg.example.org>", 1)
    page = text_of(admin_client.get("/admin/health/"))
    assert "Sign-up emails, last 30 days None sent No sign-up emails sent in the last 30 days, so no rates yet." in page
    assert "Digests, last 7 days None sent 0 complaints and 1 bounce reported, with no digests sent." in page
    assert "0.000 % complaints" not in page
    assert "No digests sent or failed in the last 30 days." in page


def test_the_7_day_rate_forgets_older_events(admin_client, db):
    readers = make_sent(1000)
    complaints(2, readers)
    MailEvent.objects.update(occurred_at=timezone.now() - timedelta(days=10))
    MailEvent.objects.create(subscriber=readers[5], esp="amazon_ses", event_type="bounced", event_id="b1")
    page = text_of(admin_client.get("/admin/health/"))
    assert "Digests, last 7 days 0.000 % complaints 0 complaints and 1 bounce (0.10 %)" in page
    assert "Digests, last 30 days 0.200 % complaints 2 complaints and 1 bounce (0.10 %)" in page


def test_the_chart_has_a_bar_per_day_with_its_figures(admin_client, db):
    make_sent(4, day=date(2026, 11, 29))
    make_sent(2, day=date(2026, 11, 29), status=Delivery.Status.FAILED, start=100)
    make_sent(1, day=date(2026, 11, 1), start=200)
    page = admin_client.get("/admin/health/").content.decode()
    assert page.count('<rect class="sent"') == 30
    assert "<title>Sun 29 Nov: 4 sent, 2 failed</title>" in page
    assert "<title>Sun 1 Nov: 1 sent, 0 failed</title>" in page
    assert '<rect class="failed"' in page
    assert "<td>Sun 29 Nov 2026</td><td>4</td><td>2</td>" in page


def test_the_page_costs_the_same_queries_at_any_size(admin_client, db, django_assert_max_num_queries):
    make_sent(5)
    admin_client.get("/admin/health/")
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    with CaptureQueriesContext(connection) as small:
        admin_client.get("/admin/health/")
    readers = make_sent(300, start=1000)
    complaints(20, readers)
    with CaptureQueriesContext(connection) as large:
        admin_client.get("/admin/health/")
    assert len(large) == len(small)


def test_staff_without_permission_and_strangers_are_kept_out(client, django_user_model, db):
    assert client.get("/admin/health/")["Location"].startswith("/admin/login/")
    client.force_login(django_user_model.objects.create_user("staff", is_staff=True))
    assert client.get("/admin/health/").status_code == 403


def test_the_admin_index_links_to_the_page(admin_client):
    assert 'href="/admin/health/"' in admin_client.get("/admin/").content.decode()


def report(event_type, message_id, number):
    return MailEvent.objects.create(esp="mailgun", event_type=event_type, event_id=f"e{number}", message_id=message_id)


def test_sign_up_emails_have_their_own_rates_apart_from_the_digests(admin_client, db):
    readers = make_sent(1000)
    Delivery.objects.update(message_id=models_concat("<digest-", "id", "@mg.example.org>"))
    SignupEmail.objects.bulk_create(
        SignupEmail(subscriber=readers[n], kind="confirm", message_id=f"<signup-{n}@mg.example.org>") for n in range(10)
    )
    first_digest = Delivery.objects.order_by("id").first().message_id
    report("complained", first_digest, 1)
    report("complained", "<signup-0@mg.example.org>", 2)
    report("bounced", "<signup-1@mg.example.org>", 3)
    report("bounced", "<signup-2@mg.example.org>", 4)
    page = text_of(admin_client.get("/admin/health/"))
    assert "Digests, last 7 days 0.100 % complaints 1 complaint and 0 bounces (0.00 %) for 1,000 digests sent." in page
    assert (
        "Sign-up emails, last 7 days 10.000 % complaints "
        "1 complaint and 2 bounces (20.00 %) for 10 sign-up emails sent." in page
    )
    assert "Complaints are at or above 0.3 %" in page  # the sign-up emails' 10 %, not the digests'
    assert "More than 2 % of sign-up emails bounced" in page
    assert "More than 2 % of digests bounced" not in page


def test_a_report_on_no_email_sent_from_here_counts_with_the_digests_and_says_so(admin_client, db):
    make_sent(1000)
    report("complained", "<someone-elses@mg.example.org>", 1)
    page = text_of(admin_client.get("/admin/health/"))
    assert "Digests, last 7 days 0.100 % complaints 1 complaint and 0 bounces (0.00 %) for 1,000 digests sent." in page
    assert "Counted here: 1 report about no email this site recorded sending." in page
    assert "Sign-up emails, last 7 days None sent No sign-up emails sent in the last 7 days, so no rates yet." in page


def test_a_confirmation_email_is_recorded_with_the_providers_message_id(
    client, admin_client, make_topic, settings, inline_tasks, django_capture_on_commit_callbacks
):
    settings.EMAIL_BACKEND = "anymail.backends.test.EmailBackend"
    topic = make_topic("Computer vision")
    form = {"email": "ada@example.com", "topics": [topic.pk], "time_zone": "UTC", "send_hour": "8"}
    form.update(frequency="daily", weekly_day="0", papers_per_email="10")
    with django_capture_on_commit_callbacks(execute=True):
        client.post("/", form)
    [message] = mail.outbox
    provider_id = str(message.anymail_status.message_id)  # stored as text, as a delivery's is
    [sent] = SignupEmail.objects.all()
    assert (sent.kind, sent.message_id, sent.subscriber.email) == ("confirm", provider_id, "ada@example.com")
    report("complained", provider_id, 1)
    page = text_of(admin_client.get("/admin/health/"))
    assert (
        "Sign-up emails, last 7 days 100.000 % complaints 1 complaint and 0 bounces (0.00 %) for 1 sign-up email"
        in page
    )
    assert "Digests, last 7 days None sent No digests sent in the last 7 days, so no rates yet." in page
