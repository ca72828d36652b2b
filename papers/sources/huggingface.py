"""Hugging Face daily papers: one item of `GET https://huggingface.co/api/daily_papers` -> PaperRecord.

An item wraps the paper: `{"paper": {"id", "title", "summary", "authors", "upvotes", ...}, "publishedAt",
"thumbnail", "numComments", ...}`. The outer `publishedAt` is when the paper was featured on the daily list;
`paper.publishedAt` is its arXiv publication date.
"""

import json

from papers.sources import (
    InvalidInput,
    InvalidItem,
    PaperRecord,
    check_text,
    describe_json_type,
    normalise_arxiv_id,
    normalise_github_url,
    normalise_web_url,
    parse_count,
    parse_timestamp,
    require_text,
    string_list,
)
from papers.sources.http import get
from papers.text import clean_text

API_URL = "https://huggingface.co/api/daily_papers"
PAGE_SIZE = 50
MAX_PAGES = 20


def fetch_day(session, day, *, page_size=PAGE_SIZE, max_pages=MAX_PAGES):
    """[(label, PaperRecord | InvalidItem)] for one day of daily papers, trending first, all pages.

    A page that is not a JSON array stops the whole fetch with InvalidInput: nothing of that day is stored, rather
    than a part that looks complete.
    """
    items = []
    for page in range(max_pages):
        params = {"date": day.isoformat(), "sort": "trending", "limit": page_size, "p": page}
        body = get(session, API_URL, params)
        try:
            batch = json.loads(body)
        except ValueError:
            raise InvalidInput(f"{API_URL} page {page} for {day} is not JSON: {body[:80]!r}") from None
        if not isinstance(batch, list):
            raise InvalidInput(f"{API_URL} page {page} for {day} is not a JSON array")
        for position, item in enumerate(batch, start=len(items) + 1):
            try:
                items.append((f"item {position}", parse_item(item)))
            except InvalidItem as invalid:
                items.append((f"item {position}", invalid))
        if len(batch) < page_size:
            break
    return items


def parse_item(item, *, source="hf"):
    """The PaperRecord for one daily_papers item, or InvalidItem saying which field is wrong."""
    if not isinstance(item, dict):
        raise InvalidItem(f"expected a daily_papers object, got {describe_json_type(item)}")
    paper = item.get("paper")
    if paper is None:
        raise InvalidItem("no paper object")
    if not isinstance(paper, dict):
        raise InvalidItem(f"paper is {describe_json_type(paper)}, not an object")

    raw_id = paper.get("id")
    if raw_id is None or raw_id == "":
        raise InvalidItem("no arXiv id (paper.id is missing)")
    arxiv_id = normalise_arxiv_id(raw_id)
    if arxiv_id is None:
        raise InvalidItem(f"paper.id {raw_id!r} is not an arXiv id")

    summary = paper.get("summary", item.get("summary")) or ""
    if not isinstance(summary, str):
        raise InvalidItem(f"paper.summary is {describe_json_type(summary)}, not text")

    return PaperRecord(
        arxiv_id=arxiv_id,
        raw_title=require_text(paper.get("title", item.get("title")), "paper.title"),
        abstract=clean_text(check_text(summary, "paper.summary")),
        authors=parse_authors(paper.get("authors")),
        published_at=parse_timestamp(paper.get("publishedAt"), "paper.publishedAt"),
        featured_at=(
            parse_timestamp(item.get("publishedAt"), "publishedAt")
            or parse_timestamp(paper.get("submittedOnDailyAt"), "paper.submittedOnDailyAt")
        ),
        upvotes=parse_count(paper.get("upvotes"), "paper.upvotes"),
        num_comments=parse_count(item.get("numComments"), "numComments"),
        github_url=normalise_github_url(paper.get("githubRepo")),
        thumbnail_url=normalise_web_url(item.get("thumbnail")),
        keywords=string_list(paper.get("ai_keywords")),
        source=source,
    )


def parse_authors(value):
    if value is None:
        return []
    if not isinstance(value, list):
        raise InvalidItem(f"paper.authors is {describe_json_type(value)}, not a list")
    names = []
    for position, author in enumerate(value):
        name = author.get("name") if isinstance(author, dict) else author
        if not isinstance(name, str) or not name.strip():
            raise InvalidItem(f"paper.authors[{position}] has no name")
        names.append(check_text(name.strip(), f"paper.authors[{position}]"))
    return names
