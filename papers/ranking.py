"""Ranking a pool of papers for topics and keywords, as the digest, the topic pages and their feeds all do.

A pool is a set of candidate papers (the digest's: those first seen in the last DIGEST_MAX_WINDOW_DAYS; a topic page's:
one day's), indexed once. Every topic (with its editors' examples, read for all topics in one query) and every keyword
is scored over the pool once and ranked once (relevance blended with trending, papers.trending). `Pool.choose` merges
those rankings for one set of preferences.

"More/less like this" feedback (digest.feedback records it) nudges a reader's ranking: every candidate's score is
multiplied by

    1 + FEEDBACK_WEIGHT × (similarity to the most similar "more" paper − similarity to the most similar "less" paper)

where a similarity is how well the candidate matches the feedback paper's title (and Hugging Face keywords) as a
query, in [0, 1). So feedback reorders the papers the reader's topics and keywords matched, by at most
FEEDBACK_WEIGHT either way; it never adds a paper that did not match, nor drops one.
"""

import heapq
from dataclasses import dataclass
from datetime import timedelta

from django.conf import settings

from papers import trending
from papers.matching import Index, Query, QueryText, topic_examples
from papers.models import Paper, Topic

FEEDBACK_WEIGHT = 0.3


POOL_FIELDS = [
    "id", "arxiv_id", "title", "abstract", "authors", "upvotes", "github_url", "published_at", "featured_at",
    "first_seen_at", "search_title", "search_abstract", "embedding", "embedding_key",
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
    reasons: tuple = ()  # per label, why it matched in a few words (Index.explain): 'mentions “kv cache”'


class Pool:
    def __init__(self, papers, topics, now):
        self.now = now
        self.papers = list(papers)
        self.index = Index(self.papers)
        self.topics = {topic.id: topic for topic in topics}
        scaled = trending.scale(trending.trending_score(paper, now) for paper in self.papers)
        self.trending = dict(enumerate(scaled))
        self._weekly_trending = None
        self._examples = None
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
            self._scores[key] = self.index.matches(self._query(key))
        return self._scores[key]

    def _query(self, key):
        query_key = ("query", key)
        if query_key not in self._scores:
            kind, value = key
            if kind == "topic":
                query = Query.from_topic(self.topics[value], self._topic_examples(value))
            else:
                query = Query.from_interest(value)
            self._scores[query_key] = query
        return self._scores[query_key]

    def _topic_examples(self, topic_id):
        """The editors' examples of a topic; every topic's are read in one query, the first time one is needed."""
        if self._examples is None:
            self._examples = topic_examples(self.topics)
        return self._examples.get(topic_id, ())

    def reason(self, key, doc):
        """Why paper `doc` matched topic or keyword `key`, once per run (Index.explain)."""
        reason_key = ("reason", key, doc)
        if reason_key not in self._scores:
            self._scores[reason_key] = self.index.explain(self._query(key), doc)
        return self._scores[reason_key]

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
            self._scores[key] = self.index.score(similarity_query(liked.title, liked.keywords))
        return self._scores[key]

    def _pick(self, doc, score, keys):
        hits = sorted((-self._scored(key).get(doc, 0.0), self._label(key), key) for key in keys)
        matched = [(label, key) for negative, label, key in hits if negative < 0]
        labels = tuple(label for label, _key in matched)
        reasons = tuple(self.reason(key, doc) for _label, key in matched)
        return Pick(self.papers[doc], round(score, 6), round(-hits[0][0], 6), labels, reasons)

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
        """Like choose, for a reader with feedback: every candidate's score is nudged (`factor`)."""
        best = {}  # doc -> its best blended score over the reader's topics and keywords
        for key in keys:
            for negative_score, doc in self._ranked(key, weekly):
                if negative_score < best.get(doc, 0.0):
                    best[doc] = negative_score
        more = [self._similar(item) for item in feedback if item.direction == "more"]
        less = [self._similar(item) for item in feedback if item.direction == "less"]
        ranked = []
        for doc, negative_score in best.items():
            paper = self.papers[doc]
            if paper.first_seen_at < since or paper.id in exclude:
                continue
            ranked.append((round(negative_score * factor(doc, more, less), 6), doc))
        ranked.sort()
        return [self._pick(doc, -negative_score, keys) for negative_score, doc in ranked[:limit]]


def similarity_query(title, keywords=()):
    """The query a feedback paper stands for: its title, lifted a little by its keywords."""
    secondary = QueryText.parse(", ".join(keywords)) if keywords else None
    return Query([QueryText.parse(title)], [secondary] if secondary else [], label=title)


def factor(doc, more, less, weight=FEEDBACK_WEIGHT):
    """The multiplier of a candidate's score: `more` and `less` are lists of {doc: similarity}."""
    liked = max((similar.get(doc, 0.0) for similar in more), default=0.0)
    disliked = max((similar.get(doc, 0.0) for similar in less), default=0.0)
    return 1 + weight * (liked - disliked)
