"""Atom feeds (RFC 4287), built with Django's syndication framework.

* `/topics/<slug>/feed/`: a topic's ranked papers of the last FEED_DAYS UTC days, newest day first and, within a day,
  in the order of that day's page (`papers.views.ranked_papers`), at most FEED_PER_DAY a day. Public.
* `/feed/<token>/`: a reader's own feed, built on PaperFeed by digest.feeds.

Entry ids are the paper's arXiv abstract URL (version-less): stable across fetches, feeds and SITE_URL changes, so a
feed reader never shows one paper twice. A paper appears on one day only, and is never sent twice to one reader.
An entry is updated when it joined its feed: its paper first seen (each paper of a fetch has an instant of its own,
papers.ingest.stamp_first_seen) or its digest sent (digest.feeds.entry_time); the feed is updated with its newest entry.
"""

from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.contrib.syndication.views import Feed
from django.urls import reverse
from django.utils.feedgenerator import Atom1Feed
from django.views.decorators.http import require_safe

from papers.models import Paper
from papers.views import active_topic, not_found, public, ranked_papers, site_url, today, topic_day_url

FEED_DAYS = 3
FEED_PER_DAY = 30
FEED_AUTHORS = 20  # <author> elements per entry at most; the summary names the first few with "et al."


@dataclass(frozen=True)
class Entry:
    paper: Paper
    updated: datetime  # when the paper was first seen (topic feed) or its digest was sent (reader feed); no two alike
    category: str
    context_url: str  # the day page the entry belongs to ("" in a reader feed)


class PaperAtomFeed(Atom1Feed):
    """Atom 1.0 with one <author> per paper author and related links to the PDF, Hugging Face and the code."""

    def add_item_elements(self, handler, item):
        super().add_item_elements(handler, item)
        for name in item["authors"]:
            handler.startElement("author", {})
            handler.addQuickElement("name", name)
            handler.endElement("author")
        for title, href, mime_type in item["related"]:
            handler.addQuickElement("link", "", {"rel": "related", "href": href, "type": mime_type, "title": title})


class PaperFeed(Feed):
    feed_type = PaperAtomFeed
    description_template = "papers/feed_entry.html"

    def author_name(self):
        return settings.DIGEST_SITE_NAME

    def author_link(self):
        return site_url("/")

    def item_title(self, entry):
        # A text construct: the XML writer escapes it; escaping here too would show "&lt;" to readers.
        return entry.paper.title

    def item_link(self, entry):
        return entry.paper.abs_url

    def item_guid(self, entry):
        return entry.paper.abs_url

    def item_updateddate(self, entry):
        return entry.updated

    def item_pubdate(self, entry):
        return entry.paper.published_at

    def item_categories(self, entry):
        return [entry.category]

    def item_extra_kwargs(self, entry):
        paper = entry.paper
        related = [("PDF", paper.pdf_url, "application/pdf"), ("Hugging Face", paper.hf_url, "text/html")]
        if paper.github_url:
            related.append(("Code", paper.github_url, "text/html"))
        return {"authors": [str(name) for name in paper.authors[:FEED_AUTHORS]], "related": related}

    def get_context_data(self, **kwargs):
        entry = kwargs["item"]
        return {"entry": entry, "paper": entry.paper, "snippet": entry.paper.get_snippet()}


class TopicFeed(PaperFeed):
    def get_object(self, request, topic):
        return topic

    def title(self, topic):
        return f"{topic.name}: trending papers · {settings.DIGEST_SITE_NAME}"

    def subtitle(self, topic):
        return topic.description or f"New papers on {topic.name}, ranked by relevance and upvotes, day by day."

    def link(self, topic):
        return site_url(reverse("topics:topic", args=[topic.slug]))

    def feed_url(self, topic):
        return site_url(reverse("topics:feed", args=[topic.slug]))

    def feed_guid(self, topic):
        return self.feed_url(topic)

    def items(self, topic):
        entries = []
        newest = today()
        for back in range(FEED_DAYS):
            day = newest - timedelta(days=back)
            papers, _total = ranked_papers(topic, day, limit=FEED_PER_DAY)
            url = site_url(topic_day_url(topic, day))
            category = f"{day:%Y-%m-%d}"
            entries += [Entry(paper, paper.first_seen_at, category, url) for paper in papers]
        return entries


@require_safe
def topic_feed(request, slug):
    topic = active_topic(slug)
    if topic is None:
        return not_found(request, topic_slug=slug)
    return public(TopicFeed()(request, topic=topic))
