"""Every email the service sends is built here.

`make_message` renders a transactional email from `emails/<name>-subject.txt`, `-body.txt` and `-body.html`.

Digests are many, so `DigestRenderer` renders and CSS-inlines (premailer) each paper card once per run and each
shell (header and footer for a date and a set of preferences) once, then assembles a reader's email by joining
inlined cards and substituting the per-reader values (signed links, address). Inlining whole emails per reader would
cost premailer's full parse for every one; inlining per card costs it once per paper shown.
"""

import functools
import re
from email.utils import make_msgid
from urllib.parse import urlsplit

import premailer
from django.conf import settings
from django.core.mail import EmailMultiAlternatives
from django.template.loader import render_to_string
from django.utils.html import escape
from django.utils.safestring import mark_safe
from django.utils.text import Truncator
from lxml import html as lxml_html

from subscriptions import tokens

MANAGE_URL = "%%MANAGE_URL%%"
UNSUBSCRIBE_URL = "%%UNSUBSCRIBE_URL%%"
EMAIL = "%%EMAIL%%"
SNIPPET_LENGTH = 280


def site_host():
    return urlsplit(settings.SITE_URL).hostname


def one_line(value):
    # A header must not carry a newline (header injection); subjects come from templates and paper titles.
    return " ".join(value.split())


def inline_css(document, css="", *, keep_style_tags=False):
    return premailer.Premailer(
        document,
        css_text=css or None,
        keep_style_tags=keep_style_tags,
        remove_classes=False,
        disable_validation=True,
        cssutils_logging_level=50,
        allow_network=False,
        # The media queries left in <style> need their !important to beat the inlined styles (dark mode, phones).
        strip_important=False,
    ).transform()


def make_message(name, to, context, headers=None):
    """A transactional email (its own templates, no List-Unsubscribe) with a text part and an inlined HTML part."""
    subject = one_line(render_to_string(f"emails/{name}-subject.txt", context))
    text = render_to_string(f"emails/{name}-body.txt", context)
    html = inline_css(render_to_string(f"emails/{name}-body.html", context))
    message = EmailMultiAlternatives(subject, text, to=[to], headers=headers or {})
    message.attach_alternative(html, "text/html")
    return message


@functools.cache
def _stylesheets():
    return render_to_string("emails/digest.css"), render_to_string("emails/digest-responsive.css")


def date_labels(day):
    return f"{day:%A} {day.day} {day:%B %Y}", f"{day.day} {day:%b}"


class DigestRenderer:
    """Builds digest emails for one run; keep one per run (or per task) so its caches are shared by many readers."""

    def __init__(self):
        self.css, self.responsive_css = _stylesheets()
        self.host = site_host()
        self._cards = {}
        self._shells = {}

    def card(self, pick, position):
        key = (pick.paper.id, pick.labels, position)
        if key not in self._cards:
            context = {
                "paper": pick.paper,
                "snippet": Truncator(" ".join(pick.paper.abstract.split())).chars(SNIPPET_LENGTH),
                "topics": pick.labels,
                "position": position,
            }
            card = render_to_string("emails/digest-paper.html", context)
            wrapped = f'<html><body><div class="digest">{card}</div></body></html>'
            inlined = lxml_html.fromstring(inline_css(wrapped, self.css)).find_class("digest")[0]
            html = (inlined.text or "") + "".join(lxml_html.tostring(child, encoding="unicode") for child in inlined)
            self._cards[key] = (html, render_to_string("emails/digest-paper.txt", context).strip())
        return self._cards[key]

    def shell(self, day, why, count, top_title):
        key = (day, why, count, top_title)
        if key not in self._shells:
            date_label, date_label_short = date_labels(day)
            context = {
                "site_name": settings.DIGEST_SITE_NAME,
                "site_url": settings.SITE_URL,
                "date_label": date_label,
                "date_label_short": date_label_short,
                "count": count,
                "top_title": top_title,
                "why": why,
                "manage_url": MANAGE_URL,
                "unsubscribe_url": UNSUBSCRIBE_URL,
                "email": EMAIL,
                "postal_address": settings.DIGEST_POSTAL_ADDRESS,
                "responsive_css": mark_safe(self.responsive_css),
                "cards_html": mark_safe("%%CARDS%%"),
                "cards_text": "%%CARDS%%",
            }
            subject = one_line(render_to_string("emails/digest-subject.txt", context))
            context["subject"] = subject
            context["preheader"] = f"{count} new paper{'s' if count != 1 else ''}, led by {top_title}"
            html = inline_css(render_to_string("emails/digest-body.html", context), self.css, keep_style_tags=True)
            # keep_style_tags (needed for the media queries) also copies the inlined sheet into the head: drop that
            # copy, it only adds bytes, and Gmail clips messages past about 102 KB.
            html = re.sub(r"<style[^>]*>" + re.escape(self.css) + r"</style>\s*", "", html, count=1)
            text = render_to_string("emails/digest-body.txt", context)
            self._shells[key] = (subject, html, text)
        return self._shells[key]

    def build(self, subscriber, picks, *, day, labels, metadata=None):
        """The digest email for one reader. `labels` are the names of their topics and keywords, for the footer."""
        cards = [self.card(pick, position) for position, pick in enumerate(picks, start=1)]
        why = f"You subscribed at {self.host} to: {', '.join(labels) or 'no topics yet'}."
        subject, html, text = self.shell(day, why, len(picks), picks[0].paper.title if picks else "")
        unsubscribe = tokens.unsubscribe_url(subscriber)
        manage = tokens.manage_url(subscriber)
        html = _fill(
            html, "".join(card for card, _text in cards), escape(manage), escape(unsubscribe), escape(subscriber.email)
        )
        text = _fill(text, "\n\n".join(card_text for _html, card_text in cards), manage, unsubscribe, subscriber.email)
        message = EmailMultiAlternatives(
            subject,
            text,
            to=[subscriber.email],
            headers={
                "List-Unsubscribe": f"<{unsubscribe}>",
                "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
                "List-Id": f"{one_line(settings.DIGEST_SITE_NAME)} <digest.{self.host}>",
                "Message-ID": make_msgid(domain=self.host),
            },
        )
        message.attach_alternative(html, "text/html")
        # Read by Anymail's ESP backends (tracking webhooks send them back); other backends ignore them.
        message.metadata = {key: str(value) for key, value in (metadata or {}).items()}
        message.tags = ["digest"]
        return message


def _fill(template, cards, manage, unsubscribe, email):
    # Fill the shell around the cards, never the cards: a paper's text must not be able to smuggle in a placeholder.
    head, tail = template.split("%%CARDS%%", 1)
    head, tail = (part.replace(MANAGE_URL, manage).replace(UNSUBSCRIBE_URL, unsubscribe) for part in (head, tail))
    head, tail = (part.replace(EMAIL, email) for part in (head, tail))
    return head + cards + tail
