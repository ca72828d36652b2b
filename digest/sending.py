"""Sending planned digests: claim, choose, build, hand to the mail backend, record.

A Delivery is claimed with one conditional update (pending -> sending, tagged with this attempt's claim token), so two
workers, or a retried task, never both send it. The reader is re-checked after claiming: unsubscribing or pausing
between planning and sending wins. Every claimed row ends sent (with the message id), failed or skipped (with the
reason), or goes back to pending for a retry when the failure was transient.
"""

import logging
import smtplib
import time
import uuid
from dataclasses import dataclass, field

from anymail.exceptions import AnymailAPIError, AnymailRecipientsRefused
from celery.utils.time import get_exponential_backoff_interval
from django.conf import settings
from django.core.mail import get_connection
from django.db import connection, transaction
from django.db.models import Count, F, Max
from django.utils import timezone

from digest.emails import DigestRenderer
from digest.models import Delivery, DigestRun
from digest.selection import History, Pool, choose_papers
from subscriptions.models import Subscriber

logger = logging.getLogger(__name__)

# How many finished rows to write at once. A crash loses the record of at most this many sends (they end failed as
# "interrupted", never sent twice); a smaller number costs more queries.
FLUSH_EVERY = 50
RETRY_FACTOR_SECONDS = 30
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


_pool_cache = {}


def get_pool(now):
    """The run's pool, shared by the tasks one worker process runs; rebuilt when papers change or after 15 minutes."""
    from digest.models import Paper

    # Any change to the papers changes one of these: an edit the newest updated_at, an import the count and the
    # highest id, a deletion the count.
    key = tuple(Paper.objects.aggregate(Max("updated_at"), Count("id"), Max("id")).values())
    cached = _pool_cache.get("pool")
    if cached and cached[0] == key and (now - cached[1].now).total_seconds() < 900:
        return cached[1]
    pool = Pool.load(now)
    _pool_cache["pool"] = (key, pool)
    return pool


def reader_labels(subscriber, topic_ids, pool):
    names = [pool.topics[topic_id].name for topic_id in sorted(topic_ids) if topic_id in pool.topics]
    return names + [f"“{keyword}”" for keyword in subscriber.keywords]


def choose(subscriber, *, topic_ids, pool, history):
    """(picks, None) for one reader's digest, or (None, reason) when there is nothing to send."""
    if not subscriber.is_active:
        return None, f"The reader's subscription is {subscriber.get_status_display().lower()}; not sent."
    picks = choose_papers(pool, subscriber, topic_ids, history)
    if not picks and not subscriber.send_when_empty:
        return None, "No new paper matched the reader's topics and keywords."
    return picks, None


def compose(subscriber, picks, day, *, topic_ids, pool, renderer, metadata=None):
    return renderer.build(
        subscriber, picks, day=day, labels=reader_labels(subscriber, topic_ids, pool), metadata=metadata
    )


def topics_of(subscriber_ids):
    through = Subscriber.topics.through.objects.filter(subscriber_id__in=subscriber_ids)
    topic_ids = {}
    for subscriber_id, topic_id in through.values_list("subscriber_id", "topic_id"):
        topic_ids.setdefault(subscriber_id, set()).add(topic_id)
    return topic_ids


def send_deliveries(delivery_ids, *, run_id=None, now=None, pool=None, renderer=None, connection=None, last_try=False):
    """Claim, build and send the given pending deliveries; return what became of them.

    Rows that failed transiently go back to pending and are listed in `retry_ids`, unless `last_try`, when they fail.
    """
    now = now or timezone.now()
    claim = uuid.uuid4()
    Delivery.objects.filter(id__in=delivery_ids, status=Delivery.Status.PENDING).update(
        status=Delivery.Status.SENDING, claim_token=claim, claimed_at=now, attempts=F("attempts") + 1
    )
    deliveries = list(
        Delivery.objects.filter(claim_token=claim, status=Delivery.Status.SENDING)
        .select_related("subscriber")
        .order_by("id")
    )
    if not deliveries:
        return Outcome()
    handed = set()  # ids given to the mail backend in this call, whatever came of it
    try:
        return _send_claimed(deliveries, run_id, now, pool, renderer, connection, last_try, handed)
    except BaseException:
        # Something broke before every outcome was recorded. Rows never handed to the backend go back to pending;
        # rows that were stay `sending` (they may have gone out) until fail_interrupted, so nobody gets two.
        Delivery.objects.filter(claim_token=claim, status=Delivery.Status.SENDING).exclude(id__in=handed).update(
            status=Delivery.Status.PENDING, claim_token=None
        )
        raise


def _send_claimed(deliveries, run_id, now, pool, renderer, connection, last_try, handed):
    outcome = Outcome()
    pool = pool or get_pool(now)
    renderer = renderer or DigestRenderer()
    subscriber_ids = [delivery.subscriber_id for delivery in deliveries]
    history = History.load(subscriber_ids, now)
    topic_ids = topics_of(subscriber_ids)
    connection = connection or get_connection()
    finished, refused_readers = [], {}

    def flush():
        record(finished)
        finished.clear()

    chosen = {}
    for delivery in deliveries:
        chosen[delivery.id] = choose(
            delivery.subscriber, topic_ids=topic_ids.get(delivery.subscriber_id, set()), pool=pool, history=history
        )
    renderer.prepare_cards(
        {pick.paper.id: pick.paper for picks, _ in chosen.values() if picks for pick in picks}.values()
    )

    try:
        connection.open()
    except Exception as error:  # noqa: BLE001 - whatever stopped the connection, these digests wait for a retry
        problem = classify(error)
        logger.warning("Mail connection failed for %d digests: %s", len(deliveries), problem)
        return _give_back(deliveries, outcome, problem, last_try, now, run_id)

    try:
        for delivery in deliveries:
            subscriber = delivery.subscriber
            picks, reason = chosen[delivery.id]
            message = None
            if picks is not None:
                message = compose(
                    subscriber,
                    picks,
                    delivery.digest_date,
                    topic_ids=topic_ids.get(subscriber.id, set()),
                    pool=pool,
                    renderer=renderer,
                    metadata={"delivery_id": delivery.id, "digest_date": delivery.digest_date.isoformat()},
                )
            delivery.finished_at, delivery.claim_token = now, None
            if message is None:
                delivery.status, delivery.error = Delivery.Status.SKIPPED, reason
                outcome.skipped += 1
            else:
                handed.add(delivery.id)
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
                            refused_readers[subscriber.id] = str(problem)
                else:
                    # Anymail backends give the provider's id (which may be 0); others leave our Message-ID.
                    status = getattr(message, "anymail_status", None)
                    provider_id = status.message_id if status is not None else None
                    delivery.message_id = (
                        message.extra_headers["Message-ID"] if provider_id is None else str(provider_id)
                    )
                    delivery.status, delivery.error = Delivery.Status.SENT, ""
                    delivery.paper_ids = [pick.paper.id for pick in picks]
                    delivery.shown = message.shown
                    outcome.sent += 1
            finished.append(delivery)
            if len(finished) >= FLUSH_EVERY:
                flush()
    finally:
        flush()
        connection.close()

    for subscriber_id, reason in refused_readers.items():
        Subscriber.objects.filter(id=subscriber_id, status=Subscriber.Status.ACTIVE).update(
            status=Subscriber.Status.SUPPRESSED, status_reason=reason[:255]
        )
    _count(run_id, outcome, now)
    return outcome


def record(deliveries):
    """Write the outcome of finished deliveries: one statement, run for each row (Django's bulk_update builds a CASE
    expression per row and field, which costs more than the sending it records)."""
    if not deliveries:
        return
    fields = ["status", "message_id", "paper_ids", "shown", "error", "finished_at", "claim_token"]
    columns = [Delivery._meta.get_field(name) for name in fields]
    quote = connection.ops.quote_name
    sql = "UPDATE {} SET {} WHERE {} = %s".format(
        quote(Delivery._meta.db_table),
        ", ".join(f"{quote(column.column)} = %s" for column in columns),
        quote(Delivery._meta.pk.column),
    )
    rows = [
        [column.get_db_prep_save(getattr(delivery, column.attname), connection) for column in columns] + [delivery.pk]
        for delivery in deliveries
    ]
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.executemany(sql, rows)


def _give_back(deliveries, outcome, problem, last_try, now, run_id):
    ids = [delivery.id for delivery in deliveries]
    if last_try or isinstance(problem, Permanent):
        Delivery.objects.filter(id__in=ids).update(
            status=Delivery.Status.FAILED, error=str(problem), finished_at=now, claim_token=None
        )
        outcome.failed += len(ids)
    else:
        Delivery.objects.filter(id__in=ids).update(status=Delivery.Status.PENDING, error=str(problem), claim_token=None)
        outcome.retry_ids, outcome.retry_reason = ids, str(problem)
    _count(run_id, outcome, now)
    return outcome


def _count(run_id, outcome, now):
    count_outcome(run_id, sent=outcome.sent, failed=outcome.failed, skipped=outcome.skipped)


def count_outcome(run_id, *, sent=0, failed=0, skipped=0):
    """Add finished digests to their run, and close the run when every planned digest is accounted for."""
    if run_id is None:
        return
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


def retry_delay(retries):
    """Seconds before retry number `retries` + 1: exponential, capped, with full jitter so workers do not stampede."""
    return get_exponential_backoff_interval(RETRY_FACTOR_SECONDS, retries, RETRY_MAX_SECONDS, full_jitter=True)


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
