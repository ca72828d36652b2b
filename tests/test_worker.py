"""The task path end to end: a real Celery worker process on the real Redis sends the digests beat asks for."""

import os
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter
from urllib.parse import urlsplit

import pytest
import redis
from django.conf import settings
from django.db import connection

from digest.celery import app
from digest.models import Delivery, DigestRun
from digest.tasks import plan_digests
from subscriptions.models import Subscriber
from tests.test_smtp_delivery import running_mail_server, seed_papers, seed_readers, seed_topic

pytestmark = pytest.mark.skipif(
    not settings.REDIS_URL, reason="needs REDIS_URL=redis://…: the worker takes its tasks from Redis (CI sets it)"
)

READERS = 20
WAIT_SECONDS = 60


def wait_for(condition, timeout, what):
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up after {timeout} s waiting for {what}")
        time.sleep(0.2)


def is_alive(worker):
    if worker.poll() is not None:
        raise AssertionError(f"the worker exited with code {worker.returncode}; its log is below")
    return True


# Committed rows, so the worker process sees them.
@pytest.mark.django_db(transaction=True)
def test_a_worker_plans_and_sends_everyones_digest_once(tmp_path):
    assert settings.CELERY_TASK_ALWAYS_EAGER is False
    seed_papers()
    readers = seed_readers([f"reader{number:02d}@example.com" for number in range(READERS)], seed_topic())
    # Due whatever the hour the test runs at: beat's planner only takes readers whose local send hour has come.
    Subscriber.objects.update(send_hour=0, time_zone="UTC")
    # The worker reads the database pytest-django created for this run, not the one DATABASE_URL names (on SQLite
    # a file: settings give the SQLite test database a file name so another process can open it).
    if connection.vendor == "sqlite":
        database_url = f"sqlite:///{connection.settings_dict['NAME']}"
    else:
        database_url = (
            urlsplit(os.environ["DATABASE_URL"])._replace(path="/" + connection.settings_dict["NAME"]).geturl()
        )
    # A queue of its own, so other workers on this Redis cannot take these tasks and this test cannot take theirs.
    # Tasks queued by tasks (plan_digests -> send_deliveries) follow the worker's default queue, set after "--".
    queue = f"test-digest-{uuid.uuid4().hex[:12]}"
    nodename = f"{queue}@localhost"
    log_path = tmp_path / "worker.log"

    with running_mail_server() as (mail_server, port), log_path.open("w") as log:
        env = {
            **os.environ,
            "DATABASE_URL": database_url,
            "REDIS_URL": settings.REDIS_URL,
            "DEBUG": "true",
            "EMAIL_BACKEND": "django.core.mail.backends.smtp.EmailBackend",
            "EMAIL_HOST": "127.0.0.1",
            "EMAIL_PORT": str(port),
            # Several chunks, so both worker processes send and count into the same run at once.
            "DIGEST_CHUNK_SIZE": "5",
        }
        command = [
            sys.executable, "-m", "celery", "-A", "digest", "worker", "--loglevel=INFO", "--concurrency=2",
            "--pool=prefork", "-Q", queue, "-n", nodename, "--without-gossip", "--without-mingle",
            "--", f"task.default_queue={queue}",
        ]  # fmt: skip
        worker = subprocess.Popen(command, cwd=settings.BASE_DIR, env=env, stdout=log, stderr=subprocess.STDOUT)
        try:
            wait_for(lambda: is_alive(worker) and app.control.ping([nodename], timeout=0.5), WAIT_SECONDS, "the worker")
            started = time.monotonic()
            plan_digests.apply_async(queue=queue)

            def all_final():
                statuses = list(Delivery.objects.values_list("status", flat=True))
                return (
                    is_alive(worker)
                    and len(statuses) == READERS
                    and all(status in Delivery.FINAL_STATUSES for status in statuses)
                )

            wait_for(all_final, WAIT_SECONDS, f"{READERS} digests to be planned and finished")
            print(f"worker planned and sent {READERS} digests in {time.monotonic() - started:.1f} s")
        finally:
            worker.send_signal(signal.SIGTERM)
            try:
                worker.wait(timeout=15)
            except subprocess.TimeoutExpired:
                worker.kill()
                worker.wait()
            with redis.Redis.from_url(settings.REDIS_URL) as broker:
                broker.delete(queue, f"_kombu.binding.{queue}", f"_kombu.binding_permanent.{queue}")
            # Shown by pytest only when the test fails.
            print(log_path.read_text())

    assert mail_server.count_by_recipient() == Counter(reader.email for reader in readers)
    for delivery in Delivery.objects.select_related("subscriber"):
        [message] = mail_server.messages_to(delivery.subscriber.email)
        assert delivery.status == Delivery.Status.SENT
        assert delivery.message_id == message["Message-ID"]
        assert len(delivery.paper_ids) == 3
    run = DigestRun.objects.get()
    assert (run.planned_count, run.sent_count, run.failed_count, run.skipped_count) == (READERS, READERS, 0, 0)
    assert run.finished_at is not None
