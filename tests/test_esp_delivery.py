"""The ESP path: `senddigests` through Anymail, with Anymail's test backend standing in for the provider's API."""

import json

import pytest
import requests
from anymail.backends.test import EmailBackend as AnymailTestBackend
from anymail.exceptions import AnymailRequestsAPIError
from anymail.message import AnymailRecipientStatus
from django.core import mail

from digest import sending
from digest.models import Delivery, DigestRun
from subscriptions import tokens
from subscriptions.models import Subscriber
from tests.test_smtp_delivery import READERS, SITE_URL, seed_papers, seed_readers, seed_topic, send_digests


class FlakyBackend(AnymailTestBackend):
    """Anymail's test backend behind a provider having a bad minute.

    The next `unavailable` sends get HTTP 503, the way a requests-based ESP backend reports it; the provider rejects
    every address in `refused`, and Anymail itself turns that into AnymailRecipientsRefused. Only accepted messages
    reach `mail.outbox`.
    """

    unavailable = 0
    refused = frozenset()
    attempts = []  # the recipient of every send tried, accepted or not

    def post_to_esp(self, payload, message):
        type(self).attempts.extend(payload.recipient_emails)
        if type(self).unavailable > 0:
            type(self).unavailable -= 1
            response = requests.Response()
            response.status_code, response.reason = 503, "Service Unavailable"
            response._content = json.dumps({"message": "Service temporarily unavailable"}).encode()
            raise AnymailRequestsAPIError(email_message=message, payload=payload, response=response, backend=self)
        if set(payload.recipient_emails) & self.refused:
            rejected = AnymailRecipientStatus(message_id=None, status="rejected")
            return {"recipient_status": dict.fromkeys(payload.recipient_emails, rejected)}
        return super().post_to_esp(payload, message)


@pytest.fixture
def esp(settings):
    settings.EMAIL_BACKEND = "anymail.backends.test.EmailBackend"
    settings.SITE_URL = SITE_URL


@pytest.fixture
def flaky_esp(settings, monkeypatch):
    settings.EMAIL_BACKEND = "tests.test_esp_delivery.FlakyBackend"
    settings.SITE_URL = SITE_URL
    monkeypatch.setattr(FlakyBackend, "attempts", [])
    waits = []
    monkeypatch.setattr(sending.time, "sleep", waits.append)
    return waits


@pytest.fixture
def readers(db):
    seed_papers()
    return seed_readers(READERS, seed_topic())


def test_the_delivery_keeps_the_providers_message_id_and_the_provider_gets_metadata_and_tags(esp, readers):
    send_digests()

    assert sorted(message.to[0] for message in mail.outbox) == sorted(READERS)
    for message in mail.outbox:
        delivery = Delivery.objects.get(subscriber__email=message.to[0])
        assert message.anymail_status.status == {"sent"}
        assert delivery.status == Delivery.Status.SENT
        assert delivery.message_id == str(message.anymail_status.message_id)
        params = message.anymail_test_params
        assert params["metadata"] == {"delivery_id": str(delivery.id), "digest_date": delivery.digest_date.isoformat()}
        assert params["tags"] == ["digest"]
        assert params["extra_headers"]["List-Unsubscribe"] == f"<{tokens.unsubscribe_url(delivery.subscriber)}>"
        assert params["extra_headers"]["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
        assert params["html_body"].lstrip().startswith("<!DOCTYPE html>")
        assert "Graph" in params["text_body"]
    run = DigestRun.objects.get()
    assert (run.planned_count, run.sent_count, run.failed_count) == (3, 3, 0)


def test_provider_outages_are_retried_and_a_refused_address_is_suppressed(flaky_esp, readers, settings, monkeypatch):
    settings.DIGEST_MAX_RETRIES = 3
    # One message at a time, so which reader meets each 503 is known; tests/reliability/test_outages.py sends 503
    # bursts to real workers sending concurrently.
    settings.DIGEST_SEND_CONCURRENCY = 1
    monkeypatch.setattr(FlakyBackend, "unavailable", 2)
    monkeypatch.setattr(FlakyBackend, "refused", frozenset({"grace@example.com"}))

    send_digests()

    # Round 1: ada and grace meet the 503s, alan is sent. Round 2: ada is sent, grace is refused for good.
    assert FlakyBackend.attempts == [
        "ada@example.com", "grace@example.com", "alan@example.com", "ada@example.com", "grace@example.com",
    ]  # fmt: skip
    assert len(flaky_esp) == 1, "one backoff wait, before the only retry round"
    assert sorted(message.to[0] for message in mail.outbox) == ["ada@example.com", "alan@example.com"]
    assert {delivery.status for delivery in Delivery.objects.exclude(subscriber__email="grace@example.com")} == {
        Delivery.Status.SENT
    }
    ada = Delivery.objects.get(subscriber__email="ada@example.com")
    assert (ada.attempts, ada.error) == (2, "")

    grace = Subscriber.objects.get(email="grace@example.com")
    refused = Delivery.objects.get(subscriber=grace)
    assert refused.status == Delivery.Status.FAILED
    assert "refused" in refused.error
    assert refused.attempts == 2
    assert grace.status == Subscriber.Status.SUPPRESSED
    assert grace.status_reason
    run = DigestRun.objects.get()
    assert (run.planned_count, run.sent_count, run.failed_count) == (3, 2, 1)
    assert run.finished_at is not None


def test_a_provider_down_past_the_last_retry_fails_the_digests_but_keeps_the_readers(
    flaky_esp, readers, settings, monkeypatch
):
    settings.DIGEST_MAX_RETRIES = 2
    monkeypatch.setattr(FlakyBackend, "unavailable", 1000)

    send_digests()

    assert mail.outbox == []
    assert len(FlakyBackend.attempts) == 3 * 3
    for delivery in Delivery.objects.all():
        assert delivery.status == Delivery.Status.FAILED
        assert "503" in delivery.error
    assert Subscriber.objects.filter(status=Subscriber.Status.ACTIVE).count() == 3
