"""Taking back what a dead worker, a lost queue or a restarted database left behind; run by every planner run
(`tasks.plan_digests`) and by `senddigests` before they plan.

The rule is at most once: a digest that may have reached the mail server is never sent again.
"""

from datetime import timedelta

from django.conf import settings
from django.db import connection
from django.db.models import Max, Min, Q

from digest import planning
from digest.models import BULK_SIZE, Delivery, DigestRun


def recover(now):
    """Take back what a dead worker or a lost queue left behind; return [(run id, ids to send)] for the caller to queue.

    A claim older than DIGEST_RECOVER_AFTER_SECONDS (far longer than a chunk takes) belongs to a worker that died; a
    live worker still holding one stops at its next row, as its writes are conditional on the claim. Sending hands
    messages over in id order and never has more than the claim's `send_window` handed over but not recorded, so of
    such a claim's rows still `sending`, only the lowest-id `send_window` can have reached the mail server: they fail
    as interrupted, never sent again (at most once: per dead worker process, at most that many readers miss that
    day's digest, and nobody gets two). The claim's other rows were never handed over and are sent again. Rows waiting
    `pending` as long (their task was lost with a worker or a broker restart) are queued again, and runs left
    unfinished are recounted from their rows.

    Every change is conditional on the row's state, so two planners recovering at once change each row once; a row
    queued twice is claimed once.
    """
    cutoff = now - timedelta(seconds=settings.DIGEST_RECOVER_AFTER_SECONDS)
    stale = Delivery.objects.filter(status=Delivery.Status.SENDING, claimed_at__lt=cutoff)
    claims = (
        stale.order_by()
        .values_list("claim_token", "run_id")
        .annotate(window=Max("send_window"), since=Min("claimed_at"))
    )
    restarted = database_started_at()
    for claim, run_id, window, since in claims:
        # Any row may have gone out when the claim has no token (a version that wrote outcomes in batches) or
        # predates a restart of the database server (which may have lost the last outcomes written).
        doubtful = claim is None or (restarted is not None and since < restarted)
        held = stale.filter(claim_token=claim, run_id=run_id)
        lowest = list(held.order_by("id").values_list("id", flat=True)[:window])
        in_flight = held if doubtful else held.filter(id__in=lowest)
        DigestRun.objects.add_outcome(run_id, failed=in_flight.fail_interrupted(now))
        held.release()

    waiting = Delivery.objects.filter(status=Delivery.Status.PENDING, claim_token=None).filter(
        Q(claimed_at__lt=cutoff) | Q(claimed_at=None, created_at__lt=cutoff)
    )
    resend = {}
    for delivery_id, run_id in waiting.order_by("id").values_list("id", "run_id"):
        resend.setdefault(run_id, []).append(delivery_id)
    for ids in resend.values():
        # Marked as queued now, so the next recovery waits as long again before queueing them once more.
        for part in planning.chunks(ids, BULK_SIZE):
            Delivery.objects.filter(id__in=part).mark_queued(now)
    # Runs left open (a chunk's count lost to a dropped connection; runs that planned nobody, before such runs were
    # closed at once) are recounted from their rows.
    DigestRun.objects.recount(cutoff, now)
    return [(run_id, chunk) for run_id, ids in resend.items() for chunk in planning.chunks(ids)]


def database_started_at():
    """When the PostgreSQL server last started (None on SQLite, whose commits survive the process)."""
    if connection.vendor != "postgresql":
        return None
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_postmaster_start_time()")
        return cursor.fetchone()[0]
