import itertools

import pytest
from django.utils import timezone

from papers.models import Paper, Topic
from subscriptions.models import Subscriber

_numbers = itertools.count(1)


@pytest.fixture
def make_paper(db):
    def make(title, abstract="", *, upvotes=10, first_seen_at=None, **fields):
        number = next(_numbers)
        return Paper.objects.create(
            arxiv_id=fields.pop("arxiv_id", f"2611.{number:05d}"),
            title=title,
            raw_title=title,
            abstract=abstract,
            upvotes=upvotes,
            first_seen_at=first_seen_at or timezone.now(),
            **fields,
        )

    return make


@pytest.fixture
def make_topic(db):
    def make(name, aliases=(), description=""):
        slug = name.lower().replace(" ", "-")
        return Topic.objects.create(name=name, slug=slug, aliases="\n".join(aliases), description=description)

    return make


@pytest.fixture
def make_reader(db):
    def make(email=None, *, topics=(), status=Subscriber.Status.ACTIVE, **fields):
        fields.setdefault("confirmed_at", None if status == Subscriber.Status.PENDING else timezone.now())
        email = email or f"reader{next(_numbers)}@example.com"
        reader = Subscriber.objects.create(email=email, status=status, **fields)
        reader.topics.set(topics)
        return reader

    return make


@pytest.fixture(autouse=True)
def no_internet(monkeypatch):
    """Any HTTP request a test has not mocked (with `responses`) fails the test at once, naming the URL.

    pytest-socket blocks connections to anything but loopback, but a name lookup comes first; on a machine without
    DNS that would end as a quiet, slow, retried "fetch failed" instead of a failing test.
    """
    import requests.adapters

    def refuse(adapter, request, *args, **kwargs):
        raise RuntimeError(f"a test tried the real network: {request.method} {request.url}")

    monkeypatch.setattr(requests.adapters.HTTPAdapter, "send", refuse)


@pytest.fixture(autouse=True)
def fresh_cache(settings):
    """Each test sees an empty cache (rate limits count from zero) without flushing a shared Redis database."""
    import uuid

    settings.CACHES = {
        name: {**config, "KEY_PREFIX": f"test-{uuid.uuid4().hex}"} for name, config in settings.CACHES.items()
    }


@pytest.fixture
def inline_tasks():
    """Run Celery tasks in the test's process even when REDIS_URL is set, so their emails reach mail.outbox.

    The task path through a real worker has its own tests (test_worker.py).
    """
    from config.celery import app

    saved = app.conf.task_always_eager
    app.conf.task_always_eager = True
    yield
    app.conf.task_always_eager = saved


def pytest_collection_modifyitems(config, items):
    """Tests marked `postgresql` are left out on SQLite, with a line saying so; CI runs them in its PostgreSQL pass."""
    from django.conf import settings

    if settings.DATABASES["default"]["ENGINE"] != "django.db.backends.sqlite3":
        return
    needs_postgresql = [item for item in items if item.get_closest_marker("postgresql")]
    if needs_postgresql:
        items[:] = [item for item in items if item not in needs_postgresql]
        config.hook.pytest_deselected(items=needs_postgresql)
        reporter = config.pluginmanager.get_plugin("terminalreporter")
        if reporter:
            reporter.write_line(
                f"{len(needs_postgresql)} tests need PostgreSQL and are left out on SQLite "
                "(set DATABASE_URL=postgres://… to run them)"
            )
