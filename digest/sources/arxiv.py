"""arXiv API Atom feeds (`http://export.arxiv.org/api/query`) -> PaperRecords, parsed by feedparser."""

import io
import re
import xml.sax

import feedparser

from digest.sources import (
    InvalidInput,
    InvalidItem,
    PaperRecord,
    check_text,
    normalise_arxiv_id,
    parse_timestamp,
    require_text,
    string_list,
)
from digest.text import clean_text

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
