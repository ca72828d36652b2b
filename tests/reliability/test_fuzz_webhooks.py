"""Generated calls to every tracking webhook URL the site answers (Anymail's views, behind ANYMAIL_WEBHOOK_SECRET):
events of the four wired providers' own shapes (Mailgun, Amazon SES, Postmark, SendGrid) with generated values, and
junk, some of it nested far past the JSON parser's recursion limit, with and without the secret. No call gets a server
error; a call without the right secret (or, for Mailgun, the right signature) stores and changes nothing; a genuine
one keeps every row valid and changes no reader but the one it names."""

import base64
import hashlib
import hmac
import json
import math

import hypothesis
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from subscriptions.models import Consent, MailEvent, Subscriber
from subscriptions.tracking import webhook_urls

# Anymail warns on every SendGrid call (no longer supported) and SendinBlue call (renamed Brevo).
pytestmark = pytest.mark.filterwarnings(
    "ignore::anymail.exceptions.AnymailNotSupportedWarning", "ignore::anymail.exceptions.AnymailDeprecationWarning"
)

EXAMPLES = 3200
SECRET = "tracker:webhook-s3cret"
SIGNING_KEY = "mailgun-webhook-signing-key"
READERS = ["ada@example.com", "bob@example.com", "cy@example.com"]
MAILGUN, SES, POSTMARK, SENDGRID = (
    f"/anymail/{esp}/tracking/" for esp in ("mailgun", "amazon_ses", "postmark", "sendgrid")
)
WIRED = [MAILGUN, SES, POSTMARK, SENDGRID]
EVERY_URL = sorted("/anymail/" + str(pattern.pattern) for pattern in webhook_urls())
NASTY = ["", "\x00", "\r\n", "<ada@example.com>", "é", "🦀", "x" * 600, "5.1.1 <ada@example.com>... User unknown"]
# Timestamps no provider sends: past what a datetime holds (OverflowError), not finite, negative, far future.
EXTREME_TIMES = [1e300, -1e300, 2**64, 10**400, math.inf, -math.inf, math.nan, -1, 253402300800, 1e12]
# ISO 8601 times (Postmark, Amazon SES), and ones UTC cannot hold, which no database column can store.
ISO_TIMES = ["2026-11-30T08:01:00Z", "2026-11-30T08:01:00.1234567-05:00", "0001-01-01T00:00:00+14:00",
             "9999-12-31T23:59:59-14:00", "2026-02-30T00:00:00Z", "not a time", ""]  # fmt: skip
# Stands for a value nested `depth` lists deep, put into the body once it is JSON text (json.dumps cannot nest that
# deep); inside Amazon SNS's Message, a JSON string, it appears escaped.
DEEP = "<deep>"
DEPTHS = [20, 400, 900, 999, 1000, 5000, 50_000]

text = st.text(max_size=40) | st.sampled_from(NASTY)
recipients = st.sampled_from(READERS + ["ADA@EXAMPLE.COM", "nobody@example.org", "", "not an address", "a@xn--zz"])
scalars = st.none() | st.booleans() | st.integers(-(2**63), 2**63) | st.floats(allow_nan=False) | text | st.just(DEEP)
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
        "timestamp": draw(st.floats(0, 4e9) | st.integers(0, 4_000_000_000) | st.sampled_from(EXTREME_TIMES)),
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
    timestamp = event["timestamp"]
    timestamp = str(timestamp if isinstance(timestamp, float) and not math.isfinite(timestamp) else int(timestamp))
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
            "timestamp": draw(st.sampled_from(ISO_TIMES)),
            "messageId": draw(text),
            "destination": [recipient],
        },
        "bounce": {
            "bounceType": draw(st.sampled_from(["Permanent", "Transient", "Undetermined"]) | text),
            "bounceSubType": draw(text),
            "bouncedRecipients": [{"emailAddress": recipient, "diagnosticCode": draw(text), "status": draw(text)}],
            "timestamp": draw(st.sampled_from(ISO_TIMES)),
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
def postmark_events(draw):
    """A Postmark webhook body: a bounce, spam complaint, delivery, subscription change or open."""
    record_type = draw(st.sampled_from(["Bounce", "SpamComplaint", "Delivery", "SubscriptionChange", "Open"]) | text)
    event = {
        "RecordType": record_type,
        "Type": draw(st.sampled_from(["HardBounce", "SoftBounce", "Transient", "SpamComplaint", "DnsError"]) | text),
        "TypeCode": draw(st.sampled_from([1, 2, 512, 4096]) | st.integers()),
        "ID": draw(st.integers(0, 2**53) | text),
        "MessageID": draw(st.uuids().map(str) | text),
        "Email": draw(recipients),
        "Recipient": draw(recipients),
        "BouncedAt": draw(st.sampled_from(ISO_TIMES)),
        "Details": draw(text),
        "Description": draw(text),
        "SuppressSending": draw(st.booleans()),
        "SuppressionReason": draw(st.sampled_from(["HardBounce", "SpamComplaint", "ManualSuppression"]) | text),
        "Tag": "digest",
        "Metadata": draw(st.dictionaries(text, text, max_size=2)),
        "MessageStream": "outbound",
    }
    for name in draw(st.lists(st.sampled_from(["RecordType", "Type", "ID", "Email", "BouncedAt"]), max_size=2)):
        event.pop(name, None)
    event.update(draw(st.dictionaries(st.text(min_size=1, max_size=10), junk_json, max_size=2)))
    return event


def sendgrid_events():
    """A SendGrid event webhook body: a list of events."""
    timestamps = st.integers(0, 4_000_000_000) | st.floats(0, 4e9) | st.sampled_from(EXTREME_TIMES)
    kinds = st.sampled_from(["bounce", "dropped", "deferred", "delivered", "spamreport", "unsubscribe"]) | text
    reasons = st.sampled_from(["Invalid", "Bounced Address", "Unsubscribed Address"]) | text | st.none()
    one_event = st.fixed_dictionaries(
        {
            "email": recipients,
            "timestamp": timestamps,
            "event": kinds,
            "type": st.sampled_from(["bounce", "blocked", "expired"]) | text,
            "reason": reasons,
            "response": text,
            "sg_event_id": text,
            "anymail_id": st.uuids().map(str) | text,
            "smtp-id": text,
        },
        optional={"category": st.lists(text, max_size=2), "delivery_id": junk_json},
    )
    return st.lists(one_event, min_size=1, max_size=2)


def deepened(body, depth):
    """The JSON text with each DEEP value nested `depth` lists deep, also inside a JSON string (escaped)."""
    nested = "[" * depth + '"digest"' + "]" * depth
    return body.replace(json.dumps(json.dumps(DEEP))[1:-1], json.dumps(nested)[1:-1]).replace(json.dumps(DEEP), nested)


@st.composite
def calls(draw):
    """(url, body, content type, credentials, request headers, whether the call is genuine)."""
    url = draw(st.sampled_from(WIRED) | st.sampled_from(EVERY_URL))
    # Half the calls carry the secret; the others none, a wrong one, or generated text.
    wrong = st.sampled_from([None, "tracker:wrong", "tracker:", "", "tracker", ":", SECRET.upper()]) | text
    credentials = SECRET if draw(st.booleans()) else draw(wrong)
    shaped = url in WIRED and draw(st.booleans())
    headers = {}
    if shaped and url == MAILGUN:
        body = draw(mailgun_events())
    elif shaped and url == SES:
        body = draw(ses_notifications())
        headers = {"HTTP_X_AMZ_SNS_MESSAGE_TYPE": "Notification", "HTTP_X_AMZ_SNS_MESSAGE_ID": body["MessageId"]}
    elif shaped and url == POSTMARK:
        body = draw(postmark_events())
    elif shaped:
        body = draw(sendgrid_events())
    else:
        body = draw(junk_json)
    body = json.dumps(body)
    if DEEP in body:
        body = deepened(body, draw(st.sampled_from(DEPTHS)))
    if shaped and url == MAILGUN and draw(st.integers(0, 4)) == 0:
        body = body.replace('"signature": "', '"signature": "0')  # a forged signature
    if not shaped:
        body = draw(st.just(body) | st.binary(max_size=200) | text)
    content_type = "text/plain; charset=UTF-8" if url == SES else "application/json"
    content_type = draw(st.just(content_type) | st.sampled_from(["application/x-www-form-urlencoded", "", "text/xml"]))
    return url, body, content_type, credentials, headers, credentials == SECRET


@settings(settings.get_profile("fuzz"), max_examples=EXAMPLES)
@given(call=calls())
def test_a_webhook_call_never_fails_and_only_a_genuine_one_changes_anything(client, world, fresh_example, call):
    url, body, content_type, credentials, headers, authenticated = call
    auth = basic_auth(credentials) if credentials is not None else {}
    with fresh_example():
        response = client.generic("POST", url, body, content_type=content_type, **auth, **headers)
        provider = url.split("/")[2] if url in WIRED else "another provider"
        hypothesis.event(f"{provider}, {'with' if authenticated else 'without'} the secret: {response.status_code}")
        assert response.status_code < 500, response.status_code
        after = snapshot()
        if not authenticated:
            assert response.status_code in (401, 403), response.status_code
        if not authenticated or response.status_code >= 400:
            assert response.status_code in (400, 401, 403), response.status_code
            assert after == world["before"] and not MailEvent.objects.exists()
            return
        for mail_event in MailEvent.objects.all():
            mail_event.full_clean()
        for reader in Subscriber.objects.all():
            reader.full_clean()
        changed = {pk for pk, row in after.items() if row != world["before"][pk]}
        named = {
            mail_event.subscriber_id
            for mail_event in MailEvent.objects.filter(suppressed=True).exclude(subscriber=None)
        }
        assert changed <= named
