"""Bounces, complaints and unsubscribes from the mail provider, posted through Anymail's own webhook views.

The payloads follow the providers' documented shapes: Mailgun's JSON webhooks (signed with the webhook signing key,
as Mailgun signs them) and Amazon SES notifications wrapped in Amazon SNS messages. Anymail parses them; this project
only receives its normalised tracking events (subscriptions/tracking.py).
"""

import base64
import hashlib
import hmac
import json
import uuid
from datetime import UTC, datetime, timedelta

import pytest
import time_machine
from django.utils import timezone

from subscriptions.models import Consent, MailEvent, Subscriber

SECRET = "tracker:webhook-s3cret"
SIGNING_KEY = "mailgun-webhook-signing-key"
MAILGUN_URL = "/anymail/mailgun/tracking/"
SES_URL = "/anymail/amazon_ses/tracking/"
USER_UNKNOWN = (
    "5.1.1 The email account that you tried to reach does not exist. Please try\n"
    "5.1.1 double-checking the recipient's email address for typos or\n"
    "5.1.1 unnecessary spaces. https://support.google.com/mail/?p=NoSuchUser"
)
OVER_QUOTA = "4.2.2 The email account that you tried to reach is over quota and inactive."


@pytest.fixture(autouse=True)
def anymail_settings(settings):
    # Anymail reads these when each request comes in.
    settings.ANYMAIL = {"WEBHOOK_SECRET": SECRET, "MAILGUN_WEBHOOK_SIGNING_KEY": SIGNING_KEY}
    settings.DIGEST_SOFT_BOUNCE_LIMIT = 3
    settings.DIGEST_SOFT_BOUNCE_DAYS = 30


@pytest.fixture
def ada(make_reader):
    return make_reader("ada@example.com")


def basic_auth(credentials=SECRET):
    return {"HTTP_AUTHORIZATION": "Basic " + base64.b64encode(credentials.encode()).decode()}


def message_id():
    return f"20261130080012.{uuid.uuid4().hex[:16].upper()}@mg.digest.example.org"


# Mailgun ----------------------------------------------------------------------------------------------------------


def mailgun(event_data, *, token=None, key=SIGNING_KEY):
    """A webhook body as Mailgun posts it: the event, and a signature over timestamp + token (HMAC-SHA256)."""
    token = token or uuid.uuid4().hex + uuid.uuid4().hex[:18]
    timestamp = str(int(event_data["timestamp"]))
    signature = hmac.new(key.encode(), f"{timestamp}{token}".encode(), hashlib.sha256).hexdigest()
    return {"signature": {"timestamp": timestamp, "token": token, "signature": signature}, "event-data": event_data}


def mailgun_headers(recipient, msg_id):
    return {
        "to": recipient,
        "message-id": msg_id,
        "from": "Paper Digest <digest@mg.digest.example.org>",
        "subject": "Paper Digest for 30 November: Graph transformers at scale",
    }


def mailgun_failed(recipient, *, severity="permanent", reason="bounce", code=550, reply=USER_UNKNOWN, msg_id=None):
    temporary = severity == "temporary"
    status = {
        "tls": True,
        "mx-host": "alt1.gmail-smtp-in.l.google.com",
        "attempt-no": 1,
        "description": "",
        "session-seconds": 0.42,
        "utf8": True,
        "code": code,
        "message": reply,
        "certificate-verified": True,
    }
    if temporary:
        status["retry-seconds"] = 600
    return {
        "id": uuid.uuid4().hex[:22],
        "timestamp": timezone.now().timestamp(),
        "log-level": "warn" if temporary else "error",
        "event": "failed",
        "severity": severity,
        "reason": reason,
        "envelope": {
            "sender": "digest@mg.digest.example.org",
            "transport": "smtp",
            "targets": recipient,
            "sending-ip": "198.51.100.25",
        },
        "flags": {"is-routed": False, "is-authenticated": True, "is-system-test": False, "is-test-mode": False},
        "recipient-domain": recipient.rpartition("@")[2],
        "recipient": recipient,
        "message": {"headers": mailgun_headers(recipient, msg_id or message_id()), "attachments": [], "size": 46210},
        "delivery-status": status,
        "user-variables": {"delivery_id": "41", "digest_date": "2026-11-30"},
        "tags": ["digest"],
        "campaigns": [],
        "storage": {"url": "https://storage.api.mailgun.net/v3/domains/mg.digest.example.org/messages/AgEF"},
    }


def mailgun_soft_bounce(recipient, **fields):
    fields = {"severity": "temporary", "reason": "generic", "code": 452, "reply": OVER_QUOTA, **fields}
    return mailgun_failed(recipient, **fields)


def mailgun_event(event, recipient, msg_id=None, **extra):
    return {
        "id": uuid.uuid4().hex[:22],
        "timestamp": timezone.now().timestamp(),
        "log-level": "warn" if event == "complained" else "info",
        "event": event,
        "recipient": recipient,
        "message": {"headers": mailgun_headers(recipient, msg_id or message_id())},
        "flags": {"is-routed": False, "is-authenticated": True, "is-system-test": False, "is-test-mode": False},
        "tags": ["digest"],
        "campaigns": [],
        "user-variables": {"delivery_id": "41", "digest_date": "2026-11-30"},
        **extra,
    }


def mailgun_unsubscribed(recipient):
    return mailgun_event(
        "unsubscribed",
        recipient,
        ip="203.0.113.7",
        geolocation={"country": "GB", "region": "England", "city": "London"},
        **{
            "client-info": {
                "client-type": "browser",
                "client-os": "Linux",
                "device-type": "desktop",
                "client-name": "Firefox",
                "user-agent": "Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0",
            }
        },
    )


def mailgun_delivered(recipient, msg_id):
    status = {"tls": True, "mx-host": "mx.example.com", "attempt-no": 2, "code": 250, "message": "OK"}
    return mailgun_event("delivered", recipient, msg_id, **{"delivery-status": status})


def post_mailgun(client, body, credentials=SECRET):
    auth = basic_auth(credentials) if credentials else {}
    return client.post(MAILGUN_URL, data=json.dumps(body), content_type="application/json", **auth)


# Amazon SES through Amazon SNS -------------------------------------------------------------------------------------


def sns(ses_notification, *, sns_id=None, at=None):
    """An SNS notification as Amazon SNS posts it over HTTPS, carrying an SES notification as its Message."""
    sns_id = sns_id or str(uuid.uuid4())
    return {
        "Type": "Notification",
        "MessageId": sns_id,
        "TopicArn": "arn:aws:sns:eu-west-1:123456789012:digest-ses-feedback",
        "Message": json.dumps(ses_notification),
        "Timestamp": (at or timezone.now()).astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z",
        "SignatureVersion": "1",
        # Anymail does not check SNS signatures (nor fetch the certificate): the basic-auth secret is the check.
        "Signature": "EXAMPLEpH+DcEwjAPg8O9mY8dReBSwksfg2S7WKQcikcNKWLQjwu6A4VbeS0QHVCkhRS7fUQvi2egU3N858fiTDN6b=",
        "SigningCertURL": "https://sns.eu-west-1.amazonaws.com/SimpleNotificationService-9c6465fa7f48f5cacd.pem",
        "UnsubscribeURL": "https://sns.eu-west-1.amazonaws.com/?Action=Unsubscribe&SubscriptionArn=arn:aws:sns:eu-west-1",
    }


def ses_mail(recipient, msg_id=None):
    return {
        "timestamp": (timezone.now() - timedelta(seconds=4)).astimezone(UTC).isoformat().replace("+00:00", "Z"),
        "source": "digest@digest.example.org",
        "sourceArn": "arn:aws:ses:eu-west-1:123456789012:identity/digest.example.org",
        "sourceIp": "192.0.2.10",
        "sendingAccountId": "123456789012",
        "messageId": msg_id or f"0102019{uuid.uuid4().hex[:9]}-{uuid.uuid4()}-000000",
        "destination": [recipient],
        "headersTruncated": False,
        "headers": [
            {"name": "From", "value": "Paper Digest <digest@digest.example.org>"},
            {"name": "To", "value": recipient},
            {"name": "Subject", "value": "Paper Digest for 30 November"},
            {"name": "X-Tag", "value": "digest"},
            {"name": "X-Metadata", "value": '{"delivery_id": "41", "digest_date": "2026-11-30"}'},
        ],
        "commonHeaders": {"from": ["Paper Digest <digest@digest.example.org>"], "to": [recipient]},
    }


def ses_bounce(recipient, *, bounce_type="Permanent", sub_type="General", status="5.1.1", diagnostic=None):
    diagnostic = diagnostic or f"smtp; 550 5.1.1 <{recipient}>... User unknown"
    return {
        "notificationType": "Bounce",
        "bounce": {
            "bounceType": bounce_type,
            "bounceSubType": sub_type,
            "bouncedRecipients": [
                {"emailAddress": recipient, "action": "failed", "status": status, "diagnosticCode": diagnostic}
            ],
            "timestamp": timezone.now().astimezone(UTC).isoformat().replace("+00:00", "Z"),
            "feedbackId": f"0102019{uuid.uuid4().hex[:9]}-{uuid.uuid4()}-000000",
            "remoteMtaIp": "198.51.100.40",
            "reportingMTA": "dsn; a7-12.smtp-out.eu-west-1.amazonses.com",
        },
        "mail": ses_mail(recipient),
    }


def ses_transient_bounce(recipient):
    return ses_bounce(
        recipient,
        bounce_type="Transient",
        sub_type="MailboxFull",
        status="4.2.2",
        diagnostic="smtp; 452 4.2.2 Mailbox full",
    )


def ses_complaint(recipient):
    return {
        "notificationType": "Complaint",
        "complaint": {
            "userAgent": "Yahoo!-Mail-Feedback/2.0",
            "complainedRecipients": [{"emailAddress": recipient}],
            "complaintFeedbackType": "abuse",
            "arrivalDate": timezone.now().astimezone(UTC).isoformat().replace("+00:00", "Z"),
            "timestamp": timezone.now().astimezone(UTC).isoformat().replace("+00:00", "Z"),
            "feedbackId": f"0102019{uuid.uuid4().hex[:9]}-{uuid.uuid4()}-000000",
        },
        "mail": ses_mail(recipient),
    }


def post_ses(client, message, credentials=SECRET):
    auth = basic_auth(credentials) if credentials else {}
    return client.post(
        SES_URL,
        data=json.dumps(message),
        content_type="text/plain; charset=UTF-8",  # SNS posts its JSON as text/plain
        HTTP_X_AMZ_SNS_MESSAGE_TYPE=message["Type"],
        HTTP_X_AMZ_SNS_MESSAGE_ID=message["MessageId"],
        HTTP_X_AMZ_SNS_TOPIC_ARN=message["TopicArn"],
        HTTP_USER_AGENT="Amazon Simple Notification Service Agent",
        **auth,
    )


def refreshed(reader):
    reader.refresh_from_db()
    return reader


# Mailgun events ----------------------------------------------------------------------------------------------------


def test_a_mailgun_permanent_failure_suppresses_the_reader_and_keeps_the_event(client, ada):
    body = mailgun(mailgun_failed("ada@example.com"))

    response = post_mailgun(client, body)

    assert response.status_code == 200
    ada = refreshed(ada)
    assert ada.status == Subscriber.Status.SUPPRESSED
    assert ada.status_reason.startswith(
        "Hard bounce (mailgun): 550 5.1.1 The email account that you tried to reach does not exist."
    )
    assert not ada.consents.exists(), "a bounce is not the reader's consent or withdrawal"
    event = MailEvent.objects.get()
    assert (event.subscriber, event.esp, event.event_type, event.reject_reason) == (
        ada,
        "mailgun",
        "bounced",
        "bounced",
    )
    assert (event.is_soft_bounce, event.suppressed) == (False, True)
    assert event.event_id == body["signature"]["token"]
    assert event.message_id == "<" + body["event-data"]["message"]["headers"]["message-id"] + ">"
    assert event.mta_response.startswith("5.1.1 The email account that you tried to reach does not exist. Please try")
    assert event.occurred_at == datetime.fromtimestamp(body["event-data"]["timestamp"], tz=UTC)


def test_a_mailgun_temporary_failure_is_a_soft_bounce_and_only_counted(client, ada):
    response = post_mailgun(client, mailgun(mailgun_soft_bounce("ada@example.com")))

    assert response.status_code == 200
    assert refreshed(ada).status == Subscriber.Status.ACTIVE
    event = MailEvent.objects.get()
    assert (event.event_type, event.is_soft_bounce, event.suppressed) == ("deferred", True, False)
    assert event.mta_response == OVER_QUOTA


def test_three_soft_bounced_messages_suppress_and_two_do_not(client, ada):
    for _ in range(2):
        assert post_mailgun(client, mailgun(mailgun_soft_bounce("ada@example.com"))).status_code == 200
    assert refreshed(ada).status == Subscriber.Status.ACTIVE

    post_mailgun(client, mailgun(mailgun_soft_bounce("ada@example.com")))

    ada = refreshed(ada)
    assert ada.status == Subscriber.Status.SUPPRESSED
    assert ada.status_reason.startswith("3 soft bounces in 30 days (last: mailgun: 452 4.2.2 The email account")
    assert list(MailEvent.objects.order_by("id").values_list("suppressed", flat=True)) == [False, False, True]


def test_the_soft_bounce_limit_is_a_setting(client, ada, settings):
    settings.DIGEST_SOFT_BOUNCE_LIMIT = 2
    for _ in range(2):
        post_mailgun(client, mailgun(mailgun_soft_bounce("ada@example.com")))

    assert refreshed(ada).status_reason.startswith("2 soft bounces in 30 days")


def test_mailgun_retrying_one_message_counts_as_one_soft_bounce(client, ada):
    same_message = message_id()
    for _ in range(4):  # each failed attempt is its own webhook, with its own token
        post_mailgun(client, mailgun(mailgun_soft_bounce("ada@example.com", msg_id=same_message)))

    assert MailEvent.objects.count() == 4
    assert refreshed(ada).status == Subscriber.Status.ACTIVE


def test_a_message_delivered_after_a_deferral_no_longer_counts(client, ada):
    greylisted = message_id()
    post_mailgun(
        client, mailgun(mailgun_soft_bounce("ada@example.com", msg_id=greylisted, code=451, reply="Greylisted"))
    )
    post_mailgun(client, mailgun(mailgun_soft_bounce("ada@example.com")))

    response = post_mailgun(client, mailgun(mailgun_delivered("ada@example.com", greylisted)))
    post_mailgun(client, mailgun(mailgun_soft_bounce("ada@example.com")))

    assert response.status_code == 200
    assert MailEvent.objects.count() == 3, "deliveries are not stored"
    assert MailEvent.objects.get(message_id=f"<{greylisted}>").recovered
    assert refreshed(ada).status == Subscriber.Status.ACTIVE


def test_mailgun_giving_up_after_retries_is_a_soft_bounce_not_a_hard_one(client, ada):
    body = mailgun(mailgun_failed("ada@example.com", reason="old", code=452, reply=OVER_QUOTA))

    post_mailgun(client, body)

    assert MailEvent.objects.get().is_soft_bounce
    assert refreshed(ada).status == Subscriber.Status.ACTIVE


def test_a_mailgun_complaint_suppresses_without_a_consent_record(client, ada):
    response = post_mailgun(client, mailgun(mailgun_event("complained", "ada@example.com")))

    assert response.status_code == 200
    ada = refreshed(ada)
    assert (ada.status, ada.status_reason) == (Subscriber.Status.SUPPRESSED, "Spam complaint (mailgun)")
    assert not ada.consents.exists()
    assert MailEvent.objects.get().event_type == "complained"


def test_an_unsubscribe_at_mailgun_suppresses_and_records_the_readers_act(client, ada):
    response = post_mailgun(client, mailgun(mailgun_unsubscribed("ada@example.com")))

    assert response.status_code == 200
    ada = refreshed(ada)
    assert (ada.status, ada.status_reason) == (Subscriber.Status.SUPPRESSED, "Unsubscribed at the provider (mailgun)")
    assert ada.unsubscribed_at is not None
    consent = ada.consents.get()
    assert (consent.action, consent.wording) == (Consent.Action.UNSUBSCRIBE, "Unsubscribed through Mailgun")
    assert "Firefox" in consent.user_agent
    assert consent.details["esp"] == "mailgun"
    assert MailEvent.objects.get().event_type == "unsubscribed"


def test_opens_and_clicks_are_not_kept(client, ada):
    response = post_mailgun(client, mailgun(mailgun_event("opened", "ada@example.com")))

    assert response.status_code == 200
    assert not MailEvent.objects.exists()


# Amazon SES events -------------------------------------------------------------------------------------------------


def test_an_ses_permanent_bounce_suppresses_the_reader(client, ada):
    message = sns(ses_bounce("ada@example.com"))

    response = post_ses(client, message)

    assert response.status_code == 200
    ada = refreshed(ada)
    assert ada.status == Subscriber.Status.SUPPRESSED
    assert ada.status_reason == "Hard bounce (amazon_ses): 550 5.1.1 <address>... User unknown"
    event = MailEvent.objects.get()
    assert (event.esp, event.event_type, event.is_soft_bounce) == ("amazon_ses", "bounced", False)
    assert event.description == "Permanent: General"
    assert event.mta_response == "550 5.1.1 <address>... User unknown", "the quoted address is not kept"
    assert event.event_id == message["MessageId"]
    assert event.message_id == json.loads(message["Message"])["mail"]["messageId"]


def test_ses_transient_bounces_are_soft_and_three_suppress(client, ada):
    post_ses(client, sns(ses_transient_bounce("ada@example.com")))
    post_ses(client, sns(ses_transient_bounce("ada@example.com")))
    event = MailEvent.objects.first()
    assert (event.event_type, event.is_soft_bounce, event.description) == ("bounced", True, "Transient: MailboxFull")
    assert refreshed(ada).status == Subscriber.Status.ACTIVE

    post_ses(client, sns(ses_transient_bounce("ada@example.com")))

    ada = refreshed(ada)
    assert ada.status == Subscriber.Status.SUPPRESSED
    assert ada.status_reason == "3 soft bounces in 30 days (last: amazon_ses: 452 4.2.2 Mailbox full)"


def test_an_ses_complaint_suppresses_the_reader(client, ada):
    response = post_ses(client, sns(ses_complaint("ada@example.com")))

    assert response.status_code == 200
    ada = refreshed(ada)
    assert (ada.status, ada.status_reason) == (Subscriber.Status.SUPPRESSED, "Spam complaint (amazon_ses)")
    event = MailEvent.objects.get()
    assert (event.event_type, event.reject_reason, event.description) == ("complained", "spam", "abuse")


def test_an_ses_reject_over_the_messages_content_leaves_the_reader_alone(client, ada):
    ses_reject = {"eventType": "Reject", "mail": ses_mail("ada@example.com"), "reject": {"reason": "Bad content"}}

    response = post_ses(client, sns(ses_reject))

    assert response.status_code == 200
    assert refreshed(ada).status == Subscriber.Status.ACTIVE
    event = MailEvent.objects.get()
    assert (event.event_type, event.reject_reason, event.suppressed) == ("rejected", "blocked", False)


# Who may call ------------------------------------------------------------------------------------------------------


def nothing_changed(reader):
    return refreshed(reader).status == Subscriber.Status.ACTIVE and not MailEvent.objects.exists()


@pytest.mark.parametrize(
    ("credentials", "status"), [(None, 401), ("tracker:wrong-password", 403), ("someone:webhook-s3cret", 403)]
)
def test_a_mailgun_call_without_the_webhook_secret_is_refused(client, ada, credentials, status):
    response = post_mailgun(client, mailgun(mailgun_event("complained", "ada@example.com")), credentials)

    assert response.status_code == status
    assert nothing_changed(ada)


def test_a_mailgun_call_with_a_bad_signature_is_refused_even_with_the_secret(client, ada):
    response = post_mailgun(client, mailgun(mailgun_event("complained", "ada@example.com"), key="not-the-key"))

    assert response.status_code == 400
    assert nothing_changed(ada)


def test_an_sns_call_without_basic_auth_gets_the_401_sns_needs_and_changes_nothing(client, ada):
    response = post_ses(client, sns(ses_complaint("ada@example.com")), credentials=None)

    assert response.status_code == 401
    assert response["WWW-Authenticate"].startswith("Basic ")
    assert nothing_changed(ada)


def test_an_sns_call_with_a_wrong_password_is_refused(client, ada):
    response = post_ses(client, sns(ses_complaint("ada@example.com")), "tracker:guess")

    assert response.status_code == 403
    assert nothing_changed(ada)


def test_without_a_webhook_secret_every_call_is_refused(client, ada, settings):
    # Anymail alone would only warn: SNS messages carry no signature it checks, so anyone could suppress anyone.
    settings.ANYMAIL = {"MAILGUN_WEBHOOK_SIGNING_KEY": SIGNING_KEY}
    body = mailgun(mailgun_event("complained", "ada@example.com"))

    mailgun_response = post_mailgun(client, body, credentials=None)
    ses_response = post_ses(client, sns(ses_complaint("ada@example.com")), credentials=None)

    assert (mailgun_response.status_code, ses_response.status_code) == (400, 400)
    assert nothing_changed(ada)


# Bookkeeping -------------------------------------------------------------------------------------------------------


def test_a_soft_bounce_older_than_the_window_does_not_count(client, ada):
    start = datetime(2026, 10, 1, 9, 0, tzinfo=UTC)
    with time_machine.travel(start, tick=False):
        post_mailgun(client, mailgun(mailgun_soft_bounce("ada@example.com")))
    with time_machine.travel(start + timedelta(days=31), tick=False):
        post_mailgun(client, mailgun(mailgun_soft_bounce("ada@example.com")))
        post_ses(client, sns(ses_transient_bounce("ada@example.com")))
        assert refreshed(ada).status == Subscriber.Status.ACTIVE, "the first is 31 days old"
    with time_machine.travel(start + timedelta(days=32), tick=False):
        post_mailgun(client, mailgun(mailgun_soft_bounce("ada@example.com")))

    assert refreshed(ada).status_reason.startswith("3 soft bounces in 30 days")


def test_a_providers_retry_of_the_same_event_is_counted_once(client, ada):
    body = mailgun(mailgun_soft_bounce("ada@example.com"))
    message = sns(ses_transient_bounce("ada@example.com"))

    responses = [post_mailgun(client, body) for _ in range(3)] + [post_ses(client, message) for _ in range(2)]

    assert [response.status_code for response in responses] == [200] * 5
    assert sorted(MailEvent.objects.values_list("esp", flat=True)) == ["amazon_ses", "mailgun"]
    assert refreshed(ada).status == Subscriber.Status.ACTIVE


def test_an_event_for_an_unknown_address_is_kept_without_a_subscriber(client, ada):
    response = post_mailgun(client, mailgun(mailgun_failed("nobody@example.com")))

    assert response.status_code == 200
    event = MailEvent.objects.get()
    assert event.subscriber is None and event.event_type == "bounced"
    assert not Subscriber.objects.exclude(id=ada.id).exists()
    assert refreshed(ada).status == Subscriber.Status.ACTIVE


def test_a_punycode_recipient_finds_the_reader_stored_in_unicode(client, make_reader):
    anna = make_reader("anna@bücher.example")

    post_mailgun(client, mailgun(mailgun_failed("Anna@xn--bcher-kva.example")))

    assert refreshed(anna).status == Subscriber.Status.SUPPRESSED
    assert MailEvent.objects.get().subscriber == anna


def test_a_reader_who_already_left_keeps_their_status(client, make_reader):
    gone = make_reader("gone@example.com", status=Subscriber.Status.UNSUBSCRIBED, status_reason="")
    bounced = make_reader("bounced@example.com", status=Subscriber.Status.SUPPRESSED, status_reason="Hard bounce (x)")

    post_ses(client, sns(ses_complaint("gone@example.com")))
    post_mailgun(client, mailgun(mailgun_unsubscribed("bounced@example.com")))

    assert (refreshed(gone).status, gone.status_reason) == (Subscriber.Status.UNSUBSCRIBED, "")
    assert (refreshed(bounced).status, bounced.status_reason) == (Subscriber.Status.SUPPRESSED, "Hard bounce (x)")
    assert not Consent.objects.exists()
    assert MailEvent.objects.count() == 2 and not MailEvent.objects.filter(suppressed=True).exists()


def test_a_bounced_confirmation_email_suppresses_a_pending_sign_up(client, make_reader):
    pending = make_reader("typo@example.com", status=Subscriber.Status.PENDING)

    post_ses(client, sns(ses_bounce("typo@example.com")))

    assert refreshed(pending).status == Subscriber.Status.SUPPRESSED


def test_erasing_a_reader_keeps_their_events_but_no_trace_of_the_address(client, ada):
    post_ses(client, sns(ses_transient_bounce("ada@example.com")))
    post_ses(client, sns(ses_bounce("ada@example.com", diagnostic="smtp; 550 5.1.1 ada@example.com: no such user")))
    post_mailgun(client, mailgun(mailgun_unsubscribed("ada@example.com")))

    refreshed(ada).erase()

    events = list(MailEvent.objects.values())
    assert len(events) == 3
    assert all(event["subscriber_id"] is None for event in events)
    stored = json.dumps(events, default=str).lower()
    assert "ada@" not in stored and "example.com" not in stored
    assert "550 5.1.1 <address>: no such user" in stored
