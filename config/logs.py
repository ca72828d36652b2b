"""Log output without the links that act for a reader.

A signed link value (subscriptions.tokens) is as good as the reader's password for what it does, and Django writes
request paths into its logs: the path of every 4xx answer ("Bad Request: /manage/…/" after a form error), every CSRF
failure, and at DEBUG the template context of a page. The formatter cuts every signed value out of what it writes.
"""

import logging
import re

from gunicorn import glogging

# A signed value: the signed text (a reader's token, maybe with a paper and direction or a date), an optional
# timestamp, and a SHA-256 signature in URL-safe base64 (43 characters).
SIGNED_VALUE = re.compile(r"[A-Za-z0-9_.-]+(?::[A-Za-z0-9_-]+)?:[A-Za-z0-9_-]{43}(?![A-Za-z0-9_-])")
REDACTED = "[signed link]"


def redact(text):
    return SIGNED_VALUE.sub(REDACTED, text)


class RedactingFormatter(logging.Formatter):
    """logging.Formatter whose output, traceback included, has every signed link value replaced."""

    def format(self, record):
        return redact(super().format(record))


class GunicornLogger(glogging.Logger):
    """gunicorn's logger (the Procfile's --logger-class): its access log shows each request line and Referer, which
    carry signed links too."""

    def atoms(self, resp, req, environ, request_time):
        atoms = super().atoms(resp, req, environ, request_time)
        return {key: redact(value) if isinstance(value, str) else value for key, value in atoms.items()}
