"""Bounces, complaints and unsubscribes reported by the mail provider, through Anymail's tracking webhooks.

Anymail's views (`anymail/<esp>/tracking/`, see config/urls.py) check each call (the provider's signature where it
has one), parse the provider's payload and send one normalised AnymailTrackingEvent per recipient through the
`tracking` signal. Each view is guarded here: HTTP basic auth against ANYMAIL_WEBHOOK_SECRET is checked before the
view reads the body, and a body Anymail cannot read gets 400 (`guarded`). `record_event` receives the events:

- a hard bounce, a spam complaint, an unsubscribe at the provider, or the provider refusing to send because the
  address is invalid or already on its own bounce, complaint or unsubscribe list: the reader is suppressed at once,
  with the reason (an unsubscribe also gets a Consent row: it is the reader's own act);
- a soft bounce (a deferral, or a bounce the provider calls temporary): counted; DIGEST_SOFT_BOUNCE_LIMIT messages
  that soft-bounced within DIGEST_SOFT_BOUNCE_DAYS suppress the reader;
- a delivery: earlier soft bounces of the same message stop counting (the provider's retry got through);
- anything else (opens, clicks, a refusal over the message's content or the account): ignored.

Each report kept is a MailEvent row, also for addresses that are nobody's here. A provider's retry of a report it
already sent is recognised by its event id and changes nothing. Readers already suppressed or unsubscribed keep their
status. Without ANYMAIL_WEBHOOK_SECRET every call is refused: Anymail alone would accept unauthenticated calls for
most providers (Amazon SES notifications carry no checked signature), and anyone could then suppress any reader.
"""

import functools
import logging
import re
from datetime import UTC, datetime, timedelta

from anymail.exceptions import AnymailAPIError, AnymailConfigurationError, AnymailWebhookValidationFailure
from anymail.signals import EventType, RejectReason, tracking
from anymail.utils import get_anymail_setting, get_request_basic_auth
from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.db.models.functions import Lower
from django.dispatch import receiver
from django.http import HttpResponse
from django.utils import timezone
from django.utils.crypto import constant_time_compare

from subscriptions.forms import normalise_email
from subscriptions.models import Consent, MailEvent, Subscriber

logger = logging.getLogger(__name__)

KEPT = frozenset(MailEvent.EventType.values)
# A refusal for these reasons is about the address. "blocked" and "other" are about the message or the account
# (Amazon SES: a virus; Mailgun: a sandbox domain), so the reader is left alone.
ADDRESS_REFUSALS = {
    RejectReason.INVALID: "invalid address",
    RejectReason.BOUNCED: "the address bounced before",
    RejectReason.SPAM: "the reader complained before",
    RejectReason.UNSUBSCRIBED: "the reader unsubscribed there before",
}

# Bounces Anymail reports as "bounced" although the provider says they are temporary, from each provider's raw event.
SOFT_MARKERS = {
    "amazon_ses": lambda raw: (raw.get("bounce") or {}).get("bounceType") in ("Transient", "Undetermined"),
    # Mailgun gave up retrying after temporary failures ("old"), with severity permanent or temporary.
    "mailgun": lambda raw: (raw.get("event-data") or {}).get("reason") == "old",
    "postmark": lambda raw: raw.get("Type") == "SoftBounce",
    "brevo": lambda raw: raw.get("event") == "soft_bounce",
    "sendinblue": lambda raw: raw.get("event") == "soft_bounce",
    "mandrill": lambda raw: raw.get("event") == "soft_bounce",
}

# Anything shaped like an address in a provider's text, with its angle brackets.
ADDRESS = re.compile(r"<?[^\s<>\"'(),;:\[\]]+@[^\s<>\"'(),;:\[\]]+>?")


def esp_key(esp_name):
    """Anymail's display name as in its webhook URLs: "Amazon SES" -> "amazon_ses"."""
    return esp_name.lower().replace(" ", "_")


def without_nul(value):
    # PostgreSQL refuses NUL in text; a provider's (or a forger's) payload may carry one anywhere.
    return str(value or "").replace("\x00", "")


def redact(text):
    """A provider's free text, on one line, with any address in it replaced: bounce replies often quote it."""
    text = " ".join(without_nul(text).split())
    return ADDRESS.sub("<address>", re.sub(r"^smtp;\s*", "", text, flags=re.IGNORECASE))


def webhook_secrets():
    """The `user:password` values a webhook call may carry: ANYMAIL_WEBHOOK_SECRET, one or a list (as Anymail takes
    it, to change the secret without refusing the provider's calls meanwhile)."""
    secret = get_anymail_setting("webhook_secret", default=None)
    return [secret] if isinstance(secret, str) else [value for value in secret or () if value]


NO_SECRET = (
    "Refused a mail provider's webhook call: ANYMAIL_WEBHOOK_SECRET is not set (see docs/deploying.md, \"Bounces and "
    'complaints").'
)


def require_webhook_secret():
    if not webhook_secrets():
        raise AnymailWebhookValidationFailure(NO_SECRET)


# What Anymail raises while it checks a signature in a body or turns a body into events, when the body is not what
# the provider sends: not JSON or not UTF-8 (AnymailAPIError, ValueError, UnicodeError), JSON of another shape
# (KeyError, IndexError, TypeError, AttributeError), a number out of range (a timestamp of 1e300: OverflowError),
# nesting deeper than Python's recursion limit (RecursionError). The JSON parser gives up at that limit, about a
# thousand levels down, and Django refuses bodies over DATA_UPLOAD_MAX_MEMORY_SIZE (2.5 MB) with 400 before any
# parsing: a deeply nested body costs milliseconds.
MALFORMED = (AnymailAPIError, ValueError, LookupError, TypeError, AttributeError, ArithmeticError, RecursionError)


class MalformedBody(Exception):
    """Anymail could not read a webhook body; the error it ran into is the __cause__."""


class ReadsBodyOrRefuses:
    """Mixed in before an Anymail webhook view class: a MALFORMED error while Anymail checks the body's signature
    (run_validators) or turns the body into events (parse_events) becomes MalformedBody. So does an event time that
    UTC cannot hold (0001-01-01T00:00:00+14:00: OverflowError), which no database could store.

    The line is drawn there because Anymail reads the whole body into events before it sends the first one to
    record_event. An error in record_event, or in anything else of this project's, is a bug or an outage and stays a
    server error (the provider then retries the call later)."""

    def run_validators(self, request):
        try:
            super().run_validators(request)
        except MALFORMED as error:
            raise MalformedBody from error

    def parse_events(self, request):
        try:
            events = super().parse_events(request)
            for event in events:
                if isinstance(event.timestamp, datetime):
                    event.timestamp.astimezone(UTC)
            return events
        except MALFORMED as error:
            raise MalformedBody from error


def plain(status, text):
    return HttpResponse(text + "\n", status=status, content_type="text/plain; charset=utf-8")


def refuse_unauthenticated(request):
    """The answer to a call without the webhook secret, or None for a call with it. Only the Authorization header is
    read, never the body: Anymail checks the secret only after parsing the body at some providers (Amazon SES).

    401 without credentials (Amazon SNS sends them only after a 401), 403 with wrong ones, 400 when no secret is set
    here: Anymail alone would accept unauthenticated calls for most providers, and anyone could suppress any reader."""
    secrets = webhook_secrets()
    if not secrets:
        logger.warning("%s (%s)", NO_SECRET, request.path)
        return plain(400, "Webhooks are not set up here.")
    credentials = get_request_basic_auth(request)
    if credentials is None:
        response = plain(401, "Credentials required.")
        response["WWW-Authenticate"] = 'Basic realm="Anymail WEBHOOK_SECRET"'
        return response
    if not any(constant_time_compare(credentials, secret) for secret in secrets):
        logger.warning("Refused a webhook call to %s: wrong ANYMAIL_WEBHOOK_SECRET credentials", request.path)
        return plain(403, "Wrong credentials.")
    return None


def guarded(view):
    """A provider's Anymail webhook view behind the webhook secret, answering 400, never 500, for whatever body it
    gets:

    - the secret is checked first (refuse_unauthenticated), so no call without it reaches a parser;
    - a body Anymail cannot read gets 400 "Malformed webhook body." (ReadsBodyOrRefuses), logged as a warning that
      names the error's type and nothing of the body;
    - a provider not set up here (Anymail raises AnymailConfigurationError, e.g. for a missing signing key) gets 400:
      anyone can call the URL of any provider."""
    view_class = type(view.view_class.__name__, (ReadsBodyOrRefuses, view.view_class), {})
    anymail_view = view_class.as_view(**view.view_initkwargs)

    @functools.wraps(anymail_view)
    def wrapped(request, *args, **kwargs):
        refusal = refuse_unauthenticated(request) if request.method == "POST" else None
        if refusal is not None:
            return refusal
        try:
            return anymail_view(request, *args, **kwargs)
        except AnymailConfigurationError as error:
            logger.warning("Refused a webhook call to %s: that provider is not set up: %s", request.path, error)
            return plain(400, "This provider is not set up here.")
        except MalformedBody as error:
            reason = type(error.__cause__).__name__
            logger.warning("Refused a webhook call to %s: its body is malformed (%s)", request.path, reason)
            return plain(400, "Malformed webhook body.")

    return wrapped


def webhook_urls():
    """Anymail's tracking webhook URLs, anymail/<esp>/tracking/ (and Mandrill's combined one), each guarded. Its
    inbound-mail URLs are left out: this site receives no mail."""
    # Only the URLconf needs Anymail's webhook views; apps.ready() loads this module for its signal receiver alone.
    from anymail.urls import urlpatterns
    from django.urls import URLPattern

    return [
        URLPattern(pattern.pattern, guarded(pattern.callback), pattern.default_args, pattern.name)
        for pattern in urlpatterns
        if pattern.name.endswith("tracking_webhook") or pattern.name == "mandrill_webhook"
    ]


def is_soft_bounce(event, esp):
    if event.event_type == EventType.DEFERRED or event.reject_reason == RejectReason.TIMED_OUT:
        return True
    marker = SOFT_MARKERS.get(esp)
    raw = event.esp_event
    return event.event_type == EventType.BOUNCED and marker is not None and isinstance(raw, dict) and marker(raw)


def find_subscriber(recipient):
    """The reader with this address, locked for the rest of the transaction; None for an address unknown here.

    Stored addresses are lower case with internationalised domains in Unicode; providers report punycode."""
    address = without_nul(recipient).strip()
    if not address:
        return None
    try:
        address = normalise_email(address)
    except ValidationError:
        address = address.lower()
    return (
        Subscriber.objects.select_for_update()
        .annotate(email_lower=Lower("email"))  # the unique index is on Lower(email)
        .filter(email_lower=address)
        .first()
    )


def count_soft_bounces(subscriber):
    """Messages to this reader that soft-bounced in the window and were not delivered after all. A provider reports
    every failed retry of one message; that message counts once."""
    since = timezone.now() - timedelta(days=settings.DIGEST_SOFT_BOUNCE_DAYS)
    message_ids = list(
        subscriber.mail_events.filter(is_soft_bounce=True, recovered=False, occurred_at__gte=since).values_list(
            "message_id", flat=True
        )
    )
    return len({message_id for message_id in message_ids if message_id}) + message_ids.count("")


def mta_detail(event, esp):
    detail = redact(event.mta_response or event.description)
    raw = event.esp_event
    if esp == "mailgun" and isinstance(raw, dict):
        # Mailgun keeps the SMTP code apart from the reply text.
        code = ((raw.get("event-data") or {}).get("delivery-status") or {}).get("code")
        if code and not detail.startswith(str(code)):
            detail = f"{code} {detail}".strip()
    return detail


def suppression_reason(event, esp, mail_event, subscriber):
    """Why this report suppresses the reader, or None when it does not (yet)."""
    detail = mta_detail(event, esp)
    if mail_event.is_soft_bounce:
        count, days = count_soft_bounces(subscriber), settings.DIGEST_SOFT_BOUNCE_DAYS
        if count < settings.DIGEST_SOFT_BOUNCE_LIMIT:
            return None
        return f"{count} soft bounces in {days} days (last: {esp}{': ' + detail if detail else ''})"
    if event.event_type == EventType.BOUNCED:
        return f"Hard bounce ({esp}){': ' + detail if detail else ''}"
    if event.event_type == EventType.REJECTED:
        why = ADDRESS_REFUSALS.get(event.reject_reason)
        return f"Refused by the provider ({esp}): {why}" if why else None
    if event.event_type == EventType.COMPLAINED:
        return f"Spam complaint ({esp})"
    if event.event_type == EventType.UNSUBSCRIBED:
        return f"Unsubscribed at the provider ({esp})"
    return None


@receiver(tracking, dispatch_uid="subscriptions.tracking.record_event")
def record_event(sender, event, esp_name, **kwargs):
    require_webhook_secret()
    if event.event_type not in KEPT and event.event_type != EventType.DELIVERED:
        return
    esp = esp_key(esp_name)
    message_id = without_nul(event.message_id)[:255]
    with transaction.atomic():
        subscriber = find_subscriber(event.recipient)
        if event.event_type == EventType.DELIVERED:
            if subscriber is not None and message_id:
                subscriber.mail_events.filter(esp=esp, message_id=message_id, is_soft_bounce=True).update(
                    recovered=True
                )
            return

        event_id = without_nul(event.event_id)[:200]
        if event_id and MailEvent.objects.filter(esp=esp, event_id=event_id, subscriber=subscriber).exists():
            logger.info("Already recorded %s event %s; the provider sent it again", esp, event_id)
            return
        now = timezone.now()
        mail_event = MailEvent(
            subscriber=subscriber,
            esp=esp,
            event_type=event.event_type,
            reject_reason=event.reject_reason or "",
            is_soft_bounce=is_soft_bounce(event, esp),
            description=redact(event.description)[:255],
            mta_response=redact(event.mta_response)[:500],
            event_id=event_id,
            message_id=message_id,
            occurred_at=event.timestamp or now,
            received_at=now,
        )
        try:
            with transaction.atomic():
                mail_event.save()
        except IntegrityError:
            # The same report arrived twice at once (only an unknown address is not locked above).
            return
        if subscriber is None or subscriber.status not in Subscriber.REACHABLE:
            return

        reason = suppression_reason(event, esp, mail_event, subscriber)
        unsubscribed = event.event_type == EventType.UNSUBSCRIBED
        if reason and subscriber.suppress(reason, unsubscribed=unsubscribed):
            logger.info("Suppressed subscriber %s: %s", subscriber.id, reason)
            mail_event.suppressed = True
            mail_event.save(update_fields=["suppressed"])
            if unsubscribed:
                subscriber.record(
                    Consent.Action.UNSUBSCRIBE,
                    user_agent=without_nul(event.user_agent),
                    wording=f"Unsubscribed through {esp_name}",
                    details={"esp": esp, "event_id": event_id, "message_id": message_id},
                )
