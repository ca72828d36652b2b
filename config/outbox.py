"""A mail backend for machines with no mail server: each message becomes files under OUTBOX_DIR.

`<n>-<recipient>.eml` is the whole message as it would be sent (open it in a mail client); `.html` beside it is the
HTML part alone, to open in a browser.
"""

import re
import threading
from itertools import count

from django.conf import settings
from django.core.mail.backends.base import BaseEmailBackend
from django.utils import timezone

_sequence = count(1)
_lock = threading.Lock()
_UNSAFE_RE = re.compile(r"[^A-Za-z0-9@._+-]+")


class EmailBackend(BaseEmailBackend):
    def __init__(self, *args, outbox_dir=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.outbox_dir = outbox_dir or settings.OUTBOX_DIR

    def send_messages(self, email_messages):
        self.outbox_dir.mkdir(parents=True, exist_ok=True)
        for message in email_messages:
            with _lock:
                number = next(_sequence)
            recipient = _UNSAFE_RE.sub("_", message.to[0] if message.to else "nobody")
            stem = f"{timezone.now():%Y%m%d-%H%M%S}-{number:05d}-{recipient}"
            (self.outbox_dir / f"{stem}.eml").write_bytes(message.message().as_bytes(linesep="\r\n"))
            for content, mimetype in getattr(message, "alternatives", []):
                if mimetype == "text/html":
                    (self.outbox_dir / f"{stem}.html").write_text(content, encoding="utf-8")
        return len(email_messages)
