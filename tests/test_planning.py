import uuid
from datetime import UTC, date, datetime

import pytest
import time_machine
from django.utils import timezone

from digest import planning, recovery
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


HOURS_AGO = timezone.timedelta(hours=2)  # past DIGEST_RECOVER_AFTER_SECONDS (1 hour by default)
database_started_at = recovery.database_started_at


@pytest.fixture(autouse=True)
def database_up_for_days(monkeypatch):
    """Claims made "two hours ago" came after the database server's start, unless a test says otherwise."""
    monkeypatch.setattr(recovery, "database_started_at", lambda: timezone.now() - timezone.timedelta(days=3))


def claimed_rows(readers, run, *, claim, claimed_at):
    return [
        Delivery.objects.create(
            subscriber=reader, digest_date=claimed_at.date(), status=Delivery.Status.SENDING, run=run,
            claim_token=claim, claimed_at=claimed_at, attempts=1,
        )
        for reader in readers
    ]  # fmt: skip


def test_a_dead_workers_claim_fails_only_the_digest_it_may_have_handed_over_and_resends_the_rest(make_reader):
    now = timezone.now()
    run = DigestRun.objects.create(planned_count=3, started_at=now - HOURS_AGO)
    in_flight, never_sent, also_never_sent = claimed_rows(
        [make_reader() for _ in range(3)], run, claim=uuid.uuid4(), claimed_at=now - HOURS_AGO
    )

    resend = recovery.recover(now)

    assert resend == [(run.id, [never_sent.id, also_never_sent.id])]
    for row in (in_flight, never_sent, also_never_sent):
        row.refresh_from_db()
    assert in_flight.status == Delivery.Status.FAILED
    assert in_flight.error == "Interrupted while sending; it may have reached the mail server, so it is not sent again."
    assert in_flight.interrupted and not never_sent.interrupted
    assert (never_sent.status, never_sent.claim_token) == (Delivery.Status.PENDING, None)
    assert (also_never_sent.status, also_never_sent.claim_token) == (Delivery.Status.PENDING, None)
    run.refresh_from_db()
    assert (run.failed_count, run.finished_at) == (1, None)
    # Queued once: a second planner right after finds nothing more to do.
    assert recovery.recover(now) == []


def test_a_dead_concurrent_workers_claim_fails_the_lowest_rows_it_may_have_handed_over_and_resends_the_rest(
    make_reader,
):
    # It sent 3 at a time (send_window 3): the first row was recorded, so of the rows still `sending` only the lowest
    # three can have reached the mail server. The rest were never handed over.
    now = timezone.now()
    run = DigestRun.objects.create(planned_count=6, started_at=now - HOURS_AGO)
    rows = claimed_rows([make_reader() for _ in range(6)], run, claim=uuid.uuid4(), claimed_at=now - HOURS_AGO)
    Delivery.objects.filter(id__in=[row.id for row in rows]).update(send_window=3)
    Delivery.objects.filter(id=rows[0].id).update(status=Delivery.Status.SENT, claim_token=None)

    resend = recovery.recover(now)

    assert resend == [(run.id, [rows[4].id, rows[5].id])]
    statuses = [Delivery.objects.get(id=row.id) for row in rows]
    assert [row.status for row in statuses] == ["sent", "failed", "failed", "failed", "pending", "pending"]
    assert [row.interrupted for row in statuses] == [False, True, True, True, False, False]
    run.refresh_from_db()
    assert run.failed_count == 3


def test_claims_older_than_a_database_restart_fail_every_row_still_sending(make_reader, monkeypatch):
    # The server may have lost the last outcomes written before it stopped: any of these rows may have gone out.
    now = timezone.now()
    rows = claimed_rows([make_reader(), make_reader()], None, claim=uuid.uuid4(), claimed_at=now - HOURS_AGO)
    monkeypatch.setattr(recovery, "database_started_at", lambda: now - HOURS_AGO / 2)

    assert recovery.recover(now) == []
    assert set(Delivery.objects.filter(id__in=[row.id for row in rows]).values_list("status", flat=True)) == {"failed"}


def test_the_database_start_time_is_read_from_postgresql_and_absent_on_sqlite(db):
    from django.db import connection

    started = database_started_at()
    if connection.vendor == "postgresql":
        assert started < timezone.now()
    else:
        assert started is None


def test_a_claim_younger_than_the_recovery_delay_is_left_to_its_worker(make_reader, settings):
    settings.DIGEST_RECOVER_AFTER_SECONDS = 600
    now = timezone.now()
    rows = claimed_rows([make_reader(), make_reader()], None, claim=uuid.uuid4(), claimed_at=now - HOURS_AGO / 20)

    assert recovery.recover(now) == []
    assert {row.status for row in Delivery.objects.filter(id__in=[row.id for row in rows])} == {"sending"}


def test_each_dead_claim_loses_at_most_one_digest(make_reader):
    now = timezone.now()
    run = DigestRun.objects.create(planned_count=4, started_at=now)
    first = claimed_rows([make_reader(), make_reader()], run, claim=uuid.uuid4(), claimed_at=now - HOURS_AGO)
    second = claimed_rows([make_reader(), make_reader()], run, claim=uuid.uuid4(), claimed_at=now - HOURS_AGO)

    [(run_id, ids)] = recovery.recover(now)

    assert (run_id, ids) == (run.id, [first[1].id, second[1].id])
    failed = Delivery.objects.filter(status=Delivery.Status.FAILED).order_by("id")
    assert list(failed.values_list("id", flat=True)) == [first[0].id, second[0].id]


def test_rows_claimed_before_outcomes_were_written_one_by_one_all_fail(make_reader):
    # Rows with no claim token were claimed by a version that wrote outcomes in batches: any may have gone out.
    now = timezone.now()
    rows = claimed_rows([make_reader(), make_reader()], None, claim=None, claimed_at=now - HOURS_AGO)

    assert recovery.recover(now) == []
    assert set(Delivery.objects.filter(id__in=[row.id for row in rows]).values_list("status", flat=True)) == {"failed"}


def test_old_unclaimed_rows_of_two_runs_are_counted_in_their_own_runs(make_reader):
    now = timezone.now()
    first, second = (DigestRun.objects.create(planned_count=1, started_at=now) for _ in range(2))
    claimed_rows([make_reader()], first, claim=None, claimed_at=now - HOURS_AGO)
    claimed_rows([make_reader(), make_reader()], second, claim=None, claimed_at=now - HOURS_AGO)

    recovery.recover(now)

    first.refresh_from_db()
    second.refresh_from_db()
    assert (first.failed_count, second.failed_count) == (1, 2)


def test_digests_whose_queued_task_was_lost_are_queued_again_once(make_reader, settings):
    settings.DIGEST_CHUNK_SIZE = 2
    now = timezone.now()
    run = DigestRun.objects.create(planned_count=3, started_at=now - HOURS_AGO)
    with time_machine.travel(now - HOURS_AGO, tick=False):
        lost = [Delivery.objects.create(subscriber=make_reader(), digest_date=now.date(), run=run) for _ in range(3)]
    fresh = Delivery.objects.create(subscriber=make_reader(), digest_date=now.date(), run=run)

    assert recovery.recover(now) == [(run.id, [lost[0].id, lost[1].id]), (run.id, [lost[2].id])]
    assert recovery.recover(now) == []
    assert Delivery.objects.get(pk=fresh.pk).claimed_at is None


def test_an_open_run_is_recounted_from_its_rows_and_closed_when_nothing_is_left(make_reader):
    now = timezone.now()
    run = DigestRun.objects.create(planned_count=3, sent_count=1, started_at=now - HOURS_AGO)
    for status in ("sent", "sent", "skipped"):
        Delivery.objects.create(subscriber=make_reader(), digest_date=now.date(), run=run, status=status)

    recovery.recover(now)

    run.refresh_from_db()
    assert (run.sent_count, run.failed_count, run.skipped_count) == (2, 0, 1)
    assert run.finished_at == now


def test_runs_that_planned_nobody_are_closed_and_a_run_still_sending_stays_open(make_reader):
    now = timezone.now()
    empty = [DigestRun.objects.create(started_at=now - HOURS_AGO) for _ in range(3)]
    busy = DigestRun.objects.create(planned_count=2, started_at=now - HOURS_AGO)
    Delivery.objects.create(subscriber=make_reader(), digest_date=now.date(), run=busy, status="sent")
    Delivery.objects.create(
        subscriber=make_reader(), digest_date=now.date(), run=busy, status="sending", claim_token=uuid.uuid4(),
        claimed_at=now,
    )  # fmt: skip
    recent = DigestRun.objects.create(started_at=now)

    recovery.recover(now)

    assert all(DigestRun.objects.get(pk=run.pk).finished_at == now for run in empty)
    busy.refresh_from_db()
    # Left to the attempt sending it, which adds what it writes when its chunk ends.
    assert (busy.sent_count, busy.finished_at) == (0, None)
    # Too young to judge: a planner may still be filling it.
    assert DigestRun.objects.get(pk=recent.pk).finished_at is None


def test_a_run_whose_chunk_wrote_its_rows_but_not_yet_its_count_is_not_counted_twice(make_reader):
    # Two planners a second apart (or a slow run): the first recount comes between a live chunk's last write and the
    # count it adds when it ends. Counting its rows then, as well, made the run say 40 sent of 20.
    now = timezone.now()
    run = DigestRun.objects.create(planned_count=2, started_at=now - HOURS_AGO)
    for _ in range(2):
        Delivery.objects.create(
            subscriber=make_reader(), digest_date=now.date(), run=run, status="sent", claimed_at=now, attempts=1
        )

    recovery.recover(now)
    DigestRun.objects.add_outcome(run.id, sent=2)  # the chunk ends

    run.refresh_from_db()
    assert (run.sent_count, run.finished_at is not None) == (2, True)
    recovery.recover(now + HOURS_AGO)
    run.refresh_from_db()
    assert run.sent_count == 2
