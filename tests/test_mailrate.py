"""The mail provider's rate within one process (the embedded mode, or while Redis is unreachable), and reading a
provider's "slow down" answer."""

import logging
import threading
import time
from email.utils import format_datetime

import requests
from anymail.exceptions import AnymailAPIError, AnymailRequestsAPIError
from django.utils import timezone

from subscriptions import mailrate
from tests.reliability.harness import free_port, most_in_one_second


def take_turns(limiter, threads, each):
    turns, lock = [], threading.Lock()

    def run():
        for _ in range(each):
            limiter.wait()
            with lock:
                turns.append(time.monotonic())

    started = [threading.Thread(target=run) for _ in range(threads)]
    for thread in started:
        thread.start()
    for thread in started:
        thread.join()
    return turns


def test_threads_sharing_a_local_rate_of_50_never_take_more_than_50_turns_in_any_second():
    turns = take_turns(mailrate.LocalLimiter(50), threads=4, each=20)
    assert len(turns) == 80
    assert most_in_one_second(turns) <= 50
    assert (len(turns) - 1) / (max(turns) - min(turns)) > 35


def test_with_redis_unreachable_turns_are_paced_in_the_process_and_a_warning_logged(caplog):
    limiter = mailrate.RedisLimiter(f"redis://127.0.0.1:{free_port()}/0", "digest:mailrate:test", 50)
    with caplog.at_level(logging.WARNING, logger="subscriptions.mailrate"):
        turns = take_turns(limiter, threads=2, each=30)
    assert len(turns) == 60
    assert most_in_one_second(turns) <= 50
    assert "Redis is unreachable for the mail provider's rate" in caplog.text


def test_a_local_pause_holds_back_the_next_turn():
    limiter = mailrate.LocalLimiter(0)
    limiter.pause(0.5)
    started = time.monotonic()
    limiter.wait()
    assert time.monotonic() - started >= 0.45


def too_many_requests(headers):
    response = requests.Response()
    response.status_code, response.headers["Retry-After"] = 429, headers.get("Retry-After")
    if response.headers["Retry-After"] is None:
        del response.headers["Retry-After"]
    return AnymailRequestsAPIError("Rate limit exceeded", status_code=429, response=response)


def test_a_429_asks_for_its_retry_after_in_seconds_or_as_a_date_else_a_doubling_wait():
    assert mailrate.slow_down_seconds(too_many_requests({"Retry-After": "7"}), 0) == 7
    later = format_datetime(timezone.now() + timezone.timedelta(seconds=30), usegmt=True)
    assert 25 < mailrate.slow_down_seconds(too_many_requests({"Retry-After": later}), 0) <= 30
    assert [mailrate.slow_down_seconds(too_many_requests({}), attempt) for attempt in range(3)] == [1, 2, 4]
    assert mailrate.slow_down_seconds(AnymailAPIError("Server error", status_code=503), 0) is None


def test_a_retry_after_that_is_not_a_number_of_seconds_or_a_date_asks_for_the_doubling_wait():
    # "²" passes str.isdigit but is no number; a header is read as Latin-1, so a provider's stray byte can be one.
    for garbage in ("²", "soon", "1.5", "-3"):
        assert mailrate.slow_down_seconds(too_many_requests({"Retry-After": garbage}), 1) == 2


def test_a_retry_after_of_more_digits_than_int_reads_asks_for_the_longest_pause():
    assert mailrate.slow_down_seconds(too_many_requests({"Retry-After": "9" * 5000}), 0) == mailrate.MAX_PAUSE_SECONDS
