"""The reader's own Atom feed, `/feed/<token>/`: the papers of their last FEED_DELIVERIES sent digests, newest digest
first and in each digest's order (`Delivery.paper_ids`). The token is a signed link of its own purpose
(`subscriptions.tokens.FEED`), so a feed URL handed to a feed-reading service cannot manage or unsubscribe. Entries are
built as the topic feeds' are (papers.feeds).
"""

from datetime import timedelta

from django.conf import settings
from django.shortcuts import render
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_safe

from digest.models import Delivery
from papers.feeds import Entry, PaperFeed
from papers.models import Paper
from papers.ranking import DISPLAY_FIELDS
from papers.views import day_bounds, site_url
from subscriptions import tokens
from subscriptions.models import Subscriber
from subscriptions.views import refused_link

FEED_DELIVERIES = 10


class ReaderFeed(PaperFeed):
    def get_object(self, request, subscriber):
        return subscriber

    def title(self, subscriber):
        return f"Your {settings.DIGEST_SITE_NAME}"

    def subtitle(self, subscriber):
        return f"The papers of your last {FEED_DELIVERIES} digests, newest first, in each digest's order."

    def link(self, subscriber):
        return site_url("/")

    def feed_url(self, subscriber):
        return tokens.feed_url(subscriber)

    def feed_guid(self, subscriber):
        return tokens.feed_url(subscriber)

    def items(self, subscriber):
        deliveries = list(
            Delivery.objects.filter(subscriber=subscriber, status=Delivery.Status.SENT)
            .order_by("-digest_date", "-id")
            .only("id", "digest_date", "paper_ids", "claimed_at", "finished_at")[:FEED_DELIVERIES]
        )
        wanted = {paper_id for delivery in deliveries for paper_id in delivery.paper_ids}
        papers = Paper.objects.only(*DISPLAY_FIELDS).in_bulk(wanted)
        entries, seen = [], set()
        for delivery in deliveries:
            sent = delivery.finished_at or delivery.claimed_at or day_bounds(delivery.digest_date)[0]
            category = f"Digest of {delivery.digest_date:%Y-%m-%d}"
            for position, paper_id in enumerate(delivery.paper_ids):
                # Papers deleted since are left out; a paper is listed once, in its newest digest.
                if paper_id in papers and paper_id not in seen:
                    seen.add(paper_id)
                    entries.append(Entry(papers[paper_id], entry_time(sent, position), category, ""))
        return entries


def entry_time(sent, position):
    """A digest's entry is updated when the digest was sent, less a microsecond per place in it: each entry has a time
    of its own (no two entries of a feed may share one), and a feed reader sorting by time shows the digest's order."""
    return sent - timedelta(microseconds=position)


@require_safe
@never_cache
def reader_feed(request, token):
    """400 for a link this site did not make (as for every bad signed link here); 410 Gone for one it made whose
    subscription has ended (unsubscribed, suppressed, erased), so that feed readers stop asking."""
    try:
        subscriber_token = tokens.read_token(token, tokens.FEED)
    except tokens.BadToken as error:
        return refused_link(request, error)
    subscriber = Subscriber.objects.filter(token=subscriber_token).first()
    if subscriber is None or subscriber.status not in (Subscriber.Status.ACTIVE, Subscriber.Status.PAUSED):
        return render(request, "digest/feed_gone.html", status=410)
    return ReaderFeed()(request, subscriber=subscriber)
