from django.db import models
from django.db.models import Q
from django.utils import timezone

from papers.models import Paper


class DigestRun(models.Model):
    started_at = models.DateTimeField(default=timezone.now, db_index=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    pool_size = models.PositiveIntegerField(default=0)
    planned_count = models.PositiveIntegerField("planned", default=0)
    sent_count = models.PositiveIntegerField("sent", default=0)
    failed_count = models.PositiveIntegerField("failed", default=0)
    skipped_count = models.PositiveIntegerField("skipped", default=0)
    note = models.TextField(blank=True)

    class Meta:
        ordering = ["-started_at"]

    def __str__(self):
        return f"Digest run {self.started_at:%Y-%m-%d %H:%M}"

    @property
    def duration(self):
        if self.finished_at is None:
            return None
        return self.finished_at - self.started_at


class Delivery(models.Model):
    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        SENDING = "sending", "Sending"
        SENT = "sent", "Sent"
        FAILED = "failed", "Failed"
        SKIPPED = "skipped", "Skipped"

    FINAL_STATUSES = (Status.SENT, Status.FAILED, Status.SKIPPED)

    subscriber = models.ForeignKey("subscriptions.Subscriber", on_delete=models.CASCADE, related_name="deliveries")
    run = models.ForeignKey(DigestRun, on_delete=models.SET_NULL, null=True, blank=True, related_name="deliveries")
    digest_date = models.DateField(help_text="The reader's local date this digest is for.")
    status = models.CharField(max_length=8, choices=Status.choices, default=Status.PENDING)
    # The papers in the email, best first. A list on the row rather than a join table: a run writes one row per
    # reader, and "never send a paper twice" reads only the reader's recent rows.
    paper_ids = models.JSONField(default=list, blank=True)
    # What the email showed beside each paper (its matched topics, its upvotes then) and in the footer, so "view in
    # browser" shows the email as sent: {"labels": [[...], ...], "upvotes": [...], "topics": [...]}.
    shown = models.JSONField(default=dict, blank=True)
    claim_token = models.UUIDField(null=True, blank=True, editable=False, help_text="Which send attempt holds it.")
    message_id = models.CharField(max_length=255, blank=True)
    error = models.TextField(blank=True, help_text="Why it failed or was skipped.")
    attempts = models.PositiveSmallIntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True)
    claimed_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        verbose_name_plural = "deliveries"
        ordering = ["-digest_date", "-id"]
        constraints = [
            models.UniqueConstraint(fields=["subscriber", "digest_date"], name="one_delivery_per_subscriber_per_day"),
            models.CheckConstraint(
                condition=Q(status__in=["pending", "sending", "sent", "failed", "skipped"]),
                name="delivery_status_valid",
            ),
        ]
        indexes = [
            # The admin's list, newest first (ORDER BY digest_date DESC, id DESC), unfiltered and by status.
            models.Index(fields=["digest_date", "id"], name="delivery_date_id"),
            models.Index(fields=["status", "digest_date", "id"], name="delivery_status_date_id"),
            # Finding the digest a provider's report or a reader's complaint names.
            models.Index(fields=["message_id"], name="delivery_message_id"),
        ]

    def __str__(self):
        return f"Digest for subscriber {self.subscriber_id} on {self.digest_date}"

    def get_papers(self):
        """The papers sent, in the order the email listed them (papers deleted since are left out)."""
        by_id = Paper.objects.in_bulk(self.paper_ids)
        return [by_id[paper_id] for paper_id in self.paper_ids if paper_id in by_id]


class Feedback(models.Model):
    """A reader's "more like this" or "less like this" on a paper, from the links in their digest (digest.feedback).

    One per reader and paper: a second click changes the direction. It nudges the reader's next rankings
    (digest.selection) and is listed, with an undo, in their preference center.
    """

    class Direction(models.TextChoices):
        MORE = "more", "More like this"
        LESS = "less", "Less like this"

    subscriber = models.ForeignKey("subscriptions.Subscriber", on_delete=models.CASCADE, related_name="feedback")
    paper = models.ForeignKey(Paper, on_delete=models.CASCADE, related_name="feedback")
    direction = models.CharField(max_length=4, choices=Direction.choices)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name_plural = "feedback"
        ordering = ["-updated_at", "-id"]
        constraints = [
            models.UniqueConstraint(fields=["subscriber", "paper"], name="one_feedback_per_subscriber_per_paper"),
            models.CheckConstraint(condition=Q(direction__in=["more", "less"]), name="feedback_direction_valid"),
        ]

    def __str__(self):
        return f"{self.get_direction_display()} {self.paper_id} from subscriber {self.subscriber_id}"
