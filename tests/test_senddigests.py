import threading
import time
import uuid

import pytest
import requests
from anymail.exceptions import AnymailRequestsAPIError
from celery.exceptions import SoftTimeLimitExceeded
from django.core import mail
from django.core.mail.backends import locmem as locmem_backend
from django.core.management import CommandError, call_command
from django.db import connection
from django.utils import timezone

from digest import compose, planning, recovery, senders, sending
from digest.models import Delivery, DigestRun
from subscriptions import mailrate
from subscriptions.models import Subscriber


def test_it_sends_one_digest_per_due_reader_and_records_it(locmem, gnn, make_reader, capsys):
    readers = [make_reader(topics=[gnn]) for _ in range(3)]
    call_command("senddigests", "--now", "--no-progress")
    assert sorted(message.to[0] for message in mail.outbox) == sorted(reader.email for reader in readers)
    assert "3 planned from 2 papers; 3 sent, 0 failed, 0 skipped." in capsys.readouterr().out
    for delivery in Delivery.objects.all():
        assert delivery.status == Delivery.Status.SENT
        assert delivery.message_id.startswith("<") and len(delivery.paper_ids) == 2
    run = DigestRun.objects.get()
    assert (run.planned_count, run.sent_count, run.failed_count, run.skipped_count) == (3, 3, 0, 0)
    assert run.finished_at is not None


def test_running_the_job_twice_sends_nothing_more(locmem, gnn, make_reader, capsys):
    make_reader(topics=[gnn])
    call_command("senddigests", "--now", "--no-progress")
    call_command("senddigests", "--now", "--no-progress")
    assert len(mail.outbox) == 1
    assert "Nobody is due a digest now." in capsys.readouterr().out


def test_a_reader_with_nothing_new_gets_no_email_and_a_reason(locmem, gnn, make_topic, make_reader):
    make_reader(topics=[make_topic("Speech")])
    call_command("senddigests", "--now", "--no-progress")
    assert mail.outbox == []
    delivery = Delivery.objects.get()
    assert delivery.status == Delivery.Status.SKIPPED
    assert delivery.error == "No new paper matched the reader's topics and keywords."


def test_unsubscribing_between_planning_and_sending_wins(locmem, gnn, make_reader):
    reader = make_reader(topics=[gnn])
    now = timezone.now()
    run = planning.start_run(now)
    ids = planning.plan_deliveries(now, run, ignore_hour=True)
    reader.unsubscribe(wording="test")
    outcome = sending.send_deliveries(ids, run_id=run.id)
    assert (outcome.sent, outcome.skipped, mail.outbox) == (0, 1, [])
    assert "unsubscribed" in Delivery.objects.get().error


def test_a_claimed_delivery_cannot_be_sent_again(locmem, gnn, make_reader):
    make_reader(topics=[gnn])
    now = timezone.now()
    ids = planning.plan_deliveries(now, planning.start_run(now), ignore_hour=True)
    assert sending.send_deliveries(ids).sent == 1
    assert sending.send_deliveries(ids).sent == 0
    assert len(mail.outbox) == 1


@pytest.mark.django_db(transaction=True)
def test_two_workers_sending_the_same_chunk_send_each_digest_once(locmem, gnn, make_reader):
    readers = [make_reader(topics=[gnn]) for _ in range(20)]
    now = timezone.now()
    ids = planning.plan_deliveries(now, planning.start_run(now), ignore_hour=True)
    start = threading.Barrier(2)
    outcomes = []

    def worker():
        start.wait()
        try:
            outcomes.append(sending.send_deliveries(ids))
        finally:
            connection.close()

    threads = [threading.Thread(target=worker) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert sum(outcome.sent for outcome in outcomes) == len(readers)
    assert sorted(message.to[0] for message in mail.outbox) == sorted(reader.email for reader in readers)
    assert set(Delivery.objects.values_list("status", flat=True)) == {Delivery.Status.SENT}


def test_a_dry_run_renders_and_counts_but_sends_and_records_nothing(locmem, gnn, make_reader, capsys):
    make_reader(topics=[gnn])
    make_reader(topics=[], keywords=["speech"])
    call_command("senddigests", "--now", "--dry-run", "--no-progress")
    out = capsys.readouterr().out
    assert "Dry run: 2 due from 2 papers; 1 would be sent, 1 skipped. Nothing was sent or recorded." in out
    assert mail.outbox == []
    assert not Delivery.objects.exists() and not DigestRun.objects.exists()


def test_date_sends_for_that_local_date_whatever_the_hour(locmem, gnn, make_reader):
    make_reader(topics=[gnn], send_hour=23)
    call_command("senddigests", "--date", "2026-12-01", "--no-progress")
    assert Delivery.objects.get().digest_date.isoformat() == "2026-12-01"
    assert len(mail.outbox) == 1


def test_a_bad_process_count_is_refused_with_exit_code_2(db):
    with pytest.raises(CommandError, match="--processes must be at least 1, not 0") as raised:
        call_command("senddigests", "--now", "--processes", "0")
    assert raised.value.returncode == 2


def test_a_bad_date_is_refused_with_exit_code_2(db):
    with pytest.raises(CommandError, match="--date '1 Dec' is not a date like 2026-11-30") as raised:
        call_command("senddigests", "--date", "1 Dec")
    assert raised.value.returncode == 2


def test_pending_readers_never_get_digests(locmem, gnn, make_reader):
    make_reader(topics=[gnn], status=Subscriber.Status.PENDING)
    call_command("senddigests", "--now", "--no-progress")
    assert mail.outbox == [] and not Delivery.objects.exists()


def test_an_email_that_cannot_be_built_fails_that_digest_alone(locmem, gnn, make_reader, monkeypatch):
    readers = [make_reader(topics=[gnn]) for _ in range(4)]
    now = timezone.now()
    ids = planning.plan_deliveries(now, planning.start_run(now), ignore_hour=True)
    real_build = compose.Batch.build

    def build_but_not_for_the_third(batch, subscriber, *args, **kwargs):
        if subscriber == readers[2]:
            raise RuntimeError("a bug in rendering")
        return real_build(batch, subscriber, *args, **kwargs)

    monkeypatch.setattr(compose.Batch, "build", build_but_not_for_the_third)
    outcome = sending.send_deliveries(ids)

    assert (outcome.sent, outcome.failed) == (3, 1)
    broken = Delivery.objects.get(subscriber=readers[2])
    assert (broken.status, broken.error) == ("failed", "Could not build the email: RuntimeError('a bug in rendering')")
    assert sorted(m.to[0] for m in mail.outbox) == sorted(r.email for r in readers if r != readers[2])


class StopsOnTheThird(locmem_backend.EmailBackend):
    """A mail backend whose process is stopped (SIGTERM's SystemExit, say) while it holds the third reader's message.
    With other messages in flight it waits (up to a second) until they are answered, so the test knows their fate."""

    stop_for = None

    def send_messages(self, messages):
        if messages[0].to[0] == type(self).stop_for:
            deadline = time.monotonic() + 1
            while len(mail.outbox) < 4 and time.monotonic() < deadline:
                time.sleep(0.01)
            raise SystemExit("stopped")
        return super().send_messages(messages)


@pytest.mark.parametrize(
    ("window", "expected"),
    [
        # One at a time: the two after it were never handed over, so they wait for a retry.
        (1, ["sent", "sent", "failed", "pending", "pending"]),
        # Several at once: the two after it were handed over too, and answered, before the stop.
        (16, ["sent", "sent", "failed", "sent", "sent"]),
    ],
)
def test_a_stop_while_the_backend_holds_a_message_fails_it_and_leaves_the_rest_pending(
    window, expected, settings, monkeypatch, gnn, make_reader
):
    settings.EMAIL_BACKEND = "tests.test_senddigests.StopsOnTheThird"
    settings.DIGEST_SEND_CONCURRENCY = window
    readers = [make_reader(topics=[gnn]) for _ in range(5)]
    monkeypatch.setattr(StopsOnTheThird, "stop_for", readers[2].email)
    now = timezone.now()
    ids = planning.plan_deliveries(now, planning.start_run(now), ignore_hour=True)

    with pytest.raises(SystemExit):
        sending.send_deliveries(ids, run_id=DigestRun.objects.get().id)

    statuses = [Delivery.objects.get(subscriber=reader).status for reader in readers]
    # It may have reached the server: failed, never resent.
    assert statuses == expected
    assert Delivery.objects.get(subscriber=readers[2]).error.startswith("Interrupted while sending")
    run = DigestRun.objects.get()
    assert (run.sent_count, run.failed_count) == (expected.count("sent"), 1)
    assert (run.finished_at is None) == ("pending" in expected)
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    assert sending.send_deliveries(ids, run_id=run.id).sent == expected.count("pending")
    assert sorted(m.to[0] for m in mail.outbox) == sorted(r.email for i, r in enumerate(readers) if i != 2)
    run.refresh_from_db()
    assert (run.sent_count, run.failed_count, run.finished_at is not None) == (4, 1, True)


class AnswersInTurn(locmem_backend.EmailBackend):
    """Answers each reader's message 0.2 s after the one before (by `order`), so each answer is written alone."""

    order = []

    def send_messages(self, messages):
        time.sleep(0.2 * type(self).order.index(messages[0].to[0]))
        return super().send_messages(messages)


@pytest.mark.parametrize("window", [1, 16])
def test_a_worker_whose_claim_was_recovered_stops_and_nobody_gets_two(window, settings, monkeypatch, gnn, make_reader):
    # The second outcome is about to be written when a planner, judging the worker dead, recovers its claim.
    settings.EMAIL_BACKEND = "tests.test_senddigests.AnswersInTurn"
    settings.DIGEST_SEND_CONCURRENCY = window
    readers = [make_reader(topics=[gnn]) for _ in range(4)]
    monkeypatch.setattr(AnswersInTurn, "order", [reader.email for reader in readers])
    now = timezone.now()
    ids = planning.plan_deliveries(now, planning.start_run(now), ignore_hour=True)
    record_many, writes = Delivery.record_many, []

    def recovered_before_the_second_write(deliveries, claim):
        writes.extend([deliveries] if deliveries else [])
        if deliveries and len(writes) == 2:
            recovery.recover(timezone.now() + timezone.timedelta(hours=2))
        return record_many(deliveries, claim)

    monkeypatch.setattr(Delivery, "record_many", recovered_before_the_second_write)
    outcome = sending.send_deliveries(ids, now=now)

    assert outcome.sent == 1
    statuses = [Delivery.objects.get(subscriber=reader).status for reader in readers]
    sent = [message.to[0] for message in mail.outbox]
    if window == 1:
        # The second went out, but recovery, not knowing, failed it as interrupted: it is not sent again. The two
        # after it were never handed over and wait for a retry.
        assert statuses == ["sent", "failed", "pending", "pending"]
        assert sent == [reader.email for reader in readers[:2]]
    else:
        # All four were handed over at once: recovery failed the three unrecorded ones, and they are not sent again.
        assert statuses == ["sent", "failed", "failed", "failed"]
        assert sorted(sent) == sorted(reader.email for reader in readers)
    monkeypatch.setattr(Delivery, "record_many", record_many)
    assert sending.send_deliveries(ids).sent == statuses.count("pending")
    assert sorted(message.to[0] for message in mail.outbox) == sorted(reader.email for reader in readers)


class SlowDown(locmem_backend.EmailBackend):
    """A provider over its plan's rate: the first `slow_downs` sends get HTTP 429 with `retry_after` (Anymail's
    requests error, as Postmark or Mailgun report it); later ones are accepted. Counts every send tried."""

    slow_downs = 0
    retry_after = "1"
    tries = 0

    def send_messages(self, messages):
        type(self).tries += 1
        if type(self).tries <= type(self).slow_downs:
            response = requests.Response()
            response.status_code, response.reason = 429, "Too Many Requests"
            response.headers["Retry-After"] = type(self).retry_after
            raise AnymailRequestsAPIError("Rate limit exceeded", status_code=429, response=response)
        return super().send_messages(messages)


@pytest.fixture
def slow_down(settings, monkeypatch):
    settings.EMAIL_BACKEND = "tests.test_senddigests.SlowDown"
    monkeypatch.setattr(SlowDown, "tries", 0)
    return SlowDown


def test_a_provider_answering_429_with_retry_after_0_forever_gets_the_row_back_for_a_later_retry(
    slow_down, monkeypatch, gnn, make_reader
):
    # Retry-After: 0 (or a date already past) every time: the pauses never add up, yet the worker must move on.
    monkeypatch.setattr(slow_down, "slow_downs", 1000)
    monkeypatch.setattr(slow_down, "retry_after", "0")
    make_reader(topics=[gnn])
    now = timezone.now()
    ids = planning.plan_deliveries(now, planning.start_run(now), ignore_hour=True)

    outcome = sending.send_deliveries(ids)

    delivery = Delivery.objects.get()
    assert (delivery.status, outcome.retry_ids) == ("pending", [delivery.id])
    assert delivery.error.startswith("The provider did not take it (HTTP 429)")
    assert slow_down.tries <= mailrate.SLOW_DOWN_MAX_TRIES
    assert mail.outbox == []


@pytest.mark.parametrize("stop", [SystemExit, SoftTimeLimitExceeded])
def test_a_stop_while_paused_after_a_429_leaves_the_row_pending_not_failed(
    stop, slow_down, settings, monkeypatch, gnn, make_reader
):
    # The provider answered 429, so it did not take the message: a worker stopped (SIGTERM's SystemExit, a task's
    # soft time limit, both raised in the main thread) during the pause leaves the row to be sent later, like the
    # rows not yet handed over, and its sending thread does not hand it over again after the pause.
    monkeypatch.setattr(slow_down, "slow_downs", 1)
    reader = make_reader(topics=[gnn])
    now = timezone.now()
    ids = planning.plan_deliveries(now, planning.start_run(now), ignore_hour=True)
    stopped = []

    def stopped_while_it_waits(self):
        deadline = time.monotonic() + 5
        while not (slow_down.tries and not any(slot.live for slot in self._held.values())):
            assert time.monotonic() < deadline, "the 429 never came"
            time.sleep(0.01)
        stopped.append(self)
        raise stop()

    monkeypatch.setattr(senders.Senders, "answers", stopped_while_it_waits)
    with pytest.raises(stop):
        sending.send_deliveries(ids, run_id=DigestRun.objects.get().id)

    delivery = Delivery.objects.get()
    assert (delivery.status, delivery.claim_token) == ("pending", None)
    assert DigestRun.objects.get().failed_count == 0
    for thread in stopped[0]._threads:
        thread.join(timeout=5)
    assert slow_down.tries == 1 and mail.outbox == []
    monkeypatch.undo()
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    assert sending.send_deliveries(ids).sent == 1
    assert [message.to[0] for message in mail.outbox] == [reader.email]


@pytest.mark.django_db(transaction=True)
def test_several_processes_send_each_digest_once(settings, tmp_path, make_paper, make_topic, make_reader, capsys):
    # Committed rows and a file outbox: the forked processes have their own connections and their own memory.
    settings.EMAIL_BACKEND = "config.outbox.EmailBackend"
    settings.OUTBOX_DIR = tmp_path
    settings.DIGEST_CHUNK_SIZE = 3
    topic = make_topic("Graph neural networks")
    make_paper("Graph neural networks at scale")
    readers = [make_reader(topics=[topic]) for _ in range(10)]
    call_command("senddigests", "--now", "--no-progress", "--processes", "2")
    assert "10 planned from 1 papers; 10 sent, 0 failed, 0 skipped." in capsys.readouterr().out
    written = sorted(path.name.split("-", 3)[3].removesuffix(".eml") for path in tmp_path.glob("*.eml"))
    assert written == sorted(reader.email for reader in readers)
    run = DigestRun.objects.get()
    assert (run.sent_count, run.finished_at is not None) == (10, True)


def test_a_reader_who_asked_to_hear_about_quiet_days_gets_a_short_email(locmem, gnn, make_topic, make_reader):
    speech = make_topic("Speech recognition", aliases=["ASR"])
    quiet = make_reader("quiet@example.com", topics=[speech], send_when_empty=True)
    skipped = make_reader("skip@example.com", topics=[speech])
    call_command("senddigests", "--now", "--no-progress")
    [message] = mail.outbox
    assert message.to == [quiet.email]
    assert message.subject.startswith("Nothing new for you on ") and not message.subject.endswith(":")
    assert "Nothing new matched Speech recognition today." in " ".join(message.body.split())
    assert "List-Unsubscribe" in message.extra_headers
    assert Delivery.objects.get(subscriber=quiet).status == Delivery.Status.SENT
    assert Delivery.objects.get(subscriber=skipped).status == Delivery.Status.SKIPPED


def test_readers_chose_before_the_preference_existed_keep_the_sites_rule(settings, make_reader):
    import importlib

    migration = importlib.import_module("subscriptions.migrations.0005_send_when_empty")
    reader = make_reader("ada@example.com")
    settings.DIGEST_SEND_WHEN_EMPTY = True
    from django.apps import apps

    migration.keep_the_sites_rule(apps, None)
    reader.refresh_from_db()
    assert reader.send_when_empty is True


def test_the_job_sends_again_what_a_stopped_run_left_and_says_so(locmem, gnn, make_reader, capsys, monkeypatch):
    # An earlier run stopped with three digests claimed: the first may have gone out, the other two never did. (The
    # database server has been up all along.)
    monkeypatch.setattr(recovery, "database_started_at", lambda: timezone.now() - timezone.timedelta(days=3))
    readers = [make_reader(topics=[gnn]) for _ in range(3)]
    earlier = timezone.now() - timezone.timedelta(hours=2)
    run = DigestRun.objects.create(planned_count=3, started_at=earlier)
    claim = uuid.uuid4()
    for reader in readers:
        Delivery.objects.create(
            subscriber=reader, digest_date=timezone.now().date(), run=run, status="sending", claim_token=claim,
            claimed_at=earlier, attempts=1,
        )  # fmt: skip

    call_command("senddigests", "--now", "--no-progress")

    out = capsys.readouterr().out
    assert 'Sent again what earlier runs left behind (README, "At most once"): 2 sent, 0 failed, 0 skipped.' in out
    assert "0 planned" in out
    assert sorted(message.to[0] for message in mail.outbox) == sorted(reader.email for reader in readers[1:])
    run.refresh_from_db()
    assert (run.sent_count, run.failed_count, run.finished_at is not None) == (2, 1, True)


def test_outcomes_written_together_skip_and_return_the_rows_recovery_took_back(gnn, make_reader):
    readers = [make_reader(topics=[gnn]) for _ in range(3)]
    now = timezone.now()
    ids = planning.plan_deliveries(now, planning.start_run(now), ignore_hour=True)
    claim = uuid.uuid4()
    Delivery.objects.filter(id__in=ids).claim(claim, now, 16)
    rows = list(Delivery.objects.filter(id__in=ids).order_by("id"))
    # Recovery took the second back (failed it as interrupted) before the outcomes were written.
    Delivery.objects.filter(id=rows[1].id).fail_interrupted(now)
    for row in rows:
        row.status, row.message_id, row.finished_at = Delivery.Status.SENT, f"<{row.id}@example.org>", now

    lost = Delivery.record_many(rows, claim)

    assert [row.id for row in lost] == [rows[1].id]
    written = {row.subscriber_id: (row.status, row.claim_token) for row in Delivery.objects.all()}
    assert written == {
        readers[0].id: ("sent", None), readers[1].id: ("failed", None), readers[2].id: ("sent", None)
    }  # fmt: skip
    # Written again (a retry after a dropped connection): the rows already written are found, not lost.
    assert [row.id for row in Delivery.record_many(rows, claim)] == [rows[1].id]
