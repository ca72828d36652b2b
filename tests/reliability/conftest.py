"""Shared by the generated-input ("fuzz") suites, tests/reliability/test_fuzz_*.py.

Each suite runs its examples under the "fuzz" hypothesis profile (no deadline, derandomized so CI sees the same cases
every run, no example database written anywhere) with its own max_examples. Hypothesis runs every example inside one
call of the test function, so function-scoped fixtures are set up once for all of them: `fresh_example` gives each
example its own savepoint, rolled back afterwards, and counts it.

At the end of the session a line "generated cases: N" sums the examples run. When every fuzz test ran (the whole
folder or the whole suite, nothing deselected), fewer than MIN_CASES fails the run; running one file alone does not.
That count is kept by tests/reliability/fuzz_count.py, a plugin tests/conftest.py loads, so that it also works
under pytest-xdist.
"""

import contextlib
import io
import logging

import pytest
from django.conf import settings as django_settings
from django.core import mail
from django.db import transaction
from hypothesis import HealthCheck, settings
from hypothesis.configuration import set_hypothesis_home_dir

from tests.reliability.fuzz_count import count_example

# Hypothesis keeps caches (its Unicode tables) in its home directory, by default .hypothesis/ in the working
# directory: keep them with the other local state instead of in the checkout.
set_hypothesis_home_dir(django_settings.VAR_DIR / "hypothesis")

settings.register_profile(
    "fuzz",
    deadline=None,
    derandomize=True,
    database=None,
    print_blob=False,
    # The fixtures are shared by all examples on purpose: each example opens its own savepoint (fresh_example).
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large],
)


@pytest.fixture
def fresh_example(request, db):
    """`with fresh_example():` around one example's body: a savepoint rolled back at the end, an empty outbox, and
    one more generated case counted."""

    @contextlib.contextmanager
    def example():
        count_example(request.node)
        mail.outbox = []
        with transaction.atomic():
            yield
            transaction.set_rollback(True)

    return example


@pytest.fixture
def generous_rate_limits(settings):
    """Thousands of posts and bad links from one client in a minute: the rate limits have their own tests
    (test_rate_limits.py)."""
    settings.SUBSCRIBE_RATE_PER_IP = "1000000/h"
    settings.SUBSCRIBE_RATE_PER_ADDRESS = "1000000/h"
    settings.BAD_LINK_RATE_PER_IP = "1000000/h"
    settings.CONFIRMATION_RESEND_SECONDS = 0


@pytest.fixture
def plain_template_rendering(monkeypatch):
    """Render templates as outside tests. The test environment instruments every template render so the test client
    can record contexts, which doubles the cost of a page with a 600-option time zone list; no fuzz test reads
    them."""
    from django.template.base import Template

    monkeypatch.setattr(Template, "_render", lambda template, context: template.nodelist.render(context))


@pytest.fixture
def broker(tmp_path):
    """A Redis server of the test's own (tests.reliability.harness.RedisServer), stopped afterwards."""
    from tests.reliability.harness import RedisServer

    server = RedisServer(tmp_path)
    server.start()
    yield server
    server.stop()


@pytest.fixture
def logs():
    """What the console handler prints, with the root logger and every named logger at DEBUG."""
    root = logging.getLogger()
    [console] = [handler for handler in root.handlers if handler.get_name() == "console"]
    loggers = [root, *(logging.getLogger(name) for name in list(logging.root.manager.loggerDict))]
    saved = [(logger, logger.level) for logger in loggers]
    stream, saved_level = io.StringIO(), console.level
    saved_stream = console.setStream(stream)
    console.setLevel(logging.DEBUG)
    for logger in loggers:
        logger.setLevel(logging.DEBUG)
    yield stream
    console.setStream(saved_stream)
    console.setLevel(saved_level)
    for logger, level in saved:
        logger.setLevel(level)
