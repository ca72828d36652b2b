"""Signed links that act on a subscription without an account: confirm, manage, unsubscribe.

A link carries the subscriber's random `token` signed with SECRET_KEY and a salt per purpose, so a link made for one
purpose cannot be used for another, and a tampered or foreign link is refused. Unsubscribe and manage links never
expire: links in old emails must keep working. Rotating SECRET_KEY (with SECRET_KEY_FALLBACKS for a while) retires
them all.
"""

from django.conf import settings
from django.core import signing
from django.urls import reverse

UNSUBSCRIBE = "unsubscribe"
MANAGE = "manage"
CONFIRM = "confirm"


class BadToken(Exception):
    pass


def _signer(purpose):
    return signing.Signer(salt=f"subscriptions.tokens.{purpose}")


def make_token(subscriber, purpose):
    return _signer(purpose).sign(subscriber.token)


def read_token(value, purpose):
    """The subscriber token inside a signed link value, or BadToken."""
    try:
        return _signer(purpose).unsign(value)
    except signing.BadSignature:
        raise BadToken(f"not a valid {purpose} link") from None


def find_subscriber(value, purpose):
    """The Subscriber a signed link value is for, or BadToken (tampered, foreign, or the subscriber is gone)."""
    from subscriptions.models import Subscriber

    token = read_token(value, purpose)
    subscriber = Subscriber.objects.filter(token=token).first()
    if subscriber is None:
        raise BadToken(f"the {purpose} link is for a subscription that no longer exists")
    return subscriber


def unsubscribe_url(subscriber):
    """The one-click URL (RFC 8058): a POST unsubscribes at once, a GET shows a page with one button."""
    return settings.SITE_URL + reverse("subscriptions:unsubscribe", args=[make_token(subscriber, UNSUBSCRIBE)])


def manage_url(subscriber):
    return settings.SITE_URL + reverse("subscriptions:manage", args=[make_token(subscriber, MANAGE)])
