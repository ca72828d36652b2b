"""The catalogue: papers, the topics readers choose from, and the fetches that bring papers in.

The tables keep the names they had when these models lived in the digest app (db_table), so moving them changed no
row and no deployed database."""

from django.conf import settings
from django.db import models
from django.utils import timezone

from papers import text


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
    # Derived by papers.text.search_text; never edited by hand (see refresh_search_text).
    search_title = models.TextField(blank=True, editable=False)
    search_abstract = models.TextField(blank=True, editable=False)
    # The title and abstract's sentence embedding, stored the first time matching needs it (papers.embeddings).
    embedding = models.BinaryField(null=True, editable=False)
    embedding_key = models.CharField(max_length=40, blank=True, editable=False)

    class Meta:
        db_table = "digest_paper"
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

    def get_snippet(self, length=280):
        """The abstract on one line, at most `length` characters for a card or a feed entry (text.snippet: cut after
        a sentence, else between words)."""
        return text.snippet(self.abstract, length)

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
        db_table = "digest_topic"
        ordering = ["display_order", "name"]

    def __str__(self):
        return self.name

    def get_alias_list(self):
        return [line.strip() for line in self.aliases.splitlines() if line.strip()]


class TopicExample(models.Model):
    """An editor's verdict on one paper for one topic: it belongs here, or it is not this topic. Matching honours it
    from the next run on (papers.matching, docs/matching.md#examples-editors-corrections)."""

    topic = models.ForeignKey(Topic, on_delete=models.CASCADE, related_name="examples")
    paper = models.ForeignKey(Paper, on_delete=models.CASCADE, related_name="topic_examples")
    belongs = models.BooleanField(
        help_text="Belongs here: the paper always matches the topic. Not this topic: it never does. Either way, "
        "papers much like it follow a little."
    )
    created_at = models.DateTimeField(default=timezone.now, help_text="When the current verdict was given.")
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        help_text="Who gave it (empty once their user is deleted).",
    )

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [models.UniqueConstraint(fields=["topic", "paper"], name="topic_example_once_per_paper")]

    def __str__(self):
        verdict = "belongs to" if self.belongs else "is not"
        return f"{self.paper.arxiv_id} {verdict} {self.topic.name}"

    @property
    def verdict(self):
        return "Belongs here" if self.belongs else "Not this topic"


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
        db_table = "digest_fetchrun"
        ordering = ["-started_at"]

    def __str__(self):
        return f"{self.get_source_display()} at {self.started_at:%Y-%m-%d %H:%M}"

    @property
    def succeeded(self):
        return self.finished_at is not None and not self.error
