"""A client that keeps sending bad signed links is slowed down.

A signed link cannot be guessed whole, but one cut short by a character or two (a mail app that broke it, a log that
kept most of it) can be completed by trying each possible ending. Every link this site did not sign
(tokens.BadSignature) counts against the client's address, in the cache the sign-up limits count in; past
BAD_LINK_RATE_PER_IP, every page behind a signed link answers that address 429 with Retry-After, even for a right
link, until the window ends. A reader's own links, expired or for an erased subscription, never count.

The limit fails open: while the cache cannot be reached, links are checked by their signature alone, and a warning is
logged. A reader's unsubscribe link must work whatever else is down (RFC 8058), and guessing a link's ending takes far
more requests than an outage lasts.
"""

import logging
import math

from django.conf import settings
from django.shortcuts import render
from django.utils.cache import add_never_cache_headers
from django_ratelimit.core import get_usage

from subscriptions.routes import is_link_path

GROUP = "bad-signed-link"
logger = logging.getLogger(__name__)


def _usage(request, *, increment):
    """django-ratelimit's usage for the request's client, or None when the cache cannot be read or written."""
    try:
        # key="ip" is the client's address as RATELIMIT_IP_META_KEY finds it (CLIENT_IP_HEADER behind a proxy).
        usage = get_usage(request, group=GROUP, key="ip", rate=settings.BAD_LINK_RATE_PER_IP, increment=increment)
    except Exception as error:  # the cache's own errors (redis-py's, OSError) differ by backend
        logger.warning("Bad signed link limit not checked: the cache is unavailable (%s).", type(error).__name__)
        return None
    # Without RATELIMIT_FAIL_OPEN, django-ratelimit reports a cache it could not use as count 0, limit 0.
    if usage is not None and usage["limit"] == 0:
        logger.warning("Bad signed link limit not checked: the cache is unavailable.")
        return None
    return usage


def count_bad_link(request):
    """One more link this site did not sign, from the request's client."""
    _usage(request, increment=True)


def too_many_bad_links(request, time_left):
    # The window's last second (time_left 0) still counts: the next one is the first of a new window.
    retry_after = max(time_left, 0) + 1
    # A daily limit's wait in minutes ("1,200 minutes") is hard to read: past an hour and a half it is said in hours.
    minutes = math.ceil(retry_after / 60)
    context = {"minutes": minutes} if minutes <= 90 else {"hours": math.ceil(retry_after / 3600)}
    response = render(request, "subscriptions/too_many_bad_links.html", context, status=429)
    response["Retry-After"] = str(retry_after)
    add_never_cache_headers(response)
    return response


class BadLinkLimitMiddleware:
    """Answers 429 to every request under a signed link route (routes.ROUTES) from a client over the limit."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        if is_link_path(request.path_info):
            usage = _usage(request, increment=False)
            if usage is not None and usage["count"] >= usage["limit"]:
                return too_many_bad_links(request, usage["time_left"])
        return self.get_response(request)
