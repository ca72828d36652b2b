from collections import defaultdict
from functools import partial

from django.contrib import admin, messages
from django.contrib.admin.options import IncorrectLookupParameters
from django.db import transaction
from django.db.models import OuterRef, Q, Subquery
from django.db.models.functions import Lower
from django.urls import reverse
from django.utils import timezone
from django.utils.html import format_html, format_html_join
from django.utils.http import urlencode
from django.utils.text import Truncator

from digest import planning, tasks
from digest.models import Delivery, DigestRun, Feedback
from subscriptions.admin import WHOLE_ADDRESS, SubscriberAdmin, plural
from subscriptions.models import Subscriber


def deliveries_url(**filters):
    return reverse("admin:digest_delivery_changelist") + "?" + urlencode(filters)


class RunOutcomeFilter(admin.SimpleListFilter):
    title = "outcome"
    parameter_name = "outcome"

    def lookups(self, request, model_admin):
        return [("planned", "Planned digests"), ("failures", "With failures"), ("unfinished", "Unfinished")]

    def queryset(self, request, queryset):
        wanted = {
            "planned": Q(planned_count__gt=0),
            "failures": Q(failed_count__gt=0),
            "unfinished": Q(finished_at__isnull=True),
        }.get(self.value())
        return queryset.filter(wanted) if wanted is not None else queryset


@admin.register(DigestRun)
class DigestRunAdmin(admin.ModelAdmin):
    list_display = [
        "started_at",
        "finished_at",
        "run_duration",
        "pool_size",
        "planned_count",
        "sent_count",
        "failures",
        "skipped_count",
        "deliveries_link",
    ]
    list_filter = [RunOutcomeFilter]
    date_hierarchy = "started_at"
    # Runs are the job's own record: nothing to add or edit by hand.
    readonly_fields = [field.name for field in DigestRun._meta.fields] + ["run_duration"]

    def has_add_permission(self, request):
        return False

    @admin.display(description="Duration")
    def run_duration(self, run):
        duration = run.duration
        if duration is None:
            return "Running" if run.planned_count else "-"
        seconds = duration.total_seconds()
        if seconds < 60:
            return f"{seconds:.1f} s"
        minutes, seconds = divmod(round(seconds), 60)
        if minutes < 60:
            return f"{minutes} min {seconds} s"
        hours, minutes = divmod(minutes, 60)
        return f"{hours} h {minutes} min"

    @admin.display(description="Failed", ordering="failed_count")
    def failures(self, run):
        if not run.failed_count:
            return 0
        return format_html(
            '<a class="run-failures" href="{}">{}</a>',
            deliveries_url(run__id__exact=run.pk, status__exact=Delivery.Status.FAILED),
            run.failed_count,
        )

    @admin.display(description="Deliveries")
    def deliveries_link(self, run):
        if not run.planned_count:
            return "-"
        return format_html('<a href="{}">{}</a>', deliveries_url(run__id__exact=run.pk), "Deliveries")


class RunFilter(admin.SimpleListFilter):
    """The run a changelist link came from (a digest run's "Deliveries" link). No choices otherwise: a year of runs,
    one every 15 minutes, is too many to list."""

    title = "digest run"
    parameter_name = "run__id__exact"

    def lookups(self, request, model_admin):
        value = self.value()
        if not value:
            return []
        if not value.isdigit():
            raise IncorrectLookupParameters(f"Not a run id: {value!r}")
        run = DigestRun.objects.filter(pk=value).first()
        return [(value, str(run) if run else f"Run {value} (deleted)")]

    def queryset(self, request, queryset):
        if self.value():
            return queryset.filter(run_id=self.value())
        return queryset


@admin.register(Delivery)
class DeliveryAdmin(admin.ModelAdmin):
    list_display = [
        "digest_date",
        "subscriber_email",
        "status",
        "attempts",
        "papers_count",
        "short_error",
        "message_id",
        "finished_at",
    ]
    # DateFieldListFilter offers fixed ranges (today, past 7 days, this month, this year): no query for its choices,
    # unlike date_hierarchy, which reads the distinct dates of a million rows.
    list_filter = ["status", "digest_date", RunFilter]
    list_select_related = ["subscriber"]
    # Only the date sorts: it has an index in that order; sorting a million rows by anything else takes a second.
    sortable_by = ["digest_date"]
    search_fields = ["subscriber__email", "message_id"]  # see get_search_results
    search_help_text = "A reader's whole address (exact), part of one, or a whole Message-ID."
    raw_id_fields = ["subscriber", "run"]
    readonly_fields = ["papers_sent", "claimed_at", "finished_at", "created_at"]
    exclude = ["paper_ids", "shown"]
    show_full_result_count = False
    # No "Show counts" in the filters: counting each status and date range reads a million rows (0.34 s).
    show_facets = admin.ShowFacets.NEVER
    actions = ["retry_failed"]
    max_listed_readers = 1000

    def has_add_permission(self, request):
        # Planning makes them; a hand-made one would stop that reader's digest for its day (one per reader and day).
        return False

    def get_actions(self, request):
        # A delivery is the record that a digest went out, and what stops a second one: one at a time, on its page.
        actions = super().get_actions(request)
        actions.pop("delete_selected", None)
        return actions

    def get_search_results(self, request, queryset, search_term):
        """Searches that use indexes. The readers are found first (a whole address through the unique index on
        Lower(email), part of one among the 100,000 addresses), then their rows through (subscriber, digest_date),
        or a Message-ID through its own index. Django's default, icontains over a million joined rows, took 1.2 s;
        a subquery OR'd with the Message-ID made PostgreSQL filter every row (0.5 s), so the ids are listed."""
        term = search_term.strip()
        if not term:
            return queryset, False
        bare = term.strip("<>")
        message_ids = {term, bare, f"<{bare}>"}  # pasted with or without its brackets
        readers = Subscriber.objects.order_by()
        if WHOLE_ADDRESS.fullmatch(bare):
            # A Message-ID without its brackets looks like an address too: both are tried.
            readers = readers.alias(email_lower=Lower("email")).filter(email_lower=bare.lower())
        else:
            readers = readers.filter(email__icontains=bare)
        reader_ids = list(readers.values_list("pk", flat=True)[: self.max_listed_readers + 1])
        if len(reader_ids) > self.max_listed_readers:
            # Part of very many addresses ("example.org"). As a join, PostgreSQL guesses few readers and reads all
            # their rows (1.2 s for every address); as a filter (the hashed subquery the OR makes), it walks the
            # newest rows and stops at a page of matches, which come often when so many readers match.
            readers = Q(subscriber__in=readers.values("pk"))
        else:
            readers = Q(subscriber_id__in=reader_ids)
        return queryset.filter(readers | Q(message_id__in=message_ids)), False

    @admin.display(description="Subscriber")
    def subscriber_email(self, delivery):
        url = reverse("admin:subscriptions_subscriber_change", args=[delivery.subscriber_id])
        return format_html('<a href="{}">{}</a>', url, delivery.subscriber.email)

    @admin.display(description="Papers")
    def papers_count(self, delivery):
        return len(delivery.paper_ids)

    @admin.display(description="Error")
    def short_error(self, delivery):
        return Truncator(delivery.error).chars(80)

    @admin.display(description="Papers")
    def papers_sent(self, delivery):
        papers = delivery.get_papers()
        if not papers:
            return "None."
        rows = format_html_join(
            "", '<li><a href="{}">{}</a> ({})</li>', ((p.abs_url, p.title, p.arxiv_id) for p in papers)
        )
        return format_html("<ol>{}</ol>", rows)

    @admin.action(description="Retry the selected failed deliveries", permissions=["change"])
    def retry_failed(self, request, queryset):
        """Put failed deliveries back to pending and queue them, counted again in their own run.

        Each run's failed_count is lowered by the deliveries taken back (and a line added to its note), so when the
        retries finish, sent + failed + skipped again equals planned. Deliveries interrupted while sending stay
        failed: they may have reached the reader, and the service sends at most once."""
        operator = request.user.get_username()
        failed = Delivery.objects.filter(pk__in=queryset.values("pk"), status=Delivery.Status.FAILED)
        interrupted = failed.filter(interrupted=True).count()
        now = timezone.now()
        with transaction.atomic():
            retried = failed.filter(interrupted=False).select_for_update().order_by("id")
            rows = list(retried.values_list("id", "run"))
            by_run = defaultdict(list)
            for delivery_id, run_id in rows:
                by_run[run_id].append(delivery_id)
            for run_id, ids in by_run.items():
                for start in range(0, len(ids), 500):
                    Delivery.objects.filter(id__in=ids[start : start + 500]).retry_failed()
                if run_id is not None:
                    line = f"{now:%Y-%m-%d %H:%M} UTC: {plural(len(ids), 'failed digest')} retried by {operator}.\n"
                    DigestRun.objects.take_back_failures(run_id, len(ids), line)
            if by_run:
                transaction.on_commit(partial(queue_deliveries, dict(by_run)))
        if rows:
            self.message_user(
                request,
                f"Queued {plural(len(rows), 'failed delivery', 'failed deliveries')} to be sent again. Their runs' "
                "failed counts were lowered to match; the new outcome is counted when they finish.",
                messages.SUCCESS,
            )
        if interrupted:
            self.message_user(
                request,
                f"Left {plural(interrupted, 'delivery', 'deliveries')} failed: interrupted while sending, "
                f"{'it' if interrupted == 1 else 'they'} may have reached the reader, and nobody gets a digest twice.",
                messages.WARNING,
            )
        if not rows and not interrupted:
            self.message_user(request, "None of the selected deliveries had failed.", messages.WARNING)


def queue_deliveries(by_run):
    """Queue send_deliveries for each run's pending deliveries, in chunks of DIGEST_CHUNK_SIZE."""
    for run_id, ids in by_run.items():
        for chunk in planning.chunks(ids):
            tasks.send_deliveries.delay(chunk, run_id)


@admin.register(Feedback)
class FeedbackAdmin(admin.ModelAdmin):
    """Readers' "more like this" and "less like this" on papers, from the links in their digests (read-only)."""

    list_display = ["updated_at", "direction", "paper", "subscriber"]
    list_filter = ["direction", "updated_at"]
    list_select_related = ["paper", "subscriber"]
    search_fields = ["=paper__arxiv_id"]
    search_help_text = "A paper's arXiv id."
    show_full_result_count = False
    show_facets = admin.ShowFacets.NEVER
    readonly_fields = ["subscriber", "paper", "direction", "created_at", "updated_at"]

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False


# Readers know nothing of digests; the reader list gains each reader's last digest here.
admin.site.unregister(Subscriber)


@admin.register(Subscriber)
class ReaderAdmin(SubscriberAdmin):
    list_display = [*SubscriberAdmin.list_display, "last_delivery"]
    readonly_fields = [*SubscriberAdmin.readonly_fields, "recent_deliveries"]
    recent_delivery_count = 20

    def get_queryset(self, request):
        # The last delivery of each reader: the unique (subscriber, digest_date) index read backwards, one row each.
        last = Delivery.objects.filter(subscriber=OuterRef("pk")).order_by("-digest_date")
        return (
            super()
            .get_queryset(request)
            .annotate(
                last_delivery_date=Subquery(last.values("digest_date")[:1]),
                last_delivery_status=Subquery(last.values("status")[:1]),
            )
        )

    @admin.display(description="Last delivery")
    def last_delivery(self, subscriber):
        if subscriber.last_delivery_date is None:
            return "-"
        status = Delivery.Status(subscriber.last_delivery_status).label.lower()
        return f"{subscriber.last_delivery_date:%Y-%m-%d} ({status})"

    @admin.display(description="Deliveries")
    def recent_deliveries(self, subscriber):
        """The reader's last digests, newest first, each linking to its page, and to all of them."""
        if subscriber.pk is None:
            return "-"
        fields = ["id", "digest_date", "status", "paper_ids", "error"]
        recent = list(subscriber.deliveries.order_by("-digest_date").only(*fields)[: self.recent_delivery_count])
        if not recent:
            return "None yet."
        rows = format_html_join(
            "",
            '<tr><td><a href="{}">{}</a></td><td>{}</td><td>{}</td><td>{}</td></tr>',
            (
                (
                    reverse("admin:digest_delivery_change", args=[delivery.pk]),
                    delivery.digest_date.isoformat(),
                    delivery.get_status_display(),
                    len(delivery.paper_ids),
                    Truncator(delivery.error).chars(80),
                )
                for delivery in recent
            ),
        )
        count = subscriber.deliveries.count() if len(recent) == self.recent_delivery_count else len(recent)
        return format_html(
            '<table class="reader-deliveries"><thead><tr><th>Digest date</th><th>Status</th><th>Papers</th>'
            '<th>Error</th></tr></thead><tbody>{}</tbody></table><p><a href="{}">All their deliveries ({})</a></p>',
            rows,
            deliveries_url(q=subscriber.email),
            f"{count:,}",
        )
