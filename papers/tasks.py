"""Celery tasks of the catalogue: thin wrappers around papers.fetching."""

from celery import shared_task

from papers import fetching


# The name it had when it lived in digest/tasks.py: beat's schedules stored in the database, and tasks already queued,
# name it so.
@shared_task(name="digest.tasks.fetch_papers", acks_late=True)
def fetch_papers(source):
    """Beat runs this for "hf" hourly and for "arxiv" daily after arXiv's announcement."""
    run = fetching.fetch(source)
    return {"fetched": run.fetched_count, "created": run.created_count, "error": run.error}
