"""Fetching papers from the live sources into the catalogue, each fetch recorded as a FetchRun.

A fetch reads everything first and stores it after, so a source that fails half-way stores nothing of that fetch.
"""

import logging

from django.conf import settings
from django.utils import timezone

from papers.ingest import import_items
from papers.models import FetchRun
from papers.sources import InvalidInput, arxiv, huggingface
from papers.sources.http import make_session

logger = logging.getLogger(__name__)


def user_agent():
    return f"{settings.DIGEST_SITE_NAME} paper digest (+{settings.SITE_URL})"


def fetch(source, *, day=None, session=None, sleep=None, on_progress=None):
    """Fetch from `source` ("hf" or "arxiv"), store the papers, and return the finished FetchRun."""
    session = session or make_session(user_agent())
    if source == FetchRun.Source.HUGGINGFACE:
        day = day or timezone.now().date()
        run = FetchRun.objects.create(source=source, parameters={"date": day.isoformat()})
        read = lambda: huggingface.fetch_day(session, day)  # noqa: E731
    else:
        parameters = {"categories": settings.ARXIV_CATEGORIES, "max_results": settings.ARXIV_MAX_RESULTS}
        run = FetchRun.objects.create(source=source, parameters=parameters)
        extra = {"sleep": sleep} if sleep else {}
        read = lambda: arxiv.fetch_recent(  # noqa: E731
            session, settings.ARXIV_CATEGORIES, max_results=settings.ARXIV_MAX_RESULTS, **extra
        )
    try:
        items = read()
    except InvalidInput as failure:
        logger.warning("Fetch from %s failed: %s", source, failure.reason)
        run.error, run.error_count, run.finished_at = failure.reason, 1, timezone.now()
        run.save()
        return run
    result = import_items(items, on_progress=on_progress)
    run.fetched_count = len(items)
    run.created_count, run.updated_count = result.created, result.updated
    run.error_count = len(result.rejected)
    run.error = "\n".join(f"{rejection.where}: {rejection.reason}" for rejection in result.rejected)
    run.finished_at = timezone.now()
    run.save()
    logger.info("Fetched %d papers from %s: %d new, %d updated.", len(items), source, result.created, result.updated)
    return run
