"""What the process-level reliability tests share: a Redis of their own, thousands of readers, waiting for a run to
settle, and a summary of what each fault did, written to VAR_DIR/test-artifacts/reliability/ for the operator."""

import contextlib
import json
import shutil
import socket
import subprocess
import threading
import time
import uuid
from collections import Counter
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import kombu.exceptions
import redis
from django.conf import settings
from django.db.models import Count, Q
from django.utils import timezone

from digest.models import Delivery, DigestRun
from subscriptions.models import Subscriber
from tests.test_smtp_delivery import seed_papers, seed_topic
from tests.test_worker import WAIT_SECONDS as START_SECONDS
from tests.test_worker import answers, broker_client, start_worker, stop_workers, wait_for

WAIT_SECONDS = 240
# The workers `workers` started, by queue, for wait_until_idle.
_started = {}


def worker_settings(**extra):
    # Chunks small enough that each pool process holds a claim most of the time; recovery quick enough for a test
    # (the default is an hour); retries a second apart instead of thirty.
    return {
        "DIGEST_CHUNK_SIZE": "20",
        "DIGEST_RECOVER_AFTER_SECONDS": "3",
        "DIGEST_RETRY_BASE_SECONDS": "1",
        **extra,
    }


@contextlib.contextmanager
def workers(tmp_path, mail_port, broker, queue, *, count=2, concurrency=2, **extra):
    """`count` real Celery workers (`concurrency` pool processes each) sharing `queue` on `broker`, run with
    worker_settings(**extra) and logging to tmp_path/worker<n>.log. Yields the worker processes.

    They are started together and waited for together, and stopped together (tests.test_worker.stop_workers)."""
    client = broker_client(broker.url)
    logs = [tmp_path / f"worker{number}.log" for number in range(1, count + 1)]
    started = []
    try:
        for log in logs:
            started.append(
                start_worker(
                    log, mail_port, queue=queue, concurrency=concurrency, broker_url=broker.url,
                    **worker_settings(**extra),
                )
            )  # fmt: skip
        for worker in started:
            wait_for(lambda worker=worker: answers(worker, client), START_SECONDS, "the workers")
        _started[queue] = started
        yield started
    finally:
        _started.pop(queue, None)
        stop_workers(started, broker.url, queue)
        # Shown by pytest only when the test fails.
        for log in logs:
            if log.exists():
                print(log.read_text())


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class RedisServer:
    """A redis-server on a free loopback port, keeping nothing on disk (as the machine's own is run): a restart loses
    every queued task, the worst case for the broker."""

    def __init__(self, directory):
        self.directory = directory
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.process = None

    def start(self):
        command = [
            shutil.which("redis-server") or "/usr/bin/redis-server", "--bind", "127.0.0.1", "--port", str(self.port),
            "--save", "", "--appendonly", "no", "--dir", str(self.directory),
        ]  # fmt: skip
        log = (self.directory / "redis.log").open("a")
        self.process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
        wait_for(self.answers, 15, "redis-server to answer")

    def answers(self):
        if self.process.poll() is not None:
            raise AssertionError(f"redis-server exited with code {self.process.returncode}")
        try:
            with redis.Redis(port=self.port, socket_timeout=0.5) as client:
                return client.ping()
        except redis.ConnectionError:
            return False

    def stop(self):
        if self.process and self.process.poll() is None:
            self.process.kill()
            self.process.wait()

    def restart(self):
        self.stop()
        self.start()


def seed_many_readers(count, *, prefix="reader"):
    """`count` active readers of one topic, due now, and three papers for them; returns their addresses."""
    seed_papers()
    topic = seed_topic()
    now = timezone.now()
    readers = Subscriber.objects.bulk_create(
        [
            Subscriber(
                email=f"{prefix}{number:05d}@example.com", status=Subscriber.Status.ACTIVE, confirmed_at=now,
                send_hour=0, time_zone="UTC",
            )
            for number in range(count)
        ],
        batch_size=1000,
    )  # fmt: skip
    Through = Subscriber.topics.through
    ids = Subscriber.objects.filter(email__startswith=prefix).values_list("id", flat=True)
    Through.objects.bulk_create([Through(subscriber_id=reader_id, topic_id=topic.id) for reader_id in ids])
    return sorted(reader.email for reader in readers)


def statuses():
    return dict(Delivery.objects.order_by().values_list("status").annotate(count=Count("id")))


def idle(client, queue):
    """Whether the workers `workers` started on `queue` have nothing left that could send: no task waiting in the
    queue (at any priority), and none reserved, scheduled (a retry's countdown) or running in a worker still alive,
    as Celery's remote control reports them. A worker that does not answer is not idle, nor is a broker that cannot
    be asked (as just after it restarted)."""
    names = [worker.nodename for worker in _started[queue] if worker.poll() is None]
    try:
        inspect = client.control.inspect(destination=names, timeout=2.0)
        for tasks in (inspect.active(), inspect.reserved(), inspect.scheduled()):
            if not tasks or set(tasks) != set(names) or any(tasks.values()):
                return False
        # kombu's Redis transport keeps a queue's messages of each priority step in a list of its own.
        keys = [queue, *(f"{queue}\x06\x16{step}" for step in (3, 6, 9))]
        with redis.Redis.from_url(client.conf.broker_url) as broker:
            return not any(broker.llen(key) for key in keys)
    except (redis.RedisError, kombu.exceptions.OperationalError):
        return False


def wait_until_idle(client, queue, mail_server, timeout, what):
    """Wait until the workers have nothing left that could send (`idle`), seen twice in a row with no row and no
    message changing in between: a task on its way from the queue to a worker at the first look is seen at the
    second. Unlike waiting for a quiet spell, this ends as soon as the work does, and notices a retry due later."""
    deadline = time.monotonic() + timeout
    last = None
    while True:
        snapshot = (tuple(sorted(statuses().items())), len(mail_server.received))
        if not idle(client, queue):
            last = None
        elif snapshot == last:
            return
        else:
            last = snapshot
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up after {timeout} s waiting for {what} to run out of work; last seen {last}")
        time.sleep(0.25)


def recoverable():
    """Whether every unfinished row is old enough for the next planner run to recover it (planning.recover): claimed,
    or queued again, or else created, more than DIGEST_RECOVER_AFTER_SECONDS ago."""
    cutoff = timezone.now() - timedelta(seconds=int(worker_settings()["DIGEST_RECOVER_AFTER_SECONDS"]))
    unfinished = Delivery.objects.exclude(status__in=Delivery.FINAL_STATUSES)
    return not unfinished.filter(Q(claimed_at__gte=cutoff) | Q(claimed_at=None, created_at__gte=cutoff)).exists()


def all_final(expected):
    counts = statuses()
    final = sum(counts.get(status, 0) for status in Delivery.FINAL_STATUSES)
    return sum(counts.values()) == expected and final == expected


def outcome(mail_server, addresses):
    """What every reader received and what every row says, as the summary and the assertions read them."""
    received = mail_server.count_by_recipient()
    rows = {
        email: (status, error)
        for email, status, error in Delivery.objects.values_list("subscriber__email", "status", "error")
    }
    return {
        "readers": len(addresses),
        "emails_received": sum(received.values()),
        "readers_with_one": sum(1 for address in addresses if received[address] == 1),
        "readers_with_none": sum(1 for address in addresses if received[address] == 0),
        "readers_with_two_or_more": sum(1 for address in addresses if received[address] >= 2),
        "rows": dict(Counter(status for status, _error in rows.values())),
        "rows_without_reason": sum(
            1 for status, error in rows.values() if status in ("failed", "skipped") and not error.strip()
        ),
        "runs": [
            {
                "planned": run.planned_count, "sent": run.sent_count, "failed": run.failed_count,
                "skipped": run.skipped_count, "finished": run.finished_at is not None,
            }
            for run in DigestRun.objects.order_by("id")
        ],
    }  # fmt: skip


def write_summary(name, summary):
    """Keep the figures for the operator (and the release notes): VAR_DIR/test-artifacts/reliability/NAME.json."""
    folder = settings.VAR_DIR / "test-artifacts" / "reliability"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{name}.json").write_text(json.dumps(summary, indent=2, default=str) + "\n")
    print(f"{name}: {json.dumps(summary, default=str)}")


class FakePostmark:
    """Postmark's send API (`POST /email`) on loopback, answering as Postmark does, with bursts of 503 Service
    Unavailable: `unavailable(n)` says whether request number n (from 0) gets one. Counts what it accepted.

    `slow_down(n)` says whether request number n starts a second of "slow down": it, and every request arriving in
    the second after it, get 429 Too Many Requests with `Retry-After: 1`, as a provider over its plan's rate answers.
    Each request's arrival is kept in `arrivals` as (time.monotonic(), status answered)."""

    def __init__(self, unavailable=lambda number: False, slow_down=lambda number: False):
        self.unavailable = unavailable
        self.slow_down = slow_down
        self.accepted = Counter()
        self.requests = 0
        self.refused = 0
        self.arrivals = []
        self.slow_down_started = []
        self._paused_until = 0.0
        self._lock = threading.Lock()
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                payload = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with fake._lock:
                    now = time.monotonic()
                    number, fake.requests = fake.requests, fake.requests + 1
                    if now >= fake._paused_until and fake.slow_down(number):
                        fake._paused_until = now + 1
                        fake.slow_down_started.append(now)
                    if now < fake._paused_until:
                        fake.arrivals.append((now, 429))
                        fake.refused += 1
                        body = {"ErrorCode": 429, "Message": "Rate limit exceeded; slow down."}
                        self.answer(429, json.dumps(body).encode(), "application/json", {"Retry-After": "1"})
                        return
                    if fake.unavailable(number):
                        fake.arrivals.append((now, 503))
                        fake.refused += 1
                        self.answer(503, b"<html><body><h1>503 Service Unavailable</h1></body></html>", "text/html")
                        return
                    fake.arrivals.append((now, 200))
                    fake.accepted[payload["To"]] += 1
                body = {
                    "To": payload["To"], "SubmittedAt": "2026-12-01T09:00:00.0000000-05:00",
                    "MessageID": str(uuid.uuid4()), "ErrorCode": 0, "Message": "OK",
                }  # fmt: skip
                self.answer(200, json.dumps(body).encode(), "application/json")

            def answer(self, status, body, content_type, headers=None):
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                for name, value in (headers or {}).items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        # A provider takes many connections at once: each sending thread opens its own, and the standard library's
        # backlog of 5 would refuse some of them when 32 arrive together, a fault of this stand-in, not of sending.
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler, bind_and_activate=False)
        self.server.request_queue_size = 128
        self.server.daemon_threads = True
        self.server.server_bind()
        self.server.server_activate()
        self.url = f"http://127.0.0.1:{self.server.server_port}/"

    def __enter__(self):
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()


def most_in_one_second(times):
    """The most of `times` (seconds) that fall in any one-second window [t, t + 1)."""
    times = sorted(times)
    most, first = 0, 0
    for last, moment in enumerate(times):
        while moment - times[first] >= 1:
            first += 1
        most = max(most, last - first + 1)
    return most


def run_to_the_end(client, queue, mail_server, readers, timeout):
    """After a fault: let the workers finish what they can, wait until what they left is old enough to be recovered,
    plan again as beat would (recovering first), and wait for every row to be final and the workers to have nothing
    left. Returns how many rows the fault had left unfinished."""
    wait_until_idle(client, queue, mail_server, timeout, "the workers")
    left_behind = Delivery.objects.exclude(status__in=Delivery.FINAL_STATUSES).count()
    wait_for(recoverable, timeout, "the unfinished rows to be old enough to recover")
    client.send_task("digest.tasks.plan_digests", queue=queue)
    wait_for(lambda: all_final(readers), timeout, "every digest to reach a final state")
    wait_until_idle(client, queue, mail_server, timeout, "the last digests")
    # The counts a dead worker never added are recounted from the rows once none of the run's digests was claimed
    # for DIGEST_RECOVER_AFTER_SECONDS (DigestRun.objects.recount): the next planner run after that does it.
    time.sleep(int(worker_settings()["DIGEST_RECOVER_AFTER_SECONDS"]) + 0.5)
    client.send_task("digest.tasks.plan_digests", queue=queue)
    open_runs = DigestRun.objects.filter(finished_at=None, planned_count__gt=0)
    wait_for(lambda: not open_runs.exists(), timeout, "the runs to be recounted and closed")
    return left_behind
