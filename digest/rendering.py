"""Digest emails are built here.

Digests are many, so `DigestRenderer` renders and CSS-inlines (premailer) each paper card and the shell (header and
footer) once, then assembles a reader's email by joining inlined cards and filling in the per-reader values (position,
matched topics and why they matched, signed links, address). Inlining whole emails per reader would cost premailer's
full parse for every one.

Inlined cards and shells are kept per worker process (`_CARDS`, `_SHELLS`, both bounded), so the tasks a worker runs
one after another share them: a card by what it can show (`card_key`, the paper's display fields, so an edited paper
gets a new one), a shell by its date and the settings it shows. The cards a chunk needs and the process lacks are
inlined in one premailer pass.

Every byte of a card is sent ten times an email: a card inlines only what a reader needs when a client drops the
head's style element (digest.css), and premailer adds no attribute of its own to it; the rest is in the head, once
(digest-responsive.css, `head_css`).

A card says why its paper is there: a "Why:" line under the title naming the reader's first one or two matched topics
or keywords, each with the few words `papers.matching.Index.explain` gave (`Pick.reasons`). The line's inlined markup is
kept, like a topic label's, and filled per reader; both are cached by their values, which many readers share.

A card's "more/less like this" links are signed per reader and paper, so they are placeholders too. Their markers
carry a random part per renderer: they stand after the paper's title in the card, and a title must never be read as
one. So does the "Why:" line's marker, which stands after the title too.
"""

import collections
import functools
import re
import secrets
import textwrap
import threading
import uuid
from email.utils import make_msgid

from django.conf import settings
from django.template.loader import render_to_string
from django.utils.html import escape
from django.utils.safestring import mark_safe
from django.utils.text import wrap
from lxml import etree
from lxml import html as lxml_html

from papers import text
from papers.ranking import DISPLAY_FIELDS
from subscriptions import tokens
from subscriptions.emails import Email, compact_css, inline_css, one_line, phrase_header, site_host, stylesheets

# Values the shell is rendered with once, and that each reader's email fills in (see DigestRenderer.build).
PER_READER = ("subject", "preheader", "intro", "why", "email", "manage_url", "unsubscribe_url", "view_url")
PLACEHOLDERS = {name: f"%%{name.upper()}%%" for name in PER_READER}
CARDS = "%%CARDS%%"
CARD_POSITION = "%%POSITION%%"
CARD_TOPIC = "%%TOPIC%%"
CARD_TOPICS = "%%TOPICS%%"
_TOPIC_LABEL_RE = re.compile(r"<span[^>]*>" + re.escape(CARD_TOPIC) + "</span>")
SNIPPET_LENGTH = 280
WHY_LABELS = 2  # the matched topics and keywords a card explains, best first
# Between the explained labels: a reason may hold a "; " of its own ('mentions “gnn”; close to “…”').
WHY_SEPARATOR = " · "
WHY_QUOTE_LENGTH = 60  # a longer quote in a reason (a paper's title, a long keyword) is cut at a word, with "…"
# Written as characters, not entities, in the HTML (a third of the bytes), as lxml writes the rest of a card.
NBSP, EM_DASH = "\u00a0", "\u2014"


LINE_LIMIT = 900
CARDS_KEPT = 2048  # inlined cards kept per process: a few pools' worth, under 20 MB
SHELLS_KEPT = 64


class Recent:
    """At most `size` values by key, the least recently used dropped first. A worker may run tasks in threads."""

    def __init__(self, size):
        self.size = size
        self._values = collections.OrderedDict()
        self._lock = threading.Lock()

    def get(self, key):
        with self._lock:
            value = self._values.get(key)
            if value is not None:
                self._values.move_to_end(key)
            return value

    def put(self, key, value):
        with self._lock:
            self._values[key] = value
            self._values.move_to_end(key)
            while len(self._values) > self.size:
                self._values.popitem(last=False)

    def __len__(self):
        return len(self._values)


_CARDS = Recent(CARDS_KEPT)
_SHELLS = Recent(SHELLS_KEPT)
_SECTIONS = Recent(2)  # the heading row between cards, with and without a note


def card_key(paper):
    """What a paper's card can show, its display fields (papers.ranking.DISPLAY_FIELDS, what a pool loads): a card is
    kept per process by this, so a paper edited in any of them is rendered anew."""
    values = (getattr(paper, name) for name in DISPLAY_FIELDS)
    return tuple(tuple(value) if isinstance(value, list) else value for value in values)


@functools.cache
def head_css():
    """digest-responsive.css as the head's style element carries it: without comments and spare whitespace."""
    return compact_css(stylesheets()[1])


def fold_long_lines(html, limit=LINE_LIMIT):
    """Break lines longer than `limit` at a space outside attribute values, where a new line means the same.

    Django sends a part with any line over 998 bytes as quoted-printable, which costs a pure-Python encode of the
    whole part per message; with short lines the HTML goes as 8bit.
    """
    lines = []
    for line in html.split("\n"):
        start, cut, in_tag, quote = 0, -1, False, None
        for position, char in enumerate(line):
            if quote:
                quote = None if char == quote else quote
            elif in_tag and char in "\"'":
                quote = char
            elif char in "<>":
                in_tag = char == "<"
            elif char == " ":
                cut = position
            if position - start >= limit and cut > start:
                lines.append(line[start:cut])
                start = cut + 1
        lines.append(line[start:])
    return "\n".join(lines)


def date_labels(day):
    return f"{day:%A} {day.day} {day:%B %Y}", f"{day.day} {day:%b}"


class DigestRenderer:
    """Builds digest emails; one per run or per task, whose small caches (labels, "Why:" lines, subjects) serve its
    readers. Inlined cards and shells come from the process's stores, shared by every renderer."""

    def __init__(self):
        self.css, self.responsive_css = stylesheets()[0], head_css()
        self.host = site_host()
        marker = secrets.token_hex(8)
        self.more_marker, self.less_marker = f"%%MORE-{marker}%%", f"%%LESS-{marker}%%"
        self.why_marker = f"%%WHY-{marker}%%"
        self.media_marker = f"%%MEDIA-{marker}%%"
        # The "Why:" line as inlined, cut where its items go: (line start, item label start, item label end, line end)
        self._why_re = re.compile(
            r"(<p[^>]*>\s*<b[^>]*>Why:</b>\s*)(<span[^>]*>)" + re.escape(self.why_marker) + r"(</span>)(</p>\n?)"
        )
        # paper id -> (card html cut at the POSITION, TOPICS, WHY, MORE and LESS placeholders, topic label html,
        # "Why:" line parts), as _CARDS keeps it; the cuts hold no marker, so any renderer can use them.
        self._html_cards = {}
        self._text_cards = {}
        self._labels = {}
        self._whys = {}
        self._shells = {}
        self._subjects = {}
        self._sections = {}
        self._thumbnails = {}

    def prepare_cards(self, papers):
        """Find the cards of `papers` in the process's store, and render and inline those it lacks in one premailer
        pass.

        premailer's cost is mostly parsing and applying the stylesheet, per call; one call for a chunk's new cards
        costs little more than one for a single card. Position and topic labels differ per reader, so the card is
        inlined with placeholders for them, and the inlined label markup is kept to repeat per label (and the "Why:"
        line's, to fill per reader).
        """
        todo = {}
        for paper in papers:
            if paper.id in self._html_cards or paper.id in todo:
                continue
            kept = _CARDS.get(card_key(paper))
            if kept is None:
                todo[paper.id] = paper
            else:
                self._html_cards[paper.id], self._text_cards[paper.id] = kept
        if not todo:
            return
        parts = []
        for paper in todo.values():
            context = {**self._card_context(paper), "why": [(self.why_marker, "")]}
            card = render_to_string("emails/digest-paper.html", context)
            parts.append(f'<table class="card" id="card-{paper.id}">{card}</table>')
        document = f"<html><body>{''.join(parts)}</body></html>"
        inlined = inline_css(document, self.css, basic_attributes=False, pretty_print=False)
        document = lxml_html.fromstring(inlined)
        for element in document.iter(etree.Element):
            if "style" in element.attrib:
                element.set("style", element.get("style").replace("; ", ";"))
        elements = {element.get("id"): element for element in document.find_class("card")}
        for paper_id in todo:
            element = elements[f"card-{paper_id}"]
            html = "".join(lxml_html.tostring(child, encoding="unicode") for child in element).strip() + "\n"
            label = _TOPIC_LABEL_RE.search(html)
            html = html[: label.start()] + CARD_TOPICS + html[label.end() :]
            why = self._why_re.search(html)
            html = html[: why.start()] + self.why_marker + html[why.end() :]
            # Split once around the per-reader parts, so a reader's card is a join, not several searches.
            opening, rest = fold_long_lines(html).split(self.media_marker, 1)
            before, rest = rest.split(CARD_POSITION, 1)
            between, rest = rest.split(CARD_TOPICS, 1)
            after_topics, rest = rest.split(self.why_marker, 1)
            after_why, rest = rest.split(self.more_marker, 1)
            after_more, after_less = rest.split(self.less_marker, 1)
            cut = (opening, before, between, after_topics, after_why, after_more, after_less)
            self._html_cards[paper_id] = (*cut, label.group(), why.groups())
            context = {**self._card_context(todo[paper_id]), "why_line": self.why_marker}
            text = render_to_string("emails/digest-paper.txt", context).strip()
            # The card opens with its position, before anything from the paper; the "Why:" line is a line of its own.
            text = text.removeprefix(CARD_POSITION)
            text, rest = text.split(self.why_marker + "\n", 1)
            after_why, rest = rest.split(self.more_marker, 1)
            self._text_cards[paper_id] = (text, after_why, *rest.split(self.less_marker, 1))
            _CARDS.put(card_key(todo[paper_id]), (self._html_cards[paper_id], self._text_cards[paper_id]))

    def _card_context(self, paper):
        return {
            "paper": paper,
            "snippet": paper.get_snippet(SNIPPET_LENGTH),
            "published": f"{paper.published_at.day}{NBSP}{paper.published_at:%b}{NBSP}{paper.published_at:%Y}"
            if paper.published_at
            else "",
            "media": self.media_marker,
            "topics": [CARD_TOPIC],
            "position": CARD_POSITION,
            "more_url": self.more_marker,
            "less_url": self.less_marker,
        }

    def card(self, pick, position, subscriber, *, top=False, grouped=False):
        """(html, text) of one paper's card as this reader sees it: their position, matched topics (and why they
        matched) and links; the top pick's has the paper's picture, when its source has one. A card `grouped` under
        its first label's heading does not repeat that label above its title."""
        self.prepare_cards([pick.paper])
        *cut, label, why = self._html_cards[pick.paper.id]
        opening, before, between, after_topics, after_why, after_more, after_less = cut
        more = tokens.feedback_url(subscriber, pick.paper.id, "more")
        less = tokens.feedback_url(subscriber, pick.paper.id, "less")
        labels = self._labels_html(label, pick.labels[1:] if grouped else pick.labels)
        why = self._why_html(why, pick.labels[:WHY_LABELS], pick.reasons[:WHY_LABELS])
        html = (
            opening,
            self._thumbnail(pick.paper) if top and pick.paper.thumbnail_url else "",
            before,
            str(position),
            between,
            labels,
            after_topics,
            why,
            after_why,
            more,
            after_more,
            less,
            after_less,
        )
        text, text_after_why, text_after_more, text_after_less = self._text_cards[pick.paper.id]
        line = why_line(pick.labels, pick.reasons)
        line = line + "\n" if line else ""
        text = (str(position), text, line, text_after_why, more, text_after_more, less, text_after_less)
        return "".join(html), "".join(text)

    def _labels_html(self, label, labels):
        key = (label, labels)
        if key not in self._labels:
            self._labels[key] = " ".join(label.replace(CARD_TOPIC, escape(topic)) for topic in labels)
        return self._labels[key]

    def _why_html(self, why, labels, reasons):
        """The card's "Why:" line for these labels and reasons (the first WHY_LABELS), or "" when none has a reason."""
        key = (why, labels, reasons)
        if key not in self._whys:
            line_start, item_start, item_end, line_end = why
            items = [
                item_start + escape(label) + item_end + (f" {EM_DASH} {_keep_quotes(escape(reason))}" if reason else "")
                for label, reason in why_items(labels, reasons)
            ]
            # The separator's dot stays with the item before it when the line wraps.
            self._whys[key] = line_start + f"{NBSP}\u00b7 ".join(items) + line_end if items else ""
        return self._whys[key]

    def shell(self, day):
        """(html, text) of everything around the cards for a date, inlined once, with placeholders per reader."""
        if day not in self._shells:
            key = (day, settings.DIGEST_SITE_NAME, settings.SITE_URL, settings.DIGEST_POSTAL_ADDRESS)
            self._shells[day] = _SHELLS.get(key) or self._render_shell(day)
            _SHELLS.put(key, self._shells[day])
        return self._shells[day]

    def _render_shell(self, day):
        date_label, date_label_short = date_labels(day)
        context = {
            **PLACEHOLDERS,
            "site_name": settings.DIGEST_SITE_NAME,
            "site_url": settings.SITE_URL,
            "date_label": date_label,
            "postal_address": settings.DIGEST_POSTAL_ADDRESS,
            "responsive_css": mark_safe(self.responsive_css),
            "cards_html": mark_safe(CARDS),
            "cards_text": CARDS,
        }
        # The head's style element is marked for premailer to leave alone (digest-responsive.css).
        html = inline_css(render_to_string("emails/digest-body.html", context), self.css)
        # Sent with every email: no indentation, and premailer's "; " as ";" (a shell holds no paper's text).
        html = _STYLE_RE.sub(lambda match: match.group().replace("; ", ";"), re.sub(r"\n[ \t]+", "\n", html))
        return fold_long_lines(html), render_to_string("emails/digest-body.txt", context)

    def _thumbnail(self, paper):
        """The top pick's picture, rendered once per paper and renderer (many readers share a top pick)."""
        key = (paper.hf_url, paper.thumbnail_url)
        if key not in self._thumbnails:
            self._thumbnails[key] = render_to_string("emails/digest-thumbnail.html", {"paper": paper}).strip()
        return self._thumbnails[key]

    def section(self, heading, note="", link_url="", link_text=""):
        """The HTML row of a heading between cards, with an optional note and link, for this reader's values."""
        key = bool(note)
        if key not in self._sections:
            self._sections[key] = _SECTIONS.get(key) or self._render_section(key)
            _SECTIONS.put(key, self._sections[key])
        parts = (heading, note, link_url, link_text)
        values = {SECTION_MARKERS[name]: escape(value) for name, value in zip(SECTION_PARTS, parts, strict=True)}
        # One pass: a heading (a reader's keyword) can never be read as a marker.
        return _SECTION_MARKER_RE.sub(lambda match: values[match.group()], self._sections[key]) + "\n"

    def _render_section(self, with_note):
        """The section row inlined once, with a marker for each of its values (SECTION_MARKERS), kept per process."""
        context = {**SECTION_MARKERS, "note": SECTION_MARKERS["note"] if with_note else ""}
        document = f"<table>{render_to_string('emails/digest-section.html', context)}</table>"
        inlined = inline_css(document, self.css, basic_attributes=False, pretty_print=False)
        row = inlined[inlined.index("<tr") : inlined.rindex("</tr>") + len("</tr>")]
        return _STYLE_RE.sub(lambda match: match.group().replace("; ", ";"), row)

    def subject(self, day, top_title, count, weekly=False, first=False):
        """The subject: what is inside (the top paper and how many more), at most SUBJECT_LENGTH characters, the
        title cut between words to fit (inboxes cut the rest)."""
        key = (day, top_title, count, weekly, first)
        if key not in self._subjects:
            context = {"date_label_short": date_labels(day)[1], "count": count, "weekly": weekly, "first": first}
            # What the wording takes, measured around a one-letter title (an empty one would lose a space).
            fixed = len(one_line(render_to_string("emails/digest-subject.txt", {**context, "top_title": "T"}))) - 1
            context["top_title"] = text.cut_words(" ".join(top_title.split()), max(SUBJECT_LENGTH - fixed, 12))
            self._subjects[key] = one_line(render_to_string("emails/digest-subject.txt", context))
        return self._subjects[key]

    def build(self, subscriber, picks, *, day, labels, metadata=None, weekly=None, first=False, trending=()):
        """The digest email for one reader, its cards in the order of `picks` (digest.selection.arrange: the top
        pick, then by topic). `labels` are the names of their topics and keywords, for the header and footer;
        `weekly` (the week's best wording) follows the reader's frequency unless given; `first` welcomes a reader
        to their first digest; `trending` are the papers an email with no picks offers instead."""
        weekly = subscriber.frequency == "weekly" if weekly is None else weekly
        manage = tokens.manage_url(subscriber)
        rows, cards_text = [], []
        grouped = is_grouped(picks)
        if picks:
            for position, pick in enumerate(picks, start=1):
                heading = section_heading(picks, position, grouped)
                if heading:
                    rows.append(self.section(heading))
                    cards_text.append(heading.upper())
                top = position == 1
                html, card_text = self.card(pick, position, subscriber, top=top, grouped=grouped and not top)
                rows.append(html)
                cards_text.append(card_text)
        else:
            note = nothing_new_note(weekly, bool(trending))
            heading = "Trending this week" if weekly else "Trending today"
            rows.append(self.section(heading if trending else "Nothing new", note, manage, f"Adjust your{NBSP}topics"))
            cards_text.append(f"{note} Adjust your topics: {manage}")
            for position, pick in enumerate(trending, start=1):
                html, card_text = self.card(pick, position, subscriber)
                rows.append(html)
                cards_text.append(card_text)
        top_title = picks[0].paper.title if picks else ""
        count = len(picks)
        unsubscribe = tokens.unsubscribe_url(subscriber)
        subject = self.subject(day, top_title, count, weekly, first)
        values = {
            "subject": subject,
            "preheader": preheader(picks, trending, weekly),
            "intro": intro(count, labels, weekly=weekly, first=first),
            "why": f"You get this email because you subscribed to {settings.DIGEST_SITE_NAME} for: "
            f"{', '.join(labels) or 'no topics yet'}.",
            "email": subscriber.email,
            "manage_url": manage,
            "unsubscribe_url": unsubscribe,
            "view_url": tokens.view_url(subscriber, day),
        }
        html_shell, text_shell = self.shell(day)
        html = _fill(html_shell, "".join(rows), {k: escape(v) for k, v in values.items()})
        text_values = {**values, "why": wrap(values["why"], 72), "intro": wrap(values["intro"], 72)}
        text = _fill(text_shell, "\n\n".join(cards_text), text_values)
        message = DigestMessage(
            subject,
            text,
            to=[subscriber.email],
            headers={
                "List-Unsubscribe": f"<{unsubscribe}>",
                "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
                # RFC 2919: the list id stays literal; only the site's name before it may be encoded.
                "List-Id": f"{phrase_header('List-Id', one_line(settings.DIGEST_SITE_NAME))} <digest.{self.host}>",
                "Message-ID": make_msgid(domain=self.host),
            },
        )
        message.attach_alternative(html, "text/html")
        # Read by Anymail's ESP backends (tracking webhooks send them back); other backends ignore them.
        message.metadata = {key: str(value) for key, value in (metadata or {}).items()}
        message.tags = ["digest"]
        # What this email showed beside each paper and in its header and footer, kept with the delivery for "view in
        # browser".
        message.shown = {
            "labels": [list(pick.labels) for pick in picks],
            "reasons": [list(pick.reasons) for pick in picks],
            "upvotes": [pick.paper.upvotes for pick in picks],
            "topics": list(labels),
            "weekly": weekly,
            "first": first,
            "trending": [pick.paper.id for pick in trending],
        }
        return message


SECTION_PARTS = ("heading", "note", "link_url", "link_text")
SECTION_MARKERS = {name: f"%%SECTION-{name.upper()}%%" for name in SECTION_PARTS}
_SECTION_MARKER_RE = re.compile("|".join(re.escape(marker) for marker in SECTION_MARKERS.values()))
SUBJECT_LENGTH = 60  # inboxes show about this much of a subject
INTRO_TOPICS = 3  # the reader's topics the header names before "and N more"


def is_grouped(picks):
    """Whether the papers after the top pick fall under more than one of the reader's topics and keywords (then each
    group has a heading with its name, and its cards do not repeat it)."""
    return len({pick.labels[0] if pick.labels else "" for pick in picks[1:]}) > 1


def section_heading(picks, position, grouped):
    """The heading before the card at `position` (from 1) of an arranged digest, or "": "Top pick" before the first
    of several, then the topic or keyword each group matched best where a group starts (`grouped`: is_grouped), or
    "More for you" when all the others are under one."""
    if len(picks) < 2:
        return ""
    if position == 1:
        return "Top pick"
    if not grouped:
        return "More for you" if position == 2 else ""
    label = picks[position - 1].labels[0] if picks[position - 1].labels else "Also new"
    previous = picks[position - 2].labels[0] if position > 2 and picks[position - 2].labels else None
    return label if label != previous else ""


def intro(count, labels, *, weekly=False, first=False):
    """The header's line under the date: how many papers, for which topics, in what order."""
    named = list(labels[:INTRO_TOPICS])
    if len(labels) > INTRO_TOPICS:
        named.append(f"{len(labels) - INTRO_TOPICS} more")
    topics = ", ".join(named[:-1]) + (" and " if len(named) > 1 else "") + named[-1] if named else "your topics"
    welcome = "Welcome! This is your first digest. " if first else ""
    if not count:
        return f"{welcome}Nothing new matched {topics} {'this week' if weekly else 'today'}."
    papers = f"{count} paper{pluralize(count)}" if weekly else f"{count} new paper{pluralize(count)}"
    order = " The top pick first, then by topic, the most relevant first." if count > 2 else ""
    return f"{welcome}{'The week’s best: ' if weekly else ''}{papers} for {topics}.{order}"


def nothing_new_note(weekly, trending):
    """The note over an email with nothing new for its reader (the header has said so)."""
    if trending:
        when = "this week" if weekly else "today"
        return f"While your topics are quiet, here is what is trending on Hugging Face {when}."
    return "Your topics may be quiet for a day or two, or too narrow to match often."


def preheader(picks, trending, weekly):
    if picks:
        return f"{len(picks)} new paper{pluralize(len(picks))}, led by {picks[0].paper.title}"
    if trending:
        return f"Nothing new for your topics; trending: {trending[0].paper.title}"
    return "Nothing new for your topics " + ("this week" if weekly else "today")


def short_reason(label, reason):
    """`reason` without a quote of `label` itself (a keyword “nerf” is "mentioned", not 'mentions “nerf”'; a topic
    whose concept the paper is about, in its words or others, "a direct match"), and with long quotes cut short."""
    name = label.strip("“”").casefold()
    if reason.casefold() == f"mentions “{name}”":
        return "mentioned"
    if reason.casefold() == f"about “{name}”":
        return "a direct match"
    if reason.casefold() == f"close in meaning to “{name}”":
        return "close in meaning"
    return _QUOTED_RE.sub(_short_quote, reason)


def _short_quote(match):
    quote = match.group()
    if len(quote) <= WHY_QUOTE_LENGTH + 2:
        return quote
    cut = quote[1 : WHY_QUOTE_LENGTH + 1]
    words = cut.rsplit(" ", 1)[0] if " " in cut[WHY_QUOTE_LENGTH // 2 :] else cut
    return "“" + words.rstrip(" ,;:.-") + "…”"


def why_items(labels, reasons, limit=WHY_LABELS):
    """[(label, reason)] for a card's "Why:" line: the first `limit` labels with their reasons in a few words, or []
    when none of them has a reason (a delivery sent before reasons were kept)."""
    items = [(label, short_reason(label, reason)) for label, reason in zip(labels[:limit], reasons, strict=False)]
    return items if any(reason for _label, reason in items) else []


def why_text(labels, reasons):
    """One line saying why a paper is there: its first labels with their reasons, then the other labels it matched
    ("Why: Efficient inference — mentions “kv cache” · also “llm”"); "Matches: …" when there are no reasons; "" when
    there are no labels."""
    items = why_items(labels, reasons)
    if items:
        line = "Why: " + WHY_SEPARATOR.join(f"{label} — {reason}" if reason else label for label, reason in items)
        return line + (f"{WHY_SEPARATOR}also " + ", ".join(labels[len(items) :]) if len(labels) > len(items) else "")
    return "Matches: " + ", ".join(labels) if labels else ""


@functools.lru_cache(maxsize=4096)
def why_line(labels, reasons):
    """why_text wrapped for the plain-text card, between quoted phrases rather than inside one."""
    kept = _QUOTED_RE.sub(lambda match: match.group().replace(" ", "\0"), why_text(labels, reasons))
    return "\n".join(textwrap.wrap(kept, 72)).replace("\0", " ")


_QUOTED_RE = re.compile("“[^”]*”")
_STYLE_RE = re.compile(r' style="[^"]*"')


def _keep_quotes(html):
    """Short quoted phrases kept on one line (non-breaking spaces): “self supervised”, not “self / supervised”."""
    return _QUOTED_RE.sub(
        lambda match: match.group().replace(" ", NBSP) if len(match.group()) <= 32 else match.group(), html
    )


class DigestMessage(Email):
    def message(self, *args, **kwargs):
        message = super().message(*args, **kwargs)
        # A boundary chosen here spares the email generator its search of every line for a safe one; a random one
        # cannot occur in the bodies.
        if message.is_multipart():
            message.set_boundary(f"=_{uuid.uuid4().hex}")
        return message


def pluralize(count):
    return "" if count == 1 else "s"


_PLACEHOLDER_RE = re.compile("|".join(re.escape(placeholder) for placeholder in PLACEHOLDERS.values()))
_NAMES = {placeholder: name for name, placeholder in PLACEHOLDERS.items()}


def _fill(template, cards, values):
    # One pass over the shell only: a paper title inside the subject, or a paper's text in the cards, can never be
    # read as a placeholder.
    head, tail = template.split(CARDS, 1)
    fill = lambda match: values[_NAMES[match.group()]]  # noqa: E731
    return _PLACEHOLDER_RE.sub(fill, head) + cards + _PLACEHOLDER_RE.sub(fill, tail)
