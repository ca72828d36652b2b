import secrets

from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.db.models import Q
from django.db.models.functions import Lower
from django.utils import timezone
from timezone_field import TimeZoneField

MAX_KEYWORDS = 10
MAX_KEYWORD_LENGTH = 60
MAX_PAPERS_PER_EMAIL = 30


def make_token():
    return secrets.token_urlsafe(24)


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

    email = models.EmailField(max_length=254)
    status = models.CharField(max_length=12, choices=Status.choices, default=Status.PENDING, db_index=True)
    topics = models.ManyToManyField("digest.Topic", related_name="subscribers", blank=True)
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
    token = models.CharField(max_length=64, unique=True, default=make_token, editable=False)
    status_reason = models.CharField(max_length=255, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    confirmed_at = models.DateTimeField(null=True, blank=True)
    unsubscribed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
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

    def unsubscribe(self, *, ip=None, user_agent="", wording=""):
        """Stop all digests at once and keep the proof; True if this changed anything (a second click does not)."""
        if self.status in (self.Status.UNSUBSCRIBED, self.Status.SUPPRESSED):
            return False
        self.status = self.Status.UNSUBSCRIBED
        self.unsubscribed_at = timezone.now()
        self.save(update_fields=["status", "unsubscribed_at"])
        self.consents.create(action=Consent.Action.UNSUBSCRIBE, ip=ip, user_agent=user_agent[:1000], wording=wording)
        return True


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
