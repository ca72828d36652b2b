"""Sending planned digests: claim, choose, build, hand to the mail backend, record.

A Delivery is claimed with one conditional update (pending -> sending, tagged with this attempt's claim token), so two
workers, or a retried task, never both send it. The reader is re-checked after claiming: unsubscribing or pausing
between planning and sending wins. Every claimed row ends sent (with the message id), failed or skipped (with the
reason), or goes back to pending for a retry when the failure was transient.
"""

import contextlib
import itertools
import logging
import time
import uuid
from dataclasses import dataclass, field

import tenacity
from django.conf import settings
from django.core.mail import get_connection
from django.db import InterfaceError, OperationalError, connection
from django.utils import timezone

from digest import compose
from digest.models import Delivery, DigestRun
from subscriptions import mailrate
from subscriptions.emails import sent_message_id
from subscriptions.mailerrors import Permanent, Transient, classify, retry_delay
from subscriptions.models import Subscriber

logger = logging.getLogger(__name__)


@dataclass
class Outcome:
    sent: int = 0
    failed: int = 0
    skipped: int = 0
    retry_ids: list = field(default_factory=list)
    retry_reason: str = ""

    def add(self, other):
        self.sent += other.sent
        self.failed += other.failed
        self.skipped += other.skipped


def send_deliveries(delivery_ids, *, run_id=None, now=None, pool=None, renderer=None, connection=None, last_try=False):
    """Claim, build and send the given pending deliveries; return what became of them.

    Rows that failed transiently go back to pending and are listed in `retry_ids`, unless `last_try`, when they fail.

    Each outcome is written as soon as the backend answers, before the next message is handed over, so at any moment
    at most one claimed row is "handed over but not recorded". It is always the claim's lowest-id row still
    `sending`: that is how `recovery.recover` tells it from the rows never handed over when a worker dies.

    Each message waits for its turn at the provider's rate (subscriptions.mailrate) before it is handed over. One
    the provider answers "slow down" (429) is sent again in place after a pause every worker keeps. The provider did
    not take it, so a stop during that pause leaves it to be sent later, like the rows not yet handed over; only a
    worker killed outright there leaves it `sending`, and recovery fails it as interrupted.
    """
    now = now or timezone.now()
    claim = uuid.uuid4()
    progress = Progress()
    try:
        on_database(_claim, delivery_ids, claim, now)
        deliveries = list(
            Delivery.objects.filter(claim_token=claim, status=Delivery.Status.SENDING)
            .select_related("subscriber")
            .order_by("id")
        )
        if not deliveries:
            return Outcome()
        batch = compose.Batch([delivery.subscriber_id for delivery in deliveries], now, pool=pool, renderer=renderer)
        return _send_claimed(deliveries, batch, Attempt(claim, run_id, now, last_try, progress), connection)
    except BaseException:
        # Something broke before every outcome was written. Write what is known, then let the rows never handed
        # to the backend wait for a retry; a row interrupted in the backend's hands may have gone out, so it fails.
        on_database(_release, claim, progress, now, run_id)
        raise


class Progress:
    """What this attempt knows that the database may not yet: the row in the backend's hands, an unwritten outcome,
    and the outcomes written but not yet added to the run's counts."""

    def __init__(self):
        self.in_flight = None
        self.unwritten = None
        self.outcome = Outcome()
        self.counted = False


def _claim(delivery_ids, claim, now):
    Delivery.objects.filter(id__in=delivery_ids).claim(claim, now)


def _release(claim, progress, now, run_id):
    if progress.unwritten is not None:
        progress.unwritten.record(claim)
        progress.unwritten = None
    in_flight = Delivery.objects.filter(id=progress.in_flight, claim_token=claim)
    if progress.in_flight is not None and in_flight.fail_interrupted(now):
        DigestRun.objects.add_outcome(run_id, failed=1)
    Delivery.objects.filter(claim_token=claim).release()
    if not progress.counted:
        progress.counted = True
        _count(run_id, progress.outcome, now)


@dataclass
class Attempt:
    """One send attempt: its claim on the rows, their run, its moment, whether it is the last try, and its Progress."""

    claim: uuid.UUID
    run_id: int
    now: object
    last_try: bool
    progress: "Progress"


def _send_claimed(deliveries, batch, attempt, connection=None):
    progress, outcome, now = attempt.progress, attempt.progress.outcome, attempt.now
    claim, run_id = attempt.claim, attempt.run_id
    connection = connection or get_connection()
    refused_readers = {}

    chosen, skipped = [], []
    for delivery in deliveries:
        picks, reason = batch.choose(delivery.subscriber)
        if picks is None:
            delivery.status, delivery.error, delivery.finished_at = Delivery.Status.SKIPPED, reason, now
            skipped.append(delivery)
        else:
            chosen.append((delivery, picks))
    # Rows with nothing to send are written first, together: they never reach the backend.
    on_database(Delivery.record_many, skipped, claim)
    outcome.skipped = len(skipped)
    if not chosen:
        _count_once(run_id, progress, now)
        return outcome
    batch.prepare(picks for _, picks in chosen)

    try:
        connection.open()
    except Exception as error:  # noqa: BLE001 - whatever stopped the connection, these digests wait for a retry
        problem = classify(error)
        logger.warning("Mail connection failed for %d digests: %s", len(chosen), problem)
        _give_back([delivery for delivery, _ in chosen], outcome, problem, attempt.last_try, now)
        _count_once(run_id, progress, now)
        return outcome

    limiter = mailrate.limiter()
    try:
        for delivery, picks in chosen:
            delivery.finished_at = now
            message = _build(delivery, picks, batch, outcome)
            if message is not None:
                # Its turn at the provider's rate, before it counts as in the backend's hands.
                limiter.wait()
                progress.in_flight = delivery.id
                _hand_over(connection, limiter, message, delivery, picks, progress, refused_readers, attempt.last_try)
            progress.in_flight, progress.unwritten = None, delivery
            written = on_database(delivery.record, claim)
            progress.unwritten = None
            if not written:
                # Recovery took this claim back (it judged the worker dead): what is left is no longer ours.
                logger.warning("Claim %s was taken back while sending; stopping this attempt.", claim)
                _undo(outcome, delivery)
                break
    finally:
        connection.close()

    for subscriber_id, reason in refused_readers.items():
        Subscriber.objects.filter(id=subscriber_id).suppress(reason)
    _count_once(run_id, progress, now)
    return outcome


def _build(delivery, picks, batch, outcome):
    """The delivery's email, or None (the row failed) when it could not be built: one reader's broken email must not
    hold back the others."""
    try:
        metadata = {"delivery_id": delivery.id, "digest_date": delivery.digest_date.isoformat()}
        return batch.build(delivery.subscriber, picks, delivery.digest_date, metadata=metadata)
    except DATABASE_ERRORS:
        raise
    except Exception as error:  # noqa: BLE001 - recorded as the row's reason
        logger.exception("Could not build the digest of delivery %s", delivery.id)
        delivery.status, delivery.error = Delivery.Status.FAILED, f"Could not build the email: {error!r}"
        outcome.failed += 1
        return None


def _hand_over(connection, limiter, message, delivery, picks, progress, refused_readers, last_try):
    """Send one message and set the row's outcome from the backend's answer."""
    outcome = progress.outcome
    try:
        _send_paced(connection, limiter, message, progress)
    except Exception as error:  # noqa: BLE001 - classified below; nothing may leave a row unrecorded
        if progress.in_flight is None:
            # Stopped (a task's time limit) while it waited after a 429: no answer of the provider's to record.
            raise
        problem = classify(error)
        if isinstance(problem, Transient) and not last_try:
            delivery.status, delivery.error = Delivery.Status.PENDING, str(problem)
            outcome.retry_ids.append(delivery.id)
            outcome.retry_reason = str(problem)
            # A broken SMTP session stays broken; the next send opens a fresh one.
            connection.close()
        else:
            delivery.status, delivery.error = Delivery.Status.FAILED, str(problem)
            outcome.failed += 1
            if isinstance(problem, Permanent) and problem.flag_reader:
                refused_readers[delivery.subscriber_id] = str(problem)
        return
    delivery.message_id = sent_message_id(message)
    delivery.status, delivery.error = Delivery.Status.SENT, ""
    delivery.paper_ids = [pick.paper.id for pick in picks]
    delivery.shown = message.shown
    outcome.sent += 1


def _send_paced(connection, limiter, message, progress):
    """Send one message. When the provider answers "slow down" (HTTP 429), pause every worker sending through it,
    then, in a new turn at its rate, send the same message again: a 429 means it was not taken, so it cannot go out
    twice, and while it waits it is not in the backend's hands (`progress.in_flight`). Once the pauses for this message
    would pass SLOW_DOWN_MAX_SECONDS, or it had SLOW_DOWN_MAX_TRIES of them (a Retry-After of 0 adds up to nothing),
    the error goes to the caller (the row waits for a retry)."""
    delivery_id = progress.in_flight
    waited = 0
    for attempt in itertools.count():
        try:
            connection.send_messages([message])
            return
        except Exception as error:
            seconds = mailrate.slow_down_seconds(error, attempt)
            if seconds is None:
                raise
            limiter.pause(seconds)
            waited += seconds
            if waited > mailrate.SLOW_DOWN_MAX_SECONDS or attempt + 1 >= mailrate.SLOW_DOWN_MAX_TRIES:
                raise
            logger.warning(
                "The mail provider asked to slow down (delivery %s); every worker pauses %.1f s, then sends it again.",
                delivery_id,
                seconds,
            )
        progress.in_flight = None
        limiter.wait()
        progress.in_flight = delivery_id


def _undo(outcome, delivery):
    """Leave out of this attempt's counts a row whose outcome it could not write (recovery counted it)."""
    if delivery.status == Delivery.Status.SENT:
        outcome.sent -= 1
    elif delivery.status == Delivery.Status.FAILED:
        outcome.failed -= 1
    elif delivery.id in outcome.retry_ids:
        outcome.retry_ids.remove(delivery.id)


def _reconnect(retry_state):
    logger.warning("Database connection failed (%s); reconnecting.", retry_state.outcome.exception())
    # It is broken already, so closing may fail too; the next query opens a new one either way.
    with contextlib.suppress(DATABASE_ERRORS):
        connection.close()


DATABASE_ERRORS = (OperationalError, InterfaceError)

# A dropped database connection (a restart, a failover, an idle connection closed by a proxy) costs a reconnect, not
# a lost outcome: the write is tried again on a new connection for up to a minute.
_database_retry = tenacity.Retrying(
    retry=tenacity.retry_if_exception_type(DATABASE_ERRORS),
    wait=tenacity.wait_exponential(multiplier=0.2, max=5),
    stop=tenacity.stop_after_delay(60),
    before_sleep=_reconnect,
    reraise=True,
)


def on_database(function, *args):
    """Call `function(*args)` (database work that is safe to repeat), reconnecting and retrying while the database
    connection fails. Inside a transaction there is nothing to reconnect: errors go straight to the caller."""
    if connection.in_atomic_block:
        return function(*args)
    return _database_retry(function, *args)


def _give_back(deliveries, outcome, problem, last_try, now):
    ids = [delivery.id for delivery in deliveries]
    final = last_try or isinstance(problem, Permanent)
    Delivery.objects.filter(id__in=ids).give_back(str(problem), now, final=final)
    if final:
        outcome.failed += len(ids)
    else:
        outcome.retry_ids, outcome.retry_reason = ids, str(problem)
    return outcome


def _count_once(run_id, progress, now):
    """Add this attempt's outcomes to its run, once. Marked before it is written, so an interruption can lose the
    count (recovery recounts runs left open) but never add it twice."""
    if not progress.counted:
        progress.counted = True
        on_database(_count, run_id, progress.outcome, now)


def _count(run_id, outcome, now):
    DigestRun.objects.add_outcome(run_id, sent=outcome.sent, failed=outcome.failed, skipped=outcome.skipped)


def send_with_retries(delivery_ids, *, max_retries=None, sleep=None, **kwargs):
    """send_deliveries, retrying transient failures in this process (the command's path; workers use task retries)."""
    max_retries = settings.DIGEST_MAX_RETRIES if max_retries is None else max_retries
    sleep = sleep or time.sleep
    total = Outcome()
    ids = list(delivery_ids)
    for attempt in range(max_retries + 1):
        outcome = send_deliveries(ids, last_try=attempt == max_retries, **kwargs)
        total.add(outcome)
        if not outcome.retry_ids:
            break
        logger.info("Retrying %d digests: %s", len(outcome.retry_ids), outcome.retry_reason)
        sleep(retry_delay(attempt))
        ids = outcome.retry_ids
    return total
