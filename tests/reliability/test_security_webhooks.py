"""Mail provider webhooks: only a caller with ANYMAIL_WEBHOOK_SECRET changes anything, at every provider's URL.

Mailgun's and Amazon SES's own checks are in tests/test_tracking.py; these cover every URL the site answers under
anymail/, with Postmark as the provider whose calls carry nothing but the secret. Then the bodies no parser may fail
on, at the four providers docs/deploying.md names (Mailgun, Amazon SES, Postmark, SendGrid): the secret is checked
before the body is read, and a body Anymail cannot read gets 400, not a server error.
"""

import base64
import json
import warnings

import pytest
from anymail.exceptions import AnymailDeprecationWarning, AnymailNotSupportedWarning

from subscriptions.models import MailEvent, Subscriber
from subscriptions.tracking import webhook_urls
from tests.test_tracking import mailgun, mailgun_failed, ses_bounce, sns

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
    assert codes == dict.fromkeys(TRACKING_URLS, 403 if credentials and ":" in credentials else 401)
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


# Bodies no parser may fail on --------------------------------------------------------------------------------------

MAILGUN_URL, SES_URL, SENDGRID_URL = (
    "/anymail/mailgun/tracking/",
    "/anymail/amazon_ses/tracking/",
    "/anymail/sendgrid/tracking/",
)
SIGNING_KEY = "mailgun-webhook-signing-key"
NESTED = '"<nested>"'
DEPTH = 100_000


def sendgrid_bounce(recipient="ada@example.com", **fields):
    """A SendGrid event webhook body (a list of events), as SendGrid documents its bounce event."""
    return [
        {
            "email": recipient,
            "timestamp": 1764489612,
            "smtp-id": "<wrfRRvF7Q0GgwUo2CvDmEA@ismtpd0006p1sjc2.sendgrid.net>",
            "event": "bounce",
            "type": "bounce",
            "status": "5.1.1",
            "reason": "550 5.1.1 The email account that you tried to reach does not exist.",
            "sg_event_id": "lC0Rc-FuQmKbnxCWxX1jRQ",
            "sg_message_id": "Lli-03HcQ5-JLybO9fXsJg.filter0077p1las1.21536.5717FC482.0",
            "anymail_id": "de212213-bb66-4302-8f3f-20acdb7a104e",
            "tls": 1,
            "ip": "167.89.17.173",
            "delivery_id": "41",
            **fields,
        }
    ]


def provider_calls():
    """Each wired provider's real payload with one value (metadata the provider passes through) nested DEPTH deep:
    (url, JSON body, request headers)."""
    mailgun_body = mailgun(mailgun_failed("ada@example.com"))
    mailgun_body["event-data"]["user-variables"]["digest_date"] = "<nested>"
    ses_body = sns(ses_bounce("ada@example.com"))
    ses_body["MessageAttributes"] = {"digest": {"Type": "String", "Value": "<nested>"}}
    ses_headers = {"X-Amz-Sns-Message-Type": "Notification", "X-Amz-Sns-Message-Id": ses_body["MessageId"]}
    return [
        (MAILGUN_URL, json.dumps(mailgun_body), {}),
        (SES_URL, json.dumps(ses_body), ses_headers),
        (POSTMARK_URL, json.dumps({**complaint(), "Metadata": {"digest_date": "<nested>"}}), {}),
        (SENDGRID_URL, json.dumps(sendgrid_bounce(delivery_id="<nested>")), {}),
    ]


def deeply_nested(body):
    nested = "[" * DEPTH + '"digest"' + "]" * DEPTH
    assert body.count(NESTED) == 1
    return body.replace(NESTED, nested)


def post_raw(client, url, body, credentials, headers=()):
    headers = dict(headers)
    if credentials is not None:
        headers["Authorization"] = "Basic " + base64.b64encode(credentials.encode()).decode()
    return client.post(url, body, content_type="application/json", headers=headers)


@pytest.fixture
def mailgun_signing_key(settings):
    settings.ANYMAIL = {"WEBHOOK_SECRET": SECRET, "MAILGUN_WEBHOOK_SIGNING_KEY": SIGNING_KEY}


@pytest.mark.parametrize("credentials", [None, "tracker:wrong"])
@pytest.mark.parametrize("call", provider_calls(), ids=lambda call: call[0].split("/")[2])
def test_a_deeply_nested_body_without_the_secret_gets_401_or_403(client, ada, mailgun_signing_key, call, credentials):
    client.raise_request_exception = False
    url, body, headers = call

    response = post_raw(client, url, deeply_nested(body), credentials, headers)

    if credentials is None:
        assert response.status_code == 401 and response["WWW-Authenticate"].startswith("Basic ")
    else:
        assert response.status_code == 403 and response.content == b"Wrong credentials.\n"
    ada.refresh_from_db()
    assert ada.status == Subscriber.Status.ACTIVE and not MailEvent.objects.exists()


def test_without_a_webhook_secret_a_deeply_nested_body_gets_400(client, ada, settings):
    client.raise_request_exception = False
    settings.ANYMAIL = {"MAILGUN_WEBHOOK_SIGNING_KEY": SIGNING_KEY}

    codes = {
        url: post_raw(client, url, deeply_nested(body), None, headers).status_code
        for url, body, headers in provider_calls()
    }

    assert codes == dict.fromkeys(codes, 400)
    ada.refresh_from_db()
    assert ada.status == Subscriber.Status.ACTIVE and not MailEvent.objects.exists()


def assert_refused_as_malformed(response, caplog, reader):
    assert response.status_code == 400
    assert response["Content-Type"] == "text/plain; charset=utf-8"
    assert response.content.decode() == "Malformed webhook body.\n"
    [warning] = [record for record in caplog.records if record.name == "subscriptions.tracking"]
    assert warning.levelname == "WARNING" and "its body is malformed" in warning.getMessage()
    for secret in (SECRET, SECRET.split(":")[1], SIGNING_KEY, "ada@example.com", "digest"):
        assert secret not in warning.getMessage()
    reader.refresh_from_db()
    assert reader.status == Subscriber.Status.ACTIVE and not MailEvent.objects.exists()


@pytest.mark.parametrize("call", provider_calls(), ids=lambda call: call[0].split("/")[2])
def test_a_deeply_nested_body_with_the_secret_answers_400(client, ada, mailgun_signing_key, caplog, call):
    client.raise_request_exception = False
    url, body, headers = call

    response = post_raw(client, url, deeply_nested(body), SECRET, headers)

    assert_refused_as_malformed(response, caplog, ada)


def test_a_signed_mailgun_event_timestamped_1e300_answers_400(client, ada, mailgun_signing_key, caplog):
    client.raise_request_exception = False
    body = mailgun({**mailgun_failed("ada@example.com"), "timestamp": 1e300})

    response = post_raw(client, MAILGUN_URL, json.dumps(body), SECRET)

    assert_refused_as_malformed(response, caplog, ada)


def test_a_sendgrid_event_timestamped_1e300_answers_400(client, ada, caplog):
    client.raise_request_exception = False

    response = post_raw(client, SENDGRID_URL, json.dumps(sendgrid_bounce(timestamp=1e300)), SECRET)

    assert_refused_as_malformed(response, caplog, ada)


def test_a_sendgrid_bounce_with_the_secret_is_recorded(client, ada):
    response = post_raw(client, SENDGRID_URL, json.dumps(sendgrid_bounce()), SECRET)

    assert response.status_code == 200
    ada.refresh_from_db()
    assert ada.status == Subscriber.Status.SUPPRESSED
    assert (
        ada.status_reason
        == "Hard bounce (sendgrid): 550 5.1.1 The email account that you tried to reach does not exist."
    )


@pytest.mark.parametrize("bounced_at", ["0001-01-01T00:00:00+14:00", "9999-12-31T23:59:59-14:00"])
def test_a_postmark_bounce_dated_where_utc_cannot_reach_answers_400(client, ada, caplog, bounced_at):
    client.raise_request_exception = False
    body = {**complaint(), "RecordType": "Bounce", "Type": "HardBounce", "TypeCode": 1, "BouncedAt": bounced_at}

    response = post_raw(client, POSTMARK_URL, json.dumps(body), SECRET)

    assert_refused_as_malformed(response, caplog, ada)
