import csv
import re
from collections import defaultdict

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.options import IncorrectLookupParameters
from django.db.models import Exists, OuterRef, Prefetch
from django.db.models.functions import Lower
from django.http import HttpResponseRedirect, StreamingHttpResponse
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils import timezone
from django.utils.html import format_html

from papers.models import Topic
from subscriptions import signup
from subscriptions.forms import (
    SEND_WHEN_EMPTY_CHOICES,
    SEND_WHEN_EMPTY_LABEL,
    KeywordsField,
    is_true,
    normalise_email,
)
from subscriptions.models import (
    MAX_KEYWORD_LENGTH,
    MAX_KEYWORDS,
    Consent,
    ErasedAddress,
    MailEvent,
    PurgeRun,
    Subscriber,
)

EXPORT_BATCH = 2000
CSV_HEADER = ["email", "status", "topics", "keywords", "time_zone", "send_hour", "frequency", "created", "confirmed"]
# A spreadsheet runs a cell that starts with one of these as a formula; readers choose their own keywords.
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


# A whole address (something@domain.tld): searched exactly, through the unique index on Lower(email).
WHOLE_ADDRESS = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+")


def plural(count, word, words=None):
    return f"{count:,} {word if count == 1 else (words or word + 's')}"


def preview_url(subscriber_id):
    """The exact digest preview for a subscriber (digest/admin_views.py)."""
    return reverse("digest_preview", args=[subscriber_id])


def csv_cell(value):
    text = "" if value is None else str(value)
    return "'" + text if text.startswith(FORMULA_START) else text


class Echo:
    """A file whose write() hands back what it was given, so csv.writer makes lines for a streaming response."""

    def write(self, value):
        return value


class ConsentInline(admin.TabularInline):
    model = Consent
    extra = 0
    can_delete = False
    fields = ["at", "action", "ip", "user_agent", "form_version", "wording", "details"]
    readonly_fields = fields

    def has_add_permission(self, request, obj=None):
        return False


class MailEventInline(admin.TabularInline):
    """What the provider reported about this reader's mail: bounces, complaints, unsubscribes (read-only)."""

    model = MailEvent
    extra = 0
    can_delete = False
    fields = ["occurred_at", "esp", "event_type", "reject_reason", "is_soft_bounce", "recovered", "suppressed"]
    readonly_fields = [*fields, "description", "mta_response"]
    ordering = ["-occurred_at"]
    max_num = 0

    def has_add_permission(self, request, obj=None):
        return False


class SubscriberForm(forms.ModelForm):
    # As the reader's own form shows them (subscriptions.forms), not as the JSON and the checkbox they are stored as.
    keywords = KeywordsField(
        required=False,
        help_text=f"One per line (commas also separate): up to {MAX_KEYWORDS}, of up to {MAX_KEYWORD_LENGTH} "
        "characters each.",
    )
    send_when_empty = forms.TypedChoiceField(
        label=SEND_WHEN_EMPTY_LABEL, choices=SEND_WHEN_EMPTY_CHOICES, coerce=is_true, initial=False
    )

    class Meta:
        model = Subscriber
        fields = [
            "email",
            "status",
            "status_reason",
            "topics",
            "keywords",
            "time_zone",
            "send_hour",
            "frequency",
            "weekly_day",
            "papers_per_email",
            "send_when_empty",
        ]

    def clean_email(self):
        # The sign-up form's spelling (lower case, an IDN domain in Unicode), so one mailbox is one row here too.
        email = normalise_email(self.cleaned_data["email"].strip())
        # A new subscriber, or an existing one given another address: either would add an erased address back.
        if email != self.instance.email and ErasedAddress.is_erased(email):
            raise forms.ValidationError(
                "The owner of this address asked for their data to be erased. Only they can subscribe it again, "
                "by signing up on the site."
            )
        return email


class TopicFilter(admin.SimpleListFilter):
    """Subscribers who chose a topic, with EXISTS: filtering on the many-to-many join would make the admin add
    DISTINCT to the list and its count."""

    title = "topic"
    parameter_name = "topics__id__exact"  # the parameter Django's own filter used, so saved links keep working

    def lookups(self, request, model_admin):
        return [(str(pk), name) for pk, name in Topic.objects.values_list("pk", "name")]

    def queryset(self, request, queryset):
        value = self.value()
        if not value:
            return queryset
        if not value.isdigit():
            raise IncorrectLookupParameters(f"Not a topic id: {value!r}")
        chose = Subscriber.topics.through.objects.filter(subscriber_id=OuterRef("pk"), topic_id=value)
        return queryset.filter(Exists(chose))


@admin.register(Subscriber)
class SubscriberAdmin(admin.ModelAdmin):
    form = SubscriberForm
    list_display = ["email", "status", "frequency", "topic_names", "confirmed_at"]
    list_filter = ["status", TopicFilter, "frequency"]
    search_fields = ["email"]  # see get_search_results
    search_help_text = "A whole address finds that subscriber at once; part of one searches every address."
    filter_horizontal = ["topics"]
    readonly_fields = [
        "created_at",
        "confirmed_at",
        "unsubscribed_at",
        "pending_since",
        "pending_choices",
        "digest_preview",
    ]
    inlines = [ConsentInline, MailEventInline]
    actions = ["preview_digest", "pause_selected", "suppress_selected", "export_csv", "erase_selected"]
    show_full_result_count = False
    # No "Show counts" in the filters: a count per status, frequency and topic took 1.6 s at 100,000 readers.
    show_facets = admin.ShowFacets.NEVER

    def get_queryset(self, request):
        return (
            super()
            .get_queryset(request)
            .prefetch_related(Prefetch("topics", queryset=Topic.objects.only("id", "name")))
        )

    def get_search_results(self, request, queryset, search_term):
        term = search_term.strip().lower()
        if WHOLE_ADDRESS.fullmatch(term):
            # Addresses are stored lower-case; the unique index is on Lower(email).
            return queryset.alias(email_lower=Lower("email")).filter(email_lower=term), False
        return super().get_search_results(request, queryset, search_term)

    def has_delete_permission(self, request, obj=None):
        # Consent records are protected; "Erase personal data" deletes a reader properly, keeping only a hash.
        return False

    @admin.display(description="Topics")
    def topic_names(self, subscriber):
        return ", ".join(topic.name for topic in subscriber.topics.all())

    @admin.display(description="Pending preferences")
    def pending_choices(self, subscriber):
        """The choices kept aside, as the confirm page shows them to the reader: topics by name, not by id."""
        if subscriber.pending_preferences is None:
            return "-"
        return render_to_string(
            "subscriptions/_choices.html", signup.choices_context(signup.pending_choices(subscriber))
        )

    @admin.display(description="Preview digest")
    def digest_preview(self, subscriber):
        if subscriber.pk is None:
            return "Save the subscriber first."
        url = preview_url(subscriber.pk)
        return format_html('<a href="{}">The digest this reader would get today, and a test send</a>', url)

    @admin.action(description="Preview digest", permissions=["view"])
    def preview_digest(self, request, queryset):
        ids = list(queryset.values_list("pk", flat=True)[:2])
        if len(ids) != 1:
            self.message_user(request, "Select one subscriber to preview.", messages.WARNING)
            return None
        return HttpResponseRedirect(preview_url(ids[0]))

    @admin.action(description="Pause the selected subscribers", permissions=["change"])
    def pause_selected(self, request, queryset):
        operator = request.user.get_username()
        paused = skipped = 0
        for subscriber in Subscriber.objects.filter(pk__in=queryset.values("pk")).order_by("pk"):
            # A consent record like the reader's own pause, saying who did it.
            if subscriber.pause(wording=f"Paused by an operator ({operator})", details={"operator": operator}):
                paused += 1
            else:
                skipped += 1
        if paused:
            self.message_user(request, f"Paused {plural(paused, 'subscriber')}.", messages.SUCCESS)
        if skipped:
            self.message_user(
                request, f"Left {plural(skipped, 'subscriber')} as they were: only active ones pause.", messages.WARNING
            )

    @admin.action(description="Suppress the selected subscribers (never email them again)", permissions=["change"])
    def suppress_selected(self, request, queryset):
        reason = f"Suppressed by an operator ({request.user.get_username()})"
        count = Subscriber.objects.filter(pk__in=queryset.values("pk")).suppress(reason)
        self.message_user(request, f"Suppressed {plural(count, 'subscriber')}.", messages.SUCCESS)

    @admin.action(description="Export the selected subscribers as CSV", permissions=["view"])
    def export_csv(self, request, queryset):
        """One line per subscriber, streamed in batches: a hundred thousand rows never sit in memory at once. Plain
        rows, not model instances, and one query for the topics of each batch (with a topic name map read once)."""
        selected = Subscriber.objects.filter(pk__in=queryset.values("pk")).order_by("pk")
        fields = ["pk", "email", "status", "keywords", "time_zone", "send_hour", "frequency", "created_at"]
        topics = {pk: (order, name) for order, (pk, name) in enumerate(Topic.objects.values_list("pk", "name"))}
        chosen = Subscriber.topics.through.objects.order_by()
        writer = csv.writer(Echo())

        def batches(size=EXPORT_BATCH):
            batch = []
            for row in selected.values_list(*fields, "confirmed_at").iterator(chunk_size=size):
                batch.append(row)
                if len(batch) == size:
                    yield batch
                    batch = []
            if batch:
                yield batch

        def lines():
            yield writer.writerow(CSV_HEADER)
            for batch in batches():
                names = defaultdict(list)
                pairs = chosen.filter(subscriber_id__in=[row[0] for row in batch]).values_list("subscriber", "topic")
                for subscriber_id, topic_id in pairs:
                    if topic_id in topics:
                        names[subscriber_id].append(topics[topic_id])
                for pk, email, status, keywords, zone, hour, frequency, created, confirmed in batch:
                    yield writer.writerow(
                        [
                            csv_cell(email),
                            status,
                            csv_cell("; ".join(name for _order, name in sorted(names[pk]))),
                            csv_cell("; ".join(keywords)),
                            str(zone),
                            hour,
                            frequency,
                            created.isoformat(),
                            confirmed.isoformat() if confirmed else "",
                        ]
                    )

        response = StreamingHttpResponse(lines(), content_type="text/csv; charset=utf-8")
        filename = f"subscribers-{timezone.now():%Y-%m-%d}.csv"
        response["Content-Disposition"] = f'attachment; filename="{filename}"'
        return response

    @admin.action(
        description="Erase personal data of the selected subscribers (keeps only a hash of the address)",
        permissions=["change"],
    )
    def erase_selected(self, request, queryset):
        count = 0
        for subscriber in Subscriber.objects.filter(pk__in=queryset.values("pk")):
            subscriber.erase()
            count += 1
        self.message_user(request, f"Erased {count} subscriber{'s' if count != 1 else ''}.", messages.SUCCESS)


@admin.register(ErasedAddress)
class ErasedAddressAdmin(admin.ModelAdmin):
    list_display = ["email_hash", "erased_at"]
    search_fields = ["email_hash"]
    readonly_fields = ["email_hash", "erased_at"]

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False


class RecordAdmin(admin.ModelAdmin):
    """A record the site keeps of what happened (a provider's report, a purge): shown, never added, edited or
    deleted by hand."""

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


@admin.register(MailEvent)
class MailEventAdmin(RecordAdmin):
    """Bounces, complaints and unsubscribes reported by the provider's webhooks (subscriptions/tracking.py)."""

    list_display = [
        "occurred_at",
        "esp",
        "event_type",
        "reject_reason",
        "is_soft_bounce",
        "recovered",
        "suppressed",
        "subscriber",
    ]
    list_filter = ["event_type", "esp", "is_soft_bounce", "suppressed", "occurred_at"]
    search_fields = ["=event_id", "=message_id"]
    search_help_text = "A provider's event id or message id, whole."
    list_select_related = ["subscriber"]
    show_full_result_count = False
    show_facets = admin.ShowFacets.NEVER
    readonly_fields = [field.name for field in MailEvent._meta.fields]


@admin.register(PurgeRun)
class PurgeRunAdmin(RecordAdmin):
    """The daily purge of unconfirmed sign-ups (the "Purge unconfirmed sign-ups" periodic task): read-only."""

    list_display = ["started_at", "older_than", "deleted_count", "dropped_count", "finished_at"]
    date_hierarchy = "started_at"
    readonly_fields = [field.name for field in PurgeRun._meta.fields]
