"""Who gets a digest now: readers whose local send hour has come, on a day their frequency includes.

Planning only creates Delivery rows (pending); sending fills and sends them. The unique (subscriber, digest date)
constraint makes planning safe to repeat: a second planner, or the same one after a crash, creates nothing new.
"""

from datetime import timedelta

from django.conf import settings
from django.db import connection
from django.db.models import Count, Exists, Min, OuterRef, Q

from digest.models import Delivery, DigestRun
from papers.models import Paper
from subscriptions.models import Subscriber

BULK_SIZE = 1000


def start_run(now):
    since = now - timedelta(days=settings.DIGEST_MAX_WINDOW_DAYS)
    return DigestRun.objects.create(started_at=now, pool_size=Paper.objects.filter(first_seen_at__gte=since).count())


def frequency_filter(day):
    """Q for the readers whose frequency includes `day` (their local date)."""
    weekday = day.weekday()
    wanted = Q(frequency=Subscriber.Frequency.DAILY) | Q(frequency=Subscriber.Frequency.WEEKLY, weekly_day=weekday)
    if weekday < 5:
        wanted |= Q(frequency=Subscriber.Frequency.WEEKDAYS)
    return wanted


def find_due(now, *, day=None, ignore_hour=False):
    """[(subscriber id, their local digest date)] for active readers due a digest and not yet planned one.

    Each time zone is handled with its own local date and hour, so daylight saving changes are the zone's business:
    on a spring-forward morning the skipped hour simply counts as passed.
    """
    due = []
    active = Subscriber.objects.filter(status=Subscriber.Status.ACTIVE)
    for zone in active.order_by().values_list("time_zone", flat=True).distinct():
        local = now.astimezone(zone)
        local_day = day or local.date()
        readers = active.filter(time_zone=zone).filter(frequency_filter(local_day))
        if not ignore_hour:
            readers = readers.filter(send_hour__lte=local.hour)
        planned = Delivery.objects.filter(subscriber=OuterRef("pk"), digest_date=local_day)
        readers = readers.filter(~Exists(planned))
        due.extend((subscriber_id, local_day) for subscriber_id in readers.values_list("id", flat=True).order_by("id"))
    return due


def plan_deliveries(now, run, *, day=None, ignore_hour=False):
    """Create pending Delivery rows for everyone due; return the ids this run created, in id order."""
    due = find_due(now, day=day, ignore_hour=ignore_hour)
    for start in range(0, len(due), BULK_SIZE):
        rows = [
            Delivery(subscriber_id=sid, digest_date=local_day, run=run)
            for sid, local_day in due[start : start + BULK_SIZE]
        ]
        # A row another planner made meanwhile conflicts on (subscriber, digest_date) and is skipped, not doubled.
        Delivery.objects.bulk_create(rows, ignore_conflicts=True)
    ids = list(
        Delivery.objects.filter(run=run, status=Delivery.Status.PENDING).order_by("id").values_list("id", flat=True)
    )
    # A run with nobody to send to is over as soon as it is planned.
    DigestRun.objects.filter(pk=run.pk).update(planned_count=len(ids), finished_at=None if ids else now)
    return ids


def recover(now):
    """Take back what a dead worker or a lost queue left behind; return [(run id, ids to send)] for the caller to queue.

    A claim older than DIGEST_RECOVER_AFTER_SECONDS (far longer than a chunk takes) belongs to a worker that died; a
    live worker still holding one stops at its next row, as its writes are conditional on the claim. Sending writes
    each outcome before handing over the next message, so of such a claim's rows still `sending`, only the lowest-id
    one can have reached the mail server: it fails as interrupted, never sent again (at most once: per dead worker
    process, at most one reader misses that day's digest, and nobody gets two). The claim's other rows were never
    handed over and are sent again. Rows waiting `pending` as long (their task was lost with a worker or a broker
    restart) are queued again, and runs left unfinished are recounted from their rows.

    Every change is conditional on the row's state, so two planners recovering at once change each row once; a row
    queued twice is claimed once.
    """
    from digest.sending import INTERRUPTED, count_outcome

    cutoff = now - timedelta(seconds=settings.DIGEST_RECOVER_AFTER_SECONDS)
    stale = Delivery.objects.filter(status=Delivery.Status.SENDING, claimed_at__lt=cutoff)
    claims = stale.order_by().values_list("claim_token", "run_id").annotate(first=Min("id"), since=Min("claimed_at"))
    restarted = database_started_at()
    for claim, run_id, first, since in claims:
        # Any row may have gone out when the claim has no token (a version that wrote outcomes in batches) or
        # predates a restart of the database server (which may have lost the last outcomes written).
        doubtful = claim is None or (restarted is not None and since < restarted)
        held = stale.filter(claim_token=claim, run_id=run_id)
        in_flight = held if doubtful else held.filter(id=first)
        failed = in_flight.update(status=Delivery.Status.FAILED, error=INTERRUPTED, finished_at=now, claim_token=None)
        count_outcome(run_id, failed=failed)
        held.update(status=Delivery.Status.PENDING, claim_token=None)

    waiting = Delivery.objects.filter(status=Delivery.Status.PENDING, claim_token=None).filter(
        Q(claimed_at__lt=cutoff) | Q(claimed_at=None, created_at__lt=cutoff)
    )
    resend = {}
    for delivery_id, run_id in waiting.order_by("id").values_list("id", "run_id"):
        resend.setdefault(run_id, []).append(delivery_id)
    for ids in resend.values():
        # Marked as queued now, so the next recovery waits as long again before queueing them once more.
        for part in chunks(ids, BULK_SIZE):
            Delivery.objects.filter(id__in=part, status=Delivery.Status.PENDING).update(claimed_at=now)
    reconcile_runs(cutoff, now)
    return [(run_id, chunk) for run_id, ids in resend.items() for chunk in chunks(ids)]


def database_started_at():
    """When the PostgreSQL server last started (None on SQLite, whose commits survive the process)."""
    if connection.vendor != "postgresql":
        return None
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_postmaster_start_time()")
        return cursor.fetchone()[0]


def reconcile_runs(cutoff, now):
    """Recount runs started before `cutoff` and still open from their rows, and close those with nothing left to do.

    A run's counters are added to as chunks finish; a chunk whose count was lost to a dropped connection would
    otherwise leave its run open for ever. (So did every run that planned nobody, before such runs were closed at
    once: the first recovery closes them all.)"""
    open_runs = list(DigestRun.objects.filter(finished_at=None, started_at__lt=cutoff).values_list("id", flat=True))
    statuses = {}
    for part in chunks(open_runs, BULK_SIZE):
        rows = Delivery.objects.filter(run_id__in=part).order_by().values_list("run_id", "status")
        for run_id, status, count in rows.annotate(count=Count("id")):
            statuses.setdefault(run_id, {})[status] = count
    empty = [run_id for run_id in open_runs if run_id not in statuses]
    for part in chunks(empty, BULK_SIZE):
        DigestRun.objects.filter(id__in=part, finished_at=None).update(
            sent_count=0, failed_count=0, skipped_count=0, finished_at=now
        )
    for run_id, counts in statuses.items():
        unfinished = counts.get(Delivery.Status.PENDING, 0) + counts.get(Delivery.Status.SENDING, 0)
        DigestRun.objects.filter(pk=run_id, finished_at=None).update(
            sent_count=counts.get(Delivery.Status.SENT, 0),
            failed_count=counts.get(Delivery.Status.FAILED, 0),
            skipped_count=counts.get(Delivery.Status.SKIPPED, 0),
            finished_at=None if unfinished else now,
        )


def chunks(ids, size=None):
    size = size or settings.DIGEST_CHUNK_SIZE
    return [ids[start : start + size] for start in range(0, len(ids), size)]
