"""Fetching from the live sources, with their answers recorded in their real formats; the internet is never used."""

from datetime import date
from pathlib import Path

import pytest
import responses
from django.core.management import CommandError, call_command
from responses import matchers, registries

from papers.fetching import fetch
from papers.models import FetchRun, Paper
from papers.sources import arxiv, huggingface
from papers.sources.http import make_session

FIXTURES = Path(__file__).parent / "fixtures"
HF_DAY = (FIXTURES / "import/hf_daily_papers.json").read_bytes()
ARXIV_PAGE_1 = (FIXTURES / "import/arxiv_feed.xml").read_bytes()
ARXIV_PAGE_2 = (FIXTURES / "fetch/arxiv_page2.xml").read_bytes()
ARXIV_ERROR = (FIXTURES / "import/arxiv_error.xml").read_bytes()


@pytest.fixture
def mocked():
    with responses.RequestsMock() as mock:
        yield mock


def test_a_normal_hugging_face_day_fills_the_catalogue(db, mocked):
    mocked.get(
        huggingface.API_URL,
        body=HF_DAY,
        match=[matchers.query_param_matcher({"date": "2026-11-27", "sort": "trending", "limit": "50", "p": "0"})],
    )
    run = fetch("hf", day=date(2026, 11, 27))
    assert (run.fetched_count, run.created_count, run.error_count, run.error) == (3, 3, 0, "")
    assert run.parameters == {"date": "2026-11-27"} and run.finished_at is not None
    urls = dict(Paper.objects.values_list("arxiv_id", "github_url"))
    assert urls == {
        "2312.00752": "https://github.com/state-spaces/mamba",
        "2401.04088": "https://github.com/mistralai/mistral-src",  # given as owner/name
        "2305.18290": "",  # no githubRepo
    }


def test_upvotes_that_changed_during_the_day_are_updated(db, mocked):
    mocked.get(huggingface.API_URL, body=HF_DAY)
    fetch("hf")
    Paper.objects.update(upvotes=1)
    run = fetch("hf")
    assert (run.created_count, run.updated_count) == (0, 3)
    assert not Paper.objects.filter(upvotes=1).exists()


def test_an_empty_day_is_a_successful_fetch_of_nothing(db, mocked):
    mocked.get(huggingface.API_URL, body=b"[]")
    run = fetch("hf")
    assert (run.fetched_count, run.error) == (0, "")
    assert not Paper.objects.exists()


@pytest.mark.parametrize("body", [b"<html>Bad gateway</html>", b'[{"paper": {"id": "2401.04088"', b'{"error": "x"}'])
def test_a_broken_answer_stores_nothing_and_says_why(db, mocked, body):
    mocked.get(huggingface.API_URL, body=body)
    run = fetch("hf")
    assert run.error_count == 1 and "page 0" in run.error
    assert not Paper.objects.exists()


def test_a_429_is_retried_and_the_retry_after_header_honoured(db):
    with responses.RequestsMock(registry=registries.OrderedRegistry) as mocked:
        mocked.get(huggingface.API_URL, status=429, headers={"Retry-After": "1"})
        mocked.get(huggingface.API_URL, body=HF_DAY)
        run = fetch("hf")
        assert [call.response.status_code for call in mocked.calls] == [429, 200]
    assert run.created_count == 3 and run.error == ""
    retry = make_session("test").get_adapter(huggingface.API_URL).max_retries
    assert retry.respect_retry_after_header and 429 in retry.status_forcelist and retry.backoff_factor > 0


def test_a_server_that_keeps_failing_gives_a_recorded_failure(db, mocked, monkeypatch):
    monkeypatch.setattr("papers.fetching.make_session", lambda agent: _session_without_waits())
    mocked.get(huggingface.API_URL, status=503)
    run = fetch("hf")
    assert "HTTP 503 (after retries)" in run.error
    assert not Paper.objects.exists()


def _session_without_waits():
    from papers.sources.http import make_session

    return make_session("test", retries=2, backoff_factor=0)


def test_arxiv_results_are_fetched_page_by_page_three_seconds_apart(db, mocked, settings):
    settings.ARXIV_CATEGORIES = ["cs.LG", "cs.CL"]
    settings.ARXIV_MAX_RESULTS = 3
    monkey_waits = []
    first = {"search_query": "cat:cs.LG OR cat:cs.CL", "start": "0", "max_results": "2"}
    second = {"search_query": "cat:cs.LG OR cat:cs.CL", "start": "2", "max_results": "1"}
    common = {"sortBy": "submittedDate", "sortOrder": "descending"}
    mocked.get(arxiv.API_URL, body=ARXIV_PAGE_1, match=[matchers.query_param_matcher({**first, **common})])
    mocked.get(arxiv.API_URL, body=ARXIV_PAGE_2, match=[matchers.query_param_matcher({**second, **common})])
    original = arxiv.PAGE_SIZE
    arxiv.PAGE_SIZE = 2
    try:
        run = fetch("arxiv", sleep=monkey_waits.append)
    finally:
        arxiv.PAGE_SIZE = original
    assert (run.fetched_count, run.created_count, run.error) == (3, 3, "")
    assert len(monkey_waits) == 1 and 2.5 < monkey_waits[0] <= 3.0
    mamba = Paper.objects.get(arxiv_id="2312.00752")  # versioned id, stripped
    assert mamba.primary_category == "cs.LG" and mamba.categories == ["cs.LG", "cs.AI"]


def test_an_arxiv_error_feed_is_a_clear_failure(db, mocked):
    mocked.get(arxiv.API_URL, body=ARXIV_ERROR)
    run = fetch("arxiv")
    assert run.error.startswith("arXiv API error:")
    assert not Paper.objects.exists()


def test_fetchpapers_reports_each_source(db, mocked, capsys):
    mocked.get(huggingface.API_URL, body=HF_DAY)
    mocked.get(arxiv.API_URL, body=ARXIV_PAGE_2)
    call_command("fetchpapers")
    out = capsys.readouterr().out
    assert "Hugging Face daily papers: 3 fetched, 3 created, 0 updated, 0 rejected." in out
    assert "arXiv API: 1 fetched, 0 created, 1 updated, 0 rejected." in out
    assert FetchRun.objects.count() == 2


def test_fetchpapers_exits_non_zero_when_a_source_fails(db, mocked, capsys):
    mocked.get(arxiv.API_URL, body=ARXIV_ERROR)
    with pytest.raises(CommandError, match="A fetch failed") as raised:
        call_command("fetchpapers", "--source", "arxiv")
    assert raised.value.returncode == 1
    assert "arXiv API: failed: arXiv API error" in capsys.readouterr().err


def test_fetchpapers_refuses_a_bad_date(db):
    with pytest.raises(CommandError, match="--date 'yesterday' is not a date") as raised:
        call_command("fetchpapers", "--source", "hf", "--date", "yesterday")
    assert raised.value.returncode == 2


def test_the_real_network_is_never_used(db):
    with pytest.raises(
        RuntimeError, match="a test tried the real network: GET https://huggingface.co/api/daily_papers"
    ):
        fetch("hf")


def test_the_fetch_schedule_exists_after_migrate(db):
    from django_celery_beat.models import PeriodicTask

    hf = PeriodicTask.objects.get(name="Fetch Hugging Face daily papers")
    arxiv_task = PeriodicTask.objects.get(name="Fetch arXiv papers")
    assert (hf.task, hf.args, hf.interval.every, hf.interval.period) == (
        "digest.tasks.fetch_papers",
        '["hf"]',
        1,
        "hours",
    )
    assert (arxiv_task.args, arxiv_task.crontab.hour, str(arxiv_task.crontab.timezone)) == (
        '["arxiv"]',
        "20",
        "America/New_York",
    )
