import itertools
from datetime import UTC, datetime

import pytest
import time_machine
from django.utils import timezone

from papers.models import Paper, Topic
from subscriptions.models import Subscriber

# The fuzz suites' run-wide case count: a plugin loaded here, so that pytest-xdist's controller has it too.
pytest_plugins = ["tests.reliability.fuzz_count"]

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


# What makes pytest-django give a test the database (its test ordering reads the same), with the `django_db` mark.
DATABASE_FIXTURES = {"db", "transactional_db", "live_server"}
_deselected = []
_deselected_by_workers = []


def uses_database(item):
    return item.get_closest_marker("django_db") is not None or bool(DATABASE_FIXTURES & set(item.fixturenames))


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config, items):
    """Every test that touches the test database is marked `database` (before -m reads the marks): CI's SQLite pass
    runs those alone, since a test that never touches the database cannot pass on one database and fail on another.

    Tests marked `postgresql` are left out on SQLite, with a line saying so; CI runs them in its PostgreSQL pass."""
    from django.conf import settings

    for item in items:
        if uses_database(item):
            item.add_marker(pytest.mark.database)

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


def pytest_deselected(items):
    _deselected.extend(item.nodeid for item in items)


def pytest_sessionfinish(session):
    if hasattr(session.config, "workeroutput"):
        session.config.workeroutput["deselected"] = len(_deselected)


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node, error):
    _deselected_by_workers.append(getattr(node, "workeroutput", {}).get("deselected", 0))


def pytest_terminal_summary(terminalreporter):
    """Under pytest-xdist the workers collect and deselect, and pytest's last line leaves deselected tests out."""
    if any(_deselected_by_workers):
        left_out = max(_deselected_by_workers)
        terminalreporter.write_line(f"deselected: {left_out} tests (each xdist worker left them out)")


@pytest.fixture
def locmem(settings):
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"


@pytest.fixture
def gnn(make_topic, make_paper):
    """A topic with two papers about it (test files that need another `gnn` define their own)."""
    make_paper("Graph neural networks for molecules", "GNN.")
    make_paper("Message passing at scale", "Graph neural networks.")
    return make_topic("Graph neural networks", aliases=["GNN"])


# A fixed morning for tests that check what names the day (a date heading, a subject, today's topic page): with a
# ticking clock, a test that starts just before midnight UTC checks against the next day.
FROZEN_NOW = datetime(2026, 12, 2, 8, 0, tzinfo=UTC)  # a Wednesday


@pytest.fixture
def frozen_clock():
    """The clock stopped at FROZEN_NOW for the test."""
    with time_machine.travel(FROZEN_NOW, tick=False):
        yield


@pytest.fixture(autouse=True)
def no_pool_kept(monkeypatch):
    """Each test starts with no paper pool kept from another (digest.compose.get_pool). A worker keeps its pool while
    the papers' count, highest id and latest update stay the same, and two tests' papers can agree on all three (ids
    start again after a rollback; a stopped clock gives the same update times)."""
    from digest import compose

    monkeypatch.setattr(compose, "_pool_cache", {})
