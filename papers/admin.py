"""The catalogue in the admin: papers (search by arXiv id or title), topics (with the papers each matches today, which
editors correct with examples) and the fetches from the live sources."""

import re
from datetime import UTC

from django.conf import settings
from django.contrib import admin, messages
from django.contrib.admin.utils import unquote
from django.core.exceptions import PermissionDenied
from django.db import models
from django.db.models import Count, OuterRef, Subquery
from django.db.models.functions import Coalesce
from django.http import Http404
from django.shortcuts import redirect
from django.urls import path, reverse
from django.utils import timezone
from django.utils.html import format_html_join
from django.views.decorators.http import require_POST

from papers import views
from papers.matching import Query, build_index, topic_examples
from papers.models import FetchRun, Paper, Topic, TopicExample
from papers.sources import normalise_arxiv_id

PREVIEW_WINDOW = timezone.timedelta(hours=48)
PREVIEW_LIMIT = 15


@admin.register(Paper)
class PaperAdmin(admin.ModelAdmin):
    list_display = ["arxiv_id", "title", "upvotes", "num_comments", "primary_category", "published_at", "first_seen_at"]
    list_filter = ["source", "first_seen_at", "published_at", "primary_category"]
    # Titles only: words of the abstract would scan every abstract (1.4 s at 50,000 papers on PostgreSQL).
    search_fields = ["title"]
    search_help_text = "An arXiv id (2401.04088, with or without its version) or words of the title."
    # No date_hierarchy: it reads the distinct years and months of every matching paper on each page (a search
    # scanned the table three times instead of once); the "first seen" filter offers today, 7 days, month and year.
    readonly_fields = ["raw_title", "first_seen_at", "updated_at", "links"]
    show_full_result_count = False
    formfield_overrides = {models.URLField: {"assume_scheme": "https"}}
    fieldsets = [
        (None, {"fields": ["arxiv_id", "title", "raw_title", "authors", "abstract", "links"]}),
        ("Trending", {"fields": ["upvotes", "num_comments", "published_at", "featured_at", "first_seen_at"]}),
        ("Extras", {"fields": ["github_url", "thumbnail_url", "keywords", "categories", "primary_category", "source"]}),
    ]

    def get_search_results(self, request, queryset, search_term):
        arxiv_id = normalise_arxiv_id(search_term)
        if arxiv_id:
            return queryset.filter(arxiv_id=arxiv_id), False  # the unique index
        return super().get_search_results(request, queryset, search_term)

    @admin.display(description="Links")
    def links(self, paper):
        links = [("arXiv", paper.abs_url), ("PDF", paper.pdf_url), ("Hugging Face", paper.hf_url)]
        if paper.github_url:
            links.append(("Code", paper.github_url))
        return format_html_join(" · ", '<a href="{}" rel="noopener">{}</a>', ((url, name) for name, url in links))


class TopicExampleInline(admin.TabularInline):
    """A topic's examples, newest first: listed and deleted here, added from the preview of the topic's matches.

    They are part of the topic, so the topic's own permissions govern them, as its aliases."""

    model = TopicExample
    extra = 0
    fields = ["paper", "verdict", "created_by", "created_at"]
    readonly_fields = fields
    verbose_name = "example"
    verbose_name_plural = "Examples: editors' corrections, newest first"

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("paper", "created_by")

    @admin.display(description="Verdict")
    def verdict(self, example):
        return example.verdict

    def has_add_permission(self, request, obj=None):
        return False  # from the preview: a shown paper's buttons, or an arXiv id

    def has_view_permission(self, request, obj=None):
        return request.user.has_perm("papers.view_topic") or request.user.has_perm("papers.change_topic")

    def has_change_permission(self, request, obj=None):
        return request.user.has_perm("papers.change_topic")

    def has_delete_permission(self, request, obj=None):
        return request.user.has_perm("papers.change_topic")


@admin.register(Topic)
class TopicAdmin(admin.ModelAdmin):
    list_display = ["name", "slug", "description", "is_active", "display_order", "subscriber_count"]
    list_editable = ["is_active", "display_order"]
    list_filter = ["is_active"]
    search_fields = ["name", "slug", "aliases", "description"]
    prepopulated_fields = {"slug": ["name"]}
    fields = ["name", "slug", "description", "aliases", "is_active", "display_order"]
    inlines = [TopicExampleInline]
    # Below the form, the papers the topic matches today, each with "Not this topic" / "Belongs here" buttons.
    change_form_template = "admin/papers/topic/change_form.html"

    def get_queryset(self, request):
        # A count per topic over the subscriber-topic table alone (an index-only scan of its topic index): 30 ms for
        # 300,000 choices on PostgreSQL, where Count("subscribers", distinct=True) over a join took 170 ms.
        through = Topic.subscribers.through.objects.filter(topic_id=OuterRef("pk")).order_by()
        count = through.values("topic_id").annotate(n=Count("*")).values("n")
        return super().get_queryset(request).annotate(subscriber_total=Coalesce(Subquery(count), 0))

    @admin.display(description="Subscribers", ordering="subscriber_total")
    def subscriber_count(self, topic):
        return topic.subscriber_total

    def get_urls(self):
        mark = self.admin_site.admin_view(require_POST(self.mark_example))
        return [path("<path:object_id>/examples/", mark, name="papers_topic_examples"), *super().get_urls()]

    def render_change_form(self, request, context, add=False, change=False, form_url="", obj=None):
        context["preview"] = matching_preview(obj) if obj is not None and obj.pk else None
        context["may_mark"] = obj is not None and obj.pk is not None and self.has_change_permission(request, obj)
        return super().render_change_form(request, context, add=add, change=change, form_url=form_url, obj=obj)

    def mark_example(self, request, object_id):
        """POST from the preview: store one paper's verdict for the topic, say so, and go back to the topic."""
        topic = self.get_object(request, unquote(object_id))
        if topic is None:
            raise Http404("No such topic.")
        if not self.has_change_permission(request, topic):
            raise PermissionDenied
        back = reverse("admin:papers_topic_change", args=[topic.pk]) + "#matches"
        belongs = {"yes": True, "no": False}.get(request.POST.get("belongs", ""))
        if belongs is None:
            paper, problem = None, "Choose “Not this topic” or “Belongs here”."
        else:
            paper, problem = _paper_from(request.POST)
        if problem:
            messages.error(request, problem)
            return redirect(back)
        TopicExample.objects.update_or_create(
            topic=topic,
            paper=paper,
            defaults={"belongs": belongs, "created_at": timezone.now(), "created_by": request.user},
        )
        verdict = "belonging here" if belongs else "not this topic"
        self.log_change(request, topic, f"Marked {paper.arxiv_id} as {verdict}.")
        if paper.first_seen_at:
            views.forget_ranking(topic, paper.first_seen_at.astimezone(UTC).date())
        messages.success(
            request,
            f"Marked “{paper.title}” ({paper.arxiv_id}) as {verdict}. The preview below uses it now; digests, topic "
            "pages and feeds from their next run.",
        )
        return redirect(back)


# What an operator may paste instead of the bare id: https://arxiv.org/abs/2401.04088 (or /pdf/…, …v2.pdf).
_ARXIV_URL_RE = re.compile(r"^(?:https?://)?(?:www\.)?arxiv\.org/(?:abs|pdf)/|\.pdf$", re.IGNORECASE)


def _paper_from(data):
    """(the paper a POST names by its id or arXiv id, None) or (None, what is wrong with it)."""
    if data.get("paper"):
        value = data["paper"].strip()
        if not (value.isascii() and value.isdigit()):
            return None, f"“{value[:40]}” is not a paper id."
        # Beyond a 64-bit key the database would refuse the number itself.
        paper = Paper.objects.filter(pk=int(value)).first() if len(value) < 19 else None
        return (paper, None) if paper else (None, f"There is no paper with id {value[:40]}.")
    value = data.get("arxiv_id", "").strip()
    if not value:
        return None, "Give the arXiv id of a paper that belongs here, e.g. 2401.04088."
    arxiv_id = normalise_arxiv_id(_ARXIV_URL_RE.sub("", value))
    if not arxiv_id:
        return None, f"“{value[:40]}” is not an arXiv id like 2401.04088."
    paper = Paper.objects.filter(arxiv_id=arxiv_id).first()
    if paper is None:
        return None, f"No paper {arxiv_id} is stored yet: import or fetch it first (Papers lists what is stored)."
    return paper, None


def matching_preview(topic):
    """What the topic page's preview shows: the papers first seen in the last 48 hours that the topic matches, with
    its examples, best first, each with why it matched."""
    since = timezone.now() - PREVIEW_WINDOW
    index = build_index(Paper.objects.filter(first_seen_at__gte=since))
    if not len(index):
        return {"pool_size": 0, "rows": []}
    query = Query.from_topic(topic, topic_examples([topic.pk]).get(topic.pk, ()))
    matches = index.rank(
        query, limit=PREVIEW_LIMIT, min_score=settings.MATCH_MIN_SCORE, relative=settings.MATCH_RELATIVE_SCORE
    )
    verdicts = query.verdicts
    rows = [
        {
            "paper": match.paper,
            "score": match.score,
            "reason": index.explain(query, index.doc_of(match.arxiv_id)),
            "belongs": verdicts.get(match.arxiv_id),
        }
        for match in matches
    ]
    return {"pool_size": len(index), "rows": rows}


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
