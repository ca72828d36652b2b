import fcntl
import io
import json
import os
import pty
import struct
import subprocess
import sys
import termios
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command

from papers.ingest import upsert_papers
from papers.models import Paper, Topic, TopicExample
from papers.sources import PaperRecord

FIXTURES = Path(__file__).parent / "fixtures" / "import"
REPO = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.django_db


@dataclass
class Outcome:
    code: int
    stdout: str
    stderr: list[str]


def run_import(*paths, stdin=None):
    stdout, stderr = io.StringIO(), io.StringIO()
    try:
        call_command("importpapers", *paths, stdout=stdout, stderr=stderr, stdin=stdin)
        code = 0
    except CommandError as error:
        code = error.returncode
    return Outcome(code, stdout.getvalue(), stderr.getvalue().splitlines())


@pytest.fixture(autouse=True)
def in_fixtures_dir(monkeypatch):
    # Relative paths, so messages read exactly as an operator would see them: "hf_mixed.json: item 2: …".
    monkeypatch.chdir(FIXTURES)


def assert_search_text_is_fresh(paper):
    # Bulk writes skip Paper.save(), which is where search text is normally derived.
    stored_text = (paper.search_title, paper.search_abstract)
    paper.refresh_search_text()
    assert stored_text == (paper.search_title, paper.search_abstract)
    assert all(stored_text)


def stored(*fields):
    return sorted(Paper.objects.values_list("arxiv_id", *fields))


def test_it_imports_a_hugging_face_daily_papers_array():
    outcome = run_import("hf_daily_papers.json")

    assert outcome.code == 0
    assert outcome.stdout == "1 file: 3 created, 0 updated, 0 unchanged, 0 rejected.\n"
    assert outcome.stderr == []
    assert stored("upvotes", "num_comments", "github_url") == [
        ("2305.18290", 37, 0, ""),
        ("2312.00752", 142, 7, "https://github.com/state-spaces/mamba"),
        ("2401.04088", 155, 4, "https://github.com/mistralai/mistral-src"),
    ]
    mamba = Paper.objects.get(arxiv_id="2312.00752")
    assert mamba.authors == ["Albert Gu", "Tri Dao"]
    assert mamba.keywords == ["state space models", "selective scan", "linear-time sequence modeling"]
    assert mamba.published_at == datetime(2023, 12, 1, 18, 1, 34, tzinfo=UTC)
    assert mamba.featured_at == datetime(2023, 12, 4, 1, 12, 41, 613000, tzinfo=UTC)
    assert mamba.thumbnail_url == "https://cdn-thumbnails.huggingface.co/social-thumbnails/papers/2312.00752.png"
    assert mamba.abstract.startswith("A sequence model built from selective state spaces whose parameters depend on")
    assert mamba.source == Paper.Source.FILE
    assert_search_text_is_fresh(mamba)


def test_it_keeps_the_raw_title_and_shows_a_cleaned_one():
    run_import("hf_daily_papers.json", "arxiv_feed.xml")

    dpo = Paper.objects.get(arxiv_id="2305.18290")
    assert dpo.raw_title == "Direct Preference Optimization: Your Language Model is Secretly a Reward\n  Model"
    assert dpo.title == "Direct Preference Optimization: Your Language Model is Secretly a Reward Model"
    bench = Paper.objects.get(arxiv_id="2402.13718")
    assert bench.raw_title == "$\\infty$Bench: Extending Long Context Evaluation Beyond 100K\n  Tokens"
    assert bench.title == "∞Bench: Extending Long Context Evaluation Beyond 100K Tokens"


def test_it_imports_json_lines_and_ignores_blank_lines():
    outcome = run_import("hf_daily_papers.jsonl")

    assert outcome.code == 0
    assert outcome.stdout == "1 file: 2 created, 0 updated, 0 unchanged, 0 rejected.\n"
    assert stored("upvotes", "github_url") == [
        ("2106.09685", 21, "https://github.com/microsoft/LoRA"),
        ("2307.09288", 63, ""),
    ]


def test_it_imports_an_arxiv_atom_feed_without_version_suffixes():
    outcome = run_import("arxiv_feed.xml")

    assert outcome.code == 0
    assert outcome.stdout == "1 file: 2 created, 0 updated, 0 unchanged, 0 rejected.\n"
    assert stored("primary_category", "categories", "upvotes") == [
        ("2401.04088", "cs.LG", ["cs.LG", "cs.CL"], 0),
        ("2402.13718", "cs.CL", ["cs.CL"], 0),
    ]
    mixtral = Paper.objects.get(arxiv_id="2401.04088")
    assert mixtral.authors == ["Albert Q. Jiang", "Alexandre Sablayrolles", "Antoine Roux", "Arthur Mensch"]
    assert mixtral.published_at == datetime(2024, 1, 8, 18, 47, 34, tzinfo=UTC)


def test_a_dash_reads_stdin():
    data = (FIXTURES / "hf_daily_papers.jsonl").read_bytes()

    outcome = run_import("-", stdin=io.BytesIO(data))

    assert outcome.code == 0
    assert outcome.stdout == "1 file: 2 created, 0 updated, 0 unchanged, 0 rejected.\n"
    assert stored() == [("2106.09685",), ("2307.09288",)]


def test_importing_twice_changes_nothing():
    run_import("hf_daily_papers.json", "arxiv_feed.xml")
    fields = [field.attname for field in Paper._meta.concrete_fields]
    before = list(Paper.objects.order_by("arxiv_id").values_list(*fields))

    outcome = run_import("hf_daily_papers.json", "arxiv_feed.xml")

    assert outcome.code == 0
    assert outcome.stdout == "2 files: 0 created, 0 updated, 5 unchanged, 0 rejected.\n"
    assert list(Paper.objects.order_by("arxiv_id").values_list(*fields)) == before


def test_reimporting_refreshes_upvotes_and_keeps_first_seen(tmp_path):
    run_import("hf_daily_papers.json")
    first_seen = Paper.objects.get(arxiv_id="2312.00752").first_seen_at
    items = json.loads((FIXTURES / "hf_daily_papers.json").read_text())
    items[0]["paper"]["upvotes"] = 301
    items[0]["numComments"] = 12
    items[0]["paper"]["ai_keywords"].append("hardware-aware parallel scan")
    later = tmp_path / "later.json"
    later.write_text(json.dumps(items))

    outcome = run_import(str(later))

    assert outcome.stdout == "1 file: 0 created, 1 updated, 2 unchanged, 0 rejected.\n"
    mamba = Paper.objects.get(arxiv_id="2312.00752")
    assert (mamba.upvotes, mamba.num_comments) == (301, 12)
    assert mamba.keywords[-1] == "hardware-aware parallel scan"
    assert_search_text_is_fresh(mamba)
    assert mamba.first_seen_at == first_seen


def test_sources_fill_in_each_other_without_erasing_what_the_other_knows():
    run_import("hf_daily_papers.json")

    after_arxiv = run_import("arxiv_feed.xml")
    after_hf_again = run_import("hf_daily_papers.json")

    assert after_arxiv.stdout == "1 file: 1 created, 1 updated, 0 unchanged, 0 rejected.\n"
    mixtral = Paper.objects.get(arxiv_id="2401.04088")
    assert mixtral.upvotes == 155
    assert mixtral.github_url == "https://github.com/mistralai/mistral-src"
    assert mixtral.keywords == ["sparse mixture of experts", "router network", "instruction tuning"]
    assert mixtral.categories == ["cs.LG", "cs.CL"]
    assert mixtral.primary_category == "cs.LG"
    assert after_hf_again.stdout == "1 file: 0 created, 0 updated, 3 unchanged, 0 rejected.\n"
    mixtral.refresh_from_db()
    assert (mixtral.categories, mixtral.upvotes) == (["cs.LG", "cs.CL"], 155)


def test_good_items_are_imported_and_bad_ones_reported():
    outcome = run_import("hf_mixed.json")

    assert outcome.code == 2
    assert outcome.stdout == "1 file: 2 created, 0 updated, 0 unchanged, 4 rejected.\n"
    assert outcome.stderr == [
        "hf_mixed.json: item 2: expected a daily_papers object, got a string",
        "hf_mixed.json: item 3: no arXiv id (paper.id is missing)",
        "hf_mixed.json: item 4: paper.id '2401.123' is not an arXiv id",
        "hf_mixed.json: item 5: paper.upvotes is not a number ('lots')",
    ]
    assert stored("upvotes", "github_url") == [("2310.06825", 48, ""), ("2404.14219", 254, "")]


def test_bad_lines_of_json_lines_are_rejected_one_by_one():
    outcome = run_import("hf_bad_lines.jsonl")

    assert outcome.code == 2
    assert outcome.stdout == "1 file: 1 created, 0 updated, 0 unchanged, 3 rejected.\n"
    assert outcome.stderr == [
        "hf_bad_lines.jsonl: line 2: not JSON: Expecting ',' delimiter at column 109",
        "hf_bad_lines.jsonl: line 3: expected a daily_papers object, got a string",
        "hf_bad_lines.jsonl: line 4: paper.authors is a string, not a list",
    ]
    assert stored() == [("2106.09685",)]


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("hf_truncated.json", "malformed or truncated JSON at line 39, column 7: Unterminated string starting at"),
        (
            "hf_single_paper_object.json",
            "expected a JSON array of daily_papers items or JSON Lines, got one JSON object "
            "(keys: authors, discussionId, id, publishedAt, summary)",
        ),
        ("hf_latin1.json", "not UTF-8: byte 0xf6 at offset 105 (line 7) is not valid UTF-8"),
        ("arxiv_error.xml", "arXiv API error: incorrect id format for 1234.12345"),
        ("missing.json", "no such file"),
    ],
)
def test_an_unusable_file_is_reported_and_the_others_still_imported(name, message):
    outcome = run_import(name, "hf_daily_papers.jsonl")

    assert outcome.code == 2
    assert outcome.stderr == [f"{name}: {message}"]
    assert outcome.stdout == "2 files (1 unusable): 2 created, 0 updated, 0 unchanged, 0 rejected.\n"
    assert stored() == [("2106.09685",), ("2307.09288",)]


def test_a_file_over_the_size_limit_is_refused(settings):
    settings.IMPORT_MAX_BYTES = 1024

    outcome = run_import("hf_daily_papers.json")

    assert outcome.code == 2
    assert outcome.stderr == ["hf_daily_papers.json: larger than the import limit of 1,024 bytes (IMPORT_MAX_BYTES)"]
    assert not Paper.objects.exists()


def test_stdin_over_the_size_limit_is_refused(settings):
    settings.IMPORT_MAX_BYTES = 1024

    outcome = run_import("-", stdin=io.BytesIO((FIXTURES / "hf_daily_papers.json").read_bytes()))

    assert outcome.code == 2
    assert outcome.stderr == ["<stdin>: larger than the import limit of 1,024 bytes (IMPORT_MAX_BYTES)"]


def test_a_paper_the_database_cannot_hold_is_rejected_whole_and_its_batch_still_stored(tmp_path):
    lines = (FIXTURES / "hf_daily_papers.jsonl").read_text().split("\n")
    overlong = json.loads(lines[0])
    overlong["paper"]["id"] = "2402.00001"
    overlong["paper"]["title"] = "Attention" * 150
    mixed = tmp_path / "mixed.jsonl"
    mixed.write_text("\n".join([lines[0], json.dumps(overlong), lines[2]]))

    outcome = run_import(str(mixed))

    assert outcome.code == 2
    assert outcome.stderr == [
        f"{mixed}: line 2: title is 1,350 characters long, more than the 1,000 the database holds"
    ]
    assert outcome.stdout == "1 file: 2 created, 0 updated, 0 unchanged, 1 rejected.\n"
    assert stored() == [("2106.09685",), ("2307.09288",)]


def record(arxiv_id, **fields):
    return PaperRecord(arxiv_id=arxiv_id, raw_title=fields.pop("raw_title", f"Paper {arxiv_id}"), **fields)


def test_a_row_the_database_refuses_mid_batch_leaves_no_partial_paper():
    upsert_papers([record("2401.00001", upvotes=5)])
    # upvotes must be ≥ 0: a CHECK constraint in both SQLite and PostgreSQL, so the batch's UPDATE fails there.
    batch = [
        record("2401.00002", abstract="Stored."),
        record("2401.00001", raw_title="Changed title", upvotes=-1),
        record("2401.00003", abstract="Stored too."),
    ]

    result = upsert_papers(batch)

    assert (result.created, result.updated, result.unchanged) == (2, 0, 0)
    assert [rejection.where for rejection in result.rejected] == ["2401.00001"]
    assert result.rejected[0].reason.startswith("the database refused it: ")
    assert stored("title", "upvotes") == [
        ("2401.00001", "Paper 2401.00001", 5),
        ("2401.00002", "Paper 2401.00002", 0),
        ("2401.00003", "Paper 2401.00003", 0),
    ]
    assert_search_text_is_fresh(Paper.objects.get(arxiv_id="2401.00003"))


def test_duplicate_ids_in_one_batch_count_once_and_the_last_wins():
    result = upsert_papers(
        [record("2401.00001", upvotes=1), record("2401.00002"), record("2401.00001", raw_title="Final", upvotes=9)]
    )

    assert (result.created, result.updated, result.unchanged, result.rejected) == (2, 0, 0, [])
    assert stored("title", "upvotes") == [("2401.00001", "Final", 9), ("2401.00002", "Paper 2401.00002", 0)]


def test_batches_are_written_separately_with_the_same_counts():
    records = [record(f"2401.{number:05d}", upvotes=number) for number in range(1, 8)]

    first = upsert_papers(records, batch_size=3)
    second = upsert_papers([*records[:5], record("2401.00006", upvotes=60)], batch_size=2)

    assert (first.created, first.updated, first.unchanged) == (7, 0, 0)
    assert (second.created, second.updated, second.unchanged) == (0, 1, 5)
    assert Paper.objects.get(arxiv_id="2401.00006").upvotes == 60


def test_it_shows_no_progress_bar_when_stderr_is_not_a_terminal():
    outcome = run_import("hf_mixed.json")

    assert all(line.startswith("hf_mixed.json: item ") for line in outcome.stderr)


def test_loadsample_creates_topics_once_and_keeps_an_operators_edits():
    first = io.StringIO()
    call_command("loadsample", "--papers", "hf_daily_papers.json", "--topics", "topics.json", stdout=first)
    topic = Topic.objects.get(slug="state-space-models")
    assert topic.get_alias_list() == ["SSM", "Mamba", "selective state space"]
    topic.description = "Edited by the operator."
    topic.save()

    second = io.StringIO()
    call_command("loadsample", "--papers", "hf_daily_papers.json", "--topics", "topics.json", stdout=second)

    assert first.getvalue().splitlines()[:2] == [
        "Papers from hf_daily_papers.json: 3 created, 0 updated, 0 unchanged, 0 rejected.",
        "Topics from topics.json: 2 created, 0 already there (left as is).",
    ]
    assert second.getvalue().splitlines() == [
        "Papers from hf_daily_papers.json: 0 created, 0 updated, 3 unchanged, 0 rejected.",
        "Topics from topics.json: 0 created, 2 already there (left as is).",
    ]
    assert Topic.objects.get(slug="state-space-models").description == "Edited by the operator."
    assert Paper.objects.count() == 3


def test_the_bundled_sample_loads_without_rejections():
    topics = json.loads((REPO / "papers" / "sample_data" / "topics.json").read_text())

    call_command("loadsample", stdout=io.StringIO())

    assert Paper.objects.count() > 0
    assert sorted(Topic.objects.values_list("slug", flat=True)) == sorted(topic["slug"] for topic in topics)
    assert all(topic.get_alias_list() for topic in Topic.objects.all())


@pytest.fixture(scope="module")
def shell_env(tmp_path_factory):
    """The environment for running manage.py as an operator would, on its own migrated SQLite file."""
    database = tmp_path_factory.mktemp("shell") / "digest.sqlite3"
    env = {**os.environ, "DEBUG": "true", "DATABASE_URL": f"sqlite:///{database}"}
    subprocess.run([*MANAGE, "migrate", "-v0"], env=env, check=True)
    return env


MANAGE = [sys.executable, str(REPO / "manage.py")]


def test_the_command_exits_2_in_a_shell_and_reads_a_pipe(shell_env):
    done = subprocess.run(
        [*MANAGE, "importpapers", "-", "missing.json"],
        input=(FIXTURES / "hf_daily_papers.jsonl").read_bytes(),
        capture_output=True,
        env=shell_env,
        cwd=FIXTURES,
    )

    assert done.returncode == 2
    assert done.stdout.decode() == "2 files (1 unusable): 2 created, 0 updated, 0 unchanged, 0 rejected.\n"
    assert done.stderr.decode().splitlines() == [
        "missing.json: no such file",
        "CommandError: Some input was not imported; the reasons are listed above.",
    ]


def stderr_on_a_terminal(args, env):
    controller, terminal = pty.openpty()
    fcntl.ioctl(terminal, termios.TIOCSWINSZ, struct.pack("HHHH", 30, 100, 0, 0))
    with subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=terminal, env=env, cwd=FIXTURES) as process:
        os.close(terminal)
        chunks = []
        while True:
            try:
                chunk = os.read(controller, 4096)
            except OSError:  # Linux reports EIO once the terminal's last writer has gone
                break
            if not chunk:
                break
            chunks.append(chunk)
    os.close(controller)
    assert process.returncode == 0
    return b"".join(chunks).decode()


def test_it_draws_a_progress_bar_on_a_terminal_unless_told_not_to(shell_env):
    with_bar = stderr_on_a_terminal([*MANAGE, "importpapers", "hf_daily_papers.json"], shell_env)
    without_bar = stderr_on_a_terminal([*MANAGE, "importpapers", "--no-progress", "hf_daily_papers.json"], shell_env)

    assert "hf_daily_papers.json: 100%" in with_bar
    assert "3/3" in with_bar
    assert without_bar == ""


def test_loadsample_gives_new_topics_their_editors_corrections_once(tmp_path):
    topics = [
        {"name": "Graph learning", "slug": "graph-learning", "aliases": ["GNN"]},
    ]
    path = tmp_path / "topics.json"
    papers = str(FIXTURES / "hf_daily_papers.json")
    arxiv_id = json.loads((FIXTURES / "hf_daily_papers.json").read_text())[0]["paper"]["id"]
    topics[0]["not_this_topic"] = [arxiv_id, "2699.99999"]  # a paper not in the sample is skipped
    path.write_text(json.dumps(topics))

    first = io.StringIO()
    call_command("loadsample", "--papers", papers, "--topics", str(path), stdout=first)
    call_command("loadsample", "--papers", papers, "--topics", str(path), stdout=io.StringIO())

    assert "1 editor's corrections (“not this topic”) added to the new topics." in first.getvalue()
    example = TopicExample.objects.get()
    assert (example.topic.slug, example.paper.arxiv_id, example.belongs) == ("graph-learning", arxiv_id, False)


def test_loadsample_refuses_corrections_that_are_not_a_list_of_ids(tmp_path):
    path = tmp_path / "topics.json"
    path.write_text(json.dumps([{"name": "Graph learning", "slug": "graph-learning", "not_this_topic": "2406.1"}]))
    with pytest.raises(CommandError, match="topic 1: not_this_topic must be a list of arXiv ids") as error:
        call_command("loadsample", "--topics", str(path), stdout=io.StringIO())
    assert error.value.returncode == 2
    assert not Topic.objects.exists()
