"""Bounces, complaints and unsubscribes reported by the mail provider, through Anymail's tracking webhooks.

Anymail's views (`anymail/<esp>/tracking/`, see config/urls.py) check each call (HTTP basic auth against
ANYMAIL_WEBHOOK_SECRET, and the provider's signature where it has one), parse the provider's payload and send one
normalised AnymailTrackingEvent per recipient through the `tracking` signal. `record_event` receives them:

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
from datetime import timedelta

from anymail.exceptions import AnymailAPIError, AnymailConfigurationError, AnymailWebhookValidationFailure
from anymail.signals import EventType, RejectReason, tracking
from anymail.utils import get_anymail_setting
from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.db.models.functions import Lower
from django.dispatch import receiver
from django.http import HttpResponseBadRequest
from django.utils import timezone

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


def require_webhook_secret():
    if not get_anymail_setting("webhook_secret", default=None):
        raise AnymailWebhookValidationFailure(
            "Refused a mail provider's webhook call: ANYMAIL_WEBHOOK_SECRET is not set (see README.md, "
            '"Bounces and complaints").'
        )


# What Anymail raises on a body it cannot read: not JSON, not UTF-8, or JSON of another shape than the provider's.
MALFORMED = (AnymailAPIError, ValueError, TypeError, AttributeError, KeyError, IndexError)


def raised_in_record_event(error):
    traceback = error.__traceback__
    while traceback is not None:
        if traceback.tb_frame.f_code is record_event.__code__:
            return True
        traceback = traceback.tb_next
    return False


def refuse_unconfigured(view):
    """A provider's webhook view that answers 400, not 500, when that provider is not set up here (Anymail then
    raises AnymailConfigurationError, e.g. for a missing signing key): anyone can call the URL of any provider.

    A body Anymail cannot read gets 400 too: Amazon SES's view parses the body before it checks the secret, so
    without this anyone could make it answer 500. An error in record_event itself stays an error."""

    @functools.wraps(view)
    def wrapped(request, *args, **kwargs):
        try:
            return view(request, *args, **kwargs)
        except AnymailConfigurationError as error:
            logger.warning("Refused a webhook call to %s: that provider is not set up: %s", request.path, error)
            return HttpResponseBadRequest()
        except MALFORMED as error:
            if raised_in_record_event(error):
                raise
            logger.warning(
                "Refused a webhook call to %s: its body is malformed (%s)", request.path, type(error).__name__
            )
            return HttpResponseBadRequest()

    return wrapped


def webhook_urls():
    """Anymail's tracking webhook URLs, anymail/<esp>/tracking/ (and Mandrill's combined one), each behind
    refuse_unconfigured. Its inbound-mail URLs are left out: this site receives no mail."""
    # Only the URLconf needs Anymail's webhook views; apps.ready() loads this module for its signal receiver alone.
    from anymail.urls import urlpatterns
    from django.urls import URLPattern

    return [
        URLPattern(pattern.pattern, refuse_unconfigured(pattern.callback), pattern.default_args, pattern.name)
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
