import copy
import io
import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from papers.sources import InvalidInput, InvalidItem, normalise_arxiv_id, normalise_github_url
from papers.sources.arxiv import parse_feed
from papers.sources.files import read_items
from papers.sources.huggingface import parse_item

FIXTURES = Path(__file__).parent / "fixtures" / "import"
HF_ITEM = json.loads((FIXTURES / "hf_daily_papers.json").read_text())[0]


def read_bytes(data, **kwargs):
    return read_items("-", stdin=io.BytesIO(data), **kwargs)


def reasons(items):
    return [(label, item.reason if isinstance(item, InvalidItem) else item.arxiv_id) for label, item in items]


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2401.04088v2", "2401.04088"),
        ("arXiv:2401.04088", "2401.04088"),
        ("ARXIV:2401.04088v10", "2401.04088"),
        (" 1706.03762 ", "1706.03762"),
        ("0704.0001", "0704.0001"),
        ("hep-th/9901001v1", "hep-th/9901001"),
        ("arXiv:math.GT/0309136", "math.GT/0309136"),
        ("1412.6980", "1412.6980"),
        ("1412.69801", None),
        ("2401.1234", None),
        ("2401.123", None),
        ("2413.00001", None),
        ("hep-th/99010", None),
        ("https://arxiv.org/abs/2401.04088", None),
        ("", None),
        (None, None),
        (2401.04088, None),
    ],
)
def test_it_recognises_arxiv_ids(value, expected):
    assert normalise_arxiv_id(value) == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("https://github.com/state-spaces/mamba", "https://github.com/state-spaces/mamba"),
        ("state-spaces/mamba", "https://github.com/state-spaces/mamba"),
        ("http://www.github.com/microsoft/LoRA/", "https://github.com/microsoft/LoRA"),
        ("https://github.com/microsoft/LoRA.git", "https://github.com/microsoft/LoRA"),
        ("https://github.com/huggingface/transformers/tree/main/src", "https://github.com/huggingface/transformers"),
        ("https://gitlab.com/owner/name", ""),
        ("https://github.com/owner-only", ""),
        ("not a repository", ""),
        ("", ""),
        (None, ""),
    ],
)
def test_it_normalises_github_repositories(value, expected):
    assert normalise_github_url(value) == expected


def test_an_hf_item_with_only_an_id_and_a_title_is_enough():
    record = parse_item({"paper": {"id": "2401.04088", "title": "Mixtral of Experts"}})

    assert (record.arxiv_id, record.title, record.upvotes, record.authors, record.published_at) == (
        "2401.04088",
        "Mixtral of Experts",
        0,
        [],
        None,
    )
    assert record.source == "hf"


def test_featured_at_falls_back_to_submitted_on_daily_at():
    item = copy.deepcopy(HF_ITEM)
    del item["publishedAt"]
    item["paper"]["submittedOnDailyAt"] = "2023-12-04T09:00:00Z"

    assert parse_item(item).featured_at == datetime(2023, 12, 4, 9, tzinfo=UTC)


def without(key):
    def change(item):
        item["paper"].pop(key)
        item.pop(key, None)

    return change


def set_paper(key, value):
    def change(item):
        item["paper"][key] = value

    return change


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        (lambda item: item.pop("paper"), "no paper object"),
        (lambda item: item.update(paper=["2401.04088"]), "paper is an array, not an object"),
        (without("id"), "no arXiv id (paper.id is missing)"),
        (set_paper("id", "2401.04088-mixtral"), "paper.id '2401.04088-mixtral' is not an arXiv id"),
        (without("title"), "no paper.title"),
        (set_paper("title", "  "), "paper.title is empty"),
        (set_paper("title", "Mixtral\x00"), "paper.title contains a NUL character"),
        (set_paper("summary", {"text": "x"}), "paper.summary is an object, not text"),
        (set_paper("authors", "Albert Gu, Tri Dao"), "paper.authors is a string, not a list"),
        (set_paper("authors", [{"name": "Albert Gu"}, {"_id": "x"}]), "paper.authors[1] has no name"),
        (set_paper("upvotes", "142"), "paper.upvotes is not a number ('142')"),
        (set_paper("upvotes", True), "paper.upvotes is not a number (True)"),
        (set_paper("upvotes", -3), "paper.upvotes is negative (-3)"),
        (set_paper("upvotes", 2**40), "paper.upvotes is implausibly large (1099511627776)"),
        (set_paper("publishedAt", "yesterday"), "paper.publishedAt is not a date ('yesterday')"),
    ],
)
def test_a_bad_hf_item_is_rejected_with_the_reason(change, reason):
    item = copy.deepcopy(HF_ITEM)
    change(item)

    with pytest.raises(InvalidItem) as raised:
        parse_item(item)
    assert raised.value.reason == reason


def test_optional_hf_fields_that_are_malformed_are_dropped_not_fatal():
    item = copy.deepcopy(HF_ITEM)
    item["thumbnail"] = "javascript:alert(1)"
    item["paper"]["ai_keywords"] = "not a list"
    item["paper"]["githubRepo"] = "https://example.com/repo"
    item["paper"]["upvotes"] = 142.0

    record = parse_item(item)

    assert (record.thumbnail_url, record.keywords, record.github_url, record.upvotes) == ("", [], "", 142)


def test_a_feed_entry_with_a_bad_id_is_rejected_alone():
    feed = (FIXTURES / "arxiv_feed.xml").read_bytes().replace(b"2402.13718v3</id>", b"2402.1371</id>", 1)

    assert reasons(parse_feed(feed)) == [
        ("entry 1", "2401.04088"),
        ("entry 2", "entry id 'http://arxiv.org/abs/2402.1371' is not an arXiv abstract URL"),
    ]


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"<!DOCTYPE html><html><body>Bad gateway</body></html>", "not an Atom feed"),
        (b'<rss version="2.0"><channel><title>cs.LG updates</title></channel></rss>', "not an Atom feed (it is rss20)"),
        ((FIXTURES / "arxiv_feed.xml").read_bytes()[:1500], "malformed XML at line 29, column 24: no element found"),
    ],
)
def test_a_document_that_is_not_a_complete_atom_feed_is_unusable(data, reason):
    with pytest.raises(InvalidInput) as raised:
        parse_feed(data)
    assert raised.value.reason == reason


def test_a_feed_without_entries_has_no_items():
    empty = b'<?xml version="1.0"?><feed xmlns="http://www.w3.org/2005/Atom"><title>ArXiv Query</title></feed>'

    assert parse_feed(empty) == []


def test_a_byte_order_mark_is_accepted():
    data = "\ufeff".encode() + (FIXTURES / "hf_daily_papers.jsonl").read_bytes()

    assert reasons(read_bytes(data)) == [("line 1", "2106.09685"), ("line 3", "2307.09288")]


def test_json_lines_may_hold_unicode_line_separators_inside_strings():
    item = copy.deepcopy(HF_ITEM)
    item["paper"]["summary"] = "First part\u2028second part."
    line = json.dumps(item, ensure_ascii=False).encode()

    assert reasons(read_bytes(line + b"\n" + line)) == [("line 1", "2312.00752"), ("line 2", "2312.00752")]


def test_a_single_pretty_printed_item_is_one_item():
    data = json.dumps(HF_ITEM, indent=2).encode()

    assert reasons(read_bytes(data)) == [("item 1", "2312.00752")]


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"", "empty: no papers in it"),
        (b" \n\n", "empty: no papers in it"),
        (b'"2401.04088"', "expected a JSON array of daily_papers items, got a string"),
        (b"paper id,title\n2401.04088,Mixtral\n", "neither JSON nor an Atom feed"),
        (b'{\n  "paper": {\n    "id": "2401.04088",\n', "malformed or truncated JSON at line 4, column 1: Expecting"),
        (b'[{"paper": {"id": "2401.04088"}}', "malformed or truncated JSON at line 1, column 33: Expecting"),
    ],
)
def test_input_that_is_not_papers_is_unusable(data, reason):
    with pytest.raises(InvalidInput) as raised:
        read_bytes(data)
    assert raised.value.reason.startswith(reason)


def test_the_size_limit_is_inclusive(tmp_path):
    path = tmp_path / "papers.json"
    path.write_bytes(b"[]" + b" " * 1022)

    assert read_items(str(path), max_bytes=1024) == []
    with pytest.raises(InvalidInput, match="larger than the import limit of 1,023 bytes"):
        read_items(str(path), max_bytes=1023)


def test_a_directory_is_unusable(tmp_path):
    with pytest.raises(InvalidInput, match="is a directory, not a file"):
        read_items(str(tmp_path))
