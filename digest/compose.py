"""The one place a batch of digests is assembled: sending, the admin's exact preview and `senddigests --dry-run` all
build their emails through a `Batch`, so what an operator previews is what a reader gets.

A batch is the readers of one chunk (or one reader, for a preview) at one moment. It loads, once for all of them, what
their digests depend on: the run's pool of candidate papers (papers.ranking.Pool), each reader's history (papers
already sent, since when papers are new to them, their feedback) and their topics. Choosing a reader's papers and
rendering their email then costs only that reader's share (digest.selection, digest.rendering).
"""

from django.db.models import Count, Max

from digest.rendering import DigestRenderer
from digest.selection import History, arrange, as_written, choose_papers, trending_instead
from papers.models import Paper
from papers.ranking import Pool
from subscriptions.models import Subscriber

POOL_MAX_AGE_SECONDS = 15 * 60

_pool_cache = {}


def get_pool(now):
    """The run's pool, shared by the tasks one worker process runs; rebuilt when papers change or after 15 minutes."""
    # Any change to the papers changes one of these: an edit the newest updated_at, an import the count and the
    # highest id, a deletion the count.
    key = tuple(Paper.objects.aggregate(Max("updated_at"), Count("id"), Max("id")).values())
    cached = _pool_cache.get("pool")
    if cached and cached[0] == key and (now - cached[1].now).total_seconds() < POOL_MAX_AGE_SECONDS:
        return cached[1]
    pool = Pool.load(now)
    _pool_cache["pool"] = (key, pool)
    return pool


def topics_of(subscriber_ids):
    """{subscriber id: set of topic ids}, in one query over the subscriber-topic table."""
    through = Subscriber.topics.through.objects.filter(subscriber_id__in=subscriber_ids)
    topic_ids = {}
    for subscriber_id, topic_id in through.values_list("subscriber_id", "topic_id"):
        topic_ids.setdefault(subscriber_id, set()).add(topic_id)
    return topic_ids


class Batch:
    """What the digests of `subscriber_ids` at `now` are built from; `choose` and `build` then work per reader."""

    def __init__(self, subscriber_ids, now, *, pool=None, renderer=None):
        subscriber_ids = list(subscriber_ids)
        self.now = now
        self.pool = pool or get_pool(now)
        self.renderer = renderer or DigestRenderer()
        self.history = History.load(subscriber_ids, now)
        self.topic_ids = topics_of(subscriber_ids)
        # The embeddings of the papers the readers' personal models are fitted to: one query for the batch.
        self.pool.prepare_feedback(self.history.feedback.values())

    def topics_for(self, subscriber):
        return self.topic_ids.get(subscriber.id, set())

    def pick(self, subscriber):
        """The reader's papers for their next digest in the email's order (digest.selection.arrange: the best first,
        then the others by topic) and with their keywords as written, whatever their status (a preview shows a paused
        reader's too)."""
        picks = choose_papers(self.pool, subscriber, self.topics_for(subscriber), self.history)
        return arrange(as_written(picks, subscriber))

    def choose(self, subscriber):
        """(picks, None) for one reader's digest, or (None, reason) when there is nothing to send."""
        if not subscriber.is_active:
            return None, f"The reader's subscription is {subscriber.get_status_display().lower()}; not sent."
        picks = self.pick(subscriber)
        if not picks and not subscriber.send_when_empty:
            return None, "No new paper matched the reader's topics and keywords."
        return picks, None

    def prepare(self, picks_by_reader):
        """Render, in one pass, every paper card these readers' emails will show (digest.rendering)."""
        self.renderer.prepare_cards({pick.paper.id: pick.paper for picks in picks_by_reader for pick in picks}.values())

    def labels_for(self, subscriber):
        """The reader's topics and keywords as their email's footer names them."""
        topics = self.pool.topics
        names = [topics[topic_id].name for topic_id in sorted(self.topics_for(subscriber)) if topic_id in topics]
        return names + [f"“{keyword}”" for keyword in subscriber.keywords]

    def trending_for(self, subscriber):
        """What an email with no paper for the reader offers instead: the newest pool's most trending papers they
        have not had (digest.selection.TRENDING_ON_EMPTY_DAYS)."""
        return trending_instead(self.pool, subscriber, self.history)

    def build(self, subscriber, picks, day, *, metadata=None):
        """The reader's email (a DigestMessage) for `day`, their local date."""
        labels = self.labels_for(subscriber)
        return self.renderer.build(
            subscriber,
            picks,
            day=day,
            labels=labels,
            metadata=metadata,
            first=subscriber.id in self.history.first_digest,
            trending=() if picks else self.trending_for(subscriber),
        )
