#!/usr/bin/env python
"""Web load: gunicorn on loopback under wrk, for the sign-up page, the sign-up POST and the one-click unsubscribe.

    python bench/load_bench.py [--database-url postgres://root@127.0.0.1:5432/digest_load_bench]
        [--redis-url redis://127.0.0.1:6379/13] [--workers N] [--web-threads N] [--threads 2] [--connections 16]
        [--duration 15] [--warmup 3] [--runs 1] [--subscribers 10000] [--papers 300]
        [--only get,signup,unsubscribe,static] [--keep-db]

Needs wrk (`apt-get install wrk`), PostgreSQL and Redis. Prints one JSON object on stdout; progress and wrk's own
report go to stderr. Not part of the test run.

The database is a throwaway one this script creates (dropping it first if it exists) and drops at the end
(--keep-db keeps it). It runs the Procfile's `release` line (migrate, collectstatic, embedpapers), loads the curated
sample topics and papers (`loadsample`), adds --papers synthetic papers first seen over the last three days and
--subscribers readers (85 % active, 5 % each paused, pending and unsubscribed; 1-4 topics each, with their consent
records). The Redis database of --redis-url is emptied at the start and the end: give the bench one of its own.

gunicorn is started with the Procfile's `web` line, bound to 127.0.0.1 instead of 0.0.0.0, in production settings:
DEBUG off, a random SECRET_KEY, SITE_URL http://127.0.0.1:PORT, REDIS_URL for the cache, rate limits and the Celery
broker (sign-up emails are queued there, as in production; no worker takes them), mail to Django's dummy backend,
and SUBSCRIBE_RATE_PER_IP / SUBSCRIBE_RATE_PER_ADDRESS raised so one client address can sign up thousands of times.
Workers and threads are the Procfile's defaults (WEB_CONCURRENCY 3, WEB_THREADS 4) unless --workers / --web-threads or
those variables say otherwise; GUNICORN_CMD_ARGS in the environment reaches gunicorn as usual.

For each endpoint, wrk (the scripts in bench/load/) runs --warmup seconds, then --runs measured runs of --duration
seconds with --latency:

- get: GET / (the sign-up page), expecting 200;
- signup: the sign-up POST with the CSRF cookie and token of one GET /, a new address per request, expecting 302;
- unsubscribe: POST List-Unsubscribe=One-Click (RFC 8058) to the signed unsubscribe URLs of distinct active readers
  (the warm-up uses other readers than the measured runs), expecting 200;
- static: GET /subscribe/sent/, a page without queries: what gunicorn, Django's middleware and wrk reach on this
  machine at best, to compare the others with.

Per run: requests/s, latency p50/p75/p90/p99/max in ms, responses by status, non-2xx/3xx responses and socket errors
(connect, read, write, timeout), and the load average before and after. Afterwards the database is checked: the
pending sign-ups the POSTs created, with their consent records and queued confirmation emails, and the readers the
one-click POSTs unsubscribed, with theirs.

wrk is a closed loop: each connection sends its next request when the previous answer arrives, so latency grows with
--connections over what the workers serve at once (mean latency ~ connections / throughput), and wrk shares the
machine's cores with gunicorn and PostgreSQL.
"""

import argparse
import json
import os
import random
import re
import secrets
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from datetime import timedelta
from http.cookiejar import CookieJar
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from bench.processes import stop_group  # noqa: E402

SCRIPTS = ROOT / "bench" / "load"
DEFAULT_URL = "postgres://root@127.0.0.1:5432/digest_load_bench"
DEFAULT_REDIS = "redis://127.0.0.1:6379/13"
ENDPOINTS = ("get", "signup", "unsubscribe", "static")
EXPECTED = {"get": 200, "signup": 302, "unsubscribe": 200, "static": 200}


def log(message):
    print(f"[load_bench] {message}", file=sys.stderr, flush=True)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--database-url", default=DEFAULT_URL)
    parser.add_argument("--redis-url", default=DEFAULT_REDIS, help="a Redis database for the bench alone (emptied)")
    parser.add_argument("--port", type=int, default=0, help="gunicorn's port on 127.0.0.1 (default: a free one)")
    parser.add_argument("--workers", type=int, help="gunicorn workers (default: the Procfile's WEB_CONCURRENCY)")
    parser.add_argument("--web-threads", type=int, help="threads per worker (default: the Procfile's WEB_THREADS)")
    parser.add_argument("--threads", type=int, default=2, help="wrk threads")
    parser.add_argument("--connections", type=int, default=16, help="wrk connections, open at once")
    parser.add_argument("--duration", type=int, default=15, help="seconds of each measured run")
    parser.add_argument("--warmup", type=int, default=3, help="seconds of wrk before the measured runs")
    parser.add_argument("--runs", type=int, default=1, help="measured runs per endpoint")
    parser.add_argument("--subscribers", type=int, default=10_000)
    parser.add_argument("--papers", type=int, default=300, help="synthetic papers besides the 56 sample ones")
    parser.add_argument("--only", default=",".join(ENDPOINTS), help=f"comma-separated: {', '.join(ENDPOINTS)}")
    parser.add_argument("--keep-db", action="store_true", help="keep the database afterwards")
    args = parser.parse_args(argv)
    if not args.database_url.startswith(("postgres://", "postgresql://")):
        parser.error("--database-url must be a postgres:// URL: production runs on PostgreSQL")
    args.only = [name.strip() for name in args.only.split(",") if name.strip()]
    if unknown := set(args.only) - set(ENDPOINTS):
        parser.error(f"--only: unknown endpoints {sorted(unknown)}; choose from {', '.join(ENDPOINTS)}")
    if not shutil.which("wrk"):
        parser.error("wrk is not installed: apt-get install wrk")
    return args


# ---------------------------------------------------------------------------------------------------------------------
# Production environment, database and data


def free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def procfile_line(name):
    for line in (ROOT / "Procfile").read_text().splitlines():
        if line.startswith(f"{name}:"):
            return line.split(":", 1)[1].strip()
    raise SystemExit(f"Procfile has no {name!r} line")


def procfile_default(name):
    """The value of ${name:-N} in the Procfile's web line: the environment's, else N."""
    match = re.search(rf"\$\{{{name}:-(\d+)\}}", procfile_line("web"))
    return int(os.environ.get(name) or (match and match[1]) or 1)


def production_env(args, var_dir):
    """The environment gunicorn and this script's Django run in: production settings, DEBUG off."""
    site_url = f"http://127.0.0.1:{args.port}"
    env = {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
        "DJANGO_SETTINGS_MODULE": "config.settings",
        "DEBUG": "false",
        "SECRET_KEY": secrets.token_urlsafe(50),
        "SITE_URL": site_url,
        "DATABASE_URL": args.database_url,
        "REDIS_URL": args.redis_url,
        "DEFAULT_FROM_EMAIL": "Paper Digest <digest@example.org>",
        "DIGEST_POSTAL_ADDRESS": "Paper Digest\n1 Example Street\n10115 Berlin, Germany",
        "ANYMAIL_WEBHOOK_SECRET": f"{secrets.token_urlsafe(9)}:{secrets.token_urlsafe(24)}",
        "EMAIL_BACKEND": "django.core.mail.backends.dummy.EmailBackend",
        "SUBSCRIBE_RATE_PER_IP": "10000000/h",
        "SUBSCRIBE_RATE_PER_ADDRESS": "10000000/h",
        "VAR_DIR": str(var_dir),
        "STATIC_ROOT": str(var_dir / "static"),
        "PORT": str(args.port),
        "WEB_CONCURRENCY": str(args.workers),
        "WEB_THREADS": str(args.web_threads),
    }
    env.pop("ALLOWED_HOSTS", None)
    return env


def flush_redis(url):
    import redis

    redis.Redis.from_url(url).flushdb()


def stop_and_clean_up(process, args, *, timeout):
    """A bench's end: stop the process group it started (if any), close Django's connections, drop the throwaway
    PostgreSQL database (unless --keep-db) and empty its Redis database."""
    from django.db import connections

    from bench.throwaway_db import drop_database

    if process is not None:
        stop_group(process, timeout=timeout)
    connections.close_all()
    if not args.keep_db:
        drop_database(args.database_url)
    flush_redis(args.redis_url)


def release(env):
    """The Procfile's `release` line: migrate, collectstatic, embedpapers."""
    started = time.perf_counter()
    result = subprocess.run(
        ["sh", "-c", procfile_line("release")], cwd=ROOT, env=env, stdout=subprocess.DEVNULL, check=False
    )
    if result.returncode:
        raise SystemExit(f"release failed (exit {result.returncode})")
    log(f"release (migrate, collectstatic, embedpapers) in {time.perf_counter() - started:.1f} s")


def setup_django(env):
    sys.path.insert(0, str(ROOT))
    os.environ.update(env)
    import django

    django.setup()


def seed(args):
    """Curated sample topics and papers, synthetic papers and readers; returns the ids of the active readers."""
    from django.core.management import call_command
    from django.utils import timezone

    from bench.digest_data import DOMAINS, TOPIC_CONCEPTS, paper_text, synthetic_paper
    from papers.models import Paper, Topic
    from subscriptions.models import Consent, Subscriber

    started = time.perf_counter()
    call_command("loadsample", stdout=open(os.devnull, "w"))  # noqa: SIM115
    rng = random.Random(20260101)
    now = timezone.now()
    papers = []
    for number in range(args.papers):
        main, *extra = rng.sample(TOPIC_CONCEPTS, 3)
        title, abstract = paper_text(rng, main, extra[: rng.randint(1, 2)], rng.choice(DOMAINS))
        seen = now - timedelta(seconds=rng.uniform(60, 3 * 24 * 3600))
        papers.append(synthetic_paper(rng, number, title, abstract, seen, with_code=False))
    Paper.objects.bulk_create(papers, batch_size=500)

    topic_ids = list(Topic.objects.filter(is_active=True).values_list("id", flat=True))
    statuses = [Subscriber.Status.ACTIVE] * 17 + [
        Subscriber.Status.PAUSED,
        Subscriber.Status.PENDING,
        Subscriber.Status.UNSUBSCRIBED,
    ]
    zones = ["UTC", "Europe/Berlin", "America/New_York", "Asia/Tokyo", "Australia/Sydney"]
    readers = []
    for number in range(args.subscribers):
        status = statuses[number % len(statuses)]
        joined = now - timedelta(minutes=5 * (args.subscribers - number) + 60)
        readers.append(
            Subscriber(
                email=f"reader{number}@example.com",
                status=status,
                time_zone=zones[number % len(zones)],
                send_hour=number % 24,
                created_at=joined,
                confirmed_at=None if status == Subscriber.Status.PENDING else joined + timedelta(minutes=10),
                unsubscribed_at=now - timedelta(days=1) if status == Subscriber.Status.UNSUBSCRIBED else None,
            )
        )
    readers = Subscriber.objects.bulk_create(readers, batch_size=2000)
    through = Subscriber.topics.through
    links = [
        through(subscriber_id=reader.id, topic_id=topic_id)
        for reader in readers
        for topic_id in rng.sample(topic_ids, rng.randint(1, min(4, len(topic_ids))))
    ]
    through.objects.bulk_create(links, batch_size=5000)
    consents = [
        Consent(subscriber_id=reader.id, action=Consent.Action.SUBSCRIBE, at=reader.created_at, ip="192.0.2.10")
        for reader in readers
    ] + [
        Consent(subscriber_id=reader.id, action=Consent.Action.CONFIRM, at=reader.confirmed_at, ip="192.0.2.10")
        for reader in readers
        if reader.confirmed_at
    ]
    Consent.objects.bulk_create(consents, batch_size=5000)
    log(
        f"seeded {Topic.objects.count()} topics, {Paper.objects.count()} papers, {len(readers)} readers "
        f"in {time.perf_counter() - started:.1f} s"
    )
    return [reader.id for reader in readers if reader.status == Subscriber.Status.ACTIVE]


def write_unsubscribe_paths(ids, path):
    """The one-click URLs' paths of these readers, one a line, for bench/load/unsubscribe.lua."""
    from urllib.parse import urlsplit

    from subscriptions import tokens
    from subscriptions.models import Subscriber

    readers = Subscriber.objects.in_bulk(ids)
    path.write_text("".join(urlsplit(tokens.unsubscribe_url(readers[id])).path + "\n" for id in ids))


# ---------------------------------------------------------------------------------------------------------------------
# gunicorn and wrk


def start_gunicorn(env, var_dir):
    command = procfile_line("web").replace("0.0.0.0", "127.0.0.1")
    log(f"starting: {command} (WEB_CONCURRENCY={env['WEB_CONCURRENCY']}, WEB_THREADS={env['WEB_THREADS']})")
    process = subprocess.Popen(
        ["sh", "-c", f"exec {command}"],
        cwd=ROOT,
        env=env,
        stdout=open(var_dir / "access.log", "wb"),  # noqa: SIM115
        stderr=open(var_dir / "gunicorn.log", "wb"),  # noqa: SIM115
        start_new_session=True,
    )
    deadline = time.monotonic() + 30
    while True:
        try:
            with urllib.request.urlopen(env["SITE_URL"] + "/", timeout=5) as response:
                if response.status == 200:
                    return process
        except OSError:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            stop_group(process, timeout=30)
            raise SystemExit(f"gunicorn did not answer; see {var_dir / 'gunicorn.log'}")
        time.sleep(0.3)


def csrf_pair(site_url):
    """(csrftoken cookie, the form's csrfmiddlewaretoken) from one GET /, as a browser gets them."""
    jar = CookieJar()
    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))
    with opener.open(site_url + "/", timeout=10) as response:
        page = response.read().decode()
    cookie = next(cookie.value for cookie in jar if cookie.name == "csrftoken")
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page)[1]
    return cookie, token


def wrk(args, script, url, env, seconds):
    command = ["wrk", "-t", str(args.threads), "-c", str(args.connections), "-d", f"{seconds}s", "--latency"]
    command += ["-s", str(SCRIPTS / script), url]
    load_before = os.getloadavg()
    result = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    load_after = os.getloadavg()
    sys.stderr.write(result.stdout + result.stderr)
    line = next((line for line in result.stdout.splitlines() if line.startswith("LOAD_RESULT ")), None)
    if result.returncode or line is None:
        raise SystemExit(f"wrk failed (exit {result.returncode})")
    raw = json.loads(line.removeprefix("LOAD_RESULT "))
    seconds = raw["duration_us"] / 1e6
    latency = {name: round(value / 1000, 2) for name, value in raw["latency_us"].items()}
    errors = raw["errors"]
    return {
        "requests": raw["requests"],
        "seconds": round(seconds, 2),
        "requests_per_second": round(raw["requests"] / seconds, 1),
        "latency_ms": latency,
        "statuses": dict(sorted(raw["statuses"].items())),
        "non_2xx_3xx": errors["status"],
        "socket_errors": {name: errors[name] for name in ("connect", "read", "write", "timeout")},
        "load_average_before": [round(value, 2) for value in load_before],
        "load_average_after": [round(value, 2) for value in load_after],
    }


def measure(args, name, script, url, env, warmup_env=None):
    """A warm-up, then the measured runs; the warm-up runs in `warmup_env` when given."""
    log(f"{name}: warm-up {args.warmup} s")
    wrk(args, script, url, (warmup_env or env) | {"LOAD_RUN": f"{name}w"}, args.warmup)
    runs = []
    for number in range(1, args.runs + 1):
        log(f"{name}: run {number} of {args.runs}, {args.duration} s")
        runs.append(wrk(args, script, url, env | {"LOAD_RUN": f"{name}{number}"}, args.duration))
        log(
            f"{name}: {runs[-1]['requests_per_second']} requests/s, p99 {runs[-1]['latency_ms']['p99']} ms, "
            f"statuses {runs[-1]['statuses']}"
        )
    result = {
        "requests_per_second": round(statistics.median(run["requests_per_second"] for run in runs), 1),
        "p50_ms": statistics.median(run["latency_ms"]["p50"] for run in runs),
        "p90_ms": statistics.median(run["latency_ms"]["p90"] for run in runs),
        "p99_ms": statistics.median(run["latency_ms"]["p99"] for run in runs),
        "expected_status": EXPECTED[name],
        "expected_responses": sum(run["statuses"].get(str(EXPECTED[name]), 0) for run in runs),
        "other_responses": sum(
            count for run in runs for status, count in run["statuses"].items() if status != str(EXPECTED[name])
        ),
        "runs": runs,
    }
    return result


# ---------------------------------------------------------------------------------------------------------------------
# What the requests did

ACCESS_LINE = re.compile(r'"([A-Z]+) (.+?) HTTP/[0-9.]+" (\d{3}) ')  # a path may show "[signed link]"


def settle(access_log, quiet=1.0, limit=30.0):
    """Wait until gunicorn has answered the requests still in flight when wrk stopped (its access log is quiet)."""
    deadline = time.monotonic() + limit
    size = -1
    while size != access_log.stat().st_size and time.monotonic() < deadline:
        size = access_log.stat().st_size
        time.sleep(quiet)


def answered(access_log, method, is_path):
    """{status: count} of the `method` requests whose path `is_path`, from gunicorn's access log: what the server
    answered, including the requests wrk did not wait for. (The log shows signed links as "[signed link]".)"""
    statuses = {}
    for line in access_log.read_text(errors="replace").splitlines():
        match = ACCESS_LINE.search(line)
        if match and match[1] == method and is_path(match[2]):
            statuses[match[3]] = statuses.get(match[3], 0) + 1
    return dict(sorted(statuses.items()))


def signup_check():
    """The pending readers and consent records the sign-up POSTs made, and the confirmation emails queued."""
    from subscriptions.models import Consent, Subscriber

    made = Subscriber.objects.filter(email__startswith="load-")
    return {
        "pending_signups": made.filter(status=Subscriber.Status.PENDING).count(),
        "other_signups": made.exclude(status=Subscriber.Status.PENDING).count(),
        "with_topics": made.filter(topics__isnull=False).distinct().count(),
        "subscribe_consents": Consent.objects.filter(
            subscriber__email__startswith="load-", action=Consent.Action.SUBSCRIBE
        ).count(),
    }


def unsubscribe_check(warmup_ids, measured_ids):
    from subscriptions.models import Consent, Subscriber
    from subscriptions.views import ONE_CLICK_WORDING

    def unsubscribed(ids):
        return Subscriber.objects.filter(id__in=ids, status=Subscriber.Status.UNSUBSCRIBED).count()

    ids = warmup_ids + measured_ids
    return {
        "readers_targeted_warmup": len(warmup_ids),
        "readers_targeted_measured": len(measured_ids),
        "unsubscribed_warmup": unsubscribed(warmup_ids),
        "unsubscribed_measured": unsubscribed(measured_ids),
        "one_click_consents": Consent.objects.filter(
            subscriber_id__in=ids, action=Consent.Action.UNSUBSCRIBE, wording=ONE_CLICK_WORDING
        ).count(),
        "unsubscribed_total": Subscriber.objects.filter(status=Subscriber.Status.UNSUBSCRIBED).count(),
    }


def queued_tasks(redis_url):
    """Messages waiting in Celery's default queue (the sign-up emails; no worker runs during the bench)."""
    import redis

    return redis.Redis.from_url(redis_url).llen("celery")


# ---------------------------------------------------------------------------------------------------------------------


def main():
    args = parse_args()
    args.port = args.port or free_port()
    args.workers = args.workers or procfile_default("WEB_CONCURRENCY")
    args.web_threads = args.web_threads or procfile_default("WEB_THREADS")
    sys.path.insert(0, str(ROOT))
    from bench.throwaway_db import create_database

    var_dir = Path(tempfile.mkdtemp(prefix="load-bench-"))
    env = production_env(args, var_dir)
    create_database(args.database_url, recreate=True)
    flush_redis(args.redis_url)
    gunicorn = None
    try:
        release(env)
        setup_django(env)
        active = seed(args)
        from papers.models import Topic
        from subscriptions.models import Subscriber

        random.Random(7).shuffle(active)
        warmup_ids, measured_ids = active[: len(active) // 10], active[len(active) // 10 :]
        write_unsubscribe_paths(warmup_ids, var_dir / "unsubscribe-warmup.txt")
        write_unsubscribe_paths(measured_ids, var_dir / "unsubscribe.txt")
        readers_before = Subscriber.objects.count()
        from django.db import connection

        connection.close()

        gunicorn = start_gunicorn(env, var_dir)
        site_url = env["SITE_URL"]
        wrk_env = {**os.environ, "LOAD_THREADS": str(args.threads), "LOAD_ORIGIN": site_url}
        endpoints = {}
        checks = {}
        if "get" in args.only:
            endpoints["get"] = measure(args, "get", "get.lua", site_url + "/", wrk_env)
        if "static" in args.only:
            endpoints["static"] = measure(args, "static", "get.lua", site_url + "/subscribe/sent/", wrk_env)
        if "signup" in args.only:
            cookie, token = csrf_pair(site_url)
            topics = ",".join(
                str(id) for id in Topic.objects.order_by("display_order").values_list("id", flat=True)[:2]
            )
            signup_env = wrk_env | {"LOAD_CSRF_COOKIE": cookie, "LOAD_CSRF_TOKEN": token, "LOAD_TOPICS": topics}
            endpoints["signup"] = measure(args, "signup", "signup.lua", site_url + "/", signup_env)
            settle(var_dir / "access.log")
            statuses = answered(var_dir / "access.log", "POST", lambda path: path == "/")
            checks["signup"] = {"server_answered": statuses} | signup_check()
            checks["signup"]["confirmation_emails_queued"] = queued_tasks(args.redis_url)
        if "unsubscribe" in args.only:
            log(f"unsubscribe: warm-up on {len(warmup_ids)} readers, measured runs on {len(measured_ids)} others")
            warm_env = wrk_env | {"LOAD_TOKENS_FILE": str(var_dir / "unsubscribe-warmup.txt")}
            measured_env = wrk_env | {"LOAD_TOKENS_FILE": str(var_dir / "unsubscribe.txt")}
            endpoints["unsubscribe"] = measure(args, "unsubscribe", "unsubscribe.lua", site_url, measured_env, warm_env)
            settle(var_dir / "access.log")
            statuses = answered(var_dir / "access.log", "POST", lambda path: path.startswith("/unsubscribe/"))
            checks["unsubscribe"] = {"server_answered": statuses}
            checks["unsubscribe"] |= unsubscribe_check(warmup_ids, measured_ids)
        checks["readers_before"] = readers_before
        checks["readers_after"] = Subscriber.objects.count()
    finally:
        stop_and_clean_up(gunicorn, args, timeout=30)
    result = {
        "cores": os.cpu_count(),
        "gunicorn_workers": args.workers,
        "gunicorn_threads": args.web_threads,
        "gunicorn_command": procfile_line("web").replace("0.0.0.0", "127.0.0.1"),
        "gunicorn_cmd_args": os.environ.get("GUNICORN_CMD_ARGS", ""),
        "wrk": {"threads": args.threads, "connections": args.connections, "duration_s": args.duration},
        "data": {"papers": args.papers, "subscribers": args.subscribers},
        "endpoints": endpoints,
        "checks": checks,
        "load_average_end": [round(value, 2) for value in os.getloadavg()],
    }
    print(json.dumps(result, indent=2))
    shutil.rmtree(var_dir, ignore_errors=True)


if __name__ == "__main__":
    main()
