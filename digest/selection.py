"""Choosing each reader's papers from the run's pool (papers.ranking.Pool).

A run works on one pool: the papers first seen in the last DIGEST_MAX_WINDOW_DAYS, indexed once. Every topic and every
keyword is scored over the pool once and ranked once (relevance blended with trending). Per reader only this remains:
merge the rankings of their topics and keywords, skip papers first seen before their last digest (or, for a first
digest, more than DIGEST_FIRST_WINDOW_HOURS ago) and papers already sent to them, and stop at their N.

A reader who gave "more/less like this" feedback (digest.feedback) is ranked on a path of their own: all their
candidates are scored, nudged by their similarity to the papers they gave feedback on (each feedback paper scored over
the pool once per run, like a topic) or, once they have enough feedback, by a personal model fitted to it, and sorted
(papers.ranking). Readers without feedback take the merge above unchanged.
"""

import dataclasses
from dataclasses import dataclass, field
from datetime import timedelta

from django.conf import settings
from django.db.models import Max

from digest.models import Delivery, Feedback
from papers.ranking import Preferences


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


TRENDING_ON_EMPTY_DAYS = 3  # the papers an email with nothing new for its reader offers instead


def trending_instead(pool, subscriber, history):
    """The Picks an email shows when nothing new matched its reader: the pool's most trending papers new to them."""
    return pool.trending_picks(
        since=history.since_for(subscriber),
        exclude=history.sent.get(subscriber.id, frozenset()),
        limit=TRENDING_ON_EMPTY_DAYS,
        weekly=is_weekly(subscriber),
    )


def as_written(picks, subscriber):
    """The picks with their keyword labels as the reader wrote them (“NeRF”), not as matching compares them (“nerf”,
    papers.ranking.Preferences)."""
    spelled = {f"“{keyword.strip().lower()}”": f"“{keyword.strip()}”" for keyword in subscriber.keywords}
    return [
        dataclasses.replace(pick, labels=tuple(spelled.get(label, label) for label in pick.labels))
        if any(label in spelled for label in pick.labels)
        else pick
        for pick in picks
    ]


def arrange(picks):
    """The reader's picks in the email's order, which its header states: the best (the top pick) first, then the
    others grouped by the topic or keyword they match best, groups in the order of their best paper, best first
    within each. Arranging an arranged list changes nothing, so "view in browser" can rebuild the email from its
    delivery's order."""
    if len(picks) <= 2:
        return list(picks)
    groups = {}
    for pick in picks[1:]:
        groups.setdefault(pick.labels[0] if pick.labels else "", []).append(pick)
    return [picks[0], *(pick for group in groups.values() for pick in group)]
