"""A worker killed mid-run, and two planners at once: real Celery workers on a Redis of the test's own and on
PostgreSQL, sending to a real SMTP server that counts what each address received.

The promise is one digest per reader and day, never two. The window between "the mail server accepted the message"
and "the row says sent" is handled at most once (README, "At most once"): a worker killed inside it costs that reader
the day's digest rather than risk sending it twice, and because no more than DIGEST_SEND_CONCURRENCY messages are ever
handed over but not recorded, a killed worker has at most that many such readers per pool process.
"""

import asyncio
import os
import subprocess
import sys

import pytest
from django.conf import settings
from django.utils import timezone
from django_celery_beat.models import IntervalSchedule, PeriodicTask

from digest import planning
from digest.models import Delivery
from subscriptions.models import Subscriber
from tests.reliability.harness import (
    WAIT_SECONDS,
    all_final,
    outcome,
    run_to_the_end,
    seed_many_readers,
    wait_until_idle,
    worker_settings,
    workers,
    write_summary,
)
from tests.test_smtp_delivery import running_mail_server
from tests.test_worker import broker_client, kill_worker, wait_for, worker_database_url

pytestmark = [pytest.mark.postgresql, pytest.mark.django_db(transaction=True)]

CONCURRENCY = 2


async def a_busy_server(recipients):
    # A few milliseconds per message: most of a worker's time is spent with a message in the server's hands, where a
    # kill is most likely to land in the window this test is about.
    await asyncio.sleep(0.004)


def test_a_worker_killed_mid_run_costs_at_most_its_sends_in_flight_and_nobody_gets_two(tmp_path, broker):
    readers = 2000
    addresses = seed_many_readers(readers)
    client = broker_client(broker.url)
    with running_mail_server() as (mail_server, port):
        mail_server.before_accepting = a_busy_server
        queue = f"kill-{broker.port}"
        with workers(tmp_path, port, broker, queue, concurrency=CONCURRENCY) as (doomed, _survivor):
            client.send_task("digest.tasks.plan_digests", queue=queue)
            wait_for(lambda: len(mail_server.received) >= readers // 3, WAIT_SECONDS, "a third of the digests")
            kill_worker(doomed)
            received_at_kill = len(mail_server.received)
            held_at_kill = Delivery.objects.filter(status=Delivery.Status.SENDING).count()

            # The survivor finishes what it can; the dead worker's claims and its reserved tasks stay behind until
            # the next planner run (beat's, every 15 minutes) recovers them.
            left_behind = run_to_the_end(client, queue, mail_server, readers, WAIT_SECONDS)

    received = mail_server.count_by_recipient()
    summary = outcome(mail_server, addresses)
    interrupted = list(Delivery.objects.filter(status=Delivery.Status.FAILED).values_list("subscriber__email", "error"))
    summary.update(
        fault="SIGKILL of one of two workers (2 pool processes each) a third of the way through",
        received_at_kill=received_at_kill,
        rows_sending_at_kill=held_at_kill,
        rows_left_behind_before_recovery=left_behind,
        interrupted=len(interrupted),
        interrupted_that_reached_the_server=sum(1 for address, _error in interrupted if received[address] == 1),
    )
    write_summary("worker_killed", summary)

    assert summary["readers_with_two_or_more"] == 0
    assert all(error == Delivery.INTERRUPTED for _address, error in interrupted)
    # The bound: one claim per pool process of the killed worker, at most DIGEST_SEND_CONCURRENCY unrecorded messages
    # per claim (its sends in flight), and only those that may have gone out.
    assert len(interrupted) <= CONCURRENCY * settings.DIGEST_SEND_CONCURRENCY
    for delivery in Delivery.objects.exclude(status=Delivery.Status.FAILED).select_related("subscriber"):
        assert delivery.status == Delivery.Status.SENT
        assert received[delivery.subscriber.email] == 1
        assert delivery.message_id
    assert summary["readers_with_one"] >= readers - len(interrupted)
    assert left_behind > 0, "the kill should have left work behind for recovery; it came too late to test anything"
    run = summary["runs"][0]
    assert (run["planned"], run["sent"], run["failed"], run["finished"]) == (
        readers, readers - len(interrupted), len(interrupted), True
    )  # fmt: skip


def test_two_beat_schedulers_planning_at_once_send_each_reader_one_digest(tmp_path, broker):
    readers = 300
    addresses = seed_many_readers(readers)
    queue = f"beat-{broker.port}"
    # Both schedulers read this entry and both fire it every second, as two beats left running by mistake would.
    PeriodicTask.objects.all().delete()
    every_second, _ = IntervalSchedule.objects.get_or_create(every=1, period=IntervalSchedule.SECONDS)
    PeriodicTask.objects.create(
        name="Plan and send digests", task="digest.tasks.plan_digests", interval=every_second, queue=queue
    )
    with running_mail_server() as (mail_server, port):
        env = {
            **worker_settings(),
            "DATABASE_URL": worker_database_url(),
            "REDIS_URL": broker.url,
            "DEBUG": "true",
        }
        with workers(tmp_path, port, broker, queue, count=1):
            beats = [start_beat(tmp_path / f"beat{number}.log", env) for number in (1, 2)]
            try:
                wait_for(lambda: all_final(readers), WAIT_SECONDS, "every digest to reach a final state")
                # Let both go on planning for a while after everyone has had their digest: three more times each.
                fired = [plans_sent(tmp_path, number) for number in (1, 2)]
                wait_for(
                    lambda: all(plans_sent(tmp_path, number) >= fired[number - 1] + 3 for number in (1, 2)),
                    WAIT_SECONDS, "both schedulers to plan three more times",
                )  # fmt: skip
            finally:
                for beat in beats:
                    beat.terminate()
                for beat in beats:
                    try:
                        beat.wait(timeout=15)
                    except subprocess.TimeoutExpired:
                        # Once, under CI load, a beat went on past SIGTERM (after the digests had all gone): stop it
                        # as a platform does after its grace period, so it cannot outlive the test and its broker.
                        beat.kill()
                        beat.wait()
            wait_until_idle(broker_client(broker.url), queue, mail_server, WAIT_SECONDS, "the worker")
    plans = [plans_sent(tmp_path, number) for number in (1, 2)]
    summary = outcome(mail_server, addresses)
    summary.update(fault="two celery beat processes firing plan_digests every second", plans_sent=sum(plans))
    write_summary("two_schedulers", summary)

    # Each planned while the other did, three times or more after everyone had their digest (how many times before
    # depends on how fast the run went, so no total is asserted).
    assert all(count >= 3 for count in plans), f"both schedulers should have kept planning: {plans}"
    assert mail_server.count_by_recipient() == dict.fromkeys(addresses, 1)
    assert Delivery.objects.count() == readers
    assert set(Delivery.objects.values_list("status", flat=True)) == {"sent"}
    # Every run after the first found nobody due: planned 0, finished at once or left open with nothing to do.
    assert sum(run["planned"] for run in summary["runs"]) == readers
    assert sum(run["sent"] for run in summary["runs"]) == readers


def plans_sent(tmp_path, number):
    """How many times beat number `number` has sent plan_digests, as its log says."""
    return (tmp_path / f"beat{number}.log").read_text().count("Sending due task")


def start_beat(log_path, env):
    command = [
        sys.executable, "-m", "celery", "-A", "config", "beat", "--loglevel=INFO", "--max-interval=1",
        "--scheduler", "django_celery_beat.schedulers:DatabaseScheduler",
    ]  # fmt: skip
    with log_path.open("w") as log:
        return subprocess.Popen(command, cwd=settings.BASE_DIR, env=env, stdout=log, stderr=subprocess.STDOUT)


def test_the_job_started_twice_at_once_sends_each_reader_one_digest(tmp_path):
    readers = 400
    addresses = seed_many_readers(readers)
    with running_mail_server() as (mail_server, port):
        env = {
            "DATABASE_URL": worker_database_url(), "DEBUG": "true", "REDIS_URL": "",
            "EMAIL_BACKEND": "django.core.mail.backends.smtp.EmailBackend", "EMAIL_HOST": "127.0.0.1",
            "EMAIL_PORT": str(port), "DIGEST_CHUNK_SIZE": "20",
        }  # fmt: skip
        command = [sys.executable, "manage.py", "senddigests", "--now", "--no-progress"]
        jobs = [
            subprocess.Popen(command, cwd=settings.BASE_DIR, env={**os.environ, **env}, stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, text=True)
            for _ in range(2)
        ]  # fmt: skip
        outputs = [job.communicate(timeout=WAIT_SECONDS)[0] for job in jobs]
    summary = outcome(mail_server, addresses)
    summary.update(fault="`senddigests --now` started twice at the same moment", outputs=outputs)
    write_summary("job_started_twice", summary)

    assert [job.returncode for job in jobs] == [0, 0], outputs
    assert mail_server.count_by_recipient() == dict.fromkeys(addresses, 1)
    assert Delivery.objects.count() == readers
    assert sum(run["sent"] for run in summary["runs"]) == readers
    assert Subscriber.objects.filter(status=Subscriber.Status.ACTIVE).count() == readers


def test_every_task_delivered_twice_to_two_workers_sends_each_digest_once(tmp_path, broker):
    # What a broker's redelivery does (a visibility timeout passing while the first copy still runs): the same chunk
    # in two workers' hands at once. The conditional claim gives each row to one of them.
    readers = 400
    addresses = seed_many_readers(readers)
    now = timezone.now()
    run = planning.start_run(now)
    ids = planning.plan_deliveries(now, run)
    client = broker_client(broker.url)
    with running_mail_server() as (mail_server, port):
        queue = f"twice-{broker.port}"
        with workers(tmp_path, port, broker, queue):
            for chunk in planning.chunks(ids, 20):
                for _copy in range(2):
                    client.send_task("digest.tasks.send_deliveries", args=[chunk, run.id], queue=queue)
            wait_for(lambda: all_final(readers), WAIT_SECONDS, "every digest to reach a final state")
            wait_until_idle(client, queue, mail_server, WAIT_SECONDS, "the workers")

    summary = outcome(mail_server, addresses)
    summary.update(fault="every send_deliveries task queued twice, taken by two workers (4 processes)")
    write_summary("tasks_delivered_twice", summary)

    assert mail_server.count_by_recipient() == dict.fromkeys(addresses, 1)
    assert set(Delivery.objects.values_list("status", flat=True)) == {"sent"}
    assert summary["runs"][0] == {"planned": readers, "sent": readers, "failed": 0, "skipped": 0, "finished": True}
