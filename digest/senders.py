"""Messages handed to the mail backend from several threads at once, each over its own connection.

A provider's API answers in 100 to 300 ms: one process that waits for each answer in turn sends a handful of digests a
second whatever its CPU could do. `Senders` keeps up to `size` messages in the backend's hands while the calling
thread builds the next ones and writes the outcomes; only the calling thread touches the database.

Sending's rules (digest.sending) need three things of it, and get them:
- Messages are handed over in the order given, and at most `size` are in the backend's hands or answered but not yet
  collected at any moment (the caller waits for an answer before handing over more).
- `abandon()` says which messages may have reached the mail server, and from then on no thread hands one over again.
- Each message waits in its thread for its turn at the provider's rate (subscriptions.mailrate). One the provider
  answered "slow down" (HTTP 429) is sent again in place after a pause shared by every worker. While a message waits,
  the provider has not taken it, so it does not count as in the backend's hands.
"""

import contextlib
import itertools
import logging
import queue
import threading
from dataclasses import dataclass, field

from django.core.mail import get_connection

from subscriptions import mailrate
from subscriptions.mailerrors import Transient, classify

logger = logging.getLogger(__name__)


class Stopped(Exception):
    """The attempt was abandoned while this message waited after a "slow down": it was never handed over again."""


@dataclass(eq=False)
class Slot:
    """One message and what became of it: `live` while the backend may hold it, then `error` (None: it was taken)."""

    delivery: object
    picks: list
    message: object
    live: bool = False
    error: BaseException | None = None
    answered: bool = field(default=False, repr=False)


class Senders:
    def __init__(self, size, limiter, first_connection=None):
        self.size = size
        self.limiter = limiter
        self.outstanding = 0
        self._jobs = queue.SimpleQueue()
        self._answers = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._held = {}
        self._threads = []
        self._idle = 0
        self._stopping = False
        self._first_connection = first_connection

    def full(self):
        return self.outstanding >= self.size

    def hand_over(self, slot):
        """Give `slot` to a sending thread (one more is started while all are busy and fewer than `size` run)."""
        assert not self.full(), "wait for an answer before handing over more"
        with self._lock:
            self._held[id(slot)] = slot
        if self.outstanding >= len(self._threads):
            self._start_thread()
        self.outstanding += 1
        self._jobs.put(slot)

    def answers(self):
        """The slots answered so far, waiting for at least one if none is (empty when nothing is outstanding).

        They stay held, and `abandon()` still returns them, until the caller has taken each one's outcome in hand and
        says so (`collected`): a stop that comes in between must not lose a message that went out."""
        if not self.outstanding:
            return []
        answered = [self._answers.get()]
        with contextlib.suppress(queue.Empty):
            while True:
                answered.append(self._answers.get_nowait())
        self.outstanding -= len(answered)
        return answered

    def collected(self, slot):
        with self._lock:
            self._held.pop(id(slot), None)

    def close(self):
        """Let every thread finish and close its connection (after every answer was collected)."""
        self._stop_threads()
        for thread in self._threads:
            thread.join()
        self._close_unused()

    def abandon(self):
        """Stop handing anything over; return (answered slots not yet collected, slots the server may hold).

        Threads finish the send they are in, and close their connections, without being waited for."""
        with self._lock:
            # Judged under the lock: a thread answering now must not leave its slot neither answered nor held.
            self._stopping = True
            held = list(self._held.values())
            self._held.clear()
            answered = [slot for slot in held if slot.answered]
            maybe_taken = [slot for slot in held if not slot.answered and slot.live]
        self._stop_threads()
        self._close_unused()
        return answered, maybe_taken

    def _stop_threads(self):
        for _ in self._threads:
            self._jobs.put(None)

    def _close_unused(self):
        """Close the connection opened for the first thread when no thread was started (nothing was handed over)."""
        connection, self._first_connection = self._first_connection, None
        if connection is not None:
            with contextlib.suppress(Exception):
                connection.close()

    def _start_thread(self):
        connection, self._first_connection = self._first_connection, None
        thread = threading.Thread(
            target=self._run, args=(connection,), name=f"digest-sender-{len(self._threads) + 1}", daemon=True
        )
        self._threads.append(thread)
        thread.start()

    def _run(self, connection):
        """One sending thread: its own connection, opened once and kept across messages (keep-alive), opened anew
        after an error that may have broken it."""
        is_open = connection is not None
        try:
            while (slot := self._jobs.get()) is not None:
                try:
                    connection = connection or get_connection()
                    if not is_open:
                        connection.open()
                        is_open = True
                    self._send(connection, slot)
                except BaseException as error:  # noqa: BLE001 - handed to the collecting thread, which decides
                    slot.error = error
                    if isinstance(error, Exception) and isinstance(classify(error), Transient):
                        # A broken SMTP session stays broken; the next message opens a fresh one.
                        is_open = False
                        with contextlib.suppress(Exception):
                            connection.close()
                with self._lock:
                    slot.answered = True
                self._answers.put(slot)
        finally:
            if connection is not None:
                with contextlib.suppress(Exception):
                    connection.close()

    def _send(self, connection, slot):
        """Send one message in its turn at the provider's rate. When the provider answers "slow down" (HTTP 429),
        pause every worker sending through it, then, in a new turn, send the same message again: a 429 means it was
        not taken, so it cannot go out twice. Until its turn comes, and while it waits after a 429, it is not in the
        backend's hands (`live`), and once the attempt is abandoned it is not handed over. Once the pauses for this
        message would pass SLOW_DOWN_MAX_SECONDS, or it had SLOW_DOWN_MAX_TRIES of them (a Retry-After of 0 adds up
        to nothing), the error is its answer (the row waits for a retry)."""
        waited = 0
        for attempt in itertools.count():
            if self._stopping:
                # Abandoned: not worth a turn at the shared rate (checked again, under the lock, after the turn).
                raise Stopped("abandoned before it was handed over")
            self.limiter.wait()
            with self._lock:
                if self._stopping:
                    raise Stopped("abandoned before it was handed over")
                slot.live = True
            try:
                connection.send_messages([slot.message])
                return
            except Exception as error:
                seconds = mailrate.slow_down_seconds(error, attempt)
                if seconds is None:
                    raise
                with self._lock:
                    slot.live = False
                self.limiter.pause(seconds)
                waited += seconds
                if waited > mailrate.SLOW_DOWN_MAX_SECONDS or attempt + 1 >= mailrate.SLOW_DOWN_MAX_TRIES:
                    raise
                logger.warning(
                    "The mail provider asked to slow down (delivery %s); every worker pauses %.1f s, then sends it "
                    "again.",
                    slot.delivery.id,
                    seconds,
                )
