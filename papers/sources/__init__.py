"""What every paper source produces: a `PaperRecord`, or the reason an item or a whole input cannot be used.

Sources know nothing of Django: they turn an API response or a file into plain records, and `papers.ingest` stores them.
The helpers below are the checks all sources share, so an id or a date is judged the same way whatever brought it.
"""

import re
from dataclasses import dataclass, field
from datetime import UTC, datetime

from papers.text import clean_title


class InvalidItem(Exception):
    """One item cannot be imported; the rest of its input still can."""

    def __init__(self, reason):
        super().__init__(reason)
        self.reason = reason


class InvalidInput(Exception):
    """The whole input is unusable: unreadable, not UTF-8, truncated, the wrong shape, or an error from the API."""

    def __init__(self, reason):
        super().__init__(reason)
        self.reason = reason


@dataclass
class PaperRecord:
    arxiv_id: str
    raw_title: str
    abstract: str = ""
    authors: list[str] = field(default_factory=list)
    published_at: datetime | None = None
    featured_at: datetime | None = None
    upvotes: int = 0
    num_comments: int = 0
    github_url: str = ""
    thumbnail_url: str = ""
    keywords: list[str] = field(default_factory=list)
    categories: list[str] = field(default_factory=list)
    primary_category: str = ""
    source: str = "file"
    title: str = field(init=False)

    def __post_init__(self):
        self.title = clean_title(self.raw_title)


# Since January 2015 (1501) the number after the dot has five digits; before that, four.
_NEW_STYLE_ID_RE = re.compile(r"(\d{2}(?:0[1-9]|1[0-2]))\.(\d{4,5})")
_OLD_STYLE_ID_RE = re.compile(r"[a-z]+(?:-[a-z]+)?(?:\.[A-Z]{2})?/\d{2}(?:0[1-9]|1[0-2])\d{3}")
_VERSION_RE = re.compile(r"v\d+$")


def normalise_arxiv_id(value):
    """The arXiv id without prefix or version ("arXiv:2401.04088v2" -> "2401.04088"), or None if it is not one."""
    if not isinstance(value, str):
        return None
    value = value.strip()
    if value[:6].lower() == "arxiv:":
        value = value[6:]
    value = _VERSION_RE.sub("", value)
    new_style = _NEW_STYLE_ID_RE.fullmatch(value)
    if new_style:
        year_month, number = new_style.groups()
        return value if len(number) == (5 if year_month >= "1501" else 4) else None
    return value if _OLD_STYLE_ID_RE.fullmatch(value) else None


_GITHUB_RE = re.compile(
    r"(?:(?:https?://)?(?:www\.)?github\.com/)?([A-Za-z0-9](?:[A-Za-z0-9-]{0,38}))/([A-Za-z0-9._-]+?)(?:\.git)?(?:/.*)?"
)


def normalise_github_url(value):
    """ "https://github.com/owner/name" for a GitHub repository URL or a bare "owner/name"; "" for anything else."""
    if not isinstance(value, str):
        return ""
    match = _GITHUB_RE.fullmatch(value.strip())
    if match is None or match.group(2) in {".", ".."}:
        return ""
    return f"https://github.com/{match.group(1)}/{match.group(2)}"


def normalise_web_url(value):
    """The value if it is an http(s) URL, else "": a broken thumbnail link is not worth rejecting a paper for."""
    if isinstance(value, str) and re.fullmatch(r"https?://[^\s/]+\S*", value.strip()):
        return value.strip()
    return ""


def parse_timestamp(value, name):
    """An aware datetime from an ISO 8601 string (naive ones are taken as UTC); None when the value is missing."""
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise InvalidItem(f"{name} is not a date ({value!r})")
    try:
        moment = datetime.fromisoformat(value.strip())
    except ValueError:
        raise InvalidItem(f"{name} is not a date ({value!r})") from None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def require_text(value, name):
    """A non-blank string, or InvalidItem saying what is wrong with it."""
    if value is None:
        raise InvalidItem(f"no {name}")
    if not isinstance(value, str):
        raise InvalidItem(f"{name} is not text ({type(value).__name__})")
    if not value.strip():
        raise InvalidItem(f"{name} is empty")
    return check_text(value, name)


def check_text(value, name):
    # PostgreSQL refuses NUL in text columns; SQLite would store it. Reject it here so both databases agree.
    if "\x00" in value:
        raise InvalidItem(f"{name} contains a NUL character")
    return value


# The largest value a PositiveIntegerField holds in PostgreSQL; SQLite would take more, so cap it for both.
MAX_COUNT = 2**31 - 1


def parse_count(value, name):
    """A whole number ≥ 0 (0 when missing), or InvalidItem."""
    if value is None:
        return 0
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidItem(f"{name} is not a number ({value!r})")
    if value < 0:
        raise InvalidItem(f"{name} is negative ({value})")
    if value > MAX_COUNT:
        raise InvalidItem(f"{name} is implausibly large ({value})")
    return value


def describe_json_type(value):
    """How JSON would name the type of a parsed value, for messages: "an object", "a string"…"""
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, bool):
        return "true/false"
    if value is None:
        return "null"
    return "a number"


def string_list(value):
    """The strings of a list, stripped, blanks dropped; [] for anything that is not a list."""
    if not isinstance(value, list):
        return []
    return [item.strip() for item in value if isinstance(item, str) and item.strip() and "\x00" not in item]
