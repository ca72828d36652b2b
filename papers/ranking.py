"""Ranking a pool of papers for topics and keywords, as the digest, the topic pages and their feeds all do.

A pool is a set of candidate papers (the digest's: those first seen in the last DIGEST_MAX_WINDOW_DAYS; a topic page's:
one day's), indexed once. Every topic (with its editors' examples, read for all topics in one query) and every keyword
is scored over the pool once and ranked once (relevance blended with trending, papers.trending). `Pool.choose` merges
those rankings for one set of preferences.

"More/less like this" feedback (digest.feedback records it) reorders a reader's candidates: the papers their topics and
keywords matched. It never adds a paper that did not match, nor drops one. How depends on how much there is:

* With little feedback (fewer than FEEDBACK_MODEL_MIN_CLICKS = 6 clicks, or fewer than FEEDBACK_MODEL_MIN_EACH = 2 of
  either kind), every candidate's score is multiplied by

      1 + FEEDBACK_WEIGHT × (similarity to the most similar "more" paper − similarity to the most similar "less" one)

  where a similarity is how well the candidate matches the feedback paper's title (and Hugging Face keywords) as a
  query, in [0, 1). So it moves a score by at most FEEDBACK_WEIGHT (30 %) either way.
* With enough, a personal model takes over: an L2-regularised logistic regression (`fit_preference`, numpy) on the
  embeddings of the papers the reader clicked (papers.embeddings; "more" = 1, "less" = 0), fitted to their latest
  FEEDBACK_MODEL_MAX_CLICKS clicks once when their digest is chosen. A candidate's score is multiplied by

      1 + FEEDBACK_MODEL_WEIGHT × (2 × P("more" | its embedding) − 1)

  so between × 0.1 (surely "less") and × 1.9 (surely "more"). The relevance stays the base: the model alone ranks the
  candidates worse than the matcher does (bench/feedback_bench.py). FEEDBACK_MODEL_MIN_CLICKS, FEEDBACK_MODEL_L2 and
  FEEDBACK_MODEL_WEIGHT were chosen with that bench on its development readers; docs/matching.md has its figures.

The embeddings of the feedback papers are the pool's rows for papers still in it and, for older ones, their stored
vectors, loaded in one query per batch of readers (`Pool.prepare_feedback`). A fit is a few Newton steps over
(clicks + 1) equations: well under a millisecond for a handful of clicks. Readers without feedback take the merge of
`Pool.choose`, untouched.
"""

import heapq
from dataclasses import dataclass
from datetime import timedelta

from django.conf import settings

from papers import trending
from papers.matching import Index, Query, QueryText, topic_examples
from papers.models import Paper, Topic

FEEDBACK_WEIGHT = 0.3
# The personal model (see the module docstring): fitted once a reader has this many clicks, this many of each kind.
FEEDBACK_MODEL_MIN_CLICKS = 6
FEEDBACK_MODEL_MIN_EACH = 2
FEEDBACK_MODEL_MAX_CLICKS = 100  # the clicks it is fitted to (the last 100 recorded), which bounds a fit's cost
FEEDBACK_MODEL_L2 = 0.03  # the penalty on the weights, against over-fitting a handful of clicks
FEEDBACK_MODEL_WEIGHT = 0.9  # how far the model moves a score: × (1 - w) when surely "less", × (1 + w) when "more"


# What a page or feed shows of a paper; a pool also reads what matching needs (its search text and embedding).
DISPLAY_FIELDS = [
    "id", "arxiv_id", "title", "abstract", "authors", "upvotes", "num_comments", "github_url", "thumbnail_url",
    "published_at", "featured_at", "first_seen_at",
]  # fmt: skip
POOL_FIELDS = [*DISPLAY_FIELDS, "search_title", "search_abstract", "embedding", "embedding_key"]


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
        self._feedback_vectors = {}  # paper id -> its embedding, for the feedback papers of readers with a model
        self._doc_of = None

    @classmethod
    def load(cls, now):
        since = now - timedelta(days=settings.DIGEST_MAX_WINDOW_DAYS)
        papers = Paper.objects.filter(first_seen_at__gte=since).only(*POOL_FIELDS).order_by("arxiv_id")
        return cls(papers, Topic.objects.all(), now)

    def __len__(self):
        return len(self.papers)

    def warm(self):
        """Load what every ranking of the pool shares, now: the papers' embeddings (before forking, say)."""
        if self.index.semantic_weight > 0 and self.papers:
            self.index.vectors  # noqa: B018 - computed on first access

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

    def trending_picks(self, *, since, exclude=frozenset(), limit=3, weekly=False):
        """The pool's most trending papers first seen since `since`, less `exclude`, as Picks matching nothing: what
        a digest offers on a day nothing new matched its reader. `weekly` ranks them as the week's best are. The
        pool is ordered once per run; each reader walks that order to their first `limit`."""
        trend = self._trending_for(weekly)
        ordered_key = ("trending", weekly)
        if ordered_key not in self._scores:
            self._scores[ordered_key] = sorted(range(len(self.papers)), key=lambda doc: (-trend[doc], doc))
        picks = []
        for doc in self._scores[ordered_key]:
            if len(picks) == limit:
                break
            paper = self.papers[doc]
            if paper.first_seen_at >= since and paper.id not in exclude:
                picks.append(Pick(paper, trend[doc], 0.0, ()))
        return picks

    def _choose_with_feedback(self, keys, feedback, *, since, exclude, limit, weekly=False):
        """Like choose, for a reader with feedback: every candidate's score is nudged, by the reader's personal model
        once their feedback is enough for one (`model_factor`), else by their similarity to the papers (`factor`)."""
        best = {}  # doc -> its best blended score over the reader's topics and keywords
        for key in keys:
            for negative_score, doc in self._ranked(key, weekly):
                if negative_score < best.get(doc, 0.0):
                    best[doc] = negative_score
        candidates = [
            (doc, negative_score)
            for doc, negative_score in best.items()
            if self.papers[doc].first_seen_at >= since and self.papers[doc].id not in exclude
        ]
        model = self.feedback_model(feedback) if candidates and has_enough_feedback(feedback) else None
        if model is not None:
            probabilities = preference(model, self.index.vectors[[doc for doc, _score in candidates]])
            factors = [model_factor(float(probability)) for probability in probabilities]
        else:
            more = [self._similar(item) for item in feedback if item.direction == "more"]
            less = [self._similar(item) for item in feedback if item.direction == "less"]
            factors = [factor(doc, more, less) for doc, _score in candidates]
        ranked = sorted(
            (round(negative_score * nudge, 6), doc)
            for (doc, negative_score), nudge in zip(candidates, factors, strict=True)
        )
        return [self._pick(doc, -negative_score, keys) for negative_score, doc in ranked[:limit]]

    def feedback_model(self, feedback):
        """The reader's personal model (fit_preference) on their latest FEEDBACK_MODEL_MAX_CLICKS clicks with a
        known vector, or None when those are not enough for one (today's nudge, `factor`, then ranks them)."""
        import numpy as np

        feedback = list(feedback)[-FEEDBACK_MODEL_MAX_CLICKS:]
        vectors = self.feedback_vectors(item.paper_id for item in feedback)
        feedback = [item for item in feedback if item.paper_id in vectors]
        if not has_enough_feedback(feedback):
            return None
        try:
            return fit_preference(
                [vectors[item.paper_id] for item in feedback], [item.direction == "more" for item in feedback]
            )
        except np.linalg.LinAlgError:  # the penalty keeps the system regular; should it not, the reader keeps `factor`
            return None

    def feedback_vectors(self, paper_ids):
        """{paper id: embedding} of feedback papers: the pool's own rows, and for the others (papers of earlier
        digests, mostly) their stored vectors, loaded in one query and kept for the run. Deleted papers are left out."""
        paper_ids = set(paper_ids)
        missing = paper_ids - self._feedback_vectors.keys()
        if missing:
            if self._doc_of is None:
                self._doc_of = {paper.id: doc for doc, paper in enumerate(self.papers)}
            in_pool = {paper_id for paper_id in missing if paper_id in self._doc_of}
            for paper_id in in_pool:
                self._feedback_vectors[paper_id] = self.index.vectors[self._doc_of[paper_id]]
            if missing - in_pool:
                from papers import embeddings

                fields = ["id", "title", "abstract", "embedding", "embedding_key"]
                papers = list(Paper.objects.filter(id__in=missing - in_pool).only(*fields).order_by("id"))
                if papers:
                    vectors = embeddings.paper_vectors(papers, self.index.embeddings)
                    self._feedback_vectors.update(zip((paper.id for paper in papers), vectors, strict=True))
        return {
            paper_id: self._feedback_vectors[paper_id] for paper_id in paper_ids if paper_id in self._feedback_vectors
        }

    def prepare_feedback(self, feedback_by_reader):
        """Load at once the vectors of the feedback papers of every reader who will get a personal model
        (`feedback_by_reader`: an iterable of FeedbackPaper tuples), so a batch of readers costs one query."""
        self.feedback_vectors(
            item.paper_id
            for feedback in feedback_by_reader
            if has_enough_feedback(feedback)
            for item in list(feedback)[-FEEDBACK_MODEL_MAX_CLICKS:]
        )


def similarity_query(title, keywords=()):
    """The query a feedback paper stands for: its title, lifted a little by its keywords."""
    secondary = QueryText.parse(", ".join(keywords)) if keywords else None
    return Query([QueryText.parse(title)], [secondary] if secondary else [], label=title)


def factor(doc, more, less, weight=FEEDBACK_WEIGHT):
    """The multiplier of a candidate's score: `more` and `less` are lists of {doc: similarity}."""
    liked = max((similar.get(doc, 0.0) for similar in more), default=0.0)
    disliked = max((similar.get(doc, 0.0) for similar in less), default=0.0)
    return 1 + weight * (liked - disliked)


# The personal model: a logistic regression on the papers' embeddings, fitted to the reader's own clicks.


def has_enough_feedback(feedback, min_clicks=None, min_each=None):
    """Whether a reader's feedback (FeedbackPaper items) is enough to fit their personal model."""
    min_clicks = FEEDBACK_MODEL_MIN_CLICKS if min_clicks is None else min_clicks
    min_each = FEEDBACK_MODEL_MIN_EACH if min_each is None else min_each
    more = sum(1 for item in feedback if item.direction == "more")
    return more >= min_each and len(feedback) - more >= min_each and len(feedback) >= min_clicks


def fit_preference(vectors, liked, l2=None, *, iterations=30):
    """(weights, bias) of an L2-regularised logistic regression: P(more | vector) = sigmoid(vector · weights + bias).

    `vectors` has one row per feedback paper, `liked` says which were "more" (1) and which "less" (0). Each direction
    weighs half of the loss however many clicks it has; the bias is not penalised. Newton's method (IRLS) on the
    penalised loss, solved in the clicks' own space: the optimal weights are a combination of the clicks' vectors
    (weights = vectorsᵀ · a), so each step solves (clicks + 1) equations instead of (dimensions + 1).
    """
    import numpy as np  # here, like the embeddings: a process that never fits a model does not load numpy for it

    l2 = FEEDBACK_MODEL_L2 if l2 is None else l2
    x = np.asarray(vectors, dtype=np.float64)
    y = np.asarray(liked, dtype=np.float64)
    count = len(y)
    positives = y.sum()
    share = np.where(y == 1, 1 / (2 * positives), 1 / (2 * (count - positives)))  # sums to 1
    gram = x @ x.T
    a, bias = np.zeros(count), 0.0
    for _ in range(iterations):
        p = _sigmoid(gram @ a + bias)
        residual = share * (p - y)
        curvature = share * p * (1 - p)
        system = np.empty((count + 1, count + 1))
        system[:count, :count] = curvature[:, None] * gram + l2 * np.eye(count)
        system[:count, count] = curvature
        system[count, :count] = curvature @ gram
        system[count, count] = curvature.sum() + 1e-12
        step = np.linalg.solve(system, np.append(residual + l2 * a, residual.sum()))
        a -= step[:count]
        bias -= step[count]
        if np.abs(step).max() < 1e-7:
            break
    return x.T @ a, float(bias)


def _sigmoid(z):
    import numpy as np

    return 1 / (1 + np.exp(-np.clip(z, -30, 30)))


def preference(model, vectors):
    """P("more") of each row of `vectors` under a model from fit_preference."""
    import numpy as np

    weights, bias = model
    return _sigmoid(np.asarray(vectors, dtype=np.float64) @ weights + bias)


def model_factor(probability, weight=None):
    """The multiplier of a candidate's score under the personal model: from 1 - weight (surely "less") to 1 + weight."""
    weight = FEEDBACK_MODEL_WEIGHT if weight is None else weight
    return 1 + weight * (2 * probability - 1)
