"""The run-wide count of the fuzz suites' generated cases (tests/reliability/test_fuzz_*.py).

At the end of the session a line "generated cases: N" sums the examples run. When every fuzz test ran (the whole
folder or the whole suite, nothing deselected), fewer than MIN_CASES fails the run; running one file alone does not.

A plugin of its own, which tests/conftest.py loads, rather than part of tests/reliability/conftest.py: under
pytest-xdist (`-n 2`) the controller, which collects nothing, never loads that conftest, yet it is where the run is
judged. Each worker counts its own tests' examples (count_example, called by the fresh_example fixture) and sends
the count with the test's report; the controller adds them up, learns what was collected from the workers'
collections and whether a worker deselected a fuzz test from what each worker reports when it stops, and applies
the same rule to the whole run.
"""

import collections
from pathlib import Path

import pytest

MIN_CASES = 10_000
FUZZ_DIR = Path(__file__).parent
CASES_PROPERTY = "fuzz_cases"

_cases = collections.Counter()
_fuzz_items = set()
_fuzz_ran = set()
_fuzz_deselected = False


def count_example(item):
    _cases[item.nodeid] += 1


def is_fuzz(item_or_report):
    path = getattr(item_or_report, "path", None) or Path(str(item_or_report.fspath))
    return Path(path).parent == FUZZ_DIR and Path(path).name.startswith("test_fuzz_")


def is_fuzz_nodeid(nodeid):
    folder, _, name = nodeid.split("::")[0].rpartition("/")
    return folder.endswith(f"{FUZZ_DIR.parent.name}/{FUZZ_DIR.name}") and name.startswith("test_fuzz_")


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
