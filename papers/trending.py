"""How "trending" a paper is, and how that blends with how well it matches a reader.

    trending = (upvotes + 1) / (age_hours + 2) ** DIGEST_TRENDING_GRAVITY

the gravity formula of link aggregators: votes count, and age pulls a paper down, faster for a larger gravity. Age runs
from when Hugging Face featured the paper (else its publication, else when it was first seen here). Within a pool the
values are scaled to 0..1 on a log scale (upvotes spread over orders of magnitude), and a reader's score for a paper is

    score = relevance × ((1 - w) + w × trending_scaled),  w = DIGEST_TRENDING_WEIGHT (0.4 by default)

so relevance decides what is in a digest, and trending lifts the papers people are talking about among the relevant
ones. w = 0 ignores trending; w = 1 lets an unvoted paper score nothing.
"""

import math

from django.conf import settings


def trending_score(paper, now, gravity=None):
    gravity = settings.DIGEST_TRENDING_GRAVITY if gravity is None else gravity
    moment = paper.featured_at or paper.published_at or paper.first_seen_at
    age_hours = max((now - moment).total_seconds() / 3600, 0.0) if moment else 0.0
    return (paper.upvotes + 1) / (age_hours + 2) ** gravity


def scale(values):
    """Trending scores scaled to 0..1 on a log scale, the largest in the pool being 1."""
    values = list(values)
    top = max((math.log1p(value) for value in values), default=0.0)
    if top <= 0:
        return [0.0 for _ in values]
    return [math.log1p(value) / top for value in values]


def blend(relevance, trending_scaled, weight=None):
    weight = settings.DIGEST_TRENDING_WEIGHT if weight is None else min(weight, 1.0)
    return relevance * ((1 - weight) + weight * trending_scaled)
