from datetime import UTC, date, datetime

import time_machine
from django.utils import timezone

from digest import planning
from digest.models import Delivery, DigestRun
from subscriptions.models import Subscriber


def due_emails(now, **kwargs):
    ids = dict(planning.find_due(now, **kwargs))
    return sorted(Subscriber.objects.filter(id__in=ids).values_list("email", flat=True))


def test_each_reader_is_due_at_their_own_local_hour(make_reader):
    make_reader("tokyo@example.com", time_zone="Asia/Tokyo", send_hour=8)
    make_reader("paris@example.com", time_zone="Europe/Paris", send_hour=8)
    make_reader("nyc@example.com", time_zone="America/New_York", send_hour=8)
    # 07:30 UTC on a Wednesday: 16:30 in Tokyo, 08:30 in Paris, 02:30 in New York.
    now = datetime(2026, 11, 25, 7, 30, tzinfo=UTC)
    assert due_emails(now) == ["paris@example.com", "tokyo@example.com"]
    assert due_emails(now, ignore_hour=True) == ["nyc@example.com", "paris@example.com", "tokyo@example.com"]


def test_the_digest_date_is_the_readers_local_date(make_reader):
    reader = make_reader(time_zone="Pacific/Auckland", send_hour=6)
    now = datetime(2026, 11, 25, 20, 0, tzinfo=UTC)  # already 09:00 on the 26th in Auckland
    assert planning.find_due(now) == [(reader.id, date(2026, 11, 26))]


def test_daylight_saving_moves_the_utc_hour_not_the_local_one(make_reader):
    make_reader("berlin@example.com", time_zone="Europe/Berlin", send_hour=7)
    # Summer (UTC+2): 07:00 local is 05:00 UTC. Winter (UTC+1): 06:00 UTC.
    assert due_emails(datetime(2026, 7, 1, 4, 59, tzinfo=UTC)) == []
    assert due_emails(datetime(2026, 7, 1, 5, 0, tzinfo=UTC)) == ["berlin@example.com"]
    assert due_emails(datetime(2026, 12, 1, 5, 59, tzinfo=UTC)) == []
    assert due_emails(datetime(2026, 12, 1, 6, 0, tzinfo=UTC)) == ["berlin@example.com"]


def test_the_hour_skipped_by_spring_forward_still_sends(make_reader):
    make_reader("ny@example.com", time_zone="America/New_York", send_hour=2)
    # 8 March 2026: clocks jump from 02:00 to 03:00 in New York; 07:00 UTC is 03:00 local.
    assert due_emails(datetime(2026, 3, 8, 7, 0, tzinfo=UTC)) == ["ny@example.com"]


def test_frequencies_choose_their_days(make_reader):
    make_reader("daily@example.com")
    make_reader("weekdays@example.com", frequency=Subscriber.Frequency.WEEKDAYS)
    make_reader("fridays@example.com", frequency=Subscriber.Frequency.WEEKLY, weekly_day=4)
    friday, saturday = datetime(2026, 11, 27, 12, tzinfo=UTC), datetime(2026, 11, 28, 12, tzinfo=UTC)
    assert due_emails(friday) == ["daily@example.com", "fridays@example.com", "weekdays@example.com"]
    assert due_emails(saturday) == ["daily@example.com"]


def test_only_active_readers_are_due(make_reader):
    make_reader("active@example.com")
    for status in ["pending", "paused", "unsubscribed", "suppressed"]:
        make_reader(f"{status}@example.com", status=status)
    assert due_emails(timezone.now(), ignore_hour=True) == ["active@example.com"]


@time_machine.travel(datetime(2026, 11, 25, 9, 0, tzinfo=UTC), tick=False)
def test_planning_twice_creates_one_delivery_per_reader_and_day(make_reader):
    readers = [make_reader() for _ in range(3)]
    now = timezone.now()
    first = planning.plan_deliveries(now, planning.start_run(now))
    second = planning.plan_deliveries(now, planning.start_run(now))
    assert len(first) == 3 and second == []
    assert Delivery.objects.filter(subscriber__in=readers, digest_date=date(2026, 11, 25)).count() == 3


def test_a_digest_stuck_in_sending_past_the_visibility_timeout_fails_without_resending(make_reader):
    reader = make_reader()
    now = timezone.now()
    run = DigestRun.objects.create(planned_count=1)
    stuck = Delivery.objects.create(
        subscriber=reader, digest_date=now.date(), status=Delivery.Status.SENDING, run=run,
        claimed_at=now - timezone.timedelta(hours=4),
    )  # fmt: skip
    assert planning.fail_interrupted(now) == 1
    stuck.refresh_from_db()
    assert stuck.status == Delivery.Status.FAILED
    assert "not sent again" in stuck.error
    run.refresh_from_db()
    assert run.failed_count == 1 and run.finished_at is not None
