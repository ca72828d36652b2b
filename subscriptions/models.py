import hashlib
import secrets

from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models, transaction
from django.db.models import Q
from django.db.models.functions import Lower
from django.utils import timezone
from timezone_field import TimeZoneField

MAX_KEYWORDS = 10
MAX_KEYWORD_LENGTH = 60
# The most papers a reader may choose: the richest realistic digest of this many stays under 90 KB of HTML
# (tests/test_clipping.py), well under the size at which Gmail clips an email and hides its end, unsubscribe link
# included (about 102 KB).
MAX_PAPERS_PER_EMAIL = 25


def make_token():
    return secrets.token_urlsafe(24)


class SubscriberQuerySet(models.QuerySet):
    def suppress(self, reason, *, unsubscribed=False):
        """Never email these readers again, for `reason` (a bounce, a complaint, a refused address, an operator).

        One rule wherever it comes from: readers who can still get mail (pending, active, paused) are suppressed; an
        unsubscribed or already suppressed reader keeps that status and its reason. Returns how many changed."""
        changes = {"status": Subscriber.Status.SUPPRESSED, "status_reason": reason[:255]}
        if unsubscribed:
            changes["unsubscribed_at"] = timezone.now()
        return self.filter(status__in=Subscriber.REACHABLE).update(**changes)


class Subscriber(models.Model):
    class Status(models.TextChoices):
        PENDING = "pending", "Pending confirmation"
        ACTIVE = "active", "Active"
        PAUSED = "paused", "Paused"
        UNSUBSCRIBED = "unsubscribed", "Unsubscribed"
        SUPPRESSED = "suppressed", "Suppressed"

    class Frequency(models.TextChoices):
        DAILY = "daily", "Every day"
        WEEKDAYS = "weekdays", "Weekdays (Monday to Friday)"
        WEEKLY = "weekly", "Once a week"

    class Weekday(models.IntegerChoices):
        MONDAY = 0, "Monday"
        TUESDAY = 1, "Tuesday"
        WEDNESDAY = 2, "Wednesday"
        THURSDAY = 3, "Thursday"
        FRIDAY = 4, "Friday"
        SATURDAY = 5, "Saturday"
        SUNDAY = 6, "Sunday"

    # Readers mail can still reach: a suppression applies to them only (SubscriberQuerySet.suppress).
    REACHABLE = (Status.PENDING, Status.ACTIVE, Status.PAUSED)

    email = models.EmailField(max_length=254)
    status = models.CharField(max_length=12, choices=Status.choices, default=Status.PENDING, db_index=True)
    topics = models.ManyToManyField("papers.Topic", related_name="subscribers", blank=True)
    keywords = models.JSONField(default=list, blank=True, help_text=f"Up to {MAX_KEYWORDS} free-text interests.")
    time_zone = TimeZoneField(default="UTC")
    send_hour = models.PositiveSmallIntegerField(
        default=8, validators=[MaxValueValidator(23)], help_text="Local hour (0-23) the digest goes out."
    )
    frequency = models.CharField(max_length=8, choices=Frequency.choices, default=Frequency.DAILY)
    weekly_day = models.PositiveSmallIntegerField(
        choices=Weekday.choices, default=Weekday.MONDAY, help_text="For weekly digests: the day it goes out."
    )
    papers_per_email = models.PositiveSmallIntegerField(
        default=10, validators=[MinValueValidator(1), MaxValueValidator(MAX_PAPERS_PER_EMAIL)]
    )
    send_when_empty = models.BooleanField(
        default=False,
        help_text="When nothing new matches on a digest day: send a short email saying so (true) or nothing (false).",
    )
    token = models.CharField(max_length=64, unique=True, default=make_token, editable=False)
    status_reason = models.CharField(max_length=255, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    confirmed_at = models.DateTimeField(null=True, blank=True)
    unsubscribed_at = models.DateTimeField(null=True, blank=True)
    signup_email_at = models.DateTimeField(
        null=True, blank=True, editable=False, help_text="When the last confirmation or preferences-link email went."
    )
    # A sign-up for an address whose saved preferences are not the form's to change (an unsubscribed reader, or
    # one who confirmed before): the choices wait here until the confirmation link is followed (signup.subscribe).
    pending_preferences = models.JSONField(
        null=True, blank=True, editable=False, help_text="Choices sent on the sign-up form, not yet confirmed."
    )
    pending_since = models.DateTimeField(
        null=True, blank=True, editable=False, help_text="When the latest unconfirmed sign-up form was sent."
    )

    objects = SubscriberQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at"]
        # The admin's list, newest first, pages through 100,000 readers on this instead of sorting them all.
        indexes = [models.Index(fields=["created_at", "id"], name="subscriber_created_id")]
        constraints = [
            models.UniqueConstraint(Lower("email"), name="subscriber_email_unique_ci"),
            models.CheckConstraint(condition=Q(send_hour__lte=23), name="subscriber_send_hour_valid"),
            models.CheckConstraint(
                condition=Q(papers_per_email__gte=1, papers_per_email__lte=MAX_PAPERS_PER_EMAIL),
                name="subscriber_papers_per_email_valid",
            ),
            models.CheckConstraint(condition=Q(weekly_day__lte=6), name="subscriber_weekly_day_valid"),
            models.CheckConstraint(
                condition=Q(status__in=["pending", "active", "paused", "unsubscribed", "suppressed"]),
                name="subscriber_status_valid",
            ),
            models.CheckConstraint(
                condition=Q(frequency__in=["daily", "weekdays", "weekly"]), name="subscriber_frequency_valid"
            ),
        ]

    def __str__(self):
        return self.email

    def save(self, *args, **kwargs):
        # Local parts can be case-sensitive in theory, but no provider treats them so; one address, one subscription.
        self.email = self.email.strip().lower()
        super().save(*args, **kwargs)

    @property
    def is_active(self):
        return self.status == self.Status.ACTIVE

    @property
    def awaits_confirmation(self):
        """A confirmation link would do something: a new sign-up, or an unsubscribed reader's return with new
        choices."""
        return self.status == self.Status.PENDING or (
            self.status == self.Status.UNSUBSCRIBED and self.pending_preferences is not None
        )

    def record(self, action, *, ip=None, user_agent="", wording="", form_version="", details=None):
        """Keep proof of what the reader did and was shown (GDPR Art. 7(1)); see Consent."""
        return self.consents.create(
            action=action,
            ip=ip,
            user_agent=user_agent[:1000],
            wording=wording,
            form_version=form_version,
            details=details or {},
        )

    def _change_status(self, status, action, **proof):
        """Only if the row still has the status this instance read: a change made meanwhile (a bounce suppressed
        the reader) wins over a click on a page loaded before it. True if this changed anything.

        A sign-up waiting for confirmation was for the status it found: any change of status ends it."""
        changes = {"status": status, "pending_preferences": None, "pending_since": None}
        now = timezone.now()
        if action == Consent.Action.CONFIRM or (status == self.Status.ACTIVE and self.confirmed_at is None):
            changes["confirmed_at"] = now
        if status == self.Status.UNSUBSCRIBED or self.unsubscribed_at is not None:
            changes["unsubscribed_at"] = now if status == self.Status.UNSUBSCRIBED else None
        with transaction.atomic():
            if not Subscriber.objects.filter(pk=self.pk, status=self.status).update(**changes):
                self.refresh_from_db(
                    fields=["status", "status_reason", "confirmed_at", "unsubscribed_at", "pending_preferences"]
                )
                return False
            for name, value in changes.items():
                setattr(self, name, value)
            self.record(action, **proof)
        return True

    def confirm(self, **proof):
        """The reader followed their confirmation link: digests start. True if this changed anything.

        Pending choices are applied first, by signup.confirm."""
        if not self.awaits_confirmation:
            return False
        with transaction.atomic():
            changed = self._change_status(self.Status.ACTIVE, Consent.Action.CONFIRM, **proof)
            if changed:
                ErasedAddress.objects.filter(email_hash=ErasedAddress.hash(self.email)).delete()
        return changed

    def pause(self, **proof):
        if self.status != self.Status.ACTIVE:
            return False
        return self._change_status(self.Status.PAUSED, Consent.Action.PAUSE, **proof)

    def resume(self, **proof):
        if self.status != self.Status.PAUSED:
            return False
        return self._change_status(self.Status.ACTIVE, Consent.Action.RESUME, **proof)

    def unsubscribe(self, **proof):
        """Stop all digests at once and keep the proof; True if this changed anything (a second click does not)."""
        if self.status in (self.Status.UNSUBSCRIBED, self.Status.SUPPRESSED):
            return False
        return self._change_status(self.Status.UNSUBSCRIBED, Consent.Action.UNSUBSCRIBE, **proof)

    def suppress(self, reason, *, unsubscribed=False):
        """Never email this reader again (see SubscriberQuerySet.suppress); True if this changed their status."""
        changed = Subscriber.objects.filter(pk=self.pk).suppress(reason, unsubscribed=unsubscribed) == 1
        if changed:
            self.refresh_from_db(fields=["status", "status_reason", "unsubscribed_at"])
        return changed

    def resubscribe(self, **proof):
        """Undo an unsubscribe from a signed link (which proves the mailbox). A suppressed address stays suppressed:
        it bounced or complained, and only an operator may lift that."""
        if self.status != self.Status.UNSUBSCRIBED:
            return False
        return self._change_status(self.Status.ACTIVE, Consent.Action.RESUBSCRIBE, **proof)

    def get_preferences(self):
        return {
            "topics": sorted(self.topics.values_list("slug", flat=True)),
            "keywords": list(self.keywords),
            "time_zone": str(self.time_zone),
            "send_hour": self.send_hour,
            "frequency": self.frequency,
            "weekly_day": self.weekly_day,
            "papers_per_email": self.papers_per_email,
            "send_when_empty": self.send_when_empty,
        }

    def export_data(self):
        """Everything stored about this reader, for "download my data" (GDPR Art. 15 and 20)."""
        return {
            "email": self.email,
            "status": self.status,
            "status_reason": self.status_reason,
            "created_at": self.created_at.isoformat(),
            "confirmed_at": self.confirmed_at and self.confirmed_at.isoformat(),
            "unsubscribed_at": self.unsubscribed_at and self.unsubscribed_at.isoformat(),
            "preferences": self.get_preferences(),
            "pending_preferences": self.pending_preferences,
            "consents": [
                {
                    "action": consent.action,
                    "at": consent.at.isoformat(),
                    "ip": consent.ip,
                    "user_agent": consent.user_agent,
                    "form_version": consent.form_version,
                    "wording": consent.wording,
                    "details": consent.details,
                }
                for consent in self.consents.order_by("at", "id")
            ],
            "deliveries": [
                {
                    "digest_date": delivery.digest_date.isoformat(),
                    "status": delivery.status,
                    "papers": delivery.paper_ids,
                    "sent_at": delivery.finished_at and delivery.finished_at.isoformat(),
                }
                for delivery in self.deliveries.order_by("digest_date")
            ],
            "feedback": [
                {
                    "paper": feedback.paper.arxiv_id,
                    "title": feedback.paper.title,
                    "feedback": feedback.direction,
                    "at": feedback.updated_at.isoformat(),
                }
                for feedback in self.feedback.select_related("paper").order_by("updated_at", "id")
            ],
            "signup_emails": [
                {"kind": email.kind, "sent_at": email.sent_at.isoformat()}
                for email in self.signup_emails.order_by("sent_at", "id")
            ],
            "mail_events": [
                {
                    "occurred_at": event.occurred_at.isoformat(),
                    "provider": event.esp,
                    "event": event.event_type,
                    "reason": event.reject_reason,
                    "description": event.description,
                    "server_reply": event.mta_response,
                }
                for event in self.mail_events.order_by("occurred_at", "id")
            ],
        }

    @transaction.atomic
    def erase(self):
        """Delete this reader and everything personal about them, keeping only a hash of the address (see
        ErasedAddress). Consent records go too: with the address gone they prove nothing about anyone."""
        ErasedAddress.objects.get_or_create(email_hash=ErasedAddress.hash(self.email))
        self.consents.all().delete()
        self.deliveries.all().delete()
        self.delete()


class PurgeRun(models.Model):
    """One run of the daily purge of unconfirmed sign-ups (signup.purge_unconfirmed), with what it removed."""

    started_at = models.DateTimeField(default=timezone.now, db_index=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    older_than = models.DateTimeField(help_text="Sign-ups and changes sent before this, and never confirmed, went.")
    deleted_count = models.PositiveIntegerField(
        "sign-ups deleted", default=0, help_text="Pending subscribers who never confirmed."
    )
    dropped_count = models.PositiveIntegerField(
        "changes dropped", default=0, help_text="Unconfirmed preference changes of readers who were kept."
    )

    class Meta:
        ordering = ["-started_at"]

    def __str__(self):
        return f"Purge of unconfirmed sign-ups at {self.started_at:%Y-%m-%d %H:%M}"


class ErasedAddress(models.Model):
    """The SHA-256 of an address whose owner asked to be deleted, and nothing else.

    It keeps an erased reader from being added back by mistake (an operator's import or the admin refuses it);
    the reader can still sign up again themselves, and confirming removes the hash.
    """

    email_hash = models.CharField(max_length=64, unique=True)
    erased_at = models.DateTimeField(default=timezone.now)

    class Meta:
        verbose_name_plural = "erased addresses"

    def __str__(self):
        return f"Erased address {self.email_hash[:12]}…"

    @staticmethod
    def hash(email):
        return hashlib.sha256(email.strip().lower().encode()).hexdigest()

    @classmethod
    def is_erased(cls, email):
        return cls.objects.filter(email_hash=cls.hash(email)).exists()


class Consent(models.Model):
    """Proof of what a reader agreed to, and when. Kept after they unsubscribe (GDPR Art. 7(1))."""

    class Action(models.TextChoices):
        SUBSCRIBE = "subscribe", "Subscribed (form sent)"
        CONFIRM = "confirm", "Confirmed by email"
        PREFERENCES = "preferences", "Changed preferences"
        PAUSE = "pause", "Paused"
        RESUME = "resume", "Resumed"
        UNSUBSCRIBE = "unsubscribe", "Unsubscribed"
        RESUBSCRIBE = "resubscribe", "Resubscribed"

    subscriber = models.ForeignKey(Subscriber, on_delete=models.PROTECT, related_name="consents")
    action = models.CharField(max_length=12, choices=Action.choices)
    at = models.DateTimeField(default=timezone.now)
    ip = models.GenericIPAddressField(null=True, blank=True)
    user_agent = models.TextField(blank=True)
    form_version = models.CharField(max_length=32, blank=True)
    wording = models.TextField(blank=True, help_text="The text the reader was shown when they acted.")
    details = models.JSONField(default=dict, blank=True)

    class Meta:
        ordering = ["-at"]
        constraints = [
            models.CheckConstraint(
                condition=Q(
                    action__in=["subscribe", "confirm", "preferences", "pause", "resume", "unsubscribe", "resubscribe"]
                ),
                name="consent_action_valid",
            ),
        ]

    def __str__(self):
        return f"{self.get_action_display()} at {self.at:%Y-%m-%d %H:%M}"


class SignupEmail(models.Model):
    """A sign-up email (confirmation or manage link) handed to the mail backend, with its message id: what the
    Health page counts sign-up emails' bounce and complaint rates against, apart from the digests'.

    Like MailEvent it holds no address; erasing or purging the reader sets `subscriber` to null."""

    subscriber = models.ForeignKey(
        Subscriber, on_delete=models.SET_NULL, null=True, blank=True, related_name="signup_emails"
    )
    kind = models.CharField(max_length=16, help_text='The email\'s template: "confirm" or "manage-link".')
    message_id = models.CharField(max_length=255, blank=True, db_index=True)
    sent_at = models.DateTimeField(default=timezone.now, db_index=True)

    class Meta:
        ordering = ["-sent_at"]

    def __str__(self):
        return f"{self.kind} email at {self.sent_at:%Y-%m-%d %H:%M}"


class MailEvent(models.Model):
    """A provider's report that concerns deliverability: a bounce, a refusal, a spam complaint or an unsubscribe at
    the provider (subscriptions/tracking.py records them from Anymail's tracking webhooks).

    No address is stored: the subscriber link is enough to act and to count, and an address in the provider's text
    is replaced by "<address>" before it is kept. Erasing a reader sets `subscriber` to null, so the event still
    counts for the operator's bounce and complaint rates but names nobody.
    """

    class EventType(models.TextChoices):
        # Anymail's normalised event types (anymail.signals.EventType) that this project keeps.
        BOUNCED = "bounced", "Bounced"
        DEFERRED = "deferred", "Deferred"
        REJECTED = "rejected", "Rejected by the provider"
        COMPLAINED = "complained", "Spam complaint"
        UNSUBSCRIBED = "unsubscribed", "Unsubscribed at the provider"

    # Bounces that ended a message's delivery (a deferral is a retry still under way), for bounce rates.
    BOUNCE_TYPES = (EventType.BOUNCED,)

    subscriber = models.ForeignKey(
        Subscriber, on_delete=models.SET_NULL, null=True, blank=True, related_name="mail_events"
    )
    esp = models.CharField(max_length=32, help_text='The provider that reported it, e.g. "mailgun", "amazon_ses".')
    event_type = models.CharField(max_length=12, choices=EventType.choices)
    reject_reason = models.CharField(max_length=16, blank=True, help_text="Anymail's normalised reason, if any.")
    is_soft_bounce = models.BooleanField(
        default=False, help_text="A temporary failure: counted, and suppresses only when repeated."
    )
    recovered = models.BooleanField(
        default=False, help_text="The provider delivered the message after this soft bounce, so it does not count."
    )
    suppressed = models.BooleanField(default=False, help_text="This event suppressed the reader.")
    description = models.CharField(max_length=255, blank=True)
    mta_response = models.CharField(max_length=500, blank=True, help_text="The receiving server's reply, if any.")
    event_id = models.CharField(max_length=200, blank=True, help_text="The provider's id for the event.")
    message_id = models.CharField(max_length=255, blank=True)
    occurred_at = models.DateTimeField(default=timezone.now, help_text="When the provider says it happened.")
    received_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-occurred_at"]
        indexes = [
            models.Index(fields=["occurred_at"], name="mailevent_occurred_at"),
            models.Index(fields=["subscriber", "occurred_at"], name="mailevent_subscriber_occurred"),
        ]
        constraints = [
            # A provider's retry of the same webhook is kept once. Per subscriber: one Amazon SES notification (one
            # event id) can report several recipients.
            models.UniqueConstraint(
                fields=["esp", "event_id", "subscriber"],
                condition=~Q(event_id=""),
                name="mailevent_event_once",
            ),
            models.CheckConstraint(
                condition=Q(event_type__in=["bounced", "deferred", "rejected", "complained", "unsubscribed"]),
                name="mailevent_event_type_valid",
            ),
        ]

    def __str__(self):
        return f"{self.get_event_type_display()} ({self.esp}) at {self.occurred_at:%Y-%m-%d %H:%M}"
