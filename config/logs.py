"""Log output without the links that act for a reader.

A signed link value (subscriptions.tokens) is as good as the reader's password for what it does, and both Django and
gunicorn write request paths into their logs: gunicorn's access log has every request line and Referer, Django the
path of every 4xx answer ("Bad Request: /manage/…/" after a form error), every CSRF failure, and at DEBUG the template
context of a page. A link cut short or lengthened by one character is nearly as good as the link itself (the one
missing character can be guessed), so a value is not recognised by its length or shape: whatever follows a signed
link route (subscriptions/routes.py) as the first segment of a path is cut out, whatever it is, and so are values
shaped like a signed value wherever else they appear.
"""

import contextvars
import logging
import re

from django.core.signals import request_finished, request_started
from gunicorn import glogging

from subscriptions.routes import ROUTES

REDACTED = "[signed link]"

# A signed value out of a path: the signed text (a reader's token, maybe with a paper and direction or a date), an
# optional timestamp, and a signature in URL-safe base64 (43 characters, or part of one, or more).
# Each pattern starts only where a run of its characters starts (the lookbehinds): a long line is scanned once, not
# once from every character of it.
SIGNED_VALUE = re.compile(r"(?<![A-Za-z0-9_.-])[A-Za-z0-9_.-]+(?::[A-Za-z0-9_-]+)?:[A-Za-z0-9_-]{20,}(?![A-Za-z0-9_-])")


def _sent(char):
    """A pattern for `char` as a client may send it, which Django or gunicorn may log undecoded: itself, or
    percent-encoded once or more (%2F, %252F). Matched ignoring case."""
    return f"(?:{re.escape(char)}|%(?:25)*{ord(char):02x})"


_SLASH = _sent("/")
_ROUTE = "|".join("".join(map(_sent, name)) for name in sorted(ROUTES.values(), key=len, reverse=True))
# A path's start up to its first real segment: "/", "//", "/./", "/../" (a server does not resolve them).
_START = rf"{_SLASH}(?:{_sent('.')}{{0,2}}{_SLASH})*+"
# A full URL's scheme and host (a Referer, a link in a message or a query string), maybe percent-encoded.
_ORIGIN = rf"(?<![a-z0-9+.-])[a-z][a-z0-9+.-]*(?::|%(?:25)*3a){_SLASH}{_SLASH}[^/%\s\"'<>?#]*"
# What may follow the route: the rest of the path, or a query string or fragment.
_AFTER = rf"(?:{_SLASH}|[?#;])"
_KEEP = rf"{_START}(?:{_ROUTE}){_AFTER}"
# In running text: a path (not the middle of one) or a URL whose first segment is a route, and everything after the
# route up to a space or a quote (a part already redacted, with its space, included); text already redacted is left
# as it is.
LINK_PATH = re.compile(
    rf"(?P<keep>(?:{_ORIGIN}|(?<![\w.~%/-])){_KEEP})"
    rf"(?!{re.escape(REDACTED)}(?![^\s\"'<>]))(?:{re.escape(REDACTED)}|[^\s\"'<>])+",
    re.IGNORECASE,
)
# A value that is one path or URL (a request's path, a Referer): everything after the route, whatever it contains.
WHOLE_LINK_PATH = re.compile(rf"\A(?P<keep>(?:{_ORIGIN})?{_KEEP})(?!{re.escape(REDACTED)}\Z).+\Z", re.I | re.S)


def redact(text):
    """`text` with every signed link path and every signed value in it replaced."""
    return SIGNED_VALUE.sub(REDACTED, LINK_PATH.sub(rf"\g<keep>{REDACTED}", text))


def redact_path(path):
    """A path or URL with everything after a signed link route replaced (spaces and quotes included)."""
    return WHOLE_LINK_PATH.sub(rf"\g<keep>{REDACTED}", path)


# The request this thread is answering (Django's path_info, and the query string), for the lines logged meanwhile.
_current_request = contextvars.ContextVar("current_request", default=None)


def _request_started(sender, environ, **kwargs):
    from django.core.handlers.wsgi import get_path_info

    _current_request.set((get_path_info(environ), environ.get("QUERY_STRING", "")))


def _request_finished(sender, **kwargs):
    _current_request.set(None)


request_started.connect(_request_started, dispatch_uid="config.logs")
request_finished.connect(_request_finished, dispatch_uid="config.logs")


def _secrets_of(path, query=""):
    """What no log line may show of a request under a signed link route, however the line writes it: every run of 8
    or more URL-safe base64 characters (a reader's token, a signature, or part of one) after the route, in the path
    or the query string. Quoting,
    escaping and repr leave such runs as they are, so a line that shows the path in any form shows them. Shorter runs
    give nothing away, and would cut words out of unrelated text."""
    match = WHOLE_LINK_PATH.match(path)
    return set(re.findall(r"[A-Za-z0-9_-]{8,}", f"{path[match.end('keep') :]}?{query}")) if match else set()


def _request_secrets(record):
    """The secrets of the request being answered, and of the one the record names (Django's request log records)."""
    request = getattr(record, "request", None)
    secrets = _secrets_of(*_current_request.get() or ("",))
    if isinstance(getattr(request, "path", None), str):
        secrets |= _secrets_of(request.path, request.META.get("QUERY_STRING", ""))
    return sorted(secrets, key=len, reverse=True)


class RedactingFormatter(logging.Formatter):
    """logging.Formatter whose output, traceback included, has every signed link path and value replaced, and every
    part of the link in the path of the request being answered, wherever in the line it is."""

    def format(self, record):
        text = super().format(record)
        for secret in _request_secrets(record):
            text = text.replace(secret, REDACTED)
        return redact(text)


class GunicornLogger(glogging.Logger):
    """gunicorn's logger (the Procfile's --logger-class): its access log shows each request line and Referer, which
    carry signed links too, and its error log the request line of a request it could not handle."""

    def atoms(self, resp, req, environ, request_time):
        atoms = super().atoms(resp, req, environ, request_time)
        raw_uri = redact_path(environ["RAW_URI"])
        atoms["r"] = f"{environ['REQUEST_METHOD']} {raw_uri} {environ['SERVER_PROTOCOL']}"
        return {key: redact(redact_path(value)) if isinstance(value, str) else value for key, value in atoms.items()}

    def _set_handler(self, log, output, fmt, stream=None):
        super()._set_handler(log, output, RedactingFormatter(fmt._fmt, fmt.datefmt), stream=stream)
