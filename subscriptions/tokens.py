"""Signed links that act on a subscription without an account: confirm, manage, unsubscribe.

A link carries the subscriber's random `token` signed with SECRET_KEY and a salt per purpose, so a link made for one
purpose cannot be used for another, and a tampered or foreign link is refused. Unsubscribe and manage links never
expire: links in old emails must keep working. Confirmation links carry the time they were made and expire after
CONFIRMATION_MAX_AGE_DAYS. Rotating SECRET_KEY (with SECRET_KEY_FALLBACKS for a while) retires
them all.

A confirmation link made for choices kept aside (Subscriber.pending_preferences) also carries when those choices were
sent (`confirm_stamp`): anyone can send the form with anyone's address, so a link in the owner's email must not
confirm choices someone sent after it. Such a link stops working once the form is sent again; the newest email's
works.
"""

import functools
from datetime import UTC, date, datetime, timedelta

from django.conf import settings
from django.core import signing
from django.urls import reverse

from subscriptions.models import Subscriber
from subscriptions.routes import CONFIRM, FEED, FEEDBACK, MANAGE, UNSUBSCRIBE, VIEW


class BadToken(Exception):
    pass


class ExpiredToken(BadToken):
    pass


class BadSignature(BadToken):
    """A value this site did not sign: mistyped, cut short, lengthened or made up (link_limits counts these)."""


class SubscriberGone(BadToken):
    """A link this site made, for a subscriber deleted since: erased ("Delete me", or by an operator), or an
    unconfirmed sign-up purged."""


@functools.cache
def _signer(purpose):
    signer = signing.TimestampSigner if purpose == CONFIRM else signing.Signer
    return signer(salt=f"subscriptions.tokens.{purpose}")


@functools.cache
def _url_around(view, site_url):
    # reverse() once per view: a digest run builds two links for every reader.
    marker = "TOKEN-MARKER"
    before, after = reverse(view, args=[marker]).split(marker)
    return site_url + before, after


def confirm_stamp(subscriber):
    """What a confirmation link binds besides the reader: when their choices kept aside were sent, in microseconds,
    or None when nothing waits aside (a new sign-up's choices are saved at once, and its page shows them)."""
    if subscriber.pending_preferences is None or subscriber.pending_since is None:
        return None
    return str((subscriber.pending_since - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(microseconds=1))


def make_token(subscriber, purpose):
    stamp = confirm_stamp(subscriber) if purpose == CONFIRM else None
    return _signer(purpose).sign(subscriber.token if stamp is None else f"{subscriber.token}.{stamp}")


def _unsign(value, purpose, **kwargs):
    try:
        return _signer(purpose).unsign(value, **kwargs)
    except signing.SignatureExpired:
        raise ExpiredToken(f"the {purpose} link has expired") from None
    except signing.BadSignature:
        raise BadSignature(f"not a valid {purpose} link") from None


def read_token(value, purpose):
    """The subscriber token inside a signed link value, or BadToken (ExpiredToken for an old confirmation link,
    BadSignature for a value this site did not sign)."""
    if purpose == CONFIRM:
        return _unsign(value, purpose, max_age=timedelta(days=settings.CONFIRMATION_MAX_AGE_DAYS))
    return _unsign(value, purpose)


def find_subscriber(value, purpose):
    """The Subscriber a signed link value is for, or BadToken (tampered, foreign; SubscriberGone: deleted since)."""
    token, _, stamp = read_token(value, purpose).partition(".")
    subscriber = Subscriber.objects.filter(token=token).first()
    if subscriber is None:
        raise SubscriberGone(f"the {purpose} link is for a subscription that no longer exists")
    if purpose == CONFIRM and (stamp or None) != confirm_stamp(subscriber):
        raise BadToken("the confirm link is for other choices than those now waiting for confirmation")
    return subscriber


def _link(view, subscriber, purpose):
    before, after = _url_around(view, settings.SITE_URL)
    return before + make_token(subscriber, purpose) + after


def unsubscribe_url(subscriber):
    """The one-click URL (RFC 8058): a POST unsubscribes at once, a GET shows a page with one button."""
    return _link("subscriptions:unsubscribe", subscriber, UNSUBSCRIBE)


def manage_url(subscriber):
    return _link("subscriptions:manage", subscriber, MANAGE)


def confirm_url(subscriber):
    return _link("subscriptions:confirm", subscriber, CONFIRM)


def feed_url(subscriber):
    """The reader's Atom feed of their digests. It never expires, and reading it needs no other purpose's rights."""
    return _link("digest:reader_feed", subscriber, FEED)


FEEDBACK_DIRECTIONS = ("more", "less")


def feedback_value(subscriber, paper_id, direction):
    """The signed value of a "more/less like this" link: it binds the reader, the paper and the direction, so a link
    cannot be turned into another paper's, another direction's or another reader's. It never expires."""
    return _signer(FEEDBACK).sign(f"{subscriber.token}.{paper_id}.{direction}")


def feedback_url(subscriber, paper_id, direction):
    before, after = _url_around("digest:feedback", settings.SITE_URL)
    return before + feedback_value(subscriber, paper_id, direction) + after


def read_feedback(value):
    """(Subscriber, paper id, direction) from a feedback link value, or BadToken (tampered, foreign, reader gone)."""
    try:
        token, paper_id, direction = _unsign(value, FEEDBACK).split(".")
    except ValueError:
        raise BadToken("not a valid feedback link") from None
    if direction not in FEEDBACK_DIRECTIONS or not paper_id.isdigit():
        raise BadToken("not a valid feedback link")
    subscriber = Subscriber.objects.filter(token=token).first()
    if subscriber is None:
        raise SubscriberGone("the feedback link is for a subscription that no longer exists")
    return subscriber, int(paper_id), direction


def view_value(subscriber, day):
    """The signed value of a digest's "view in browser" link: the reader and the digest's date (one per day)."""
    return _signer(VIEW).sign(f"{subscriber.token}.{day.isoformat()}")


def view_url(subscriber, day):
    before, after = _url_around("digest:view_digest", settings.SITE_URL)
    return before + view_value(subscriber, day) + after


def read_view(value):
    """(Subscriber, date) from a "view in browser" link value, or BadToken. It never expires."""
    try:
        token, day = _unsign(value, VIEW).split(".")
        day = date.fromisoformat(day)
    except ValueError:
        raise BadToken("not a valid view link") from None
    subscriber = Subscriber.objects.filter(token=token).first()
    if subscriber is None:
        raise SubscriberGone("the view link is for a subscription that no longer exists")
    return subscriber, day
