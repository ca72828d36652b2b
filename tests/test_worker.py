"""The task path end to end: a real Celery worker process on the real Redis sends the digests beat asks for."""

import contextlib
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
from celery import Celery
from django.conf import settings
from django.db import connection

from config.celery import app
from digest.models import Delivery, DigestRun
from digest.tasks import plan_digests
from subscriptions import tokens
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


def worker_database_url():
    # The worker reads the database pytest-django created for this run, not the one DATABASE_URL names (on SQLite
    # a file: settings give the SQLite test database a file name so another process can open it).
    if connection.vendor == "sqlite":
        return f"sqlite:///{connection.settings_dict['NAME']}"
    return urlsplit(os.environ["DATABASE_URL"])._replace(path="/" + connection.settings_dict["NAME"]).geturl()


@contextlib.contextmanager
def running_worker(log_path, mail_port, *, queue=None, concurrency=2, broker_url=None, **env_extra):
    """A real `celery worker` (`concurrency` prefork processes) sending mail to the SMTP server on `mail_port`, taking
    tasks from `queue` (a new one by default) on the Redis at `broker_url` (REDIS_URL by default). Yields the queue
    name and the worker's process; tasks sent to the queue, and tasks those tasks queue, go to its workers only.

    The worker leads a process group of its own, so `kill_worker` can stop it and its pool processes at once."""
    broker_url = broker_url or settings.REDIS_URL
    queue = queue or f"test-digest-{uuid.uuid4().hex[:12]}"
    client = broker_client(broker_url)
    worker = start_worker(log_path, mail_port, queue=queue, concurrency=concurrency, broker_url=broker_url, **env_extra)
    try:
        wait_for(lambda: answers(worker, client), WAIT_SECONDS, "the worker")
        yield queue, worker
    finally:
        stop_workers([worker], broker_url, queue)
        # Shown by pytest only when the test fails.
        print(log_path.read_text())


def start_worker(log_path, mail_port, *, queue, concurrency, broker_url, **env_extra):
    """Start the worker running_worker describes, without waiting for it (`answers` says when it does); returns its
    process, with the worker's node name as `nodename`."""
    nodename = f"{uuid.uuid4().hex[:8]}.{queue}@localhost"
    env = {
        **os.environ,
        "DATABASE_URL": worker_database_url(),
        "REDIS_URL": broker_url,
        "DEBUG": "true",
        "EMAIL_BACKEND": "django.core.mail.backends.smtp.EmailBackend",
        "EMAIL_HOST": "127.0.0.1",
        "EMAIL_PORT": str(mail_port),
        **env_extra,
    }
    # Tasks queued by tasks (plan_digests -> send_deliveries) follow the worker's default queue, set after "--".
    command = [
        sys.executable, "-m", "celery", "-A", "config", "worker", "--loglevel=INFO", f"--concurrency={concurrency}",
        "--pool=prefork", "-Q", queue, "-n", nodename, "--without-gossip", "--without-mingle",
        "--", f"task.default_queue={queue}",
    ]  # fmt: skip
    with log_path.open("w") as log:
        worker = subprocess.Popen(
            command, cwd=settings.BASE_DIR, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
    worker.nodename = nodename
    return worker


def answers(worker, client):
    return is_alive(worker) and client.control.ping([worker.nodename], timeout=0.5)


def stop_workers(workers, broker_url, queue):
    """A warm shutdown, as a deploy asks for: each worker lets its running tasks finish. All are asked at once, then
    waited for; the queue's keys are removed from the broker."""
    running = [worker for worker in workers if worker.poll() is None]
    for worker in running:
        worker.send_signal(signal.SIGTERM)
    for worker in running:
        try:
            worker.wait(timeout=15)
        except subprocess.TimeoutExpired:
            kill_worker(worker)
    with contextlib.suppress(redis.RedisError), redis.Redis.from_url(broker_url) as broker:
        broker.delete(queue, f"_kombu.binding.{queue}", f"_kombu.binding_permanent.{queue}")


def kill_worker(worker):
    """SIGKILL the worker and its pool processes, as the kernel's OOM killer or a lost machine would."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(worker.pid, signal.SIGKILL)
    worker.wait()


def broker_client(broker_url):
    """A Celery app for sending tasks and pings through the Redis at `broker_url`."""
    if broker_url == settings.REDIS_URL:
        return app
    return Celery("client", broker=broker_url, set_as_current=False)


# Committed rows, so the worker process sees them.
@pytest.mark.django_db(transaction=True)
def test_a_worker_plans_and_sends_everyones_digest_once(tmp_path):
    assert settings.CELERY_TASK_ALWAYS_EAGER is False
    seed_papers()
    readers = seed_readers([f"reader{number:02d}@example.com" for number in range(READERS)], seed_topic())
    # Due whatever the hour the test runs at: beat's planner only takes readers whose local send hour has come.
    Subscriber.objects.update(send_hour=0, time_zone="UTC")

    # Several chunks (DIGEST_CHUNK_SIZE), so both worker processes send and count into the same run at once.
    with (
        running_mail_server() as (mail_server, port),
        running_worker(tmp_path / "worker.log", port, DIGEST_CHUNK_SIZE="5") as (queue, worker),
    ):
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

    assert mail_server.count_by_recipient() == Counter(reader.email for reader in readers)
    for delivery in Delivery.objects.select_related("subscriber"):
        [message] = mail_server.messages_to(delivery.subscriber.email)
        assert delivery.status == Delivery.Status.SENT
        assert delivery.message_id == message["Message-ID"]
        assert len(delivery.paper_ids) == 3
    run = DigestRun.objects.get()
    assert (run.planned_count, run.sent_count, run.failed_count, run.skipped_count) == (READERS, READERS, 0, 0)
    assert run.finished_at is not None


@pytest.mark.django_db(transaction=True)
def test_a_sign_up_on_the_site_gets_its_confirmation_from_the_worker(tmp_path, client, settings):
    topic = seed_topic()
    settings.SITE_URL = "https://digest.example.org"
    form = {"email": "ada@example.com", "topics": [topic.pk], "time_zone": "UTC", "send_hour": "8"}
    form.update(frequency="daily", weekly_day="0", papers_per_email="10")
    with (
        running_mail_server() as (mail_server, port),
        running_worker(tmp_path / "worker.log", port, SITE_URL=settings.SITE_URL) as (queue, worker),
    ):
        app.conf.task_default_queue = queue
        try:
            response = client.post("/", form)
        finally:
            app.conf.task_default_queue = "celery"
        assert response.status_code == 302
        wait_for(lambda: is_alive(worker) and mail_server.messages_to("ada@example.com"), WAIT_SECONDS, "the email")

    [message] = mail_server.messages_to("ada@example.com")
    assert message["Subject"] == "Confirm your subscription to Paper Digest"
    assert message["List-Unsubscribe"] is None
    reader = Subscriber.objects.get()
    assert reader.status == Subscriber.Status.PENDING
    assert tokens.confirm_url(reader).rsplit(":", 2)[0] in message.get_body(("plain",)).get_content()
