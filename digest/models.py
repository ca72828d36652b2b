from django.db import models
from django.db.models import Q
from django.utils import timezone

from digest import text


class Paper(models.Model):
    class Source(models.TextChoices):
        HUGGINGFACE = "hf", "Hugging Face daily papers"
        ARXIV = "arxiv", "arXiv API"
        FILE = "file", "Imported file"

    arxiv_id = models.CharField("arXiv id", max_length=32, unique=True)
    title = models.CharField(max_length=1000, help_text="Cleaned for display: whitespace and markup normalised.")
    raw_title = models.CharField(max_length=1000, help_text="The title exactly as the source gave it.")
    abstract = models.TextField(blank=True)
    authors = models.JSONField(default=list, blank=True)
    published_at = models.DateTimeField(null=True, blank=True, db_index=True)
    featured_at = models.DateTimeField(
        null=True, blank=True, help_text="When Hugging Face daily papers listed it, if it did."
    )
    first_seen_at = models.DateTimeField(default=timezone.now, db_index=True)
    updated_at = models.DateTimeField(auto_now=True)
    upvotes = models.PositiveIntegerField(default=0)
    num_comments = models.PositiveIntegerField(default=0)
    github_url = models.URLField(max_length=500, blank=True)
    thumbnail_url = models.URLField(max_length=500, blank=True)
    keywords = models.JSONField(default=list, blank=True)
    categories = models.JSONField(default=list, blank=True)
    primary_category = models.CharField(max_length=32, blank=True)
    source = models.CharField(max_length=8, choices=Source.choices, default=Source.FILE)
    # Derived by digest.text.search_text; never edited by hand (see refresh_search_text).
    search_title = models.TextField(blank=True, editable=False)
    search_abstract = models.TextField(blank=True, editable=False)

    class Meta:
        ordering = ["-first_seen_at", "arxiv_id"]
        # The admin's category filter lists the distinct categories on every page: an index-only scan, not the table.
        indexes = [models.Index(fields=["primary_category"], name="paper_primary_category")]

    def __str__(self):
        return f"{self.arxiv_id}: {self.title}"

    def save(self, *args, **kwargs):
        self.refresh_search_text()
        super().save(*args, **kwargs)

    def refresh_search_text(self):
        self.search_title = text.search_text(self.title)
        # Keywords (Hugging Face's ai_keywords) read as part of the abstract: they name what the paper is about.
        self.search_abstract = text.search_text(" . ".join([self.abstract, *self.keywords]))

    @property
    def abs_url(self):
        return f"https://arxiv.org/abs/{self.arxiv_id}"

    @property
    def pdf_url(self):
        return f"https://arxiv.org/pdf/{self.arxiv_id}"

    @property
    def hf_url(self):
        return f"https://huggingface.co/papers/{self.arxiv_id}"

    def get_short_authors(self, limit=3):
        names = list(self.authors)
        if len(names) <= limit:
            return ", ".join(names)
        return ", ".join(names[:limit]) + " et al."


class Topic(models.Model):
    name = models.CharField(max_length=100, unique=True)
    slug = models.SlugField(max_length=100, unique=True)
    description = models.CharField(max_length=200, blank=True, help_text="One line shown to readers when they sign up.")
    aliases = models.TextField(
        blank=True,
        help_text="Other names and abbreviations readers and papers use, one per line (e.g. GNN, message passing).",
    )
    is_active = models.BooleanField("active", default=True, help_text="Inactive topics are hidden from sign-up.")
    display_order = models.PositiveSmallIntegerField(default=100)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["display_order", "name"]

    def __str__(self):
        return self.name

    def get_alias_list(self):
        return [line.strip() for line in self.aliases.splitlines() if line.strip()]


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


class FetchRun(models.Model):
    """One fetch from a live source (Hugging Face or arXiv), with what it brought in."""

    class Source(models.TextChoices):
        HUGGINGFACE = "hf", "Hugging Face daily papers"
        ARXIV = "arxiv", "arXiv API"

    source = models.CharField(max_length=8, choices=Source.choices)
    started_at = models.DateTimeField(default=timezone.now, db_index=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    parameters = models.JSONField(default=dict, blank=True, help_text="The day, categories or query fetched.")
    fetched_count = models.PositiveIntegerField("fetched", default=0)
    created_count = models.PositiveIntegerField("created", default=0)
    updated_count = models.PositiveIntegerField("updated", default=0)
    error_count = models.PositiveIntegerField("errors", default=0)
    error = models.TextField(blank=True, help_text="Why the fetch failed, or the items it rejected.")

    class Meta:
        ordering = ["-started_at"]

    def __str__(self):
        return f"{self.get_source_display()} at {self.started_at:%Y-%m-%d %H:%M}"

    @property
    def succeeded(self):
        return self.finished_at is not None and not self.error


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
