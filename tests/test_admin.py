import re
import smtplib

import pytest
from django.core import mail
from django.core.mail.backends.locmem import EmailBackend as LocmemBackend
from django.utils import timezone

from papers.models import Paper, Topic


@pytest.fixture
def papers(db):
    today = [
        ("2401.10001", "Graph neural networks for molecules"),
        ("2401.10002", "A GNN that counts substructures"),
        ("2401.10003", "Speech recognition in noisy rooms"),
    ]
    created = [Paper.objects.create(arxiv_id=i, title=t, raw_title=t, upvotes=5) for i, t in today]
    old = Paper.objects.create(arxiv_id="2301.10004", title="Old graph neural networks", raw_title="x")
    Paper.objects.filter(pk=old.pk).update(first_seen_at=timezone.now() - timezone.timedelta(days=5))
    return created


def test_paper_changelist_searches_by_id_and_title(admin_client, papers):
    page = admin_client.get("/admin/papers/paper/", {"q": "speech"}).content.decode()
    assert "Speech recognition in noisy rooms" in page
    assert "Graph neural networks for molecules" not in page
    page = admin_client.get("/admin/papers/paper/", {"q": "2401.10002"}).content.decode()
    assert "A GNN that counts substructures" in page


def test_paper_page_links_to_arxiv_and_pdf(admin_client, papers):
    page = admin_client.get(f"/admin/papers/paper/{papers[0].pk}/change/").content.decode()
    assert 'href="https://arxiv.org/abs/2401.10001"' in page
    assert 'href="https://arxiv.org/pdf/2401.10001"' in page


def test_topic_page_previews_todays_matches_only(admin_client, papers):
    topic = Topic.objects.create(name="Graph neural networks", slug="gnn", aliases="GNN\nmessage passing")
    page = admin_client.get(f"/admin/papers/topic/{topic.pk}/change/").content.decode()
    assert "Papers it matches today" in page
    assert "Graph neural networks for molecules" in page
    assert "A GNN that counts substructures" in page
    assert "Speech recognition in noisy rooms" not in page
    assert "Old graph neural networks" not in page


def test_topic_preview_says_why_each_paper_matched(admin_client, papers):
    from lxml import html

    topic = Topic.objects.create(name="Graph neural networks", slug="gnn", aliases="GNN\nmessage passing")
    tree = html.fromstring(admin_client.get(f"/admin/papers/topic/{topic.pk}/change/").content.decode())
    rows = {
        item.cssselect("a")[0].text_content(): item.cssselect(".why")[0].text_content()
        for item in tree.cssselect("#matches ol > li")
    }
    assert rows == {
        "Graph neural networks for molecules": "Why: about “Graph neural networks”",
        "A GNN that counts substructures": "Why: about “Graph neural networks”",  # the concept, met in other words
    }


def test_topic_preview_explains_an_empty_day(admin_client, db):
    topic = Topic.objects.create(name="Graph neural networks", slug="gnn")
    page = admin_client.get(f"/admin/papers/topic/{topic.pk}/change/").content.decode()
    assert "No papers were first seen in the last 48 hours" in page


def test_topic_changelist_shows_subscriber_counts(admin_client, db):
    Topic.objects.create(name="Robotics", slug="robotics", description="Robots that learn.")
    page = admin_client.get("/admin/papers/topic/").content.decode()
    assert "Robotics" in page
    assert "Subscribers" in page


def test_an_erased_address_cannot_be_added_back_by_an_operator(admin_client, db):
    from subscriptions.models import ErasedAddress, Subscriber

    ErasedAddress.objects.create(email_hash=ErasedAddress.hash("ada@example.com"))
    data = {"email": "Ada@Example.com", "status": "active", "keywords": "", "time_zone": "UTC", "send_hour": "8"}
    data.update(frequency="daily", weekly_day="0", papers_per_email="10", send_when_empty="False")
    data.update(created_at_0="2026-11-30")
    data.update({"created_at_1": "09:00", "consents-TOTAL_FORMS": "0", "consents-INITIAL_FORMS": "0"})
    response = admin_client.post("/admin/subscriptions/subscriber/add/", data)
    assert "asked for their data to be erased" in response.content.decode()
    assert not Subscriber.objects.exists()


def test_an_erased_address_cannot_be_given_to_another_subscriber_by_an_operator(admin_client, make_reader):
    from subscriptions.models import ErasedAddress, Subscriber

    bob = make_reader("bob@example.com")
    ErasedAddress.objects.create(email_hash=ErasedAddress.hash("ada@example.com"))
    data = {"email": "Ada@Example.com", "status": "active", "keywords": "", "time_zone": "UTC", "send_hour": "8"}
    data.update(frequency="daily", weekly_day="0", papers_per_email="10", send_when_empty="False")
    for prefix in ("consents", "mail_events"):
        data.update({f"{prefix}-TOTAL_FORMS": "0", f"{prefix}-INITIAL_FORMS": "0"})
    response = admin_client.post(f"/admin/subscriptions/subscriber/{bob.pk}/change/", data)
    assert "asked for their data to be erased" in response.content.decode()
    assert list(Subscriber.objects.values_list("email", flat=True)) == ["bob@example.com"]
    # Saving a subscriber without changing the address is not refused.
    data["email"] = "bob@example.com"
    assert admin_client.post(f"/admin/subscriptions/subscriber/{bob.pk}/change/", data).status_code == 302


def test_operators_erase_subscribers_with_an_action(admin_client, make_reader):
    from subscriptions.models import ErasedAddress, Subscriber

    reader = make_reader("ada@example.com")
    reader.record("confirm")
    data = {"action": "erase_selected", "_selected_action": [reader.pk]}
    admin_client.post("/admin/subscriptions/subscriber/", data, follow=True)
    assert not Subscriber.objects.exists() and ErasedAddress.is_erased("ada@example.com")


def test_staff_who_may_only_view_subscribers_cannot_erase_them(client, make_reader, django_user_model):
    from django.contrib.auth.models import Permission

    from subscriptions.models import Subscriber

    reader = make_reader("ada@example.com")
    viewer = django_user_model.objects.create_user("viewer", "viewer@example.org", "pw", is_staff=True)
    viewer.user_permissions.add(Permission.objects.get(codename="view_subscriber"))
    client.force_login(viewer)
    choices = client.get("/admin/subscriptions/subscriber/").context["action_form"].fields["action"].choices
    assert "erase_selected" not in [name for name, _label in choices]
    client.post("/admin/subscriptions/subscriber/", {"action": "erase_selected", "_selected_action": [reader.pk]})
    assert Subscriber.objects.filter(pk=reader.pk).exists()


# ---------------------------------------------------------------------------------------------------------------------
# Helpers for the admin's lists and actions


SUBSCRIBERS = "/admin/subscriptions/subscriber/"
DELIVERIES = "/admin/digest/delivery/"


def messages_of(response):
    return [str(message) for message in response.context["messages"]]


def rows_of(response):
    return list(response.context["cl"].result_list)


@pytest.fixture
def gnn(make_topic):
    return make_topic("Graph neural networks", aliases=["GNN"])


@pytest.fixture
def speech(make_topic):
    return make_topic("Speech recognition")


# ---------------------------------------------------------------------------------------------------------------------
# Deliveries, runs and topics


@pytest.fixture
def deliveries(make_reader):
    from digest.models import Delivery, DigestRun

    start = timezone.now() - timezone.timedelta(minutes=2)
    finish = start + timezone.timedelta(seconds=70)
    run = DigestRun.objects.create(started_at=start, finished_at=finish, planned_count=2, sent_count=1, failed_count=1)
    ada = make_reader("ada@example.com")
    bob = make_reader("bob@example.com")
    today = timezone.now().date()
    sent = Delivery.objects.create(
        subscriber=ada, run=run, digest_date=today, status="sent", paper_ids=[3, 1, 2], message_id="<1.2@digest.test>"
    )
    failed = Delivery.objects.create(
        subscriber=bob, run=run, digest_date=today, status="failed", attempts=1, error="554 " + "no " * 60
    )
    return run, sent, failed


def test_delivery_list_shows_reader_papers_error_and_message_id(admin_client, deliveries):
    run, sent, failed = deliveries
    page = admin_client.get(DELIVERIES).content.decode()
    assert f'<a href="/admin/subscriptions/subscriber/{sent.subscriber_id}/change/">ada@example.com</a>' in page
    assert '<td class="field-papers_count">3</td>' in page
    assert "&lt;1.2@digest.test&gt;" in page
    assert "554 no no" in page and "no " * 60 not in page  # the error, cut short


def test_deliveries_are_found_by_address_part_of_one_or_message_id(admin_client, deliveries):
    run, sent, failed = deliveries
    for term in ["ADA@example.com", "ada@", "<1.2@digest.test>", "1.2@digest.test"]:
        assert rows_of(admin_client.get(DELIVERIES, {"q": term})) == [sent], term
    assert rows_of(admin_client.get(DELIVERIES, {"q": "bob"})) == [failed]


def test_delivery_search_of_very_many_addresses_joins_them(admin_client, deliveries):
    from digest.admin import DeliveryAdmin

    DeliveryAdmin.max_listed_readers, saved = 1, DeliveryAdmin.max_listed_readers
    try:
        assert len(rows_of(admin_client.get(DELIVERIES, {"q": "example.com"}))) == 2
    finally:
        DeliveryAdmin.max_listed_readers = saved


def test_deliveries_filter_by_status_date_and_run(admin_client, deliveries):
    from digest.models import Delivery, DigestRun

    run, sent, failed = deliveries
    other = Delivery.objects.create(
        subscriber=sent.subscriber, digest_date=timezone.now().date() - timezone.timedelta(days=30), status="sent"
    )
    assert rows_of(admin_client.get(DELIVERIES, {"status__exact": "failed"})) == [failed]
    since = timezone.now().date() - timezone.timedelta(days=7)
    page = admin_client.get(DELIVERIES, {"digest_date__gte": since})
    assert other not in rows_of(page) and len(rows_of(page)) == 2
    by_run = admin_client.get(DELIVERIES, {"run__id__exact": run.pk})
    assert sorted(d.pk for d in rows_of(by_run)) == sorted([sent.pk, failed.pk])
    assert str(DigestRun.objects.get()) in by_run.content.decode()  # the run filter names it
    assert admin_client.get(DELIVERIES, {"run__id__exact": "x"}).status_code == 302


def test_delivery_page_lists_its_papers(admin_client, deliveries, papers):
    from digest.models import Delivery

    run, sent, failed = deliveries
    Delivery.objects.filter(pk=sent.pk).update(paper_ids=[papers[2].pk, papers[0].pk])
    page = admin_client.get(f"{DELIVERIES}{sent.pk}/change/").content.decode()
    assert page.index("Speech recognition in noisy rooms") < page.index("Graph neural networks for molecules")


def test_digest_run_list_shows_duration_failures_and_links_to_deliveries(admin_client, deliveries):
    from digest.models import DigestRun

    run, sent, failed = deliveries
    DigestRun.objects.create()  # planned nothing: most runs, one every 15 minutes
    response = admin_client.get("/admin/digest/digestrun/")
    page = response.content.decode()
    assert "1 min 10 s" in page
    assert f'<a class="run-failures" href="{DELIVERIES}?run__id__exact={run.pk}&amp;status__exact=failed">1</a>' in page
    assert f'<a href="{DELIVERIES}?run__id__exact={run.pk}">Deliveries</a>' in page
    # The highlight's style carries the response's nonce, which the Content Security Policy allows.
    nonce = re.search(r'<style nonce="([^"]+)">\s*\.run-failures', page).group(1)
    assert f"'nonce-{nonce}'" in response["Content-Security-Policy"]
    assert rows_of(admin_client.get("/admin/digest/digestrun/", {"outcome": "planned"})) == [run]
    assert rows_of(admin_client.get("/admin/digest/digestrun/", {"outcome": "failures"})) == [run]


def test_topic_list_counts_subscribers(admin_client, make_reader, gnn, speech):
    make_reader(topics=[gnn, speech])
    make_reader(topics=[gnn])
    counts = {topic.name: topic.subscriber_total for topic in rows_of(admin_client.get("/admin/papers/topic/"))}
    assert counts == {"Graph neural networks": 2, "Speech recognition": 1}


def test_paper_search_takes_an_arxiv_id_with_its_version(admin_client, papers):
    assert [paper.arxiv_id for paper in rows_of(admin_client.get("/admin/papers/paper/", {"q": "2401.10002v2"}))] == [
        "2401.10002"
    ]
    assert [p.arxiv_id for p in rows_of(admin_client.get("/admin/papers/paper/", {"q": "arXiv:2401.10003"}))] == [
        "2401.10003"
    ]


# ---------------------------------------------------------------------------------------------------------------------
# Retrying failed deliveries


class RefusingBackend(LocmemBackend):
    """Refuses every message to refuse@example.com for good (554 on the message, not the address)."""

    def send_messages(self, messages):
        if any(address.startswith("refuse@") for message in messages for address in message.to):
            raise smtplib.SMTPDataError(554, b"Message rejected")
        return super().send_messages(messages)


@pytest.fixture
def failed_run(settings, inline_tasks, make_paper, make_reader, gnn, monkeypatch):
    """A real run: ok@ got their digest, refuse@'s failed for good; and an older digest interrupted while sending."""
    from digest import recovery, sending
    from digest.models import Delivery
    from digest.tasks import plan_digests

    monkeypatch.setattr(sending.time, "sleep", lambda seconds: None)
    settings.EMAIL_BACKEND = "tests.test_admin.RefusingBackend"
    make_paper("Graph neural networks at scale")
    ok = make_reader("ok@example.com", topics=[gnn], send_hour=0)
    refused = make_reader("refuse@example.com", topics=[gnn], send_hour=0)
    plan_digests.delay()
    stuck = Delivery.objects.create(
        subscriber=make_reader("stuck@example.com", topics=[gnn]),
        digest_date=timezone.now().date() - timezone.timedelta(days=1),
        status=Delivery.Status.SENDING,
        claimed_at=timezone.now() - timezone.timedelta(days=1),
        attempts=1,
    )
    recovery.recover(timezone.now())
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    mail.outbox.clear()
    return {
        "sent": Delivery.objects.get(subscriber=ok),
        "failed": Delivery.objects.get(subscriber=refused),
        "interrupted": Delivery.objects.get(pk=stuck.pk),
    }


def test_the_failed_run_is_as_the_sending_code_left_it(failed_run):
    from digest.models import DigestRun

    assert failed_run["failed"].status == "failed" and failed_run["failed"].error.startswith("The mail server")
    assert failed_run["interrupted"].status == "failed" and failed_run["interrupted"].error.startswith("Interrupted")
    run = DigestRun.objects.get()
    assert (run.planned_count, run.sent_count, run.failed_count, run.skipped_count) == (2, 1, 1, 0)


def test_retry_puts_failed_deliveries_back_to_pending_and_queues_them(
    admin_client, failed_run, django_capture_on_commit_callbacks
):
    from digest.models import Delivery, DigestRun

    selected = [delivery.pk for delivery in failed_run.values()]
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        response = admin_client.post(DELIVERIES, {"action": "retry_failed", "_selected_action": selected}, follow=True)
    assert len(callbacks) == 1  # the queueing, once the change is committed
    failed = Delivery.objects.get(pk=failed_run["failed"].pk)
    assert failed.status == Delivery.Status.PENDING and failed.attempts == 1
    assert (failed.claim_token, failed.claimed_at, failed.finished_at) == (None, None, None)
    assert Delivery.objects.get(pk=failed_run["sent"].pk).status == Delivery.Status.SENT
    assert Delivery.objects.get(pk=failed_run["interrupted"].pk).status == Delivery.Status.FAILED
    run = DigestRun.objects.get()
    assert (run.sent_count, run.failed_count) == (1, 0)
    assert run.note.endswith("UTC: 1 failed digest retried by admin.\n")
    assert messages_of(response) == [
        "Queued 1 failed delivery to be sent again. Their runs' failed counts were lowered to match; the new outcome "
        "is counted when they finish.",
        "Left 1 delivery failed: interrupted while sending, it may have reached the reader, and nobody gets a "
        "digest twice.",
    ]


def test_a_retried_delivery_is_claimed_sent_and_counted_in_its_run(
    admin_client, failed_run, django_capture_on_commit_callbacks
):
    from digest.models import Delivery, DigestRun

    data = {"action": "retry_failed", "_selected_action": [failed_run["failed"].pk]}
    with django_capture_on_commit_callbacks(execute=True):
        admin_client.post(DELIVERIES, data)
    [message] = mail.outbox
    assert message.to == ["refuse@example.com"]
    delivery = Delivery.objects.get(pk=failed_run["failed"].pk)
    assert delivery.status == Delivery.Status.SENT and delivery.attempts == 2 and delivery.error == ""
    assert delivery.message_id and len(delivery.paper_ids) == 1 and delivery.claim_token is None
    run = DigestRun.objects.get()
    # Every planned digest is accounted for once again: sent + failed + skipped == planned.
    assert (run.planned_count, run.sent_count, run.failed_count, run.skipped_count) == (2, 2, 0, 0)


def test_retry_leaves_deliveries_that_had_not_failed(admin_client, failed_run):
    data = {"action": "retry_failed", "_selected_action": [failed_run["sent"].pk]}
    response = admin_client.post(DELIVERIES, data, follow=True)
    assert messages_of(response) == ["None of the selected deliveries had failed."]
    assert mail.outbox == []


# ---------------------------------------------------------------------------------------------------------------------
# Subscribers: columns, search, filters and actions


def test_subscriber_list_shows_topics_and_the_last_delivery(admin_client, make_reader, gnn, speech):
    from digest.models import Delivery

    ada = make_reader("ada@example.com", topics=[gnn, speech])
    make_reader("bob@example.com")
    today = timezone.now().date()
    Delivery.objects.create(subscriber=ada, digest_date=today - timezone.timedelta(days=1), status="sent")
    Delivery.objects.create(subscriber=ada, digest_date=today, status="failed", error="554 rejected")
    page = admin_client.get(SUBSCRIBERS).content.decode()
    assert "Graph neural networks, Speech recognition" in page
    assert f"{today:%Y-%m-%d} (failed)" in page
    assert '<td class="field-last_delivery">-</td>' in page  # bob has had none


def test_subscribers_are_found_by_whole_address_or_part_of_one(admin_client, make_reader):
    make_reader("ada@example.com")
    make_reader("adam@example.org")
    make_reader("bob@example.com")
    found = admin_client.get(SUBSCRIBERS, {"q": " Ada@Example.com "})
    assert [reader.email for reader in rows_of(found)] == ["ada@example.com"]
    found = admin_client.get(SUBSCRIBERS, {"q": "ada"})
    assert sorted(reader.email for reader in rows_of(found)) == ["ada@example.com", "adam@example.org"]
    found = admin_client.get(SUBSCRIBERS, {"q": "example.com"})
    assert sorted(reader.email for reader in rows_of(found)) == ["ada@example.com", "bob@example.com"]


def test_subscribers_filter_by_topic_status_and_frequency(admin_client, make_reader, gnn, speech):
    ada = make_reader("ada@example.com", topics=[gnn, speech], frequency="weekly")
    make_reader("bob@example.com", topics=[speech], status="paused")
    make_reader("cy@example.com")
    assert rows_of(admin_client.get(SUBSCRIBERS, {"topics__id__exact": gnn.pk})) == [ada]
    by_topic = admin_client.get(SUBSCRIBERS, {"topics__id__exact": speech.pk})
    assert sorted(reader.email for reader in rows_of(by_topic)) == ["ada@example.com", "bob@example.com"]
    assert [r.email for r in rows_of(admin_client.get(SUBSCRIBERS, {"status__exact": "paused"}))] == ["bob@example.com"]
    assert rows_of(admin_client.get(SUBSCRIBERS, {"frequency__exact": "weekly"})) == [ada]
    # A topic id that is not a number is a bad filter, not a server error.
    assert admin_client.get(SUBSCRIBERS, {"topics__id__exact": "x"}).status_code == 302


def test_operators_pause_active_subscribers_with_a_consent_record_naming_them(admin_client, make_reader):
    from subscriptions.models import Consent, Subscriber

    ada = make_reader("ada@example.com")
    bob = make_reader("bob@example.com", status=Subscriber.Status.UNSUBSCRIBED)
    data = {"action": "pause_selected", "_selected_action": [ada.pk, bob.pk]}
    response = admin_client.post(SUBSCRIBERS, data, follow=True)
    assert messages_of(response) == ["Paused 1 subscriber.", "Left 1 subscriber as they were: only active ones pause."]
    ada.refresh_from_db()
    bob.refresh_from_db()
    assert (ada.status, bob.status) == (Subscriber.Status.PAUSED, Subscriber.Status.UNSUBSCRIBED)
    [consent] = Consent.objects.all()
    assert consent.subscriber == ada and consent.action == Consent.Action.PAUSE
    assert consent.wording == "Paused by an operator (admin)" and consent.details == {"operator": "admin"}


def test_operators_suppress_subscribers(admin_client, make_reader):
    from subscriptions.models import Subscriber

    ada = make_reader("ada@example.com")
    bob = make_reader("bob@example.com", status=Subscriber.Status.PENDING)
    cy = make_reader("cy@example.com", status=Subscriber.Status.SUPPRESSED, status_reason="Hard bounce")
    data = {"action": "suppress_selected", "_selected_action": [ada.pk, bob.pk, cy.pk]}
    response = admin_client.post(SUBSCRIBERS, data, follow=True)
    assert messages_of(response) == ["Suppressed 2 subscribers."]
    rows = dict(Subscriber.objects.values_list("email", "status_reason"))
    assert rows == {
        "ada@example.com": "Suppressed by an operator (admin)",
        "bob@example.com": "Suppressed by an operator (admin)",
        "cy@example.com": "Hard bounce",
    }
    assert set(Subscriber.objects.values_list("status", flat=True)) == {Subscriber.Status.SUPPRESSED}


def test_suppressing_leaves_an_unsubscribed_reader_unsubscribed(admin_client, make_reader):
    """One suppression rule everywhere (Subscriber.suppress): only readers mail can still reach are suppressed."""
    from subscriptions.models import Subscriber

    gone = make_reader("gone@example.com", status=Subscriber.Status.UNSUBSCRIBED)
    paused = make_reader("paused@example.com", status=Subscriber.Status.PAUSED)
    data = {"action": "suppress_selected", "_selected_action": [gone.pk, paused.pk]}
    response = admin_client.post(SUBSCRIBERS, data, follow=True)
    assert messages_of(response) == ["Suppressed 1 subscriber."]
    assert dict(Subscriber.objects.values_list("email", "status")) == {
        "gone@example.com": Subscriber.Status.UNSUBSCRIBED,
        "paused@example.com": Subscriber.Status.SUPPRESSED,
    }


def export(admin_client, data, url=SUBSCRIBERS):
    import csv
    import io

    response = admin_client.post(url, {"action": "export_csv", **data})
    assert response.streaming
    assert response["Content-Type"] == "text/csv; charset=utf-8"
    assert response["Content-Disposition"].startswith('attachment; filename="subscribers-')
    return list(csv.reader(io.StringIO(b"".join(response.streaming_content).decode())))


def test_operators_export_subscribers_as_csv(admin_client, make_reader, gnn, speech):
    from subscriptions.models import Subscriber

    ada = make_reader(
        "ada@example.com",
        topics=[speech, gnn],
        keywords=['=HYPERLINK("https://evil.example")', "protein folding"],
        time_zone="Europe/Berlin",
        send_hour=7,
        frequency="weekly",
    )
    bob = make_reader("bob@example.com", status=Subscriber.Status.PENDING)
    make_reader("cy@example.com")  # not selected
    rows = export(admin_client, {"_selected_action": [bob.pk, ada.pk]})
    ada.refresh_from_db()
    bob.refresh_from_db()
    assert rows == [
        ["email", "status", "topics", "keywords", "time_zone", "send_hour", "frequency", "created", "confirmed"],
        [
            "ada@example.com",
            "active",
            "Graph neural networks; Speech recognition",
            # A cell a spreadsheet would run as a formula is kept as text.
            """'=HYPERLINK("https://evil.example"); protein folding""",
            "Europe/Berlin",
            "7",
            "weekly",
            ada.created_at.isoformat(),
            ada.confirmed_at.isoformat(),
        ],
        ["bob@example.com", "pending", "", "", "UTC", "8", "daily", bob.created_at.isoformat(), ""],
    ]


def test_export_of_every_subscriber_a_filter_selects(admin_client, make_reader):
    ada = make_reader("ada@example.com")
    make_reader("bob@example.com", status="paused")
    make_reader("cy@example.com")
    data = {"select_across": "1", "_selected_action": [ada.pk]}
    rows = export(admin_client, data, url=SUBSCRIBERS + "?status__exact=active")
    assert [row[0] for row in rows[1:]] == ["ada@example.com", "cy@example.com"]


def test_preview_action_opens_the_preview_of_one_subscriber(admin_client, make_reader):
    from subscriptions.admin import preview_url

    ada = make_reader("ada@example.com")
    bob = make_reader("bob@example.com")
    response = admin_client.post(SUBSCRIBERS, {"action": "preview_digest", "_selected_action": [ada.pk]})
    assert response.status_code == 302 and response["Location"] == preview_url(ada.pk)
    assert preview_url(ada.pk) == f"/admin/subscriptions/subscriber/{ada.pk}/preview/"
    data = {"action": "preview_digest", "_selected_action": [ada.pk, bob.pk]}
    response = admin_client.post(SUBSCRIBERS, data, follow=True)
    assert messages_of(response) == ["Select one subscriber to preview."]


def test_subscriber_page_links_to_the_digest_preview(admin_client, make_reader):
    ada = make_reader("ada@example.com")
    page = admin_client.get(f"{SUBSCRIBERS}{ada.pk}/change/").content.decode()
    assert f'<a href="/admin/subscriptions/subscriber/{ada.pk}/preview/">' in page


def test_a_subscribers_page_shows_what_the_provider_reported(admin_client, make_reader):
    from subscriptions.models import MailEvent

    reader = make_reader("ada@example.com", status="suppressed", status_reason="Spam complaint (mailgun)")
    MailEvent.objects.create(subscriber=reader, esp="mailgun", event_type="complained", event_id="e1")
    page = admin_client.get(f"/admin/subscriptions/subscriber/{reader.pk}/change/").content.decode()
    assert 'value="Spam complaint (mailgun)"' in page  # the status reason
    inline = page[page.index('id="mail_events-group"') :]
    assert re.search(r'<td class="field-event_type">\s*<p>Spam complaint</p>', inline)
    listing = admin_client.get("/admin/subscriptions/mailevent/?event_type__exact=complained").content.decode()
    assert "ada@example.com" in listing and "mailgun" in listing
    assert admin_client.get("/admin/subscriptions/mailevent/add/").status_code == 403


def test_the_admin_stores_an_internationalised_address_as_sign_up_does(admin_client, make_reader):
    from subscriptions.models import ErasedAddress

    ErasedAddress.objects.create(email_hash=ErasedAddress.hash("ada@bücher.example"))
    data = {"email": "Ada@xn--bcher-kva.example", "status": "active", "keywords": "", "time_zone": "UTC"}
    data.update(send_hour="8", frequency="daily", weekly_day="0", papers_per_email="10")
    data.update({"consents-TOTAL_FORMS": "0", "consents-INITIAL_FORMS": "0"})
    data.update({"mail_events-TOTAL_FORMS": "0", "mail_events-INITIAL_FORMS": "0"})
    response = admin_client.post("/admin/subscriptions/subscriber/add/", data)
    assert "asked for their data to be erased" in response.content.decode()


def test_a_subscribers_page_shows_choices_waiting_for_confirmation_as_the_reader_will_confirm_them(
    admin_client, make_reader, gnn, speech
):
    from subscriptions import signup

    reader = make_reader("ada@example.com", topics=[gnn], status="unsubscribed")
    choices = {**reader.get_preferences(), "topics": [speech], "keywords": ["protein folding", "sparse attention"]}
    reader.pending_preferences = signup.pending_json(choices | {"time_zone": "Europe/Berlin", "send_hour": 7})
    reader.pending_since = timezone.now()
    reader.save()
    page = admin_client.get(f"/admin/subscriptions/subscriber/{reader.pk}/change/").content.decode()
    field = re.search(r'<div class="readonly">(.*?)</div>', page.split("Pending preferences")[1], re.S)[1]
    text = re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", field)).strip()
    assert text == (
        "Topics Speech recognition Keywords protein folding, sparse attention "
        "When 07:00 Europe/Berlin, every day Papers per email 10"
    )


# ---------------------------------------------------------------------------------------------------------------------
# A subscriber's page: keywords, when nothing matches, their deliveries


def subscriber_form(reader, **changes):
    """The subscriber's change form as the admin posts it, with `changes`."""
    data = {
        "email": reader.email,
        "status": reader.status,
        "keywords": "\n".join(reader.keywords),
        "time_zone": str(reader.time_zone),
        "send_hour": str(reader.send_hour),
        "frequency": reader.frequency,
        "weekly_day": str(reader.weekly_day),
        "papers_per_email": str(reader.papers_per_email),
        "send_when_empty": str(reader.send_when_empty),
    }
    for prefix in ("consents", "mail_events"):
        data.update({f"{prefix}-TOTAL_FORMS": "0", f"{prefix}-INITIAL_FORMS": "0"})
    return data | changes


def test_a_subscribers_keywords_are_edited_one_per_line(admin_client, make_reader):
    reader = make_reader("ada@example.com", keywords=["protein folding", "sparse attention"])
    url = f"{SUBSCRIBERS}{reader.pk}/change/"
    page = admin_client.get(url).content.decode()
    assert re.search(r'<textarea name="keywords"[^>]*>\nprotein folding\nsparse attention</textarea>', page)
    assert "[&quot;protein folding&quot;" not in page

    response = admin_client.post(url, subscriber_form(reader, keywords="graph neural networks\n\nRLHF, GNN"))
    assert response.status_code == 302
    reader.refresh_from_db()
    assert reader.keywords == ["graph neural networks", "RLHF", "GNN"]

    page = admin_client.post(url, subscriber_form(reader, keywords="protein folding\nthe")).content.decode()
    assert "“the” can never match a paper" in page
    reader.refresh_from_db()
    assert reader.keywords == ["graph neural networks", "RLHF", "GNN"]


def test_a_subscribers_page_shows_and_changes_what_happens_when_nothing_new_matches(admin_client, make_reader):
    reader = make_reader("ada@example.com", send_when_empty=True)
    url = f"{SUBSCRIBERS}{reader.pk}/change/"
    page = admin_client.get(url).content.decode()
    assert "When nothing new matches" in page
    assert re.search(r'<option value="True" selected>Send a short email saying so</option>', page)
    assert admin_client.post(url, subscriber_form(reader, send_when_empty="False")).status_code == 302
    reader.refresh_from_db()
    assert reader.send_when_empty is False


def test_a_subscribers_page_lists_their_deliveries(admin_client, deliveries):
    from digest.models import Delivery

    run, sent, failed = deliveries
    ada = sent.subscriber
    older = Delivery.objects.create(
        subscriber=ada, digest_date=sent.digest_date - timezone.timedelta(days=1), status="skipped", error="No paper."
    )
    page = admin_client.get(f"{SUBSCRIBERS}{ada.pk}/change/").content.decode()
    rows = re.findall(r'<tr><td><a href="/admin/digest/delivery/(\d+)/change/">([^<]+)</a></td><td>(\w+)</td>', page)
    assert rows == [
        (str(sent.pk), f"{sent.digest_date:%Y-%m-%d}", "Sent"),
        (str(older.pk), f"{older.digest_date:%Y-%m-%d}", "Skipped"),
    ]
    assert "No paper." in page and f"/admin/digest/delivery/{failed.pk}/" not in page
    assert '<a href="/admin/digest/delivery/?q=ada%40example.com">All their deliveries (2)</a>' in page


def test_deliveries_cannot_be_added_or_deleted_in_bulk(admin_client, deliveries):
    from digest.models import Delivery

    page = admin_client.get(DELIVERIES)
    assert f'href="{DELIVERIES}add/"' not in page.content.decode()
    assert "delete_selected" not in [name for name, _label in page.context["action_form"].fields["action"].choices]
    assert admin_client.get(f"{DELIVERIES}add/").status_code == 403
    admin_client.post(DELIVERIES, {"action": "delete_selected", "_selected_action": [d.pk for d in deliveries[1:]]})
    assert Delivery.objects.count() == 2
