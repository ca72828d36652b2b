import re
from datetime import UTC, datetime

import pytest
import time_machine
from django.core import mail

from subscriptions.models import Consent, Subscriber


@pytest.fixture
def topics(make_topic):
    return [
        make_topic("Computer vision", description="Images, video and 3D."),
        make_topic("Language models", description="LLMs, pretraining and alignment."),
    ]


def form_data(topics=(), **overrides):
    data = {
        "email": "ada@example.com",
        "topics": [topic.pk for topic in topics],
        "keywords": "protein folding\nsparse attention",
        "time_zone": "Europe/Berlin",
        "send_hour": "7",
        "frequency": "weekdays",
        "weekly_day": "0",
        "papers_per_email": "8",
        "website": "",
    }
    data.update(overrides)
    return data


@pytest.fixture(autouse=True)
def client(client, django_capture_on_commit_callbacks, inline_tasks):
    """The test client, with emails queued "after commit" sent as they would be after a real commit."""

    class Client:
        def __getattr__(self, name):
            return getattr(client, name)

        def post(self, *args, **kwargs):
            with django_capture_on_commit_callbacks(execute=True):
                return client.post(*args, **kwargs)

    return Client()


def links_in(message):
    return re.findall(r"https?://\S+", message.body)


def test_the_landing_page_shows_the_form_and_todays_papers(client, topics, make_paper):
    make_paper("Scaling sparse attention to a million tokens", upvotes=40)
    response = client.get("/")
    assert response.status_code == 200
    page = response.content.decode()
    assert "Scaling sparse attention to a million tokens" in page
    assert 'name="email"' in page and "Images, video and 3D." in page
    assert '<option value="Europe/Berlin">' in page


def test_the_landing_page_shows_topic_changes_on_the_next_visit(client, topics, make_topic):
    assert "Computer vision" in client.get("/").content.decode()
    topics[0].name = "Vision and video"
    topics[0].save()
    topics[1].is_active = False
    topics[1].save()
    make_topic("Robotics", description="Robots that learn from demonstrations.")
    page = client.get("/").content.decode()
    assert "Vision and video" in page and "Robots that learn from demonstrations." in page
    assert "Computer vision" not in page and "Language models" not in page
    topics[0].delete()
    page = client.get("/").content.decode()
    assert "Vision and video" not in page and "Robotics" in page


def test_a_new_address_is_pending_with_its_preferences_and_gets_a_confirmation(client, topics):
    response = client.post("/", form_data(topics[:1]), REMOTE_ADDR="203.0.113.9", HTTP_USER_AGENT="Firefox/140")
    assert response.status_code == 302 and response["Location"] == "/subscribe/sent/"
    reader = Subscriber.objects.get()
    assert reader.email == "ada@example.com" and reader.status == Subscriber.Status.PENDING
    assert list(reader.topics.all()) == topics[:1]
    assert reader.keywords == ["protein folding", "sparse attention"]
    assert (str(reader.time_zone), reader.send_hour, reader.frequency, reader.papers_per_email) == (
        "Europe/Berlin",
        7,
        "weekdays",
        8,
    )
    consent = reader.consents.get()
    assert consent.action == Consent.Action.SUBSCRIBE
    assert (consent.ip, consent.user_agent, consent.form_version) == ("203.0.113.9", "Firefox/140", "signup-2026-12")
    assert "one-click unsubscribe" in consent.wording
    [message] = mail.outbox
    assert message.to == ["ada@example.com"]
    assert message.subject == "Confirm your subscription to Paper Digest"
    assert "List-Unsubscribe" not in message.extra_headers
    [confirm_link] = [link for link in links_in(message) if "/confirm/" in link]
    assert confirm_link in message.alternatives[0][0]


def test_the_answer_is_the_same_for_new_pending_and_active_addresses(client, topics, make_reader):
    make_reader("active@example.com", topics=topics)
    pages = []
    for email in ["new@example.com", "new@example.com", "active@example.com"]:
        response = client.post("/", form_data(topics, email=email), follow=True)
        page = re.sub(rb'nonce="[^"]*"', b"", response.content)  # a fresh nonce per response, by design
        pages.append((response.status_code, response.redirect_chain, page))
    assert pages[0] == pages[1] == pages[2]
    assert b"Check your inbox" in pages[0][2]


def test_an_active_address_gets_a_manage_link_and_nothing_changes(client, topics, make_reader):
    reader = make_reader("ada@example.com", topics=topics[:1], send_hour=9)
    client.post("/", form_data(topics[1:], send_hour="22"))
    reader.refresh_from_db()
    assert reader.send_hour == 9 and list(reader.topics.all()) == topics[:1]
    assert reader.status == Subscriber.Status.ACTIVE and not reader.consents.exists()
    [message] = mail.outbox
    assert message.subject == "Your Paper Digest subscription"
    assert any("/manage/" in link for link in links_in(message))
    assert not any("/confirm/" in link for link in links_in(message))


def test_a_pending_address_gets_the_confirmation_again_but_not_too_often(client, topics, settings):
    settings.CONFIRMATION_RESEND_SECONDS = 600
    with time_machine.travel("2026-11-30 09:00Z", tick=False) as clock:
        client.post("/", form_data(topics))
        clock.shift(599)
        client.post("/", form_data(topics, send_hour="10"))
        assert len(mail.outbox) == 1
        assert Subscriber.objects.get().send_hour == 10
        clock.shift(2)
        client.post("/", form_data(topics))
    assert len(mail.outbox) == 2
    assert mail.outbox[0].body != mail.outbox[1].body  # a fresh link, with its own time


def saved_row(reader):
    """What the database holds for a reader: status and every preference."""
    reader = Subscriber.objects.get(pk=reader.pk)
    return {"status": reader.status, **reader.get_preferences()}


def test_an_unsubscribed_address_keeps_its_preferences_until_the_link_is_followed(client, topics, make_reader):
    reader = make_reader(
        "ada@example.com", topics=topics[:1], status=Subscriber.Status.UNSUBSCRIBED, keywords=["graphs"], send_hour=9
    )
    before = saved_row(reader)
    # Anyone can send the form with this address: until the mailbox's owner follows the link, nothing changes.
    client.post("/", form_data(topics[1:], send_hour="22", time_zone="Asia/Tokyo"))
    assert saved_row(reader) == before
    assert before["status"] == "unsubscribed" and before["topics"] == ["computer-vision"] and before["send_hour"] == 9
    [message] = mail.outbox
    assert message.subject == "Confirm your subscription to Paper Digest"
    [confirm_link] = [link for link in links_in(message) if "/confirm/" in link]
    path = "/" + confirm_link.split("/", 3)[3]

    page = client.get(path).content.decode()
    assert "Language models" in page and "22:00 Asia/Tokyo" in page and "protein folding" in page
    assert saved_row(reader) == before

    assert client.post(path).status_code == 200
    after = saved_row(reader)
    assert after["status"] == "active"
    assert after["topics"] == ["language-models"]
    assert (after["keywords"], after["send_hour"], after["time_zone"]) == (
        ["protein folding", "sparse attention"],
        22,
        "Asia/Tokyo",
    )
    confirm = reader.consents.get(action=Consent.Action.CONFIRM)
    assert confirm.details["preferences"]["send_hour"] == [9, 22]
    # Following the link again changes nothing more.
    client.post(path)
    assert saved_row(reader) == after and reader.consents.filter(action=Consent.Action.CONFIRM).count() == 1


def test_an_unconfirmed_change_never_touches_the_saved_preferences(client, topics, make_reader):
    reader = make_reader("ada@example.com", topics=topics[:1], status=Subscriber.Status.UNSUBSCRIBED, send_hour=9)
    before = saved_row(reader)
    with time_machine.travel("2026-11-30 09:00Z", tick=False) as clock:
        client.post("/", form_data(topics[1:], send_hour="22"))
        clock.shift(3600 * 24 * 8)
        [message] = mail.outbox
        [confirm_link] = [link for link in links_in(message) if "/confirm/" in link]
        response = client.post("/" + confirm_link.split("/", 3)[3])
    assert response.status_code == 400 and b"This link has expired" in response.content
    assert saved_row(reader) == before
    consent = reader.consents.get()
    assert consent.action == Consent.Action.SUBSCRIBE
    assert consent.details["pending_preferences"]["send_hour"] == 22


def test_a_suppressed_address_gets_no_email_and_the_same_page(client, topics, make_reader):
    make_reader("ada@example.com", topics=topics, status=Subscriber.Status.SUPPRESSED)
    response = client.post("/", form_data(topics))
    assert response["Location"] == "/subscribe/sent/"
    assert mail.outbox == []
    assert Subscriber.objects.get().status == Subscriber.Status.SUPPRESSED


def test_the_address_is_stored_once_whatever_its_case(client, topics):
    client.post("/", form_data(topics, email="Ada@Example.COM"))
    client.post("/", form_data(topics, email="ada@example.com"))
    assert list(Subscriber.objects.values_list("email", flat=True)) == ["ada@example.com"]


def test_an_internationalised_domain_is_one_address_in_either_spelling(client, topics):
    client.post("/", form_data(topics, email="ada@bücher.example"))
    client.post("/", form_data(topics, email="ada@xn--bcher-kva.example"))
    assert list(Subscriber.objects.values_list("email", flat=True)) == ["ada@bücher.example"]
    assert mail.outbox[0].message()["To"] == "ada@xn--bcher-kva.example"


def test_a_filled_honeypot_looks_like_success_and_does_nothing(client, topics):
    response = client.post("/", form_data(topics, website="http://spam.example"))
    assert response["Location"] == "/subscribe/sent/"
    assert not Subscriber.objects.exists() and mail.outbox == []


def test_keywords_are_plain_text_and_escaped_on_every_page(client, topics):
    client.post("/", form_data(keywords="<script>alert(1)</script>"))
    reader = Subscriber.objects.get()
    assert reader.keywords == ["<script>alert(1)</script>"]
    from subscriptions import tokens

    page = client.get("/" + tokens.manage_url(reader).split("/", 3)[3]).content.decode()
    assert "<script>alert(1)</script>" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page


def test_the_site_default_for_quiet_days_is_pre_selected_and_stored(client, topics, settings):
    settings.DIGEST_SEND_WHEN_EMPTY = True
    page = client.get("/").content.decode()
    assert re.search(r'<input type="radio" name="send_when_empty" value="True"[^>]*checked', page)
    client.post("/", form_data(topics, send_when_empty="False"))
    assert Subscriber.objects.get().send_when_empty is False


def test_a_link_confirms_only_the_choices_sent_with_it(client, topics, make_reader):
    reader = make_reader("ada@example.com", topics=topics[:1], status=Subscriber.Status.UNSUBSCRIBED, send_hour=9)
    before = saved_row(reader)
    with time_machine.travel("2026-11-30 09:00Z", tick=False) as clock:
        client.post("/", form_data(topics[:1], send_hour="22"))
        [message] = mail.outbox
        [confirm_link] = [link for link in links_in(message) if "/confirm/" in link]
        path = "/" + confirm_link.split("/", 3)[3]
        # Someone else sends the form with the same address a minute later: too soon for another email.
        clock.shift(60)
        client.post("/", form_data(topics[1:], send_hour="3", time_zone="Pacific/Kiritimati"))
        assert len(mail.outbox) == 1
        # The link in the owner's email does not confirm choices sent after it.
        page = client.get(path)
        response = client.post(path)
    assert page.status_code == 400 and b"This link does not work" in page.content
    assert response.status_code == 400 and b"This link does not work" in response.content
    assert saved_row(reader) == before
    assert not reader.consents.filter(action=Consent.Action.CONFIRM).exists()


def test_a_topic_deleted_before_the_link_is_followed_is_left_out(client, topics, make_reader):
    reader = make_reader("ada@example.com", topics=topics[:1], status=Subscriber.Status.UNSUBSCRIBED)
    client.post("/", form_data(topics))
    [confirm_link] = [link for link in links_in(mail.outbox[0]) if "/confirm/" in link]
    topics[0].delete()
    path = "/" + confirm_link.split("/", 3)[3]
    assert client.get(path).status_code == 200
    assert client.post(path).status_code == 200
    after = saved_row(reader)
    assert after["status"] == "active" and after["topics"] == ["language-models"]


def test_choices_sent_between_the_links_check_and_its_confirmation_are_not_confirmed(client, topics, make_reader):
    from subscriptions import signup, tokens

    reader = make_reader("ada@example.com", topics=topics[:1], status=Subscriber.Status.UNSUBSCRIBED, send_hour=9)
    before = saved_row(reader)
    client.post("/", form_data(topics[:1], send_hour="22"))
    [confirm_link] = [link for link in links_in(mail.outbox[0]) if "/confirm/" in link]
    checked = tokens.find_subscriber(confirm_link.rstrip("/").rsplit("/", 1)[1], tokens.CONFIRM)
    client.post("/", form_data(topics[1:], send_hour="3"))
    assert signup.confirm(checked, signup.Proof()) is None
    assert saved_row(reader) == before


def visible_text(page):
    return " ".join(re.sub(r"<[^>]+>", " ", page).split())


@pytest.mark.parametrize(
    ("spacing", "wait", "again"), [(600, "10 minutes", "05:10"), (3600, "1 hour", "06:00"), (90, "90 seconds", "05:02")]
)
def test_check_your_inbox_says_from_when_the_form_sends_another_email(client, settings, spacing, wait, again):
    settings.CONFIRMATION_RESEND_SECONDS = spacing
    with time_machine.travel(datetime(2026, 12, 4, 5, 0, tzinfo=UTC), tick=False):
        page = client.get("/subscribe/sent/").content.decode()
    assert f'<time datetime="2026-12-04T{again}:00Z" id="try-again">{again} UTC</time>' in page
    text = visible_text(page)
    assert f"We send an address at most one email every {wait}: sending the form again before {again} UTC" in text
    assert "sends nothing" in text


def test_without_spacing_check_your_inbox_offers_to_send_the_form_again_at_once(client, settings):
    settings.CONFIRMATION_RESEND_SECONDS = 0
    text = visible_text(client.get("/subscribe/sent/").content.decode())
    assert "sends nothing" not in text and "Sign up again to get a new email." in text


def test_a_sample_paper_without_authors_shows_its_upvotes_without_a_dangling_separator(client, make_paper):
    make_paper("Scaling sparse attention to a million tokens", upvotes=40, authors=[])
    page = client.get("/").content.decode()
    assert '<div class="meta">40 upvotes</div>' in page
