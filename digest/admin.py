from django.conf import settings
from django.contrib import admin
from django.db import models
from django.db.models import Count
from django.utils import timezone
from django.utils.html import format_html, format_html_join

from digest.matching import Query, build_index
from digest.models import Delivery, DigestRun, FetchRun, Paper, Topic

PREVIEW_WINDOW = timezone.timedelta(hours=48)


@admin.register(Paper)
class PaperAdmin(admin.ModelAdmin):
    list_display = ["arxiv_id", "title", "upvotes", "num_comments", "primary_category", "published_at", "first_seen_at"]
    list_filter = ["source", "first_seen_at", "published_at", "primary_category"]
    search_fields = ["=arxiv_id", "title", "abstract"]
    date_hierarchy = "first_seen_at"
    readonly_fields = ["raw_title", "first_seen_at", "updated_at", "links"]
    show_full_result_count = False
    formfield_overrides = {models.URLField: {"assume_scheme": "https"}}
    fieldsets = [
        (None, {"fields": ["arxiv_id", "title", "raw_title", "authors", "abstract", "links"]}),
        ("Trending", {"fields": ["upvotes", "num_comments", "published_at", "featured_at", "first_seen_at"]}),
        ("Extras", {"fields": ["github_url", "thumbnail_url", "keywords", "categories", "primary_category", "source"]}),
    ]

    @admin.display(description="Links")
    def links(self, paper):
        links = [("arXiv", paper.abs_url), ("PDF", paper.pdf_url), ("Hugging Face", paper.hf_url)]
        if paper.github_url:
            links.append(("Code", paper.github_url))
        return format_html_join(" · ", '<a href="{}" rel="noopener">{}</a>', ((url, name) for name, url in links))


@admin.register(Topic)
class TopicAdmin(admin.ModelAdmin):
    list_display = ["name", "slug", "description", "is_active", "display_order", "subscriber_count"]
    list_editable = ["is_active", "display_order"]
    list_filter = ["is_active"]
    search_fields = ["name", "slug", "aliases", "description"]
    prepopulated_fields = {"slug": ["name"]}
    readonly_fields = ["matching_preview"]
    fields = ["name", "slug", "description", "aliases", "is_active", "display_order", "matching_preview"]

    def get_queryset(self, request):
        return super().get_queryset(request).annotate(subscriber_total=Count("subscribers", distinct=True))

    @admin.display(description="Subscribers", ordering="subscriber_total")
    def subscriber_count(self, topic):
        return topic.subscriber_total

    @admin.display(description="Papers it matches today")
    def matching_preview(self, topic):
        if topic.pk is None:
            return "Save the topic to see which of today's papers it matches."
        since = timezone.now() - PREVIEW_WINDOW
        index = build_index(Paper.objects.filter(first_seen_at__gte=since))
        if not len(index):
            return "No papers were first seen in the last 48 hours. Import or fetch some to preview matches."
        matches = index.rank(Query.from_topic(topic), limit=15, min_score=settings.MATCH_MIN_SCORE)
        if not matches:
            return f"None of the {len(index)} papers first seen in the last 48 hours match. Try adding aliases."
        rows = format_html_join(
            "",
            '<li><span title="relevance">{}</span> <a href="{}">{}</a> ({})</li>',
            ((f"{m.score:.2f}", m.paper.abs_url, m.paper.title, m.arxiv_id) for m in matches),
        )
        return format_html("<p>Of {} papers first seen in the last 48 hours:</p><ol>{}</ol>", len(index), rows)


@admin.register(DigestRun)
class DigestRunAdmin(admin.ModelAdmin):
    list_display = [
        "started_at",
        "finished_at",
        "pool_size",
        "planned_count",
        "sent_count",
        "failed_count",
        "skipped_count",
    ]
    date_hierarchy = "started_at"


@admin.register(Delivery)
class DeliveryAdmin(admin.ModelAdmin):
    list_display = ["digest_date", "subscriber", "status", "attempts", "message_id", "finished_at"]
    list_filter = ["status", "digest_date"]
    list_select_related = ["subscriber"]
    search_fields = ["subscriber__email", "message_id"]
    raw_id_fields = ["subscriber", "run"]
    readonly_fields = ["papers_sent", "claimed_at", "finished_at", "created_at"]
    exclude = ["paper_ids"]
    show_full_result_count = False

    @admin.display(description="Papers")
    def papers_sent(self, delivery):
        papers = delivery.get_papers()
        if not papers:
            return "None."
        rows = format_html_join(
            "", '<li><a href="{}">{}</a> ({})</li>', ((p.abs_url, p.title, p.arxiv_id) for p in papers)
        )
        return format_html("<ol>{}</ol>", rows)


@admin.register(FetchRun)
class FetchRunAdmin(admin.ModelAdmin):
    list_display = [
        "started_at",
        "source",
        "fetched_count",
        "created_count",
        "updated_count",
        "error_count",
        "finished_at",
    ]
    list_filter = ["source", "started_at"]
    date_hierarchy = "started_at"
    readonly_fields = [field.name for field in FetchRun._meta.fields]

    def has_add_permission(self, request):
        return False
