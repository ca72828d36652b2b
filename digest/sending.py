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
from django.db import InterfaceError, OperationalError, connection, transaction
from django.db.models import F
from django.utils import timezone

from digest import compose
from digest.models import Delivery, DigestRun
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
    `sending`: that is how `planning.recover` tells it from the rows never handed over when a worker dies.
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
    Delivery.objects.filter(id__in=delivery_ids, status=Delivery.Status.PENDING).update(
        status=Delivery.Status.SENDING, claim_token=claim, claimed_at=now, attempts=F("attempts") + 1
    )


def _release(claim, progress, now, run_id):
    if progress.unwritten is not None:
        record(progress.unwritten, claim)
        progress.unwritten = None
    if progress.in_flight is not None:
        interrupted = Delivery.objects.filter(id=progress.in_flight, claim_token=claim, status=Delivery.Status.SENDING)
        if interrupted.update(status=Delivery.Status.FAILED, error=INTERRUPTED, finished_at=now, claim_token=None):
            count_outcome(run_id, failed=1)
    Delivery.objects.filter(claim_token=claim, status=Delivery.Status.SENDING).update(
        status=Delivery.Status.PENDING, claim_token=None
    )
    if not progress.counted:
        progress.counted = True
        _count(run_id, progress.outcome, now)


INTERRUPTED = "Interrupted while sending; it may have reached the mail server, so it is not sent again."


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
    on_database(record_many, skipped, claim)
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

    try:
        for delivery, picks in chosen:
            delivery.finished_at = now
            message = _build(delivery, picks, batch, outcome)
            if message is not None:
                progress.in_flight = delivery.id
                _hand_over(connection, message, delivery, picks, outcome, refused_readers, attempt.last_try)
            progress.in_flight, progress.unwritten = None, delivery
            written = on_database(record, delivery, claim)
            progress.unwritten = None
            if not written:
                # Recovery took this claim back (it judged the worker dead): what is left is no longer ours.
                logger.warning("Claim %s was taken back while sending; stopping this attempt.", claim)
                _undo(outcome, delivery)
                break
    finally:
        connection.close()

    for subscriber_id, reason in refused_readers.items():
        Subscriber.objects.filter(id=subscriber_id, status=Subscriber.Status.ACTIVE).update(
            status=Subscriber.Status.SUPPRESSED, status_reason=reason[:255]
        )
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


def _hand_over(connection, message, delivery, picks, outcome, refused_readers, last_try):
    """Send one message and set the row's outcome from the backend's answer."""
    try:
        connection.send_messages([message])
    except Exception as error:  # noqa: BLE001 - classified below; nothing may leave a row unrecorded
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
    # Anymail backends give the provider's id (which may be 0); others leave our Message-ID.
    status = getattr(message, "anymail_status", None)
    provider_id = status.message_id if status is not None else None
    delivery.message_id = message.extra_headers["Message-ID"] if provider_id is None else str(provider_id)
    delivery.status, delivery.error = Delivery.Status.SENT, ""
    delivery.paper_ids = [pick.paper.id for pick in picks]
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


RECORDED_FIELDS = ["status", "message_id", "paper_ids", "shown", "error", "finished_at", "claim_token"]


def _record_statement():
    quote = connection.ops.quote_name
    table, pk = Delivery._meta.db_table, Delivery._meta.pk.column
    columns = [Delivery._meta.get_field(name).column for name in RECORDED_FIELDS]
    return "UPDATE {} SET {} WHERE {} = %s AND {} = %s".format(
        quote(table),
        ", ".join(f"{quote(column)} = %s" for column in columns),
        quote(pk),
        quote(Delivery._meta.get_field("claim_token").column),
    )


def _record_values(delivery, claim):
    fields = [Delivery._meta.get_field(name) for name in RECORDED_FIELDS]
    token = Delivery._meta.get_field("claim_token").get_db_prep_value(claim, connection)
    values = [field.get_db_prep_save(getattr(delivery, field.attname), connection) for field in fields]
    return [*values, delivery.pk, token]


def record(delivery, claim):
    """Write one finished delivery, if `claim` still holds it; return whether it did. One plain UPDATE, committed
    at once (the ORM's save would reload and validate what this attempt already knows).

    On PostgreSQL the commit does not wait for the disk (synchronous_commit off, for this transaction only): a flush
    per email would cost more than building it. Every other session sees the row at once; only a crash of the
    database server itself can lose the last fraction of a second of such commits, and `planning.recover` treats
    claims older than the server's start accordingly (every row still `sending` fails, none is sent again)."""
    delivery.claim_token = None
    statement = _record_statement()
    if connection.vendor == "postgresql":
        # The statement's own transaction (autocommit) commits without a flush; set_config(..., true) lasts until
        # that commit, and setting it from the statement saves the round trip a SET LOCAL would cost.
        statement += " AND set_config('synchronous_commit', 'off', true) IS NOT NULL"
    with connection.cursor() as cursor:
        cursor.execute(statement, _record_values(delivery, claim))
        if cursor.rowcount == 1:
            return True
    # Not ours any more, or ours already: a write repeated after a dropped connection finds the first one committed.
    return Delivery.objects.filter(
        pk=delivery.pk,
        claim_token=None,
        status=delivery.status,
        finished_at=delivery.finished_at,
        message_id=delivery.message_id,
    ).exists()


def record_many(deliveries, claim):
    """Write several finished deliveries in one transaction (Django's bulk_update builds a CASE per row and field)."""
    if not deliveries:
        return
    for delivery in deliveries:
        delivery.claim_token = None
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.executemany(_record_statement(), [_record_values(delivery, claim) for delivery in deliveries])


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
    if last_try or isinstance(problem, Permanent):
        Delivery.objects.filter(id__in=ids).update(
            status=Delivery.Status.FAILED, error=str(problem), finished_at=now, claim_token=None
        )
        outcome.failed += len(ids)
    else:
        Delivery.objects.filter(id__in=ids).update(status=Delivery.Status.PENDING, error=str(problem), claim_token=None)
        outcome.retry_ids, outcome.retry_reason = ids, str(problem)
    return outcome


def _count_once(run_id, progress, now):
    """Add this attempt's outcomes to its run, once. Marked before it is written, so an interruption can lose the
    count (recovery recounts runs left open) but never add it twice."""
    if not progress.counted:
        progress.counted = True
        on_database(_count, run_id, progress.outcome, now)


def _count(run_id, outcome, now):
    count_outcome(run_id, sent=outcome.sent, failed=outcome.failed, skipped=outcome.skipped)


def count_outcome(run_id, *, sent=0, failed=0, skipped=0):
    """Add finished digests to their run, and close the run when every planned digest is accounted for."""
    if run_id is None:
        return
    with transaction.atomic():
        _add_to_run(run_id, sent, failed, skipped)


def _add_to_run(run_id, sent, failed, skipped):
    runs = DigestRun.objects.filter(pk=run_id)
    runs.update(
        sent_count=F("sent_count") + sent,
        failed_count=F("failed_count") + failed,
        skipped_count=F("skipped_count") + skipped,
    )
    # Comparing the run's own counters costs one row; asking its deliveries would read all of them for every chunk.
    runs.filter(
        finished_at__isnull=True, planned_count=F("sent_count") + F("failed_count") + F("skipped_count")
    ).update(finished_at=timezone.now())


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
