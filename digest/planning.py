"""Who gets a digest now: readers whose local send hour has come, on a day their frequency includes.

Planning only creates Delivery rows (pending); sending fills and sends them. The unique (subscriber, digest date)
constraint makes planning safe to repeat: a second planner, or the same one after a crash, creates nothing new.
"""

from datetime import timedelta

from django.conf import settings
from django.db.models import Exists, OuterRef, Q

from digest.models import BULK_SIZE, Delivery, DigestRun
from papers.models import Paper
from subscriptions.models import Subscriber


def start_run(now):
    since = now - timedelta(days=settings.DIGEST_MAX_WINDOW_DAYS)
    return DigestRun.objects.start(now, pool_size=Paper.objects.filter(first_seen_at__gte=since).count())


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
    run.set_planned(len(ids), now)
    return ids


def chunks(ids, size=None):
    size = size or settings.DIGEST_CHUNK_SIZE
    return [ids[start : start + size] for start in range(0, len(ids), size)]
