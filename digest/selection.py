"""Choosing each reader's papers.

A run works on one pool: the papers first seen in the last DIGEST_MAX_WINDOW_DAYS, indexed once. Every topic and every
keyword is scored over the pool once and ranked once (relevance blended with trending). Per reader only this remains:
merge the rankings of their topics and keywords, skip papers first seen before their last digest (or, for a first
digest, more than DIGEST_FIRST_WINDOW_HOURS ago) and papers already sent to them, and stop at their N.

A reader who gave "more/less like this" feedback (digest.feedback) is ranked on a path of their own: all their
candidates are scored, nudged by their similarity to the papers they gave feedback on, and sorted. Each feedback
paper is scored over the pool once per run, like a topic. Readers without feedback take the merge above unchanged.
"""

import heapq
from dataclasses import dataclass, field
from datetime import timedelta

from django.conf import settings
from django.db.models import Max

from digest import feedback as feedback_nudge
from digest import trending
from digest.matching import Index, Query
from digest.models import Delivery, Feedback, Paper, Topic

POOL_FIELDS = [
    "id", "arxiv_id", "title", "abstract", "authors", "upvotes", "github_url", "published_at", "featured_at",
    "first_seen_at", "search_title", "search_abstract",
]  # fmt: skip


@dataclass(frozen=True)
class Preferences:
    """What decides a reader's ranking: their topics and keywords."""

    topic_ids: tuple
    keywords: tuple

    @classmethod
    def of(cls, subscriber, topic_ids):
        keywords = tuple(sorted({keyword.strip().lower() for keyword in subscriber.keywords if keyword.strip()}))
        return cls(tuple(sorted(topic_ids)), keywords)


@dataclass(frozen=True)
class Pick:
    paper: Paper
    score: float  # relevance blended with trending: the order in the email
    relevance: float
    labels: tuple  # the reader's topics and keywords it matched, best first


class Pool:
    def __init__(self, papers, topics, now):
        self.now = now
        self.papers = list(papers)
        self.index = Index(self.papers)
        self.topics = {topic.id: topic for topic in topics}
        scaled = trending.scale(trending.trending_score(paper, now) for paper in self.papers)
        self.trending = dict(enumerate(scaled))
        self._weekly_trending = None
        self._scores = {}

    @classmethod
    def load(cls, now):
        since = now - timedelta(days=settings.DIGEST_MAX_WINDOW_DAYS)
        papers = Paper.objects.filter(first_seen_at__gte=since).only(*POOL_FIELDS).order_by("arxiv_id")
        return cls(papers, Topic.objects.all(), now)

    def __len__(self):
        return len(self.papers)

    def _scored(self, key):
        if key not in self._scores:
            kind, value = key
            query = Query.from_topic(self.topics[value]) if kind == "topic" else Query.from_interest(value)
            self._scores[key] = {
                doc: score for doc, score in self.index.score(query).items() if score >= settings.MATCH_MIN_SCORE
            }
        return self._scores[key]

    def _label(self, key):
        kind, value = key
        return self.topics[value].name if kind == "topic" else f"“{value}”"

    def _trending_for(self, weekly):
        if not weekly:
            return self.trending
        if self._weekly_trending is None:
            # The week's best: upvotes alone, without the pull of age that favours today's papers in a daily digest.
            scaled = trending.scale(trending.trending_score(paper, self.now, gravity=0) for paper in self.papers)
            self._weekly_trending = dict(enumerate(scaled))
        return self._weekly_trending

    def _ranked(self, key, weekly=False):
        """[(-score, doc)] for one topic or keyword, best first: its relevance blended with trending."""
        ranked_key = ("ranked", key, weekly)
        if ranked_key not in self._scores:
            scored = self._scored(key)
            trend = self._trending_for(weekly)
            self._scores[ranked_key] = sorted(
                (-trending.blend(relevance, trend[doc]), doc) for doc, relevance in scored.items()
            )
        return self._scores[ranked_key]

    def _similar(self, liked):
        """{doc: similarity} of the pool's papers to one feedback paper (a FeedbackPaper), once per run."""
        key = ("feedback", liked.paper_id)
        if key not in self._scores:
            self._scores[key] = self.index.score(feedback_nudge.similarity_query(liked.title, liked.keywords))
        return self._scores[key]

    def _pick(self, doc, score, keys):
        hits = sorted((-self._scored(key).get(doc, 0.0), self._label(key)) for key in keys)
        labels = tuple(label for negative, label in hits if negative < 0)
        return Pick(self.papers[doc], round(score, 6), round(-hits[0][0], 6), labels)

    def choose(self, preferences, *, since, exclude=frozenset(), limit=10, feedback=(), weekly=False):
        """The reader's best `limit` papers: merged from their topics' and keywords' rankings, computed once per run.

        A reader's relevance for a paper is its best relevance over their topics and keywords, and blending with
        trending keeps that order, so merging the per-topic rankings gives the reader's ranking without building it:
        the work per reader is about `limit` steps, however many readers share or do not share their mix.
        """
        keys = [("topic", topic_id) for topic_id in preferences.topic_ids if topic_id in self.topics]
        keys += [("keyword", keyword) for keyword in preferences.keywords]
        if feedback:
            return self._choose_with_feedback(keys, feedback, since=since, exclude=exclude, limit=limit, weekly=weekly)
        picks, seen = [], set()
        # Papers are in arXiv id order, so the doc number breaks ties the same way on every database.
        for negative_score, doc in heapq.merge(*(self._ranked(key, weekly) for key in keys)):
            if doc in seen:
                continue
            seen.add(doc)
            paper = self.papers[doc]
            if paper.first_seen_at < since or paper.id in exclude:
                continue
            picks.append(self._pick(doc, -negative_score, keys))
            if len(picks) == limit:
                break
        return picks

    def _choose_with_feedback(self, keys, feedback, *, since, exclude, limit, weekly=False):
        """Like choose, for a reader with feedback: every candidate's score is nudged (digest.feedback.factor)."""
        best = {}  # doc -> its best blended score over the reader's topics and keywords
        for key in keys:
            for negative_score, doc in self._ranked(key, weekly):
                if negative_score < best.get(doc, 0.0):
                    best[doc] = negative_score
        more = [self._similar(item) for item in feedback if item.direction == Feedback.Direction.MORE]
        less = [self._similar(item) for item in feedback if item.direction == Feedback.Direction.LESS]
        ranked = []
        for doc, negative_score in best.items():
            paper = self.papers[doc]
            if paper.first_seen_at < since or paper.id in exclude:
                continue
            ranked.append((round(negative_score * feedback_nudge.factor(doc, more, less), 6), doc))
        ranked.sort()
        return [self._pick(doc, -negative_score, keys) for negative_score, doc in ranked[:limit]]


@dataclass(frozen=True)
class FeedbackPaper:
    paper_id: int
    title: str
    keywords: tuple
    direction: str


@dataclass
class History:
    """What past digests mean for this one: since when papers are new to each reader, which they have had, and
    their "more/less like this" feedback."""

    since: dict  # subscriber id -> datetime: papers first seen before are not new to them
    sent: dict  # subscriber id -> set of paper ids
    feedback: dict = field(default_factory=dict)  # subscriber id -> tuple of FeedbackPaper
    first_digest: frozenset = frozenset()  # subscribers who have had no digest yet
    now: object = None

    @classmethod
    def load(cls, subscriber_ids, now):
        first_since = now - timedelta(hours=settings.DIGEST_FIRST_WINDOW_HOURS)
        pool_since = now - timedelta(days=settings.DIGEST_MAX_WINDOW_DAYS)
        done = Delivery.objects.filter(subscriber_id__in=subscriber_ids, status=Delivery.Status.SENT)
        last = dict(done.values("subscriber_id").annotate(last=Max("claimed_at")).values_list("subscriber_id", "last"))
        since = {sid: max(last.get(sid) or first_since, pool_since) for sid in subscriber_ids}
        first_digest = frozenset(sid for sid in subscriber_ids if last.get(sid) is None)
        sent = {}
        # Older digests cannot hold pool papers: those were all first seen after pool_since.
        recent = Delivery.objects.filter(
            subscriber_id__in=subscriber_ids,
            status__in=[Delivery.Status.SENT, Delivery.Status.SENDING],
            created_at__gte=pool_since,
        )
        for subscriber_id, paper_ids in recent.values_list("subscriber_id", "paper_ids"):
            sent.setdefault(subscriber_id, set()).update(paper_ids)
        feedback = {}
        rows = Feedback.objects.filter(subscriber_id__in=subscriber_ids).order_by("id")
        for subscriber_id, *values in rows.values_list(
            "subscriber_id", "paper_id", "paper__title", "paper__keywords", "direction"
        ):
            paper_id, title, keywords, direction = values
            item = FeedbackPaper(paper_id, title, tuple(keywords or ()), direction)
            feedback[subscriber_id] = (*feedback.get(subscriber_id, ()), item)
        return cls(since, sent, feedback, first_digest, now)

    def since_for(self, subscriber):
        """A weekly reader's first digest looks back a week (the week's best), a daily one DIGEST_FIRST_WINDOW_HOURS."""
        if subscriber.id in self.first_digest and is_weekly(subscriber) and self.now is not None:
            week = self.now - timedelta(days=min(WEEK_DAYS, settings.DIGEST_MAX_WINDOW_DAYS))
            return min(self.since[subscriber.id], week)
        return self.since[subscriber.id]


WEEK_DAYS = 7


def is_weekly(subscriber):
    return subscriber.frequency == "weekly"


def choose_papers(pool, subscriber, topic_ids, history):
    """The Picks for one reader's next digest, best first (empty when nothing new matches).

    Weekly readers get the week's best: everything new since last week's digest, ranked by relevance blended with
    upvotes alone, so Monday's much-discussed paper is not pushed under Sunday's by its age."""
    return pool.choose(
        Preferences.of(subscriber, topic_ids),
        since=history.since_for(subscriber),
        exclude=history.sent.get(subscriber.id, frozenset()),
        limit=subscriber.papers_per_email,
        feedback=history.feedback.get(subscriber.id, ()),
        weekly=is_weekly(subscriber),
    )
