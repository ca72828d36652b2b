"""Shared by the generated-input ("fuzz") suites, tests/reliability/test_fuzz_*.py.

Each suite runs its examples under the "fuzz" hypothesis profile (no deadline, derandomized so CI sees the same cases
every run, no example database written anywhere) with its own max_examples. Hypothesis runs every example inside one
call of the test function, so function-scoped fixtures are set up once for all of them: `fresh_example` gives each
example its own savepoint, rolled back afterwards, and counts it.

At the end of the session a line "generated cases: N" sums the examples run. When every fuzz test ran (the whole
folder or the whole suite, nothing deselected), fewer than MIN_CASES fails the run; running one file alone does not.
Under pytest-xdist (`-n 2`) each worker counts its own tests' examples and sends the count with the test's report;
the controller adds them up, learns what was collected from the workers' collections and whether any worker
deselected a fuzz test from what each worker reports when it stops, and applies the same rule to the whole run.
"""

import collections
import contextlib
from pathlib import Path

import pytest
from django.conf import settings as django_settings
from django.core import mail
from django.db import transaction
from hypothesis import HealthCheck, settings
from hypothesis.configuration import set_hypothesis_home_dir

MIN_CASES = 10_000
FUZZ_DIR = Path(__file__).parent

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

_cases = collections.Counter()
_fuzz_items = set()
_fuzz_ran = set()
_fuzz_deselected = False
CASES_PROPERTY = "fuzz_cases"


def is_fuzz(item_or_report):
    path = getattr(item_or_report, "path", None) or Path(str(item_or_report.fspath))
    return Path(path).parent == FUZZ_DIR and Path(path).name.startswith("test_fuzz_")


def is_fuzz_nodeid(nodeid):
    folder, _, name = nodeid.split("::")[0].rpartition("/")
    return folder.endswith(f"{FUZZ_DIR.parent.name}/{FUZZ_DIR.name}") and name.startswith("test_fuzz_")


@pytest.fixture
def fresh_example(request, db):
    """`with fresh_example():` around one example's body: a savepoint rolled back at the end, an empty outbox, and
    one more generated case counted."""

    @contextlib.contextmanager
    def example():
        _cases[request.node.nodeid] += 1
        mail.outbox = []
        with transaction.atomic():
            yield
            transaction.set_rollback(True)

    return example


@pytest.fixture
def generous_rate_limits(settings):
    """Thousands of posts from one client in a minute: the rate limits have their own tests (test_rate_limits.py)."""
    settings.SUBSCRIBE_RATE_PER_IP = "1000000/h"
    settings.SUBSCRIBE_RATE_PER_ADDRESS = "1000000/h"
    settings.CONFIRMATION_RESEND_SECONDS = 0


@pytest.fixture
def plain_template_rendering(monkeypatch):
    """Render templates as outside tests. The test environment instruments every template render so the test client
    can record contexts, which doubles the cost of a page with a 600-option time zone list; no fuzz test reads
    them."""
    from django.template.base import Template

    monkeypatch.setattr(Template, "_render", lambda template, context: template.nodelist.render(context))


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(items):
    """The fuzz tests are marked `fuzz` (before -m reads the marks), and remembered."""
    for item in items:
        if is_fuzz(item):
            item.add_marker(pytest.mark.fuzz)
            _fuzz_items.add(item.nodeid)


def pytest_deselected(items):
    global _fuzz_deselected
    if any(is_fuzz(item) for item in items):
        _fuzz_deselected = True


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_node_collection_finished(node, ids):
    """Controller: what a worker collected, after its deselection (every worker collects the same)."""
    _fuzz_items.update(nodeid for nodeid in ids if is_fuzz_nodeid(nodeid))


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node, error):
    """Controller: whether the worker deselected a fuzz test (by -m, -k or the PostgreSQL-only rule)."""
    global _fuzz_deselected
    if getattr(node, "workeroutput", {}).get("fuzz_deselected"):
        _fuzz_deselected = True


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    """The examples a fuzz test ran travel with its call report, so an xdist controller can count them too."""
    report = yield
    if call.when == "call" and is_fuzz(item):
        # A new list: the report's is the item's own, which later reports share.
        report.user_properties = [*report.user_properties, (CASES_PROPERTY, _cases[item.nodeid])]
    return report


def pytest_runtest_logreport(report):
    if report.when != "call" or not is_fuzz_nodeid(report.nodeid):
        return
    _fuzz_ran.add(report.nodeid)
    for name, value in report.user_properties:
        if name == CASES_PROPERTY:
            _cases[report.nodeid] = value


def whole_fuzz_set_ran(session):
    files = {path.name for path in FUZZ_DIR.glob("test_fuzz_*.py")}
    collected = {nodeid.split("::")[0].rpartition("/")[2] for nodeid in _fuzz_items}
    return bool(files) and collected == files and not _fuzz_deselected and _fuzz_ran == _fuzz_items


@pytest.hookimpl(trylast=True)
def pytest_sessionfinish(session, exitstatus):
    workeroutput = getattr(session.config, "workeroutput", None)
    if workeroutput is not None:
        # An xdist worker: the controller judges the whole run.
        workeroutput["fuzz_deselected"] = _fuzz_deselected
        return
    total = sum(_cases.values())
    if whole_fuzz_set_ran(session) and total < MIN_CASES and session.exitstatus == 0:
        session.config._fuzz_too_few = True
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_terminal_summary(terminalreporter, config):
    if not _cases or hasattr(config, "workeroutput"):
        return
    total = sum(_cases.values())
    terminalreporter.write_line(f"generated cases: {total:,} in {len(_cases)} fuzz tests")
    if getattr(config, "_fuzz_too_few", False):
        terminalreporter.write_line(
            f"generated cases: the fuzz suites ran {total:,} cases, fewer than the {MIN_CASES:,} required", red=True
        )


@pytest.fixture
def broker(tmp_path):
    """A Redis server of the test's own (tests.reliability.harness.RedisServer), stopped afterwards."""
    from tests.reliability.harness import RedisServer

    server = RedisServer(tmp_path)
    server.start()
    yield server
    server.stop()
