"""Sending planned digests: claim, choose, build, hand to the mail backend, record.

A Delivery is claimed with one conditional update (pending -> sending, tagged with this attempt's claim token), so two
workers, or a retried task, never both send it. The reader is re-checked after claiming: unsubscribing or pausing
between planning and sending wins. Every claimed row ends sent (with the message id), failed or skipped (with the
reason), or goes back to pending for a retry when the failure was transient.
"""

import contextlib
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
from digest import senders as senders_module
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


def send_deliveries(delivery_ids, *, run_id=None, now=None, pool=None, renderer=None, last_try=False):
    """Claim, build and send the given pending deliveries; return what became of them.

    Rows that failed transiently go back to pending and are listed in `retry_ids`, unless `last_try`, when they fail.

    Up to DIGEST_SEND_CONCURRENCY messages are in the backend's hands at once (digest.senders), each thread with its
    own connection, while this thread builds the next ones and writes each outcome as soon as it is answered. Messages
    are handed over in id order, and no more is handed over while that many are "handed over but not recorded". So
    of the claim's rows still `sending`, only the lowest-id DIGEST_SEND_CONCURRENCY can have reached the mail server:
    the claim records that number (`send_window`), and that is how `recovery.recover` tells them from the rows never
    handed over when a worker dies.

    Each message waits in its sending thread for its turn at the provider's rate (subscriptions.mailrate). One the
    provider answers "slow down" (429) is sent again in place after a pause every worker keeps. The provider did not
    take it, so a stop during that pause leaves it to be sent later, like the rows not yet handed over; only a worker
    killed outright there leaves it `sending`, and recovery fails it as interrupted.
    """
    now = now or timezone.now()
    claim = uuid.uuid4()
    progress = Progress()
    window = settings.DIGEST_SEND_CONCURRENCY
    try:
        on_database(_claim, delivery_ids, claim, now, window)
        deliveries = list(
            Delivery.objects.filter(claim_token=claim, status=Delivery.Status.SENDING)
            .select_related("subscriber")
            .order_by("id")
        )
        if not deliveries:
            return Outcome()
        batch = compose.Batch([delivery.subscriber_id for delivery in deliveries], now, pool=pool, renderer=renderer)
        attempt = Attempt(claim, run_id, now, last_try, progress, window)
        return _send_claimed(deliveries, batch, attempt)
    except BaseException:
        # Something broke before every outcome was written. Write what is known, then let the rows never handed
        # to the backend wait for a retry; a row interrupted in the backend's hands may have gone out, so it fails.
        on_database(_release, claim, progress, now, run_id)
        raise


class Progress:
    """What this attempt knows that the database may not yet: the messages in the backend's hands (`senders`), the
    outcomes known but not written, the rows that may have gone out unrecorded, and the outcomes written but not yet
    added to the run's counts."""

    def __init__(self):
        self.senders = None
        self.unwritten = []
        self.interrupted = []
        self.outcome = Outcome()
        self.counted = False


def _claim(delivery_ids, claim, now, window):
    Delivery.objects.filter(id__in=delivery_ids).claim(claim, now, window)


def _release(claim, progress, now, run_id):
    if progress.senders is not None:
        answered, maybe_taken = progress.senders.abandon()
        progress.senders = None
        _apply_answers(answered, progress, {}, last_try=False)
        progress.interrupted += [slot.delivery.id for slot in maybe_taken]
    Delivery.record_many(progress.unwritten, claim)
    progress.unwritten = []
    if progress.interrupted:
        interrupted = Delivery.objects.filter(id__in=progress.interrupted, claim_token=claim)
        DigestRun.objects.add_outcome(run_id, failed=interrupted.fail_interrupted(now))
        progress.interrupted = []
    Delivery.objects.filter(claim_token=claim).release()
    if not progress.counted:
        progress.counted = True
        _count(run_id, progress.outcome, now)


@dataclass
class Attempt:
    """One send attempt: its claim on the rows, their run, its moment, whether it is the last try, its Progress, and
    how many messages it may have in the backend's hands at once."""

    claim: uuid.UUID
    run_id: int
    now: object
    last_try: bool
    progress: "Progress"
    window: int = 1


def _send_claimed(deliveries, batch, attempt):
    progress, outcome, now = attempt.progress, attempt.progress.outcome, attempt.now
    claim, run_id = attempt.claim, attempt.run_id
    mail_connection = get_connection()
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
        mail_connection.open()
    except Exception as error:  # noqa: BLE001 - whatever stopped the connection, these digests wait for a retry
        problem = classify(error)
        logger.warning("Mail connection failed for %d digests: %s", len(chosen), problem)
        _give_back([delivery for delivery, _ in chosen], outcome, problem, attempt.last_try, now)
        _count_once(run_id, progress, now)
        return outcome

    senders = progress.senders = senders_module.Senders(attempt.window, mailrate.limiter(), mail_connection)
    taken_back = False
    for delivery, picks in chosen:
        delivery.finished_at = now
        message = _build(delivery, picks, batch, outcome)
        if message is None:
            progress.unwritten.append(delivery)
            taken_back = not _write(progress, claim)
        else:
            while senders.full() and not taken_back:
                taken_back = not _collect(senders, progress, refused_readers, attempt)
            if not taken_back:
                senders.hand_over(senders_module.Slot(delivery, picks, message))
        if taken_back:
            break
    while senders.outstanding:
        # After a take-back every write finds the rows no longer ours, and leaves them out of the counts.
        _collect(senders, progress, refused_readers, attempt)
    progress.senders = None
    senders.close()

    for subscriber_id, reason in refused_readers.items():
        Subscriber.objects.filter(id=subscriber_id).suppress(reason)
    _count_once(run_id, progress, now)
    return outcome


def _collect(senders, progress, refused_readers, attempt):
    """Wait for answers, set their rows' outcomes and write them; False once recovery took the claim back."""
    stopped = _apply_answers(senders.answers(), progress, refused_readers, attempt.last_try, senders)
    if stopped is not None:
        # The backend was stopped while it held a message (SIGTERM's SystemExit, say): it may have gone out.
        raise stopped
    return _write(progress, attempt.claim)


def _write(progress, claim):
    """Write the known outcomes together (digest.models.Delivery.record_many); False once one finds the claim taken
    back, those it could not write left out of the counts."""
    if not progress.unwritten:
        return True
    lost = on_database(Delivery.record_many, progress.unwritten, claim)
    progress.unwritten = []
    if not lost:
        return True
    # Recovery took this claim back (it judged the worker dead): what is left is no longer ours.
    logger.warning("Claim %s was taken back while sending; stopping this attempt.", claim)
    for delivery in lost:
        _undo(progress.outcome, delivery)
    return False


def _apply_answers(slots, progress, refused_readers, last_try, senders=None):
    """Set each answered row's outcome (to be written), then tell `senders` it was collected; return the stop that
    interrupted one, if any. A stop arriving part way leaves the rest held: abandoning the attempt hands them back, and
    this takes each one in once (a row already given its outcome is not counted again)."""
    stopped = None
    for slot in slots:
        delivery = slot.delivery
        if slot.error is not None and not isinstance(slot.error, Exception):
            stopped = slot.error
            if delivery.id not in progress.interrupted:
                progress.interrupted.append(delivery.id)
        elif not any(unwritten is delivery for unwritten in progress.unwritten):
            if delivery.status == Delivery.Status.SENDING:
                _apply(slot, progress.outcome, refused_readers, last_try)
            progress.unwritten.append(delivery)
        if senders is not None:
            senders.collected(slot)
    return stopped


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


def _apply(slot, outcome, refused_readers, last_try):
    """Set the row's outcome from the backend's answer."""
    delivery, error = slot.delivery, slot.error
    if error is not None:
        problem = classify(error)
        if isinstance(problem, Transient) and not last_try:
            delivery.status, delivery.error = Delivery.Status.PENDING, str(problem)
            outcome.retry_ids.append(delivery.id)
            outcome.retry_reason = str(problem)
        else:
            delivery.status, delivery.error = Delivery.Status.FAILED, str(problem)
            outcome.failed += 1
            if isinstance(problem, Permanent) and problem.flag_reader:
                refused_readers[delivery.subscriber_id] = str(problem)
        return
    message = slot.message
    delivery.message_id = sent_message_id(message)
    delivery.status, delivery.error = Delivery.Status.SENT, ""
    delivery.paper_ids = [pick.paper.id for pick in slot.picks]
    delivery.shown = message.shown
    outcome.sent += 1


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
