"""The sign-up form and the preference center's form. Both validate everything a reader can type or tamper with."""

import functools
import importlib.resources
import re
import unicodedata
import zoneinfo
from pathlib import Path

from django import forms
from django.conf import settings
from django.core.cache import caches
from django.core.exceptions import ValidationError
from django.db import transaction
from django.template.loader import render_to_string
from django.utils.choices import BaseChoiceIterator
from django.utils.html import format_html
from django.utils.safestring import mark_safe

from papers import text
from papers.models import Topic
from subscriptions.models import (
    MAX_KEYWORD_LENGTH,
    MAX_KEYWORDS,
    MAX_PAPERS_PER_EMAIL,
    Subscriber,
)

# Stored with each consent record, with the wording the reader saw: change it whenever the wording changes.
FORM_VERSION = "signup-2026-12"
HOURS = [(hour, f"{hour:02d}:00") for hour in range(24)]
_KEYWORD_SEPARATORS = re.compile(r"[\n,;]+")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
# The blank sign-up form's fields as HTML, by what they show (see SubscribeForm.render_fields); one entry per process.
_blank_fields = {}
TOPICS_CACHE_KEY = "signup-topics"
TOPICS_CACHE_SECONDS = 10


def consent_wording():
    return (
        f"Email me {settings.DIGEST_SITE_NAME}, a digest of new research papers on the topics I chose, at the time "
        "I chose. Every email has a one-click unsubscribe, and I can change or delete my data at any time."
    )


def offered_topics():
    """[(id, name, description)] of the topics the sign-up form offers, in its order, so the most visited page need
    not ask the database or Redis on every visit. Each process keeps them (the "local" cache) for TOPICS_CACHE_SECONDS
    and forgets them at once when it saves or deletes a topic itself (forget_offered_topics): a change made in the
    admin shows in the other web processes within seconds."""
    cache = caches["local"]
    rows = cache.get(TOPICS_CACHE_KEY)
    if rows is None:
        topics = PreferencesForm.base_fields["topics"].queryset
        rows = [tuple(row) for row in topics.values_list("id", "name", "description")]
        cache.set(TOPICS_CACHE_KEY, rows, TOPICS_CACHE_SECONDS)
    return rows


def forget_offered_topics(**kwargs):
    """Receiver of Topic's post_save and post_delete (subscriptions.apps). Forgotten again after the commit: a page
    that read the topics meanwhile may have kept them as they were."""
    caches["local"].delete(TOPICS_CACHE_KEY)
    transaction.on_commit(lambda: caches["local"].delete(TOPICS_CACHE_KEY))


class FixedChoices(BaseChoiceIterator):
    """Choices a function computes once, for a long list: given the function itself, Django would normalise all of
    them each time a form iterates them, and given the list, copy them for every form."""

    def __init__(self, function):
        self.function = function

    def __iter__(self):
        yield from self.function()

    def __deepcopy__(self, memo):
        return self


def time_zone_label(name):
    return name.replace("_", " ")


@functools.cache
def valid_time_zones():
    """Every name the time zone database knows, legacy aliases (Asia/Calcutta, US/Eastern, Etc/GMT+5) included."""
    return frozenset(zoneinfo.available_timezones()) - {"localtime"}


def _zone_table():
    """The text of the time zone database's zone.tab, from the tzdata package or else the system's copy; or None."""
    try:
        return importlib.resources.files("tzdata").joinpath("zoneinfo", "zone.tab").read_text(encoding="utf-8")
    except (ModuleNotFoundError, OSError):
        pass
    for folder in zoneinfo.TZPATH:
        try:
            return (Path(folder) / "zone.tab").read_text(encoding="utf-8")
        except OSError:
            continue
    return None


@functools.cache
def listed_time_zones():
    """The time zones the form lists: UTC and the database's zone.tab, its table for pickers, which names each
    place once by its current name (Asia/Kolkata, Europe/Kyiv, Africa/Asmara, Europe/Oslo). The other names
    available_timezones() holds are legacy aliases of these (Asia/Calcutta, W-SU, GB-Eire, US/Eastern) or fixed
    offsets (Etc/GMT+5); the form still accepts them (TimeZoneChoiceField)."""
    table = _zone_table()
    if table is None:  # a database without its tables (neither tzdata nor a system copy has them): list every name
        return sorted(valid_time_zones())
    rows = (line.split("\t") for line in table.splitlines() if line and not line.startswith("#"))
    return sorted(({row[2] for row in rows if len(row) >= 3} & valid_time_zones()) | {"UTC"})


@functools.cache
def time_zone_choices():
    return [(name, time_zone_label(name)) for name in listed_time_zones()]


class TimeZoneChoiceField(forms.ChoiceField):
    """A time zone from the list, or any other name the database knows: a reader who chose a legacy alias (or whose
    browser reports one) keeps it."""

    def valid_value(self, value):
        return value in valid_time_zones()


class LongSelect(forms.Select):
    """A Select for a long, flat list of choices (the ~420 time zones). Django renders every option through two
    templates, tens of milliseconds a page for this list; here each option's HTML is built once per process and only
    the selected one is written anew. The HTML is Django's own, byte for byte (tests/test_signup_validation.py).
    A selected value the choices leave out is shown first, chosen, when unlisted_label() gives it a label."""

    def unlisted_label(self, value):
        return None

    def get_context(self, name, value, attrs):
        # Not ChoiceWidget's, which builds a context for every option.
        return forms.Widget.get_context(self, name, value, attrs)

    def _render(self, template_name, context, renderer=None):
        widget = context["widget"]
        wanted = self.format_value(widget["value"])
        selected = wanted[0] if wanted else None
        choices = tuple(self.choices)
        options = "".join(
            format_html('\n  <option value="{}" selected>{}</option>\n', choice, label) if choice == selected else html
            for choice, label, html in _unselected_options(choices)
        )
        if selected is not None and selected not in _listed_values(choices):
            label = self.unlisted_label(selected)
            if label is not None:
                options = format_html('\n  <option value="{}" selected>{}</option>\n', selected, label) + options
        # As django/forms/widgets/attrs.html writes them: in order, True as a bare name, False left out.
        attrs = "".join(
            format_html(" {}", name) if value is True else format_html(' {}="{}"', name, value)
            for name, value in widget["attrs"].items()
            if value is not False
        )
        return format_html('<select name="{}"{}>{}\n</select>', widget["name"], mark_safe(attrs), mark_safe(options))


@functools.lru_cache(maxsize=8)
def _listed_values(choices):
    return frozenset(str(choice) for choice, _label in choices)


@functools.lru_cache(maxsize=8)
def _unselected_options(choices):
    # Kept by the choices themselves: each form works on its own copy of the widget.
    return [
        (str(choice), label, format_html('\n  <option value="{}">{}</option>\n', choice, label))
        for choice, label in choices
    ]


class TimeZoneSelect(LongSelect):
    def unlisted_label(self, value):
        # A legacy name the reader chose, or their browser reported: kept, not silently replaced by the first zone.
        return time_zone_label(value) if value in valid_time_zones() else None


def normalise_email(value):
    """One spelling per mailbox: lower case, and an internationalised domain in its Unicode form (the punycode
    "xn--" spelling of the same domain is the same address)."""
    local, _, domain = value.rpartition("@")
    domain = domain.lower().rstrip(".")
    if "xn--" in domain:
        try:
            domain = domain.encode("ascii").decode("idna")
        except UnicodeError:
            raise ValidationError("Enter a valid email address.", code="invalid") from None
    return unicodedata.normalize("NFC", f"{local}@{domain}").lower()


class EmailAddressField(forms.EmailField):
    default_error_messages = {"invalid": "Enter a valid email address, like name@example.com."}

    def to_python(self, value):
        # Django strips surrounding whitespace; a newline or control character anywhere else is an attempt to add
        # a header, never part of an address.
        if value and _CONTROL.search(value.strip()):
            raise ValidationError("An email address cannot contain line breaks or control characters.", code="invalid")
        # An RFC 2047 encoded word ("=?utf-8?q?…?=") is never part of a real address, and some mail software decodes
        # it anywhere in a header, line breaks included.
        if value and "=?" in value:
            raise ValidationError(self.error_messages["invalid"], code="invalid")
        value = super().to_python(value)
        return normalise_email(value) if value else value


class KeywordsField(forms.CharField):
    """Free-text interests, one per line (commas also separate). Stored as a list of plain strings."""

    widget = forms.Textarea(attrs={"rows": 3, "spellcheck": "false"})

    def prepare_value(self, value):
        return "\n".join(value) if isinstance(value, list) else value

    def to_python(self, value):
        if isinstance(value, list):
            return value
        keywords, seen = [], set()
        for part in _KEYWORD_SEPARATORS.split(super().to_python(value) or ""):
            keyword = " ".join(part.split())
            if _CONTROL.search(keyword):
                raise ValidationError("Keywords cannot contain control characters.", code="invalid")
            if keyword and keyword.casefold() not in seen:
                seen.add(keyword.casefold())
                keywords.append(keyword)
        return keywords

    def validate(self, value):
        too_long = [keyword for keyword in value if len(keyword) > MAX_KEYWORD_LENGTH]
        if too_long:
            raise ValidationError(
                "Each keyword can be at most %(limit)d characters; this one is %(length)d: “%(keyword)s”.",
                code="too_long",
                params={"limit": MAX_KEYWORD_LENGTH, "length": len(too_long[0]), "keyword": too_long[0][:80]},
            )
        if len(value) > MAX_KEYWORDS:
            raise ValidationError(
                "Add at most %(limit)d keywords (you added %(count)d).",
                code="too_many",
                params={"limit": MAX_KEYWORDS, "count": len(value)},
            )
        # Matching reads words as papers.text.analyse keeps them: nothing left of a keyword means no paper, ever.
        silent = [keyword for keyword in value if not text.analyse(keyword)]
        if silent:
            raise ValidationError(
                "“%(keyword)s” can never match a paper: matching leaves out common words (the, of, new, using…), "
                "single letters and punctuation. Use a more specific word or phrase.",
                code="never_matches",
                params={"keyword": silent[0][:80]},
            )


SEND_WHEN_EMPTY_LABEL = "When nothing new matches"
SEND_WHEN_EMPTY_CHOICES = [(False, "Skip that day: send nothing"), (True, "Send a short email saying so")]


def is_true(value):
    """A True/False choice as a form sends it."""
    return value in (True, "True")


class PreferencesForm(forms.Form):
    """What a reader chooses: on the sign-up form and in the preference center. `subscriber` fills it in."""

    topics = forms.ModelMultipleChoiceField(
        queryset=Topic.objects.filter(is_active=True).order_by("display_order", "name"),
        widget=forms.CheckboxSelectMultiple,
        required=False,
        help_text="Choose as many as you like.",
    )
    keywords = KeywordsField(
        required=False,
        help_text=f"Optional: your own interests, one per line, up to {MAX_KEYWORDS} "
        f"of up to {MAX_KEYWORD_LENGTH} characters each (for example: protein folding).",
    )
    time_zone = TimeZoneChoiceField(
        label="Time zone", choices=FixedChoices(time_zone_choices), initial="UTC", widget=TimeZoneSelect
    )
    send_hour = forms.TypedChoiceField(
        label="Send hour", choices=HOURS, coerce=int, initial=8, help_text="In your time zone."
    )
    frequency = forms.ChoiceField(
        label="How often", choices=Subscriber.Frequency.choices, widget=forms.RadioSelect, initial="daily"
    )
    weekly_day = forms.TypedChoiceField(
        label="Day for weekly digests", choices=Subscriber.Weekday.choices, coerce=int, initial=0
    )
    papers_per_email = forms.IntegerField(
        label="Papers per email",
        min_value=1,
        max_value=MAX_PAPERS_PER_EMAIL,
        initial=10,
        help_text=f"From 1 to {MAX_PAPERS_PER_EMAIL}.",
    )
    send_when_empty = forms.TypedChoiceField(
        label=SEND_WHEN_EMPTY_LABEL,
        choices=SEND_WHEN_EMPTY_CHOICES,
        coerce=is_true,
        widget=forms.RadioSelect,
        required=False,
        help_text="Some days no new paper matches your topics and keywords.",
    )

    def __init__(self, data=None, *, subscriber=None, **kwargs):
        if subscriber is not None:
            kwargs["initial"] = {**subscriber.get_preferences(), "topics": list(subscriber.topics.all())}
        kwargs.setdefault("label_suffix", "")
        super().__init__(data, **kwargs)
        self.fields["send_when_empty"].initial = settings.DIGEST_SEND_WHEN_EMPTY
        if self.is_bound or subscriber is not None:
            # The page's script pre-selects the browser's time zone only on a fresh form, never over a choice.
            self.fields["time_zone"].widget.attrs["data-bound"] = "true"

    def get_preferences(self):
        """The chosen preferences as the Subscriber fields they set (see signup.apply_preferences)."""
        return dict(self.cleaned_data)

    def clean_send_when_empty(self):
        # Left out of a form sent by an older page or a script: keep what the reader had (or the site's default).
        if self.data.get(self.add_prefix("send_when_empty")) in (None, ""):
            return self.initial.get("send_when_empty", self.fields["send_when_empty"].initial)
        return self.cleaned_data["send_when_empty"]

    def clean(self):
        cleaned = super().clean()
        if "topics" in cleaned and "keywords" in cleaned and not cleaned["topics"] and not cleaned["keywords"]:
            self.add_error("topics", "Choose at least one topic, or add a keyword.")
        return cleaned


class SubscribeForm(PreferencesForm):
    email = EmailAddressField(label="Email address", max_length=254)
    # A field people never see (hidden by the stylesheet and from screen readers); bots that fill every field do.
    website = forms.CharField(
        label="Leave this field empty", required=False, widget=forms.TextInput(attrs={"autocomplete": "off"})
    )

    field_order = ["email"]

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["email"].widget.attrs.update({"autocomplete": "email", "spellcheck": "false"})
        self.fields["website"].widget.attrs["tabindex"] = "-1"

    def render_fields(self):
        """The form's fields as HTML (subscriptions/_signup_fields.html). The blank form, on the most visited page,
        is the same for every visitor until a topic or DIGEST_SEND_WHEN_EMPTY changes, and its time zone list alone
        takes tens of milliseconds to render: it is rendered once per process for each version of what it shows, and
        a visit costs no query."""
        if self.is_bound or self.initial:
            return self._render_fields()
        key = (self.prefix, self.auto_id, tuple(offered_topics()), self.fields["send_when_empty"].initial)
        html = _blank_fields.get(key)
        if html is None:
            html = self._render_fields()
            _blank_fields.clear()
            _blank_fields[key] = html
        return html

    def _render_fields(self):
        return mark_safe(render_to_string("subscriptions/_signup_fields.html", {"form": self}))

    @property
    def is_bot(self):
        return bool(self.cleaned_data.get("website"))

    def get_preferences(self):
        return {name: value for name, value in self.cleaned_data.items() if name not in ("email", "website")}
