"""What a mail backend's exception means: Transient (retry later, with backoff) or Permanent (retrying will not fix
it; `flag_reader` when the address itself was refused). Used by digests and sign-up emails alike, for SMTP and for
every Anymail provider."""

import smtplib

from anymail.exceptions import AnymailAPIError, AnymailRecipientsRefused
from celery.utils.time import get_exponential_backoff_interval
from django.conf import settings

RETRY_MAX_SECONDS = 30 * 60


class Transient(Exception):
    """A failure worth retrying later: the server or provider is busy, down, or asked us to slow down."""


class Permanent(Exception):
    """A failure retrying will not fix. `flag_reader` when the address itself was refused."""

    def __init__(self, reason, *, flag_reader=False):
        super().__init__(reason)
        self.flag_reader = flag_reader


def describe(error):
    # Some exceptions fail in their own __str__ (an Anymail error without a response); a reason must still come out.
    try:
        return str(error)
    except Exception:  # noqa: BLE001
        return repr(type(error).__name__)


def classify(error):
    """Transient or Permanent for an exception raised by a mail backend."""
    if isinstance(error, AnymailRecipientsRefused):
        return Permanent(f"The provider refused the address: {describe(error)}", flag_reader=True)
    if isinstance(error, AnymailAPIError):
        status = error.status_code
        if status is None or status == 429 or status >= 500:
            return Transient(f"The provider did not take it (HTTP {status or 'no answer'}): {describe(error)}")
        return Permanent(f"The provider refused it (HTTP {status}): {describe(error)}")
    if isinstance(error, smtplib.SMTPRecipientsRefused):
        codes = [code for code, _message in error.recipients.values()]
        reply = "; ".join(f"{code} {message.decode(errors='replace')}" for code, message in error.recipients.values())
        if codes and all(code >= 500 for code in codes):
            return Permanent(f"The mail server refused the address: {reply}", flag_reader=True)
        return Transient(f"The mail server deferred the address: {reply}")
    if isinstance(error, smtplib.SMTPResponseException):
        text = error.smtp_error
        reply = f"{error.smtp_code} {text.decode(errors='replace') if isinstance(text, bytes) else text}"
        if error.smtp_code >= 500:
            return Permanent(f"The mail server refused the message: {reply}")
        return Transient(f"The mail server deferred the message: {reply}")
    if isinstance(error, smtplib.SMTPException | OSError):
        return Transient(f"Could not talk to the mail server: {error!r}")
    return Permanent(f"Unexpected error: {error!r}")


def retry_delay(retries):
    """Seconds before retry number `retries` + 1: exponential, capped, with full jitter so workers do not stampede."""
    base = settings.DIGEST_RETRY_BASE_SECONDS
    return get_exponential_backoff_interval(base, retries, RETRY_MAX_SECONDS, full_jitter=True)
