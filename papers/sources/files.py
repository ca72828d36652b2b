"""Papers from a file or stdin, in whichever format the content shows: an HF daily_papers JSON array, JSON Lines of the
same items, or an arXiv API Atom feed.

Each item comes back with a label saying where it is ("item 3", "line 7", "entry 2"), so an operator can find a
rejected one. A problem with the whole input (unreadable, too large, not UTF-8, truncated, the wrong shape) raises
InvalidInput instead.
"""

import json
import sys

from papers.sources import InvalidInput, InvalidItem, describe_json_type
from papers.sources.arxiv import parse_feed
from papers.sources.huggingface import parse_item

DEFAULT_MAX_BYTES = 64 * 1024 * 1024


def read_items(path_or_dash, stdin=None, max_bytes=DEFAULT_MAX_BYTES):
    """[(label, PaperRecord | InvalidItem)] from the file at `path_or_dash`, or from `stdin` (bytes) for "-"."""
    data = read_bytes(path_or_dash, stdin, max_bytes)
    return parse_document(data)


def read_bytes(path_or_dash, stdin, max_bytes):
    # Read one byte past the limit instead of trusting the size: stdin, pipes and growing files have none.
    if path_or_dash == "-":
        data = (stdin if stdin is not None else sys.stdin.buffer).read(max_bytes + 1)
    else:
        try:
            with open(path_or_dash, "rb") as file:
                data = file.read(max_bytes + 1)
        except FileNotFoundError:
            raise InvalidInput("no such file") from None
        except IsADirectoryError:
            raise InvalidInput("is a directory, not a file") from None
        except OSError as error:
            raise InvalidInput(f"cannot be read: {error.strerror or error}") from None
    if len(data) > max_bytes:
        raise InvalidInput(f"larger than the import limit of {max_bytes:,} bytes (IMPORT_MAX_BYTES)")
    return data


def parse_document(data):
    text = decode_utf8(data)
    stripped = text.lstrip()
    if not stripped:
        raise InvalidInput("empty: no papers in it")
    if stripped.startswith("<"):
        return parse_feed(data, source="file")
    if stripped.startswith("["):
        return parse_json_array(text)
    if stripped.startswith("{"):
        return parse_json_lines(text)
    try:
        value = json.loads(text)
    except json.JSONDecodeError:
        raise InvalidInput("neither JSON nor an Atom feed") from None
    raise InvalidInput(f"expected a JSON array of daily_papers items, got {describe_json_type(value)}")


def decode_utf8(data):
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as error:
        line = data.count(b"\n", 0, error.start) + 1
        raise InvalidInput(
            f"not UTF-8: byte 0x{data[error.start]:02x} at offset {error.start:,} (line {line}) is not valid UTF-8"
        ) from None
    return text.removeprefix("\ufeff")


def parse_json_array(text):
    try:
        value = json.loads(text)
    except json.JSONDecodeError as error:
        raise InvalidInput(describe_json_error(error)) from None
    if not isinstance(value, list):
        raise InvalidInput(f"expected a JSON array of daily_papers items, got {describe_json_type(value)}")
    return [(f"item {position}", parse_or_reject(item)) for position, item in enumerate(value, start=1)]


def parse_json_lines(text):
    try:
        whole = json.loads(text)
    except json.JSONDecodeError as error:
        whole_error = error
    else:
        if isinstance(whole, dict) and "paper" in whole:
            return [("item 1", parse_or_reject(whole))]
        keys = ", ".join(sorted(whole)[:5]) if isinstance(whole, dict) else ""
        raise InvalidInput(
            f"expected a JSON array of daily_papers items or JSON Lines, got one JSON object (keys: {keys or 'none'})"
        )

    items = []
    any_line_is_json = False
    # Split on "\n" only: str.splitlines would also split on U+2028, which JSON allows unescaped inside strings.
    for number, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            continue
        try:
            value = json.loads(line)
        except json.JSONDecodeError as error:
            items.append((f"line {number}", InvalidItem(f"not JSON: {error.msg} at column {error.colno}")))
        else:
            any_line_is_json = True
            items.append((f"line {number}", parse_or_reject(value)))
    if not any_line_is_json:
        # Not one line stands alone as JSON: this is one broken JSON document, not JSON Lines with bad lines.
        raise InvalidInput(describe_json_error(whole_error))
    return items


def describe_json_error(error):
    return f"malformed or truncated JSON at line {error.lineno}, column {error.colno}: {error.msg}"


def parse_or_reject(value):
    try:
        return parse_item(value, source="file")
    except InvalidItem as invalid:
        return invalid
