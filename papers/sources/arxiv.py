"""arXiv API Atom feeds (`http://export.arxiv.org/api/query`) -> PaperRecords, parsed by feedparser."""

import io
import re
import time
import xml.sax

import feedparser

from papers.sources import (
    InvalidInput,
    InvalidItem,
    PaperRecord,
    check_text,
    normalise_arxiv_id,
    parse_timestamp,
    require_text,
    string_list,
)
from papers.sources.http import get
from papers.text import clean_text

API_URL = "https://export.arxiv.org/api/query"
PAGE_SIZE = 200
MAX_RESULTS = 2000  # arXiv's own limit for one query's slice
MIN_INTERVAL = 3.0  # seconds between calls, as arXiv's API terms ask


def build_query(categories, query=None):
    search = " OR ".join(f"cat:{category}" for category in categories)
    if query:
        search = f"({search}) AND ({query})" if search else query
    return search


def fetch_recent(session, categories, *, query=None, max_results=400, page_size=None, sleep=None):
    """[(label, PaperRecord | InvalidItem)] for the newest papers in `categories` (and `query`), newest first.

    Pages of `page_size`, at most MAX_RESULTS in all, MIN_INTERVAL seconds apart. An error feed or a broken page
    stops the fetch with InvalidInput.
    """
    search = build_query(categories, query)
    if not search:
        raise InvalidInput("no arXiv categories or query given")
    max_results = min(max_results, MAX_RESULTS)
    page_size, sleep = page_size or PAGE_SIZE, sleep or time.sleep
    items, last_call = [], None
    for start in range(0, max_results, page_size):
        if last_call is not None:
            sleep(max(0.0, MIN_INTERVAL - (time.monotonic() - last_call)))
        params = {
            "search_query": search, "start": start, "max_results": min(page_size, max_results - start),
            "sortBy": "submittedDate", "sortOrder": "descending",
        }  # fmt: skip
        body = get(session, API_URL, params)
        last_call = time.monotonic()
        page = parse_feed(body)
        items.extend((f"entry {len(items) + number}", record) for number, (_label, record) in enumerate(page, 1))
        if len(page) < params["max_results"]:
            break
    return items


_ABS_URL_RE = re.compile(r"https?://(?:export\.)?arxiv\.org/abs/(.+)")
_ERROR_ID_RE = re.compile(r"https?://(?:export\.)?arxiv\.org/api/errors")


def parse_feed(data, *, source="arxiv"):
    """[(label, PaperRecord | InvalidItem)] for each entry, or InvalidInput for an error feed or a non-feed."""
    # Bytes in a stream: feedparser treats a bare bytes argument as a possible file name or URL first.
    feed = feedparser.parse(io.BytesIO(data))
    if isinstance(feed.get("bozo_exception"), xml.sax.SAXParseException):
        error = feed.bozo_exception
        raise InvalidInput(
            f"malformed XML at line {error.getLineNumber()}, column {error.getColumnNumber()}: {error.getMessage()}"
        )
    if not feed.version.startswith("atom"):
        raise InvalidInput("not an Atom feed" + (f" (it is {feed.version})" if feed.version else ""))
    for entry in feed.entries:
        if _ERROR_ID_RE.match(entry.get("id", "")):
            raise InvalidInput(f"arXiv API error: {entry.get('summary', '').strip() or entry.get('id')}")

    items = []
    for position, entry in enumerate(feed.entries, start=1):
        try:
            items.append((f"entry {position}", parse_entry(entry, source=source)))
        except InvalidItem as invalid:
            items.append((f"entry {position}", invalid))
    return items


def parse_entry(entry, *, source="arxiv"):
    entry_id = entry.get("id", "")
    if not entry_id:
        raise InvalidItem("no arXiv id (the entry has no <id>)")
    match = _ABS_URL_RE.fullmatch(entry_id.strip())
    arxiv_id = normalise_arxiv_id(match.group(1)) if match else None
    if arxiv_id is None:
        raise InvalidItem(f"entry id {entry_id!r} is not an arXiv abstract URL")

    primary = entry.get("arxiv_primary_category") or {}
    return PaperRecord(
        arxiv_id=arxiv_id,
        raw_title=require_text(entry.get("title"), "title"),
        abstract=clean_text(check_text(entry.get("summary", ""), "summary")),
        authors=string_list([author.get("name") for author in entry.get("authors", [])]),
        published_at=parse_timestamp(entry.get("published"), "published"),
        categories=string_list([tag.get("term") for tag in entry.get("tags", [])]),
        primary_category=primary.get("term", "") if isinstance(primary, dict) else "",
        source=source,
    )
