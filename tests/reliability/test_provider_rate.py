"""Sending within the mail provider's limits, with real processes: MAIL_RATE_PER_SECOND shared by every worker
through Redis, and a provider's 429 "slow down" pausing every worker for that provider without failing a digest.

The upper bounds (the rate, the paused second) are asserted strictly; the lower bounds (throughput) loosely, so a
busy machine makes the tests slower, not flaky.
"""

import subprocess
import sys
import time

import pytest
from django.conf import settings

from digest.models import Delivery
from tests.reliability.harness import (
    WAIT_SECONDS,
    FakePostmark,
    all_final,
    most_in_one_second,
    outcome,
    seed_many_readers,
    workers,
    write_summary,
)
from tests.reliability.test_outages import esp_as_mail_server
from tests.test_worker import broker_client, wait_for

# Takes `count` turns from the limiter keyed `key` at `rate` per second on the Redis at `url`, starting at `start`
# (time.time()), and prints the moment each turn was given.
TAKE_TURNS = """
import sys, time
from subscriptions.mailrate import RedisLimiter
url, key, rate, count, start = sys.argv[1], sys.argv[2], float(sys.argv[3]), int(sys.argv[4]), float(sys.argv[5])
limiter = RedisLimiter(url, key, rate)
time.sleep(max(0, start - time.time()))
for _ in range(count):
    limiter.wait()
    print(time.time(), flush=True)
"""


def test_two_processes_sharing_a_rate_of_50_never_take_more_than_50_turns_in_any_second(broker):
    start = time.time() + 3  # both processes started and connected before either takes a turn
    command = [sys.executable, "-c", TAKE_TURNS, broker.url, "mailrate:test", "50", "60", str(start)]
    processes = [subprocess.Popen(command, cwd=settings.BASE_DIR, stdout=subprocess.PIPE, text=True) for _ in range(2)]
    turns = []
    for process in processes:
        output, _ = process.communicate(timeout=60)
        assert process.returncode == 0
        turns.extend(float(line) for line in output.split())

    assert len(turns) == 120
    assert most_in_one_second(turns) <= 50
    per_second = (len(turns) - 1) / (max(turns) - min(turns))
    assert per_second > 35, f"{per_second:.1f} turns a second: the limiter is far slower than the rate"


def provider_settings(esp, **extra):
    return {
        "EMAIL_BACKEND": "anymail.backends.postmark.EmailBackend",
        "ANYMAIL_POSTMARK_SERVER_TOKEN": "server-token",
        "ANYMAIL_POSTMARK_API_URL": esp.url,
        **extra,
    }


def assert_each_sent_once(esp, addresses, readers):
    summary = outcome(esp_as_mail_server(esp), addresses)
    assert esp.accepted == dict.fromkeys(addresses, 1)
    assert set(Delivery.objects.values_list("status", "error")) == {("sent", "")}
    run = summary["runs"][0]
    assert (run["planned"], run["sent"], run["failed"], run["finished"]) == (readers, readers, 0, True)
    return summary


@pytest.mark.postgresql
@pytest.mark.django_db(transaction=True)
def test_with_a_rate_of_50_the_provider_never_sees_more_than_50_requests_in_any_second(tmp_path, broker):
    readers = 300
    addresses = seed_many_readers(readers)
    client = broker_client(broker.url)
    with FakePostmark() as esp:
        queue = f"rate-{broker.port}"
        extra = provider_settings(esp, MAIL_RATE_PER_SECOND="50")
        with workers(tmp_path, 25, broker, queue, count=2, concurrency=1, **extra):
            client.send_task("digest.tasks.plan_digests", queue=queue)
            wait_for(lambda: all_final(readers), WAIT_SECONDS, "every digest to reach a final state")

    arrivals = [moment for moment, _status in esp.arrivals]
    most = most_in_one_second(arrivals)
    seconds = max(arrivals) - min(arrivals)
    summary = assert_each_sent_once(esp, addresses, readers)
    summary.update(
        fault="none; MAIL_RATE_PER_SECOND=50 shared by two workers",
        most_requests_in_one_second=most,
        seconds_sending=round(seconds, 2),
    )
    write_summary("esp_rate_50", summary)
    assert most <= 50
    assert len(arrivals) / seconds > 30, f"{len(arrivals) / seconds:.1f} a second: far slower than the rate"


@pytest.mark.postgresql
@pytest.mark.django_db(transaction=True)
def test_a_provider_answering_429_pauses_every_worker_and_each_digest_is_still_sent_once(tmp_path, broker):
    readers = 300
    addresses = seed_many_readers(readers)
    client = broker_client(broker.url)
    # Request 60, and the first after request 180 that is not itself in a paused second, each start a second in which
    # every request gets 429 with Retry-After: 1. No rate is set: the pause alone must hold every worker back.
    starts = [60, 180]
    with FakePostmark(slow_down=lambda number: bool(starts) and number >= starts[0] and bool(starts.pop(0))) as esp:
        queue = f"slow-{broker.port}"
        with workers(tmp_path, 25, broker, queue, count=2, concurrency=1, **provider_settings(esp)):
            client.send_task("digest.tasks.plan_digests", queue=queue)
            wait_for(lambda: all_final(readers), WAIT_SECONDS, "every digest to reach a final state")

    logs = "".join((tmp_path / name).read_text() for name in ("worker1.log", "worker2.log"))
    # Requests already on their way when the first 429 was answered may still arrive in its first moments.
    on_their_way = 0.3
    during_pauses = [
        moment
        for started in esp.slow_down_started
        for moment, _status in esp.arrivals
        if started + on_their_way < moment < started + 1
    ]
    summary = assert_each_sent_once(esp, addresses, readers)
    summary.update(
        fault="Postmark API answering 429 (Retry-After: 1) for a second from requests 60 and 180",
        answered_429=esp.refused,
        requests_during_pauses=len(during_pauses),
        pauses_logged=logs.count("asked to slow down"),
    )
    write_summary("esp_429_slow_down", summary)
    assert len(esp.slow_down_started) == 2
    assert esp.refused >= 2
    # Requests already handed over when the first 429 was answered (at most DIGEST_SEND_CONCURRENCY per process) may
    # still reach the provider during the pause; nothing is handed over after it (213 were before the pause existed).
    assert len(during_pauses) <= 2 * settings.DIGEST_SEND_CONCURRENCY
    assert summary["pauses_logged"] >= 2
    # Sent again in place after the pause, not handed back to Celery for a retry.
    assert not Delivery.objects.filter(attempts__gt=1).exists()
