import re

import pytest

from subscriptions import tokens
from subscriptions.models import Consent, Subscriber


@pytest.fixture
def reader(make_reader):
    return make_reader("ada@example.com")


def path_of(url):
    return "/" + url.split("/", 3)[3]


def test_a_one_click_post_unsubscribes_at_once_without_a_csrf_token(client, reader):
    client = type(client)(enforce_csrf_checks=True)
    response = client.post(
        path_of(tokens.unsubscribe_url(reader)),
        data="List-Unsubscribe=One-Click",
        content_type="application/x-www-form-urlencoded",
    )
    assert response.status_code == 200
    reader.refresh_from_db()
    assert reader.status == Subscriber.Status.UNSUBSCRIBED and reader.unsubscribed_at is not None
    consent = reader.consents.get()
    assert consent.action == Consent.Action.UNSUBSCRIBE
    assert "One-Click" in consent.wording


def test_a_get_only_asks_because_mail_scanners_open_links(client, reader):
    response = client.get(path_of(tokens.unsubscribe_url(reader)))
    assert response.status_code == 200
    assert b"<button" in response.content
    reader.refresh_from_db()
    assert reader.status == Subscriber.Status.ACTIVE


def test_a_second_click_changes_nothing_more(client, reader):
    url = path_of(tokens.unsubscribe_url(reader))
    client.post(url)
    client.post(url)
    assert reader.consents.count() == 1


@pytest.mark.parametrize("mangle", [lambda t: t[:-2] + "xx", lambda t: "x" + t, lambda t: t.split(":")[0]])
def test_a_tampered_link_gets_a_400_page_and_changes_nothing(client, reader, mangle):
    token = tokens.make_token(reader, tokens.UNSUBSCRIBE)
    response = client.post(f"/unsubscribe/{mangle(token)}/")
    assert response.status_code == 400
    assert b"This link does not work" in response.content
    reader.refresh_from_db()
    assert reader.status == Subscriber.Status.ACTIVE


def test_a_link_for_another_purpose_does_not_unsubscribe(client, reader):
    response = client.post(f"/unsubscribe/{tokens.make_token(reader, tokens.MANAGE)}/")
    assert response.status_code == 400


def test_the_manage_link_shows_the_subscription(client, reader, make_topic):
    reader.topics.add(make_topic("Robotics"))
    response = client.get(path_of(tokens.manage_url(reader)))
    assert response.status_code == 200
    assert b"ada@example.com" in response.content and b"Robotics" in response.content


def test_the_page_after_offers_resubscribe_and_the_readers_data_not_preferences_instead(client, reader):
    page = client.post(path_of(tokens.unsubscribe_url(reader))).content.decode()
    assert "You are unsubscribed" in page
    assert ">Resubscribe</button>" in page
    assert "instead" not in page
    assert f'<a href="{tokens.manage_url(reader)}#your-data">Download or delete your data</a>' in page


def headings_and_what_follows(page):
    """[(h2 text, the markup up to the next h2 or the end of main)] of a page."""
    main = page.split("<main", 1)[1].split("</main>", 1)[0]
    parts = re.split(r"<h2[^>]*>(.*?)</h2>", main)
    return list(zip(parts[1::2], parts[2::2], strict=True))


def text_of(markup):
    return " ".join(re.sub(r"<[^>]+>", " ", markup).split())


def test_an_unsubscribed_readers_preferences_have_no_empty_section_and_no_dead_feed(client, reader):
    client.post(path_of(tokens.unsubscribe_url(reader)))
    page = client.get(path_of(tokens.manage_url(reader))).content.decode()
    for heading, following in headings_and_what_follows(page):
        assert text_of(following), f"nothing under the heading {heading!r}"
    assert tokens.feed_url(reader) not in page and "Atom feed" not in page
    resubscribe = path_of(tokens.unsubscribe_url(reader)) + "resubscribe/"
    assert re.search(rf'<form method="post" action="{resubscribe}">.*?>Resubscribe</button>', page, re.S)
    client.post(resubscribe)
    reader.refresh_from_db()
    assert reader.status == Subscriber.Status.ACTIVE


@pytest.mark.parametrize("status", list(Subscriber.Status))
def test_the_preference_center_has_something_under_every_heading_whatever_the_status(client, make_reader, status):
    reader = make_reader(status=status)
    page = client.get(path_of(tokens.manage_url(reader))).content.decode()
    for heading, following in headings_and_what_follows(page):
        assert text_of(following), f"nothing under the heading {heading!r}"
    assert (tokens.feed_url(reader) in page) == (status not in ("unsubscribed", "suppressed"))


def test_resubscribe_in_one_click_restores_the_digest(client, reader):
    url = path_of(tokens.unsubscribe_url(reader))
    client.post(url)
    response = client.post(url + "resubscribe/", REMOTE_ADDR="192.0.2.4")
    assert b"Welcome back" in response.content
    reader.refresh_from_db()
    assert reader.status == Subscriber.Status.ACTIVE and reader.unsubscribed_at is None
    assert [c.action for c in reader.consents.order_by("at", "id")] == ["unsubscribe", "resubscribe"]


def test_an_old_unsubscribe_link_of_an_unsubscribed_reader_offers_resubscribe_not_unsubscribe(client, reader):
    client.post(path_of(tokens.unsubscribe_url(reader)))
    page = client.get(path_of(tokens.unsubscribe_url(reader))).content.decode()
    assert ">Resubscribe</button>" in page
    assert "Unsubscribe from" not in page and ">Unsubscribe</button>" not in page


@pytest.mark.parametrize(
    ("status", "act"),
    [
        (Subscriber.Status.UNSUBSCRIBED, lambda reader: reader.resubscribe()),
        (Subscriber.Status.PAUSED, lambda reader: reader.resume()),
        (Subscriber.Status.PENDING, lambda reader: reader.confirm()),
    ],
)
def test_a_reader_suppressed_meanwhile_stays_suppressed(make_reader, status, act):
    reader = make_reader("ada@example.com", status=status)
    # The provider's webhook suppresses the reader after their page read the row, before their click is saved.
    Subscriber.objects.filter(pk=reader.pk).update(status=Subscriber.Status.SUPPRESSED, status_reason="Hard bounce")
    assert act(reader) is False
    reader.refresh_from_db()
    assert (reader.status, reader.status_reason) == (Subscriber.Status.SUPPRESSED, "Hard bounce")
    assert not reader.consents.exists()


def test_a_suppressed_address_cannot_resubscribe_from_a_link(client, make_reader):
    reader = make_reader("bounced@example.com", status=Subscriber.Status.SUPPRESSED)
    response = client.post(path_of(tokens.unsubscribe_url(reader)) + "resubscribe/")
    assert b"We can't resubscribe this address" in response.content
    reader.refresh_from_db()
    assert reader.status == Subscriber.Status.SUPPRESSED


def test_a_suppressed_reader_is_not_sent_to_a_sign_up_form_that_ignores_them(client, make_reader):
    reader = make_reader("bounced@example.com", status=Subscriber.Status.SUPPRESSED)
    page = client.post(path_of(tokens.unsubscribe_url(reader)) + "resubscribe/").content.decode()
    assert "sign up again" not in page.lower()
    assert "<title>We can't resubscribe this address" in page


def test_a_reader_who_did_not_bounce_is_not_told_they_bounced(client, make_reader):
    reader = make_reader("ada@example.com", status=Subscriber.Status.PENDING)
    page = client.post(path_of(tokens.unsubscribe_url(reader)) + "resubscribe/").content.decode()
    assert "could not be delivered" not in page
    assert "pending confirmation" in page


def test_links_in_old_emails_keep_working(client, reader):
    import time_machine

    with time_machine.travel("2025-01-01 08:00Z"):
        url = path_of(tokens.unsubscribe_url(reader))
    response = client.post(url)
    assert response.status_code == 200
    reader.refresh_from_db()
    assert reader.status == Subscriber.Status.UNSUBSCRIBED


def test_a_second_resubscribe_click_changes_nothing_more(client, reader):
    url = path_of(tokens.unsubscribe_url(reader))
    client.post(url)
    client.post(url + "resubscribe/")
    response = client.post(url + "resubscribe/")
    assert b"Welcome back" in response.content
    reader.refresh_from_db()
    assert reader.status == Subscriber.Status.ACTIVE
    assert [c.action for c in reader.consents.order_by("at", "id")] == ["unsubscribe", "resubscribe"]
