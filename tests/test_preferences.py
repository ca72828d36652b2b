import json
import re

import pytest
from django.core import mail
from django.utils import timezone

from digest.models import Delivery
from subscriptions import tokens
from subscriptions.models import MAX_PAPERS_PER_EMAIL, Consent, ErasedAddress, Subscriber


def path_of(url):
    return "/" + url.split("/", 3)[3]


@pytest.fixture
def topics(make_topic):
    return [make_topic("Computer vision"), make_topic("Robotics"), make_topic("Speech")]


@pytest.fixture
def reader(make_reader, topics):
    return make_reader("ada@example.com", topics=topics[:1], keywords=["protein folding"], time_zone="UTC")


@pytest.fixture
def manage_path(reader):
    return path_of(tokens.manage_url(reader))


def preferences(topics, **overrides):
    data = {
        "topics": [topic.pk for topic in topics],
        "keywords": "diffusion models",
        "time_zone": "Asia/Tokyo",
        "send_hour": "21",
        "frequency": "weekly",
        "weekly_day": "4",
        "papers_per_email": "5",
    }
    data.update(overrides)
    return data


def test_the_page_shows_the_current_choices(client, reader, manage_path, topics):
    page = client.get(manage_path).content.decode()
    assert "ada@example.com" in page
    assert f'value="{topics[0].pk}" id="id_topics_0" checked' in page
    assert "protein folding</textarea>" in page
    assert '<option value="UTC" selected>' in page


def test_saving_changes_every_preference_and_records_what_changed(client, reader, manage_path, topics):
    response = client.post(manage_path, preferences(topics[1:]), REMOTE_ADDR="192.0.2.1", HTTP_USER_AGENT="Safari")
    assert response.status_code == 302
    page = client.get(response["Location"]).content.decode()
    assert "Your preferences are saved." in page
    reader.refresh_from_db()
    assert sorted(reader.topics.values_list("name", flat=True)) == ["Robotics", "Speech"]
    assert reader.keywords == ["diffusion models"]
    assert (str(reader.time_zone), reader.send_hour) == ("Asia/Tokyo", 21)
    assert (reader.frequency, reader.weekly_day) == ("weekly", 4)
    assert reader.papers_per_email == 5
    consent = reader.consents.get()
    assert consent.action == Consent.Action.PREFERENCES and consent.ip == "192.0.2.1"
    assert consent.details["changes"]["send_hour"] == [8, 21]
    assert consent.details["changes"]["topics"] == [["computer-vision"], ["robotics", "speech"]]


def test_a_change_without_its_consent_record_is_not_saved(client, reader, manage_path, topics, monkeypatch):
    def fail(*args, **kwargs):
        raise RuntimeError("the consent record could not be written")

    monkeypatch.setattr(Subscriber, "record", fail)
    client.raise_request_exception = False
    response = client.post(manage_path, preferences(topics[1:]))
    assert response.status_code == 500
    reader.refresh_from_db()
    assert (reader.send_hour, reader.keywords) == (8, ["protein folding"])
    assert list(reader.topics.all()) == topics[:1]


def test_saving_preferences_keeps_a_status_changed_meanwhile(client, reader, manage_path, topics, monkeypatch):
    from subscriptions.forms import PreferencesForm

    is_valid = PreferencesForm.is_valid

    def bounce_meanwhile(form):
        # The provider's webhook suppresses the reader while their preferences are being saved.
        Subscriber.objects.filter(pk=reader.pk).update(status=Subscriber.Status.SUPPRESSED, status_reason="Hard bounce")
        return is_valid(form)

    monkeypatch.setattr(PreferencesForm, "is_valid", bounce_meanwhile)
    assert client.post(manage_path, preferences(topics[1:])).status_code == 302
    reader.refresh_from_db()
    assert (reader.status, reader.status_reason) == (Subscriber.Status.SUPPRESSED, "Hard bounce")
    assert reader.send_hour == 21


def test_saving_the_same_choices_records_nothing(client, reader, manage_path, topics):
    data = preferences(topics[:1], keywords="protein folding", time_zone="UTC", send_hour="8", frequency="daily")
    data.update(weekly_day="0", papers_per_email="10")
    client.post(manage_path, data)
    assert not reader.consents.exists()


def test_a_bad_value_shows_the_error_and_saves_nothing(client, reader, manage_path, topics):
    response = client.post(manage_path, preferences(topics, papers_per_email=str(MAX_PAPERS_PER_EMAIL + 1)))
    assert response.status_code == 400
    assert f"Ensure this value is less than or equal to {MAX_PAPERS_PER_EMAIL}." in response.content.decode()
    reader.refresh_from_db()
    assert reader.papers_per_email == 10 and reader.send_hour == 8


def test_pause_and_resume(client, reader, manage_path):
    client.post(manage_path + "pause/", {"action": "pause"})
    reader.refresh_from_db()
    assert reader.status == Subscriber.Status.PAUSED
    assert "Resume digests" in client.get(manage_path).content.decode()
    client.post(manage_path + "pause/", {"action": "resume"})
    reader.refresh_from_db()
    assert reader.status == Subscriber.Status.ACTIVE
    assert [c.action for c in reader.consents.order_by("at", "id")] == ["pause", "resume"]


def test_download_my_data_is_json_with_everything_kept(client, reader, manage_path):
    reader.record(Consent.Action.CONFIRM, ip="192.0.2.1", wording="Confirm my subscription")
    Delivery.objects.create(subscriber=reader, digest_date="2026-11-29", status="sent", paper_ids=[3, 1])
    response = client.get(manage_path + "data/")
    assert response["Content-Type"] == "application/json"
    assert "attachment" in response["Content-Disposition"]
    data = json.loads(response.content)
    assert data["email"] == "ada@example.com"
    assert data["preferences"]["keywords"] == ["protein folding"]
    assert data["consents"][0]["action"] == "confirm" and data["consents"][0]["ip"] == "192.0.2.1"
    assert data["deliveries"] == [{"digest_date": "2026-11-29", "status": "sent", "papers": [3, 1], "sent_at": None}]


def test_download_my_data_includes_sign_up_emails_and_unconfirmed_choices(client, reader, manage_path):
    from subscriptions.models import SignupEmail

    SignupEmail.objects.create(subscriber=reader, kind="confirm", message_id="<m1@example.org>")
    Subscriber.objects.filter(pk=reader.pk).update(pending_preferences={"send_hour": 22})
    data = json.loads(client.get(manage_path + "data/").content)
    assert [email["kind"] for email in data["signup_emails"]] == ["confirm"]
    assert data["pending_preferences"] == {"send_hour": 22}


def test_delete_me_asks_then_erases_everything_but_a_hash(client, reader, manage_path):
    reader.record(Consent.Action.CONFIRM)
    Delivery.objects.create(subscriber=reader, digest_date="2026-11-29", status="sent")
    assert b"Delete my data" in client.get(manage_path + "delete/").content
    assert Subscriber.objects.exists()
    response = client.post(manage_path + "delete/")
    assert b"Your data is deleted" in response.content
    assert not Subscriber.objects.exists() and not Consent.objects.exists() and not Delivery.objects.exists()
    assert ErasedAddress.is_erased("Ada@Example.com")
    assert client.get(manage_path).status_code == 410  # old links find no one, and say the data was deleted


def test_a_tampered_manage_link_gets_a_400_and_changes_nothing(client, reader, manage_path, topics):
    bad = manage_path.replace(manage_path[-5:-1], "AAAA")
    for response in [
        client.get(bad),
        client.post(bad, preferences(topics)),
        client.post(bad + "pause/"),
        client.get(bad + "data/"),
        client.post(bad + "delete/"),
    ]:
        assert response.status_code == 400
    reader.refresh_from_db()
    assert reader.status == Subscriber.Status.ACTIVE and reader.send_hour == 8 and mail.outbox == []


def test_one_readers_link_never_reaches_another(client, reader, make_reader, topics):
    other = make_reader("grace@example.com")
    client.post(path_of(tokens.manage_url(other)), preferences(topics))
    reader.refresh_from_db()
    other.refresh_from_db()
    assert reader.send_hour == 8 and other.send_hour == 21


def test_the_forms_need_a_csrf_token(reader, manage_path, topics):
    from django.test import Client

    client = Client(enforce_csrf_checks=True)
    assert client.post(manage_path, preferences(topics)).status_code == 403
    assert client.post(manage_path + "delete/").status_code == 403
    assert client.post("/", {"email": "x@example.com"}).status_code == 403
    assert Subscriber.objects.filter(id=reader.id).exists()


def test_a_form_sent_without_its_cookie_gets_a_friendly_page(reader, manage_path, topics):
    from django.test import Client

    response = Client(enforce_csrf_checks=True).post(manage_path, preferences(topics))
    assert response.status_code == 403
    assert "Please try again" in response.content.decode() and "nothing was changed" in response.content.decode()


def test_pages_behind_a_signed_link_are_never_cached_or_indexed(client, reader, manage_path):
    for path in [manage_path, manage_path + "data/", manage_path + "delete/", path_of(tokens.unsubscribe_url(reader))]:
        response = client.get(path)
        assert "no-store" in response["Cache-Control"], path
    assert '<meta name="robots" content="noindex, nofollow">' in client.get(manage_path).content.decode()


def test_the_page_gives_the_readers_own_feed(client, reader, manage_path):
    page = client.get(manage_path).content.decode()
    assert f'href="{tokens.feed_url(reader)}"' in page


def test_download_my_data_includes_what_the_provider_reported(client, reader, manage_path):
    from subscriptions.models import MailEvent

    MailEvent.objects.create(subscriber=reader, esp="mailgun", event_type="deferred", mta_response="452 mailbox full")
    data = json.loads(client.get(manage_path + "data/").content)
    assert [(e["provider"], e["event"], e["server_reply"]) for e in data["mail_events"]] == [
        ("mailgun", "deferred", "452 mailbox full")
    ]


def test_the_quiet_day_rule_is_a_preference_with_its_consent_record(client, reader, manage_path, topics):
    page = client.get(manage_path).content.decode()
    assert "When nothing new matches" in page
    assert re.search(r'<input type="radio" name="send_when_empty" value="False"[^>]*checked', page)
    data = preferences(topics[:1], keywords="protein folding", time_zone="UTC", send_hour="8", frequency="daily")
    data.update(weekly_day="0", papers_per_email="10", send_when_empty="True")
    client.post(manage_path, data)
    reader.refresh_from_db()
    assert reader.send_when_empty is True
    assert reader.consents.get().details["changes"] == {"send_when_empty": [False, True]}


def test_a_form_without_the_quiet_day_choice_keeps_the_readers(client, reader, manage_path, topics):
    reader.send_when_empty = True
    reader.save()
    client.post(manage_path, preferences(topics))
    reader.refresh_from_db()
    assert reader.send_when_empty is True


def test_download_my_data_includes_feedback(client, reader, manage_path, make_paper):
    from digest.models import Feedback

    paper = make_paper("Graph transformers", arxiv_id="2611.00042")
    Feedback.objects.create(subscriber=reader, paper=paper, direction="less")
    data = json.loads(client.get(manage_path + "data/").content)
    assert [(f["paper"], f["title"], f["feedback"]) for f in data["feedback"]] == [
        ("2611.00042", "Graph transformers", "less")
    ]


def test_an_erased_readers_old_links_say_the_data_was_deleted(client, reader, make_paper, settings):
    links = {  # (link, whether a POST acts on it)
        "manage": (tokens.manage_url(reader), True),
        "unsubscribe": (tokens.unsubscribe_url(reader), True),
        "data": (tokens.manage_url(reader) + "data/", False),
        "feedback": (tokens.feedback_url(reader, make_paper("Sparse attention").id, "more"), True),
        "view in browser": (tokens.view_url(reader, timezone.now().date()), False),
    }
    reader.erase()
    for name, (link, posts) in links.items():
        for method in (client.get, client.post) if posts else (client.get,):
            response = method(link.removeprefix(settings.SITE_URL))
            assert response.status_code == 410, name
            page = response.content.decode()
            assert "<h1>This subscription was deleted</h1>" in page, name
            assert "This link does not work" not in page and "copied incompletely" not in page


def test_an_erased_pending_readers_confirmation_link_says_so_too(client, make_reader, settings):
    pending = make_reader("new@example.com", status=Subscriber.Status.PENDING)
    link = tokens.confirm_url(pending).removeprefix(settings.SITE_URL)
    pending.erase()
    response = client.get(link)
    assert response.status_code == 410 and b"This subscription was deleted" in response.content
