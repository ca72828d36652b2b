from datetime import timedelta

import pytest
import time_machine
from django.utils import timezone

from subscriptions import tokens
from subscriptions.models import Consent, ErasedAddress, Subscriber


def path_of(url):
    return "/" + url.split("/", 3)[3]


@pytest.fixture
def pending(make_reader):
    return make_reader("ada@example.com", status=Subscriber.Status.PENDING)


def test_opening_the_link_only_asks_because_mail_scanners_open_links(client, pending):
    response = client.get(path_of(tokens.confirm_url(pending)))
    assert response.status_code == 200
    assert b"Confirm my subscription" in response.content
    pending.refresh_from_db()
    assert pending.status == Subscriber.Status.PENDING


def test_confirming_activates_and_records_consent(client, pending):
    url = path_of(tokens.confirm_url(pending))
    response = client.post(url, REMOTE_ADDR="198.51.100.7", HTTP_USER_AGENT="Chromium")
    assert response.status_code == 200
    assert b"You&#x27;re subscribed" in response.content or b"You're subscribed" in response.content
    assert tokens.manage_url(pending).split("/", 3)[3].encode() in response.content
    pending.refresh_from_db()
    assert pending.status == Subscriber.Status.ACTIVE and pending.confirmed_at is not None
    consent = pending.consents.get()
    assert (consent.action, consent.ip, consent.user_agent) == (Consent.Action.CONFIRM, "198.51.100.7", "Chromium")
    # A second press (or a reload) changes nothing and still says all is well.
    assert client.post(url).status_code == 200
    assert pending.consents.count() == 1


def test_the_link_works_for_seven_days_then_says_it_expired(client, pending, settings):
    settings.CONFIRMATION_MAX_AGE_DAYS = 7
    with time_machine.travel(timezone.now(), tick=False) as clock:
        url = path_of(tokens.confirm_url(pending))
        clock.shift(timedelta(days=7, seconds=-5))
        assert client.get(url).status_code == 200
        clock.shift(timedelta(seconds=10))
        response = client.post(url)
    assert response.status_code == 400
    assert b"This link has expired" in response.content
    pending.refresh_from_db()
    assert pending.status == Subscriber.Status.PENDING


@pytest.mark.parametrize(
    "make_link",
    [
        lambda reader: tokens.make_token(reader, tokens.CONFIRM)[:-3] + "abc",
        lambda reader: tokens.make_token(reader, tokens.MANAGE),
        lambda reader: tokens.make_token(reader, tokens.UNSUBSCRIBE),
        lambda reader: "not-a-token",
    ],
)
def test_a_tampered_or_foreign_link_changes_nothing(client, pending, make_link):
    response = client.post(f"/confirm/{make_link(pending)}/")
    assert response.status_code == 400
    assert b"This link does not work" in response.content
    pending.refresh_from_db()
    assert pending.status == Subscriber.Status.PENDING


def test_confirming_lets_an_erased_address_back(client, pending):
    ErasedAddress.objects.create(email_hash=ErasedAddress.hash("ADA@example.com"))
    client.post(path_of(tokens.confirm_url(pending)))
    assert not ErasedAddress.objects.exists()
