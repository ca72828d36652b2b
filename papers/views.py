"""Public topic pages: a topic's trending papers of one UTC day, ranked as the digest ranks them (feeds: feeds.py).

A day's page ranks the papers first seen that day (UTC) and no others, so every paper is on exactly one day's page and a
past day's page stays the same (upvotes, and editors' corrections of the topic, aside). The ranking is the digest's own
(`selection.Pool`): the day's papers are the pool, the topic the reader's only preference, and trending is measured as
of the end of the day (or now, for today). Each paper says why it is on the page: the reason that ranking gave
(`Index.explain`). Rankings are cached for RANKING_CACHE_SECONDS; the pages are the same for everyone and are sent with
a short public max-age (pages behind signed links, like the reader's feed, are never cached).
"""

from datetime import UTC, date, datetime, time, timedelta

from django.conf import settings
from django.core.cache import cache
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import timezone
from django.utils.cache import patch_cache_control
from django.utils.http import urlencode
from django.views.decorators.http import require_safe

from papers.models import Paper, Topic
from papers.ranking import DISPLAY_FIELDS, POOL_FIELDS, Pool, Preferences

PAGE_LIMIT = 100  # papers shown on a day's page, best first
RANKING_CACHE_SECONDS = 300
PUBLIC_MAX_AGE = 300  # Cache-Control max-age of the public pages and the topic feeds


def today():
    return timezone.now().astimezone(UTC).date()


def day_bounds(day):
    start = datetime.combine(day, time.min, tzinfo=UTC)
    return start, start + timedelta(days=1)


def parse_day(value):
    """The date in a URL (YYYY-MM-DD), or None when it is malformed, impossible or in the future."""
    if len(value) != 10:
        return None
    try:
        day = date.fromisoformat(value)
    except ValueError:
        return None
    return day if day <= today() else None


def active_topic(slug):
    return Topic.objects.filter(slug=slug, is_active=True).first()


def rank_day(topic, day):
    """[(paper id, score, reason)] for `topic` among the papers first seen on `day` (UTC), best first, as the digest
    ranks them: the same Pool, the same relevance threshold and the same blend with trending. The reason is why the
    paper matched the topic, in a few words (`Index.explain` over that pool, as the digest's cards say it)."""
    start, end = day_bounds(day)
    now = min(timezone.now(), end)
    papers = Paper.objects.filter(first_seen_at__gte=start, first_seen_at__lt=end).only(*POOL_FIELDS)
    pool = Pool(papers.order_by("arxiv_id"), [topic], now)
    picks = pool.choose(Preferences((topic.id,), ()), since=start, limit=len(pool))
    return [(pick.paper.id, pick.score, pick.reasons[0] if pick.reasons else "") for pick in picks]


def _ranking_key(topic, day):
    return f"topic-day:v2:{topic.id}:{day.isoformat()}"  # v2: (paper id, score, reason), was (paper id, score)


def cached_ranking(topic, day):
    key = _ranking_key(topic, day)
    ranking = cache.get(key)
    if ranking is None:
        ranking = rank_day(topic, day)
        cache.set(key, ranking, RANKING_CACHE_SECONDS)
    return ranking


def forget_ranking(topic, day):
    """Drop a topic's cached ranking of one day, so that its page and feed rank again at the next request (an editor
    has just marked one of that day's papers)."""
    cache.delete(_ranking_key(topic, day))


def ranked_papers(topic, day, limit=None):
    """(papers best first, each with .score and .reason, total matching) for a topic and day: one query, or two on a
    cache miss."""
    ranking = cached_ranking(topic, day)
    shown = ranking[:limit] if limit else ranking
    by_id = Paper.objects.only(*DISPLAY_FIELDS).in_bulk([paper_id for paper_id, _score, _reason in shown])
    papers = []
    for paper_id, score, reason in shown:
        paper = by_id.get(paper_id)
        if paper is not None:
            paper.score, paper.reason = score, reason
            papers.append(paper)
    return papers, len(ranking)


def site_url(path):
    return settings.SITE_URL.rstrip("/") + path


def topic_day_url(topic, day):
    return reverse("topics:day", args=[topic.slug, day.isoformat()])


def topic_signup_url(topic):
    """The sign-up form with `topic` chosen (subscriptions.views.subscribe reads ?topic=), at the form."""
    return reverse("subscriptions:subscribe") + "?" + urlencode({"topic": topic.slug}) + "#signup-title"


def public(response, max_age=PUBLIC_MAX_AGE):
    """Public pages: the same for everyone, so browsers and proxies may keep them briefly."""
    patch_cache_control(response, public=True, max_age=max_age)
    return response


def not_found(request, *, topic_slug=None, day_text=None, topic=None):
    context = {"topic_slug": topic_slug, "day_text": day_text, "topic": topic, "today": today()}
    return render(request, "papers/not_found.html", context, status=404)


@require_safe
def topic_list(request):
    topics = Topic.objects.filter(is_active=True)
    response = render(request, "papers/topic_list.html", {"topics": topics, "today": today()})
    return public(response)


@require_safe
def topic_today(request, slug):
    topic = active_topic(slug)
    if topic is None:
        return not_found(request, topic_slug=slug)
    return public(redirect(topic_day_url(topic, today())), max_age=60)


@require_safe
def topic_day(request, slug, day):
    topic = active_topic(slug)
    if topic is None:
        return not_found(request, topic_slug=slug)
    parsed = parse_day(day)
    if parsed is None:
        return not_found(request, day_text=day, topic=topic)
    papers, total = ranked_papers(topic, parsed, limit=PAGE_LIMIT)
    current = today()
    context = {
        "topic": topic,
        "day": parsed,
        "is_today": parsed == current,
        "papers": papers,
        "total": total,
        "previous_url": topic_day_url(topic, parsed - timedelta(days=1)),
        "previous_day": parsed - timedelta(days=1),
        "next_url": topic_day_url(topic, parsed + timedelta(days=1)) if parsed < current else None,
        "next_day": parsed + timedelta(days=1),
        "today_url": topic_day_url(topic, current) if parsed != current else None,
        "feed_url": reverse("topics:feed", args=[topic.slug]),
        "signup_url": topic_signup_url(topic),
        "min_score": settings.MATCH_MIN_SCORE,
    }
    return public(render(request, "papers/topic_day.html", context))
