"""Keeping within the mail provider's limits: an even pace (MAIL_RATE_PER_SECOND) and a pause when the provider
answers "slow down" (HTTP 429), both shared by every process that sends through the same provider.

`limiter()` is what a sending loop calls `wait()` on right before each hand-over to the backend, and `pause(seconds)`
on when the provider asks it to slow down. A limiter is safe to share between threads, and with Redis between
processes and machines.

Turns are evenly spaced (GCRA, with no burst): turn n is given no sooner than 1/rate after turn n - 1, so no window
of one second, wherever it starts, holds more than the rate. They are spaced at a little under the rate (PACE), so
the jitter of the network and of busy processes does not bunch them past the rate by the time they reach the
provider.
"""

import email.utils
import hashlib
import logging
import threading
import time

import redis
from anymail.exceptions import AnymailAPIError

logger = logging.getLogger(__name__)

# The share of MAIL_RATE_PER_SECOND actually used: the margin left for jitter between here and the provider.
PACE = 0.9
# The longest one message waits in all for a provider that keeps answering "slow down" before it is handed back
# for a later retry.
SLOW_DOWN_MAX_SECONDS = 60
# The longest pause a Retry-After may ask for. A pausing worker keeps its claim on the rest of its chunk, and
# recovery (DIGEST_RECOVER_AFTER_SECONDS) must not take it back from a live worker; a provider still busy after five
# minutes answers 429 again, and is paused for again.
MAX_PAUSE_SECONDS = 300
# The most "slow down" answers one message takes before it is handed back, however short the pauses they ask for.
SLOW_DOWN_MAX_TRIES = 10
# After Redis fails, pacing stays local to the process for this long before Redis is tried again.
LOCAL_AFTER_REDIS_FAILS_SECONDS = 5


class LocalLimiter:
    """The pace and the pause within one process (no Redis: the embedded mode, or while Redis is unreachable)."""

    def __init__(self, rate):
        self.interval = 1 / (rate * PACE) if rate else 0.0
        self._next = 0.0
        self._paused_until = 0.0
        self._lock = threading.Lock()

    def wait(self):
        while True:
            with self._lock:
                now = time.monotonic()
                turn = max(now, self._next, self._paused_until)
                if self.interval:
                    self._next = turn + self.interval
            if turn > now:
                time.sleep(turn - now)
            if not self._paused():
                return

    def _paused(self):
        with self._lock:
            return time.monotonic() < self._paused_until

    def pause(self, seconds):
        with self._lock:
            self._paused_until = max(self._paused_until, time.monotonic() + seconds)


# KEYS[1]: when the next turn is free; KEYS[2]: when the pause ends (microseconds, Redis's clock); ARGV[1]: the
# interval between turns in microseconds (0: no pace). Takes the next turn; returns the microseconds until it.
_TAKE_TURN = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local turn = math.max(now, tonumber(redis.call('GET', KEYS[2]) or '0'))
local interval = tonumber(ARGV[1])
if interval > 0 then
  turn = math.max(turn, tonumber(redis.call('GET', KEYS[1]) or '0'))
  local next_turn = turn + interval
  redis.call('SET', KEYS[1], string.format('%.0f', next_turn), 'PX', math.ceil((next_turn - now) / 1000) + 1000)
end
return turn - now
"""

# KEYS[1]: when the pause ends; ARGV[1]: microseconds from now (-1: only say how long the pause still lasts).
# Extends the pause, never shortens it; returns the microseconds it still lasts.
_PAUSE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local paused_until = tonumber(redis.call('GET', KEYS[1]) or '0')
local wanted = now + tonumber(ARGV[1])
if tonumber(ARGV[1]) >= 0 and wanted > paused_until then
  paused_until = wanted
  redis.call('SET', KEYS[1], string.format('%.0f', wanted), 'PX', math.ceil(tonumber(ARGV[1]) / 1000) + 1000)
end
return math.max(0, paused_until - now)
"""


class RedisLimiter:
    """The pace and the pause shared through Redis by every process using the same `key`. When Redis cannot be
    reached, paces locally for a while and logs a warning: digests go out, only less evenly."""

    def __init__(self, url, key, rate):
        self.interval_us = round(1_000_000 / (rate * PACE)) if rate else 0
        self.keys = [f"{key}:next", f"{key}:paused"]
        # Short timeouts: an unreachable Redis must cost a send a moment, not the connection's default wait.
        self._client = redis.Redis.from_url(url, socket_timeout=1, socket_connect_timeout=1)
        self._take_turn = self._client.register_script(_TAKE_TURN)
        self._pause = self._client.register_script(_PAUSE)
        self._local = LocalLimiter(rate)
        self._redis_failed_at = None

    def wait(self):
        while True:
            try:
                if self._use_local():
                    return self._local.wait()
                delay = self._take_turn(keys=self.keys, args=[self.interval_us]) / 1_000_000
                if delay > 0:
                    time.sleep(delay)
                # A pause recorded while this one waited for its turn holds it back too.
                if delay <= 0 or not self._pause(keys=self.keys[1:], args=[-1]):
                    return
            except redis.RedisError as error:
                self._redis_failed(error)

    def pause(self, seconds):
        self._local.pause(seconds)
        try:
            if not self._use_local():
                self._pause(keys=self.keys[1:], args=[round(seconds * 1_000_000)])
        except redis.RedisError as error:
            self._redis_failed(error)

    def _use_local(self):
        if self._redis_failed_at is None:
            return False
        if time.monotonic() - self._redis_failed_at < LOCAL_AFTER_REDIS_FAILS_SECONDS:
            return True
        self._redis_failed_at = None
        return False

    def _redis_failed(self, error):
        logger.warning(
            "Redis is unreachable for the mail provider's rate (%s); pacing this process alone for %d s.",
            error,
            LOCAL_AFTER_REDIS_FAILS_SECONDS,
        )
        self._redis_failed_at = time.monotonic()


_limiters = {}
_limiters_lock = threading.Lock()


def limiter():
    """The limiter for the configured provider: shared through REDIS_URL when there is one, else this process's."""
    from django.conf import settings

    key = provider_key()
    found = (settings.MAIL_RATE_PER_SECOND, key, settings.REDIS_URL)
    with _limiters_lock:
        if found not in _limiters:
            rate, _, url = found
            _limiters[found] = RedisLimiter(url, key, rate) if url else LocalLimiter(rate)
        return _limiters[found]


def provider_key():
    """The Redis key naming the provider account sent through: the backend, and the SMTP server or the Anymail
    provider's API address and sending domain, so two sites on one Redis share a limit only when they share a
    provider. Hashed: it must not show what it is made of."""
    from django.conf import settings

    anymail = getattr(settings, "ANYMAIL", {})
    parts = [settings.EMAIL_BACKEND, settings.EMAIL_HOST, str(settings.EMAIL_PORT), settings.EMAIL_HOST_USER]
    parts += [f"{name}={anymail[name]}" for name in sorted(anymail) if name.endswith(("_API_URL", "_SENDER_DOMAIN"))]
    return "digest:mailrate:" + hashlib.sha256("\n".join(parts).encode()).hexdigest()[:16]


def slow_down_seconds(error, attempt):
    """How long the provider asked us to wait when `error` is its "slow down" answer (HTTP 429), else None. Its
    Retry-After (seconds or a date) when it sent one, else 1 s doubling with each `attempt` (from 0)."""
    if not isinstance(error, AnymailAPIError) or error.status_code != 429:
        return None
    response = getattr(error, "response", None)
    header = response.headers.get("Retry-After") if response is not None else None
    seconds = _retry_after(header) if header else None
    if seconds is None:
        seconds = 2**attempt
    return min(max(seconds, 0), MAX_PAUSE_SECONDS)


def _retry_after(value):
    value = value.strip()
    if value.isascii() and value.isdigit():
        # More digits than an hour needs would only slow int() down, or make it refuse them.
        return int(value) if len(value) < 10 else MAX_PAUSE_SECONDS
    try:
        moment = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return moment.timestamp() - time.time()
