"""Mail provider webhooks: only a caller with ANYMAIL_WEBHOOK_SECRET changes anything, at every provider's URL.

Mailgun's and Amazon SES's own checks are in tests/test_tracking.py; these cover every URL the site answers under
anymail/, with Postmark as the provider whose calls carry nothing but the secret.
"""

import base64
import json
import warnings

import pytest
from anymail.exceptions import AnymailDeprecationWarning, AnymailNotSupportedWarning

from subscriptions.models import MailEvent, Subscriber
from subscriptions.tracking import webhook_urls

SECRET = "tracker:webhook-s3cret"
POSTMARK_URL = "/anymail/postmark/tracking/"
TRACKING_URLS = sorted("/anymail/" + str(pattern.pattern) for pattern in webhook_urls())


@pytest.fixture(autouse=True)
def anymail_settings(settings):
    settings.ANYMAIL = {"WEBHOOK_SECRET": SECRET}


@pytest.fixture(autouse=True)
def quiet_sendgrid():
    # Anymail warns on every SendGrid call (no longer supported) and SendinBlue call (renamed Brevo).
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", AnymailNotSupportedWarning)
        warnings.simplefilter("ignore", AnymailDeprecationWarning)
        yield


@pytest.fixture
def ada(make_reader):
    return make_reader("ada@example.com")


def complaint(recipient="ada@example.com"):
    """A Postmark spam complaint webhook body, as Postmark documents it."""
    return {
        "RecordType": "SpamComplaint",
        "Type": "SpamComplaint",
        "TypeCode": 512,
        "ID": 4285147781,
        "MessageID": "883953f4-6105-42a2-a16a-77a8eac79483",
        "Email": recipient,
        "BouncedAt": "2026-11-30T08:01:00Z",
        "Description": "The subscriber explicitly marked this message as spam.",
        "Tag": "digest",
        "Metadata": {},
        "MessageStream": "outbound",
    }


def post(client, url, body, credentials):
    headers = {}
    if credentials is not None:
        headers["Authorization"] = "Basic " + base64.b64encode(credentials.encode()).decode()
    return client.post(url, json.dumps(body), content_type="application/json", headers=headers)


def test_a_call_with_the_secret_is_recorded(client, ada):
    response = post(client, POSTMARK_URL, complaint(), SECRET)

    assert response.status_code == 200
    ada.refresh_from_db()
    assert ada.status == Subscriber.Status.SUPPRESSED and ada.status_reason == "Spam complaint (postmark)"
    assert MailEvent.objects.get().event_type == "complained"


@pytest.mark.parametrize("credentials", [None, "tracker:wrong", "someone:webhook-s3cret", "tracker:", ""])
def test_a_call_without_the_secret_is_refused_at_every_url_and_stores_nothing(client, ada, credentials):
    client.raise_request_exception = False

    codes = {url: post(client, url, complaint(), credentials).status_code for url in TRACKING_URLS}

    assert len(codes) >= 15  # every provider Anymail has
    assert {url: code for url, code in codes.items() if code not in (400, 401)} == {}
    ada.refresh_from_db()
    assert ada.status == Subscriber.Status.ACTIVE and not MailEvent.objects.exists()


def test_a_provider_not_set_up_here_answers_400_not_a_server_error(client, ada):
    client.raise_request_exception = False
    # No signing keys: Mailgun, Mandrill, Postal and Unisender Go cannot check their signatures.
    unconfigured = [
        url for url in TRACKING_URLS if url.split("/")[2] in {"mailgun", "mandrill", "postal", "unisender_go"}
    ]

    codes = {url: post(client, url, complaint(), SECRET).status_code for url in unconfigured}

    assert codes == dict.fromkeys(unconfigured, 400)
    ada.refresh_from_db()
    assert ada.status == Subscriber.Status.ACTIVE and not MailEvent.objects.exists()


@pytest.mark.parametrize("url", ["/anymail/mailgun/inbound/", "/anymail/postmark/inbound/", "/anymail/ses/inbound/"])
def test_the_site_takes_no_inbound_mail(client, db, url):
    assert post(client, url, {"From": "x@example.com"}, SECRET).status_code == 404
