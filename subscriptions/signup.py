"""Sign-up with double opt-in, and the transactional emails it sends.

The sign-up form answers every address the same way, so nobody can use it to learn who is subscribed: a new,
pending or unsubscribed address gets a confirmation link, an active or paused one gets a link to its preferences
instead, and a suppressed one (it bounced or complained) gets nothing. Emails to one address are spaced by
CONFIRMATION_RESEND_SECONDS however often the form is sent, so it cannot be used to flood someone's inbox.

Anyone can send the form with anyone's address, so it changes saved preferences only where nobody has confirmed any
(a new address, or a pending one never confirmed). For an unsubscribed reader, or one who confirmed before, the
choices are kept aside (Subscriber.pending_preferences) and applied when the confirmation link is followed; until
then the reader's status and preferences stay as they were.
"""

import dataclasses
import ipaddress
import logging
from datetime import timedelta

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Q
from django.utils import timezone

from papers.models import Topic
from subscriptions import tasks, tokens
from subscriptions.emails import CONFIRM, MANAGE_LINK
from subscriptions.models import MAX_PAPERS_PER_EMAIL, Consent, PurgeRun, Subscriber

logger = logging.getLogger(__name__)
PURGE_BATCH = 500


def client_ip(request):
    """The reader's IP address: REMOTE_ADDR, or behind a proxy the CLIENT_IP_HEADER it sets (its last entry, the
    one the proxy added; earlier ones come from the client and prove nothing). None if neither is a valid address."""
    candidates = [request.META.get("REMOTE_ADDR", "")]
    if settings.CLIENT_IP_HEADER:
        candidates.insert(0, request.headers.get(settings.CLIENT_IP_HEADER, "").rsplit(",", 1)[-1])
    for candidate in candidates:
        try:
            return str(ipaddress.ip_address(candidate.strip()))
        except ValueError:
            continue
    return None


def ratelimit_ip(request):
    """RATELIMIT_IP_META_KEY: the client's address, or one shared bucket when no valid one can be found (a proxy
    misconfigured behind a Unix socket): limits then apply to everyone together rather than fail the request."""
    return client_ip(request) or "0.0.0.0"


@dataclasses.dataclass(frozen=True)
class Proof:
    """Who acted, for the consent record: the request's address and browser, and what they were shown."""

    ip: str | None = None
    user_agent: str = ""
    wording: str = ""
    form_version: str = ""

    @classmethod
    def from_request(cls, request, wording="", form_version=""):
        return cls(
            ip=client_ip(request),
            user_agent=request.headers.get("User-Agent", ""),
            wording=wording,
            form_version=form_version,
        )

    def as_kwargs(self):
        return dataclasses.asdict(self)


def apply_preferences(subscriber, preferences):
    """Set the preference fields on `subscriber` (saved) and return what changed, as {field: [old, new]}."""
    before = subscriber.get_preferences() if subscriber.pk else {}
    for name, value in preferences.items():
        if name != "topics":
            setattr(subscriber, name, value)
    subscriber.save()
    subscriber.topics.set(preferences["topics"])
    after = subscriber.get_preferences()
    return {name: [before.get(name), value] for name, value in after.items() if before.get(name) != value}


def pending_json(preferences):
    """The form's choices as JSON for Subscriber.pending_preferences: topics by id, the rest as they are."""
    return {**preferences, "topics": sorted(topic.pk for topic in preferences["topics"])}


def pending_choices(subscriber):
    """The choices waiting in `subscriber.pending_preferences`, as apply_preferences takes them. A topic deleted or
    switched off since is left out."""
    preferences = dict(subscriber.pending_preferences)
    # Choices sent when the most was higher wait with it (subscriptions migration 0011 lowered those it found).
    preferences["papers_per_email"] = min(preferences.get("papers_per_email", 10), MAX_PAPERS_PER_EMAIL)
    preferences["topics"] = list(Topic.objects.filter(pk__in=preferences["topics"], is_active=True))
    return preferences


def choices_context(choices):
    """What subscriptions/_choices.html shows choices with (the confirm page, the admin): the choices and the name of
    the weekly digest's day."""
    return {"choices": choices, "weekday": Subscriber.Weekday(choices["weekly_day"]).label}


def subscribe(email, preferences, proof, *, repeat=True):
    """Record a sign-up and queue the email it calls for. Returns the kind of email it calls for, or None."""
    try:
        with transaction.atomic():
            subscriber = Subscriber.objects.select_for_update().filter(email=email).first()
            if subscriber is None:
                subscriber = Subscriber(email=email, status=Subscriber.Status.PENDING)
            if subscriber.status in (Subscriber.Status.ACTIVE, Subscriber.Status.PAUSED):
                # Already confirmed: someone may be trying the form with another person's address, so change
                # nothing and send the owner their preferences link.
                kind = MANAGE_LINK
            elif subscriber.status == Subscriber.Status.SUPPRESSED:
                kind = None
            elif subscriber.status == Subscriber.Status.PENDING and subscriber.confirmed_at is None:
                # Nobody has confirmed these preferences yet: the latest form's are the ones to confirm.
                subscriber.pending_since = timezone.now()
                changes = apply_preferences(subscriber, preferences)
                subscriber.record(Consent.Action.SUBSCRIBE, details={"preferences": changes}, **proof.as_kwargs())
                kind = CONFIRM
            else:
                # The reader's own saved preferences: they change only when the link is followed (confirm).
                subscriber.pending_preferences = pending_json(preferences)
                subscriber.pending_since = timezone.now()
                subscriber.save(update_fields=["pending_preferences", "pending_since"])
                details = {"pending_preferences": subscriber.pending_preferences}
                subscriber.record(Consent.Action.SUBSCRIBE, details=details, **proof.as_kwargs())
                kind = CONFIRM
    except IntegrityError:
        # The same new address sent twice at once: the other request made the row, and this one is a repeat.
        if not repeat:
            raise
        return subscribe(email, preferences, proof, repeat=False)
    if kind and may_email(subscriber):
        transaction.on_commit(lambda: send_subscription_email_later(subscriber.id, kind))
    return kind


def confirm(subscriber, proof):
    """The confirmation link was followed: apply the choices waiting for it, if any, and start digests, together or
    not at all. Returns the subscriber as it now is, or None if it is gone (purged meanwhile) or its link no longer
    is (the form was sent again since the link was checked: tokens.confirm_stamp)."""
    with transaction.atomic():
        locked = Subscriber.objects.select_for_update().filter(pk=subscriber.pk).first()
        if locked is None or not locked.awaits_confirmation:
            return locked
        if tokens.confirm_stamp(locked) != tokens.confirm_stamp(subscriber):
            return None
        changes = {}
        if locked.pending_preferences is not None:
            changes = apply_preferences(locked, pending_choices(locked))
        locked.confirm(details={"preferences": changes} if changes else None, **proof.as_kwargs())
    return locked


def may_email(subscriber):
    """At most one sign-up email per address per CONFIRMATION_RESEND_SECONDS: a conditional update, so two requests
    at once cannot both send."""
    now = timezone.now()
    recent = Q(signup_email_at__gt=now - timedelta(seconds=settings.CONFIRMATION_RESEND_SECONDS))
    allowed = Subscriber.objects.filter(id=subscriber.id).exclude(recent).update(signup_email_at=now) == 1
    if not allowed:
        logger.info("Not sending another sign-up email to subscriber %s so soon", subscriber.id)
    return allowed


def send_subscription_email_later(subscriber_id, kind):
    tasks.send_subscription_email.delay(subscriber_id, kind)


def stale_signups(cutoff):
    """Pending subscribers nobody ever confirmed whose latest sign-up is older than `cutoff`. A row from before
    sign-ups recorded their time (no pending_since) is as old as its creation or its last sign-up email.

    Never confirmed means nothing but sign-ups on record and no digest ever made for them: a reader an operator made
    active in the admin records no confirmation, yet was a reader if they were sent a digest or unsubscribed."""
    readers_only = [action for action in Consent.Action if action != Consent.Action.SUBSCRIBE]
    never_confirmed = (
        Q(status=Subscriber.Status.PENDING, confirmed_at=None)
        & ~Q(consents__action__in=readers_only)
        & Q(deliveries__isnull=True)
    )
    old = Q(pending_since__lt=cutoff) | (
        Q(pending_since=None, created_at__lt=cutoff) & (Q(signup_email_at=None) | Q(signup_email_at__lt=cutoff))
    )
    return Subscriber.objects.filter(never_confirmed & old)


def purge_unconfirmed(now=None):
    """Delete sign-ups nobody confirmed within UNCONFIRMED_SIGNUP_DAYS, with their consent records, and drop the
    unconfirmed preference changes of readers who are kept; returns the PurgeRun that records it. A reader who ever
    confirmed is never deleted. Each batch is locked and checked again, so a confirmation at the same moment wins."""
    now = now or timezone.now()
    days = settings.UNCONFIRMED_SIGNUP_DAYS
    run = PurgeRun.objects.create(started_at=now, older_than=now - timedelta(days=days))
    ids = list(stale_signups(run.older_than).values_list("id", flat=True))
    for start in range(0, len(ids), PURGE_BATCH):
        with transaction.atomic():
            batch = stale_signups(run.older_than).filter(id__in=ids[start : start + PURGE_BATCH])
            locked = list(Subscriber.objects.select_for_update().filter(id__in=batch).values_list("id", flat=True))
            Consent.objects.filter(subscriber_id__in=locked).delete()
            run.deleted_count += Subscriber.objects.filter(id__in=locked).delete()[1].get("subscriptions.Subscriber", 0)
    run.dropped_count = Subscriber.objects.filter(
        pending_preferences__isnull=False, pending_since__lt=run.older_than
    ).update(pending_preferences=None, pending_since=None)
    run.finished_at = timezone.now()
    run.save()
    logger.info(
        "Purged unconfirmed sign-ups older than %d days: %d deleted, %d unconfirmed preference changes dropped",
        days,
        run.deleted_count,
        run.dropped_count,
    )
    return run
