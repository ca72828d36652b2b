"""Generated calls to the mail providers' tracking webhooks (Anymail's views, behind ANYMAIL_WEBHOOK_SECRET): events of
the providers' own shapes with generated values, and junk. No call gets a server error; a call without the right
secret (or, for Mailgun, the right signature) stores and changes nothing; a genuine one keeps every row valid and
changes no reader but the one it names."""

import base64
import hashlib
import hmac
import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from subscriptions.models import Consent, MailEvent, Subscriber

SECRET = "tracker:webhook-s3cret"
SIGNING_KEY = "mailgun-webhook-signing-key"
READERS = ["ada@example.com", "bob@example.com", "cy@example.com"]
URLS = ["/anymail/mailgun/tracking/", "/anymail/amazon_ses/tracking/", "/anymail/postmark/tracking/"]
NASTY = ["", "\x00", "\r\n", "<ada@example.com>", "é", "🦀", "x" * 600, "5.1.1 <ada@example.com>... User unknown"]

text = st.text(max_size=40) | st.sampled_from(NASTY)
recipients = st.sampled_from(READERS + ["ADA@EXAMPLE.COM", "nobody@example.org", "", "not an address", "a@xn--zz"])
scalars = st.none() | st.booleans() | st.integers(-(2**63), 2**63) | st.floats(allow_nan=False) | text
junk_json = st.recursive(
    scalars, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(text, inner, max_size=3), max_leaves=8
)


@pytest.fixture(autouse=True)
def anymail_settings(settings):
    settings.ANYMAIL = {"WEBHOOK_SECRET": SECRET, "MAILGUN_WEBHOOK_SIGNING_KEY": SIGNING_KEY}


@pytest.fixture
def world(make_reader):
    readers = [
        make_reader(READERS[0]),
        make_reader(READERS[1], status=Subscriber.Status.PAUSED),
        make_reader(READERS[2], status=Subscriber.Status.UNSUBSCRIBED),
    ]
    return {"readers": readers, "before": snapshot()}


def snapshot():
    rows = {row["id"]: row for row in Subscriber.objects.values()}
    for subscriber_id, action in Consent.objects.values_list("subscriber_id", "action").order_by("id"):
        rows[subscriber_id].setdefault("consents", []).append(action)
    return rows


def basic_auth(credentials):
    return {"HTTP_AUTHORIZATION": "Basic " + base64.b64encode(credentials.encode()).decode()}


@st.composite
def mailgun_events(draw):
    recipient = draw(recipients)
    event = {
        "id": draw(st.text(min_size=1, max_size=30) | st.just("")),
        "timestamp": draw(st.floats(0, 4e9) | st.integers(0, 4_000_000_000)),
        "event": draw(
            st.sampled_from(["failed", "complained", "unsubscribed", "delivered", "opened", "accepted"]) | text
        ),
        "severity": draw(st.sampled_from(["permanent", "temporary"]) | text),
        "reason": draw(st.sampled_from(["bounce", "generic", "old", "suppress-bounce", "espblock"]) | text),
        "recipient": recipient,
        "message": {"headers": {"message-id": draw(text), "to": recipient}},
        "delivery-status": {
            "code": draw(st.integers(0, 999) | st.none()),
            "message": draw(text),
            "description": draw(text),
        },
    }
    for name in draw(st.lists(st.sampled_from(["id", "severity", "reason", "message", "delivery-status"]), max_size=2)):
        event.pop(name, None)
    event.update(draw(st.dictionaries(st.text(min_size=1, max_size=10), junk_json, max_size=2)))
    timestamp = str(int(event["timestamp"]))
    token = draw(st.text(st.sampled_from("0123456789abcdef"), min_size=50, max_size=50))
    signature = hmac.new(SIGNING_KEY.encode(), f"{timestamp}{token}".encode(), hashlib.sha256).hexdigest()
    return {"signature": {"timestamp": timestamp, "token": token, "signature": signature}, "event-data": event}


@st.composite
def ses_notifications(draw):
    recipient = draw(recipients)
    kind = draw(st.sampled_from(["Bounce", "Complaint", "Delivery", "Reject", "Send"]) | text)
    notification = {
        "notificationType": kind,
        "mail": {
            "timestamp": draw(st.sampled_from(["2026-11-30T08:00:12.345Z", "not a time", ""])),
            "messageId": draw(text),
            "destination": [recipient],
        },
        "bounce": {
            "bounceType": draw(st.sampled_from(["Permanent", "Transient", "Undetermined"]) | text),
            "bounceSubType": draw(text),
            "bouncedRecipients": [{"emailAddress": recipient, "diagnosticCode": draw(text), "status": draw(text)}],
            "timestamp": "2026-11-30T08:00:16.000Z",
            "feedbackId": draw(text),
        },
        "complaint": {
            "complainedRecipients": [{"emailAddress": recipient}],
            "timestamp": "2026-11-30T08:00:16.000Z",
            "feedbackId": draw(text),
        },
    }
    notification.update(draw(st.dictionaries(st.text(min_size=1, max_size=10), junk_json, max_size=2)))
    return {
        "Type": "Notification",
        "MessageId": draw(st.uuids()).hex,
        "TopicArn": "arn:aws:sns:eu-west-1:123456789012:digest-ses-feedback",
        "Message": json.dumps(notification),
        "Timestamp": "2026-11-30T08:00:17.000Z",
        "SignatureVersion": "1",
        "Signature": "EXAMPLE",
        "SigningCertURL": "https://sns.eu-west-1.amazonaws.com/cert.pem",
    }


@st.composite
def calls(draw):
    """(url, body, content type, credentials, whether the call is genuine)."""
    url = draw(st.sampled_from(URLS))
    credentials = draw(st.sampled_from([SECRET, SECRET, SECRET, None, "tracker:wrong", "", "tracker", ":"]) | text)
    shaped = draw(st.booleans())
    if shaped and url == URLS[0]:
        body = mailgun_events().map(json.dumps)
    elif shaped and url == URLS[1]:
        body = ses_notifications().map(json.dumps)
    else:
        body = junk_json.map(json.dumps) | st.binary(max_size=200) | text
    body = draw(body)
    if shaped and url == URLS[0] and draw(st.integers(0, 4)) == 0:
        body = body.replace('"signature": "', '"signature": "0')  # a forged signature
    content_type = "text/plain; charset=UTF-8" if url == URLS[1] else "application/json"
    content_type = draw(st.just(content_type) | st.sampled_from(["application/x-www-form-urlencoded", "", "text/xml"]))
    return url, body, content_type, credentials, credentials == SECRET


@settings(settings.get_profile("fuzz"), max_examples=3200)
@given(call=calls())
def test_a_webhook_call_never_fails_and_only_a_genuine_one_changes_anything(client, world, fresh_example, call):
    url, body, content_type, credentials, authenticated = call
    auth = basic_auth(credentials) if credentials is not None else {}
    sns = {"HTTP_X_AMZ_SNS_MESSAGE_TYPE": "Notification"} if url == URLS[1] else {}
    with fresh_example():
        response = client.generic("POST", url, body, content_type=content_type, **auth, **sns)
        assert response.status_code < 500, response.status_code
        after = snapshot()
        if not authenticated or response.status_code >= 400:
            assert response.status_code in (400, 401, 403), response.status_code
            assert after == world["before"] and not MailEvent.objects.exists()
            return
        for event in MailEvent.objects.all():
            event.full_clean()
        for reader in Subscriber.objects.all():
            reader.full_clean()
        changed = {pk for pk, row in after.items() if row != world["before"][pk]}
        named = {event.subscriber_id for event in MailEvent.objects.filter(suppressed=True).exclude(subscriber=None)}
        assert changed <= named
