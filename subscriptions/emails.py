"""Email building blocks shared by every email, and the transactional emails (confirmation, manage link).

The digest's own renderer (digest.rendering) builds on these; sign-up emails use `make_message` alone.
"""

import functools
import itertools
import re
from email import charset, policy
from email.headerregistry import Address
from email.utils import formataddr, make_msgid
from urllib.parse import urlsplit

import premailer
from django.conf import settings
from django.core.mail import EmailMultiAlternatives
from django.template.loader import render_to_string
from django.utils.encoding import punycode
from django.utils.safestring import mark_safe

from subscriptions import tokens
from subscriptions.models import SignupEmail, Subscriber

# The sign-up emails, by template name.
CONFIRM = "confirm"
MANAGE_LINK = "manage-link"


def site_host():
    return urlsplit(settings.SITE_URL).hostname


def one_line(value):
    # A header must not carry a newline (header injection); subjects come from templates and paper titles.
    return " ".join(value.split())


# RFC 2047 2: an encoded word is at most 75 characters, and a header line holding one at most 76.
ENCODED_WORD_LENGTH = 75
HEADER_LINE_LENGTH = 76
_UTF8 = charset.Charset("utf-8")
_POLICY = policy.compat32.clone(max_line_length=HEADER_LINE_LENGTH)


@functools.lru_cache(maxsize=1024)
def encoded_words(name, text):
    """`text` as RFC 2047 encoded words separated by spaces, each short enough to stand on a header line of its own,
    the first one after "`name`: ". The spaces between them fold the header and are not part of the text."""
    first = min(ENCODED_WORD_LENGTH, HEADER_LINE_LENGTH - len(name) - 2)
    return " ".join(_UTF8.header_encode_lines(text, itertools.chain([first], itertools.repeat(ENCODED_WORD_LENGTH))))


def _plain(text):
    # ASCII that a mail client would not decode: "=?" could start an encoded word (RFC 2047 6.2).
    return text.isascii() and "=?" not in text


def unstructured_header(name, text):
    """The value of header `name` (a Subject) as sent: `text` itself when it is plain ASCII, else encoded words."""
    return text if _plain(text) else encoded_words(name, text)


def phrase_header(name, text):
    """`text` as the phrase of header `name` (the name before an address or a list id, RFC 5322 3.2.5): an atom or a
    quoted string when it is plain ASCII, else encoded words."""
    if not _plain(text):
        return encoded_words(name, text)
    return formataddr((text, "x@x")).removesuffix(" <x@x>")


@functools.lru_cache(maxsize=64)
def mailbox_header(name, value):
    """An address header's value as sent: as given when ASCII, else with its display name encoded as a phrase
    (`phrase_header`) and its domain in punycode."""
    if value.isascii():
        return value
    [address] = policy.default.header_factory(name, value).addresses
    addr_spec = Address(username=address.username, domain=punycode(address.domain)).addr_spec
    return f"{phrase_header(name, address.display_name)} <{addr_spec}>" if address.display_name else addr_spec


class Email(EmailMultiAlternatives):
    """An email whose Subject and From name are encoded here, and whose headers fold at 76 characters.

    Django encodes a non-ASCII header in one go, before it knows the header's name, into encoded words of up to 77
    characters (RFC 2047 allows 75); the email generator then finds the first one too long to follow "Subject: " and
    moves it to the next line, and the fold's space becomes the decoded subject's first character. Here every encoded
    word fits a line of its own (`encoded_words`). Only the MIME bytes are encoded so: `subject` stays plain text for
    the backends that send it as such (Anymail's ESP APIs). A header built elsewhere (List-Id) is passed in already
    encoded, as ASCII that Django leaves alone.
    """

    def message(self, *args, **kwargs):
        message = super().message(*args, **kwargs)
        message.policy = _POLICY
        message.replace_header("Subject", unstructured_header("Subject", self.subject))
        message.replace_header("From", mailbox_header("From", self.extra_headers.get("From", self.from_email)))
        return message


# What premailer would otherwise copy from inlined CSS into HTML attributes (bgcolor from background-color, ...).
BASIC_ATTRIBUTES = ["align", "valign", "bgcolor", "width", "height"]


def inline_css(document, css="", *, keep_style_tags=False, basic_attributes=True, pretty_print=True):
    """`document` with `css` inlined. With basic_attributes=False premailer adds no presentational attribute (the
    template writes those it needs); with pretty_print=False no line breaks of its own."""
    return premailer.Premailer(
        document,
        css_text=css or None,
        keep_style_tags=keep_style_tags,
        disable_basic_attributes=None if basic_attributes else BASIC_ATTRIBUTES,
        remove_classes=False,
        disable_validation=True,
        cssutils_logging_level=50,
        allow_network=False,
        # The media queries left in <style> need their !important to beat the inlined styles (dark mode, phones).
        strip_important=False,
    ).transform(pretty_print=pretty_print)


@functools.cache
def stylesheets():
    return render_to_string("emails/digest.css"), render_to_string("emails/digest-responsive.css")


def compact_css(css):
    """`css` as a head's style element carries it: without comments and spare whitespace."""
    css = re.sub(r"/\*.*?\*/", "", css, flags=re.DOTALL)
    css = re.sub(r"\s*([{};,])\s*", r"\1", " ".join(css.split()))
    return css.replace(": ", ":").replace(";}", "}").strip()


@functools.cache
def transactional_stylesheets():
    """(inlined, head) CSS of the sign-up emails: the digest's look, then their button's."""
    inlined, head = stylesheets()
    return (
        inlined + render_to_string("emails/transactional.css"),
        compact_css(head + render_to_string("emails/transactional-responsive.css")),
    )


def make_message(name, to, context, headers=None):
    """A transactional email (confirmation, manage link…) from `emails/<name>-subject.txt|body.txt|body.html`.

    These are one-to-one messages a reader asked for, so they carry no List-Unsubscribe: that header is for bulk mail.
    """
    context = {
        "site_name": settings.DIGEST_SITE_NAME,
        "site_url": settings.SITE_URL,
        "postal_address": settings.DIGEST_POSTAL_ADDRESS,
        **context,
    }
    subject = one_line(render_to_string(f"emails/{name}-subject.txt", context))
    text = render_to_string(f"emails/{name}-body.txt", context)
    inlined_css, head_css = transactional_stylesheets()
    # The head's style element is marked for premailer to leave alone: media queries cannot be inlined.
    html_context = {**context, "subject": subject, "head_css": mark_safe(head_css)}
    html = inline_css(render_to_string(f"emails/{name}-body.html", html_context), inlined_css)
    message = Email(subject, text, to=[to], headers={"Message-ID": make_msgid(domain=site_host()), **(headers or {})})
    message.attach_alternative(html, "text/html")
    message.tags = [name]
    return message


def make_subscription_email(subscriber, kind):
    context = {"email": subscriber.email, "max_age_days": settings.CONFIRMATION_MAX_AGE_DAYS}
    if kind == CONFIRM:
        context["confirm_url"] = tokens.confirm_url(subscriber)
    else:
        context["manage_url"] = tokens.manage_url(subscriber)
    return make_message(kind, subscriber.email, context)


def send_subscription_email(subscriber_id, kind):
    """Send the confirmation or preferences-link email, if it still applies. True if one was handed to the backend."""
    subscriber = Subscriber.objects.filter(id=subscriber_id).first()
    if subscriber is None:
        return False
    if kind == CONFIRM and not subscriber.awaits_confirmation:
        return False
    if kind == MANAGE_LINK and subscriber.status not in (Subscriber.Status.ACTIVE, Subscriber.Status.PAUSED):
        return False
    message = make_subscription_email(subscriber, kind)
    message.send()
    SignupEmail.objects.create(subscriber=subscriber, kind=kind, message_id=sent_message_id(message))
    return True


def sent_message_id(message):
    """The id a provider's reports will name: an Anymail backend's (which may be 0), else our Message-ID."""
    status = getattr(message, "anymail_status", None)
    provider_id = status.message_id if status is not None else None
    return message.extra_headers["Message-ID"] if provider_id is None else str(provider_id)
