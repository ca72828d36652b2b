"""Email building blocks shared by every email, and the transactional emails (confirmation, manage link).

The digest's own renderer (digest.rendering) builds on these; sign-up emails use `make_message` alone.
"""

import functools
from email.utils import make_msgid
from urllib.parse import urlsplit

import premailer
from django.conf import settings
from django.core.mail import EmailMultiAlternatives
from django.template.loader import render_to_string

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


@functools.cache
def stylesheets():
    return render_to_string("emails/digest.css"), render_to_string("emails/digest-responsive.css")


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
    html = inline_css(render_to_string(f"emails/{name}-body.html", context), stylesheets()[0])
    message = EmailMultiAlternatives(
        subject, text, to=[to], headers={"Message-ID": make_msgid(domain=site_host()), **(headers or {})}
    )
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
