"""Generated `importpapers` inputs: Hugging Face daily_papers arrays and JSON Lines, arXiv Atom feeds, each with
generated values, and junk. The command ends with exit code 0 or 2 and its summary line, never a traceback; every
rejection names its input and item and says why; an unusable input stores nothing; every stored paper is valid."""

import io
import json
import re
from xml.sax.saxutils import escape

from django.core.management import CommandError, call_command
from hypothesis import given, settings
from hypothesis import strategies as st

from papers.models import Paper

NASTY = ["", " ", "\x00", "\r\n", "<b>bold</b>", "$\\infty$", "é", "🦀", "\u2028", "x" * 1001, "&amp;", "]]>"]
text = st.text(max_size=30) | st.sampled_from(NASTY)
IDS = ["2401.04088", "arXiv:2312.00752v2", "2402.13718v3", "hep-th/9901001", "1412.6980", "2401.0408", "24.01", "x"]
DATES = ["2026-11-30T08:00:00.000Z", "2026-11-30", "2026-11-30T08:00:00+05:00", "yesterday", "2026-13-45", ""]
URLS = [
    "https://github.com/state-spaces/mamba",
    "owner/name",
    "https://example.org/x.png",
    "http://x",
    "ftp://a",
    "https://a b",
]
SUMMARY = re.compile(r"1 file(?: \(1 unusable\))?: (\d+) created, (\d+) updated, (\d+) unchanged, (\d+) rejected\.")
LABEL = re.compile(r"<stdin>: (?:(item|line|entry) (\d+): )?(.+)")

values = st.none() | st.booleans() | st.integers(-5, 2**40) | st.floats(allow_nan=False, allow_infinity=False) | text
numbers = st.integers(0, 500) | values


@st.composite
def hf_items(draw):
    paper = {
        "id": draw(st.sampled_from(IDS) | text),
        "title": draw(st.sampled_from(["Mixtral of Experts", "Graph transformers at scale"]) | text | values),
        "summary": draw(text | values),
        "authors": draw(st.lists(st.fixed_dictionaries({"name": text}) | text, max_size=3) | values),
        "publishedAt": draw(st.sampled_from(DATES) | values),
        "upvotes": draw(numbers),
        "githubRepo": draw(st.sampled_from(URLS) | text),
        "ai_keywords": draw(st.lists(text, max_size=3) | values),
    }
    for name in draw(st.lists(st.sampled_from(list(paper)), max_size=3, unique=True)):
        del paper[name]
    item = {
        "paper": paper,
        "publishedAt": draw(st.sampled_from(DATES) | values),
        "numComments": draw(numbers),
        "thumbnail": draw(st.sampled_from(URLS) | text),
    }
    return draw(st.just(item) | st.just(item) | st.just(item) | values | st.lists(values, max_size=2))


def atom_entry(entry):
    authors = "".join(f"<author><name>{escape(name)}</name></author>" for name in entry["authors"])
    return (
        f"<entry><id>{escape(entry['id'])}</id><title>{escape(entry['title'])}</title>"
        f"<summary>{escape(entry['summary'])}</summary><published>{escape(entry['published'])}</published>"
        f'{authors}<category term="{escape(entry["category"], {chr(34): "&quot;"})}"/></entry>'
    )


atom_entries = st.fixed_dictionaries(
    {
        "id": st.sampled_from(IDS).map("http://arxiv.org/abs/{}".format) | text,
        "title": text,
        "summary": text,
        "published": st.sampled_from(DATES) | text,
        "authors": st.lists(text, max_size=3),
        "category": text,
    }
)


def clean_xml(value):
    # XML 1.0 cannot carry these characters at all; a feed with them is junk, generated below.
    return re.sub(r"[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]", "", value)


@st.composite
def documents(draw):
    kind = draw(st.sampled_from(["array", "lines", "atom", "junk"]))
    if kind == "array":
        return json.dumps(draw(st.lists(hf_items(), max_size=6))).encode()
    if kind == "lines":
        lines = draw(st.lists(hf_items().map(json.dumps) | text, min_size=1, max_size=6))
        return "\n".join(lines).encode()
    if kind == "atom":
        entries = "".join(atom_entry(entry) for entry in draw(st.lists(atom_entries, max_size=4)))
        feed = f'<?xml version="1.0" encoding="UTF-8"?><feed xmlns="http://www.w3.org/2005/Atom">{entries}</feed>'
        feed = clean_xml(feed)
        if draw(st.integers(0, 5)) == 0:
            feed = feed[: draw(st.integers(0, len(feed)))]
        return feed.encode()
    return draw(st.binary(max_size=200) | text.map(str.encode) | st.sampled_from([b"[", b"{", b"<", b"\xef\xbb\xbf[]"]))


def run_import(data):
    stdout, stderr = io.StringIO(), io.StringIO()
    try:
        call_command("importpapers", "-", "--no-progress", stdout=stdout, stderr=stderr, stdin=io.BytesIO(data))
        code = 0
    except CommandError as error:
        code = error.returncode
    return code, stdout.getvalue().strip(), stderr.getvalue().splitlines()


@settings(settings.get_profile("fuzz"), max_examples=1200)
@given(data=documents())
def test_any_import_ends_with_0_or_2_names_each_rejection_and_stores_only_valid_papers(make_paper, fresh_example, data):
    make_paper("Mixtral of Experts", arxiv_id="2401.04088") if not Paper.objects.exists() else None
    before = set(Paper.objects.values_list("arxiv_id", flat=True))
    with fresh_example():
        code, out, errors = run_import(data)
        summary = SUMMARY.fullmatch(out)
        assert summary, out
        created, updated, unchanged, rejected = map(int, summary.groups())
        unusable = "unusable" in out
        after = set(Paper.objects.values_list("arxiv_id", flat=True))
        assert len(after - before) == created
        assert code == (2 if rejected or unusable else 0), (code, out, errors)
        assert len(errors) == rejected + unusable
        for line in errors:
            where = LABEL.fullmatch(line)
            assert where and where.group(3).strip(), line
            if unusable:
                assert where.group(1) is None, line
            else:
                assert where.group(1) in ("item", "line", "entry") and int(where.group(2)) >= 1, line
        if unusable:
            assert after == before and created == updated == unchanged == 0
        for paper in Paper.objects.all():
            paper.full_clean()
