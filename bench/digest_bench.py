#!/usr/bin/env python
"""Digest sending throughput: plan and send one day's digests to N synthetic readers, as `senddigests` does.

    python bench/digest_bench.py --subscribers N [--backend test|smtp] [--papers 1000] [--topics 50]
        [--per-email 10] [--database-url URL] [--skip-baselines] [--baseline-sample 2000] [--profile PATH]
        [--smtp-server thread|process] [--time-limit SECONDS] [--memory-report] [--topic-skew S] [--keep-debug]
        [--feedback-share X]

Prints one JSON object on stdout; progress goes to stderr. Every run uses a fresh throwaway database: a new SQLite file
in a temporary directory, or, with --database-url postgres://…/NAME, a database NAME this script creates (if it does not
exist) and drops afterwards. The data (topics named after vocabulary concepts, papers written from the same vocabulary,
N active readers in UTC with send hour 0 and 1-5 topics each) is generated in a child process, so the peak RSS reported
is the sending process's own, not the data generator's.

The product path is timed exactly as `senddigests` runs it: recover, start_run, plan_deliveries(now, run,
ignore_hour=True), one get_pool(now) and one DigestRenderer(), then send_deliveries per chunk of DIGEST_CHUNK_SIZE.

Backends: `test` is Anymail's test backend (the ESP path without the network: it builds the provider's payload, as an
HTTP provider API takes it, and no MIME), counted and emptied per send; `mime` is
bench.digest_backends.CountingBackend, which serialises each message (message().as_bytes(), what an SMTP or raw-MIME
backend pays) and discards it; `smtp` is Django's SMTP backend against an aiosmtpd server running in a thread of this
process on 127.0.0.1 (it shares the GIL and the cores with the code measured), or with --smtp-server process in a
child process.

DEBUG=true is set only for the development defaults (SECRET_KEY, SITE_URL, ...); it is switched off again before the
run, as in production, so per-query logging is not measured (--keep-debug leaves it on). --time-limit stops a run that
is too slow and reports what it sent (truncated: true); --profile writes cProfile stats and adds the top functions to
the JSON; --memory-report adds the size of each per-run cache of the renderer and the pool.

Baselines on a sample of the same readers, after the product run: `naive` renders each whole digest with the same
templates and runs premailer over the whole HTML, per reader, no caching; `raw` sends messages prebuilt (untimed) by the
product renderer through one connection's send_messages(list): the backend's ceiling.
"""

import argparse
import json
import os
import platform
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parent.parent
TEST_BACKEND = "bench.digest_backends.CountingEspBackend"
MIME_BACKEND = "bench.digest_backends.CountingBackend"
SMTP_BACKEND = "django.core.mail.backends.smtp.EmailBackend"


def log(message):
    print(f"[digest_bench] {message}", file=sys.stderr, flush=True)


def rss_mb():
    """Current resident set size of this process, in MB."""
    with open("/proc/self/statm") as statm:
        pages = int(statm.read().split()[1])
    return round(pages * os.sysconf("SC_PAGE_SIZE") / 2**20, 1)


def peak_rss_mb():
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)  # kB on Linux


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--subscribers", type=int, required=True)
    parser.add_argument(
        "--backend", choices=["test", "mime", "smtp", "mailgun", "postmark"], default="test",
        help="mailgun, postmark: Anymail's real backend over HTTP to provider_bench's loopback API for that provider "
        "(no latency, its own process), to profile the provider path",
    )  # fmt: skip
    parser.add_argument(
        "--processes", type=int, default=1, help="send as `senddigests --processes N` does (forked processes)"
    )
    parser.add_argument("--papers", type=int, default=1000)
    parser.add_argument("--topics", type=int, default=50)
    parser.add_argument("--per-email", type=int, default=10)
    parser.add_argument(
        "--smtp-server", choices=["thread", "process"], default="thread",
        help="run aiosmtpd in a thread of this process (default, shares the GIL) or in a child process",
    )  # fmt: skip
    parser.add_argument("--database-url", help="postgres://user@host:port/NAME (created if missing, then dropped)")
    parser.add_argument("--skip-baselines", action="store_true")
    parser.add_argument("--baseline-sample", type=int, default=2000, help="readers in each baseline (default 2000)")
    parser.add_argument("--seed", type=int, default=20260101)
    parser.add_argument(
        "--topic-skew", type=float, default=0.0, help="Zipf exponent for topic popularity (0: uniform, as specified)"
    )
    parser.add_argument(
        "--feedback-share", type=float, default=0.0,
        help="share of readers with 8 feedback clicks (4 more, 4 less), enough for a personal model (default 0)",
    )  # fmt: skip
    parser.add_argument("--profile", metavar="PATH", help="cProfile the product run; write pstats to PATH")
    parser.add_argument("--profile-top", type=int, default=15)
    parser.add_argument(
        "--time-limit", type=float, metavar="SECONDS",
        help="stop sending after this many seconds of the product run and report the partial run (truncated: true)",
    )  # fmt: skip
    parser.add_argument(
        "--memory-report", action="store_true",
        help="after the run, report the approximate size of the renderer's and the pool's caches",
    )  # fmt: skip
    parser.add_argument("--keep-debug", action="store_true", help="leave DEBUG on (per-query logging) for the run")
    parser.add_argument("--recreate-db", action="store_true", help="drop the PostgreSQL database first if it exists")
    parser.add_argument("--keep-db", action="store_true", help="keep the database (and SQLite file) afterwards")
    parser.add_argument("--generate-only", action="store_true", help=argparse.SUPPRESS)  # the child process
    return parser.parse_args(argv)


# ---------------------------------------------------------------------------------------------------------------------
# Databases


def prepare_postgres(url, recreate):
    """Create the database; True if this script created it (and so drops it afterwards)."""
    sys.path.insert(0, str(ROOT))
    from bench.throwaway_db import create_database

    if not create_database(url, recreate=recreate):
        raise SystemExit(
            f"Database {urlsplit(url).path.lstrip('/')!r} already exists; the benchmark needs a fresh one. "
            "Pass --recreate-db to drop and recreate it, or name another database."
        )
    return True


def drop_postgres(url):
    sys.path.insert(0, str(ROOT))
    from bench.throwaway_db import drop_database

    drop_database(url)


def setup_django(database_url, email_env, *, keep_debug=True):
    sys.path.insert(0, str(ROOT))
    os.environ["DJANGO_SETTINGS_MODULE"] = "config.settings"
    os.environ["DEBUG"] = "true"
    os.environ["DATABASE_URL"] = database_url
    os.environ.setdefault("LOG_LEVEL", "WARNING")
    os.environ.update(email_env)
    import django

    django.setup()
    from django.conf import settings

    if not keep_debug:
        # DEBUG=true is only for the development defaults (SECRET_KEY, SITE_URL, ...). Production runs the job with
        # DEBUG off, so switch off what DEBUG costs per query (the query log) and per template (debug info) before any
        # query or template runs.
        settings.DEBUG = False
    return settings


# ---------------------------------------------------------------------------------------------------------------------
# The child: migrate and generate


def generate_main(args):
    setup_django(os.environ["DATABASE_URL"], {})
    from django.core.management import call_command

    from bench.digest_data import generate

    started = time.perf_counter()
    call_command("migrate", verbosity=0, interactive=False)
    log(f"migrated in {time.perf_counter() - started:.1f} s")
    stats = generate(
        papers=args.papers,
        topics=args.topics,
        subscribers=args.subscribers,
        per_email=args.per_email,
        seed=args.seed,
        topic_skew=args.topic_skew,
        feedback_share=args.feedback_share,
        log=log,
    )
    stats["migrate_and_generate_seconds"] = round(time.perf_counter() - started, 2)
    print(json.dumps(stats))


def run_generator(args, env):
    command = [sys.executable, str(Path(__file__).resolve()), "--generate-only", "--subscribers", str(args.subscribers)]
    command += ["--papers", str(args.papers), "--topics", str(args.topics), "--per-email", str(args.per_email)]
    command += ["--seed", str(args.seed), "--topic-skew", str(args.topic_skew)]
    command += ["--feedback-share", str(args.feedback_share)]
    result = subprocess.run(command, env=env, stdout=subprocess.PIPE, text=True, check=False)
    if result.returncode:
        raise SystemExit(f"data generation failed (exit {result.returncode})")
    return json.loads(result.stdout.strip().splitlines()[-1])


# ---------------------------------------------------------------------------------------------------------------------
# Measuring


class QueryCounter:
    def __init__(self):
        self.count = 0

    def __call__(self, execute, sql, params, many, context):
        self.count += 1
        return execute(sql, params, many, context)


def product_run(args, now):
    """The senddigests path, timed phase by phase. Returns (result dict, renderer, pool)."""
    from django.conf import settings
    from django.db import connection

    from digest import compose, planning, recovery, sending
    from digest.rendering import DigestRenderer

    if args.processes > 1:
        return parallel_run(args, now)
    queries = QueryCounter()
    outcome = sending.Outcome()
    with connection.execute_wrapper(queries):
        started = time.perf_counter()
        recovery.recover(now)
        run = planning.start_run(now)
        ids = planning.plan_deliveries(now, run, ignore_hour=True)
        planned = time.perf_counter()
        rss_after_plan = rss_mb()
        log(f"planned {len(ids)} deliveries in {planned - started:.2f} s")
        pool = compose.get_pool(now)
        renderer = DigestRenderer()
        pooled = time.perf_counter()
        cpu_before_sending = time.process_time()
        log(f"pool of {len(pool)} papers loaded and indexed in {pooled - planned:.2f} s")
        chunks = planning.chunks(ids)
        report_every = max(1, len(chunks) // 10)
        done = 0
        truncated = False
        for number, chunk in enumerate(chunks, start=1):
            outcome.add(sending.send_deliveries(chunk, run_id=run.id, now=now, pool=pool, renderer=renderer))
            done += len(chunk)
            if args.time_limit and time.perf_counter() - started > args.time_limit and number < len(chunks):
                truncated = True
                log(f"time limit of {args.time_limit} s reached after {done} of {len(ids)} digests; stopping")
            if truncated or number % report_every == 0 or number == len(chunks):
                elapsed = time.perf_counter() - pooled
                log(
                    f"sent {done}/{len(ids)} in {elapsed:.1f} s ({done / elapsed:.0f}/s), rss {rss_mb()} MB, "
                    f"caches {cache_entries(renderer, pool)}"
                )
            if truncated:
                break
        finished = time.perf_counter()
        sending_cpu = time.process_time() - cpu_before_sending
    total = finished - started
    digests = done
    result = {
        "digests": digests,
        "planned": len(ids),
        "truncated": truncated,
        "seconds": round(total, 3),
        "digests_per_second": round(digests / total, 1) if total else None,
        "plan_seconds": round(planned - started, 3),
        "pool_seconds": round(pooled - planned, 3),
        "send_seconds": round(finished - pooled, 3),
        "send_digests_per_second": round(digests / (finished - pooled), 1) if finished > pooled else None,
        # This process's CPU while sending (every thread; not the database's, nor a mail end in another process).
        "send_cpu_ms_per_digest": round(sending_cpu * 1000 / digests, 2) if digests else None,
        "queries": queries.count,
        "queries_per_digest": round(queries.count / digests, 3) if digests else None,
        "sent": outcome.sent,
        "failed": outcome.failed,
        "skipped": outcome.skipped,
        "retry_pending": len(outcome.retry_ids),
        "chunk_size": settings.DIGEST_CHUNK_SIZE,
        "chunks": len(chunks),
        "rss_after_plan_mb": rss_after_plan,
        "distinct_cards_rendered": len(renderer._html_cards),
        "distinct_shells_rendered": len(renderer._shells),
        "cache_entries": cache_entries(renderer, pool),
        "run_id": run.id,
    }
    return result, renderer, pool


def parallel_run(args, now):
    """The senddigests --processes N path (digest.jobs.run_digests): plan here, send in N forked processes."""
    import resource

    from django.conf import settings

    from digest import compose, jobs
    from digest.rendering import DigestRenderer

    started = time.perf_counter()
    run, ids, outcome, _recovered = jobs.run_digests(now, ignore_hour=True, processes=args.processes)
    total = time.perf_counter() - started
    log(f"sent {len(ids)} in {total:.1f} s ({len(ids) / total:.0f}/s) with {args.processes} processes")
    result = {
        "digests": len(ids),
        "planned": len(ids),
        "truncated": False,
        "processes": args.processes,
        "seconds": round(total, 3),
        "digests_per_second": round(len(ids) / total, 1) if total else None,
        "queries_per_digest": None,  # not counted across processes; see a --processes 1 run
        "sent": outcome.sent,
        "failed": outcome.failed,
        "skipped": outcome.skipped,
        "retry_pending": len(outcome.retry_ids),
        "chunk_size": settings.DIGEST_CHUNK_SIZE,
        "peak_rss_children_mb": round(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024, 1),
        "run_id": run.id,
    }
    return result, DigestRenderer(), compose.get_pool(now)


def cache_entries(renderer, pool):
    """Entries in each per-run cache of the renderer and the pool (whatever they are called in this version)."""
    entries = {f"renderer.{name}": len(value) for name, value in vars(renderer).items() if isinstance(value, dict)}
    entries.update(
        {f"pool.{name}": len(value) for name, value in vars(pool).items() if name.startswith("_") and value is not None}
    )
    return entries


def baseline_batch(readers, history, pool, now, renderer=None):
    """A compose.Batch for the baseline readers, with the History of a first digest instead of their real one."""
    from digest import compose

    batch = compose.Batch([reader.id for reader in readers], now, pool=pool, renderer=renderer)
    batch.history = history
    return batch


def build_message(subscriber, day, *, batch):
    """The product's message for one reader (None when it would skip)."""
    picks, _reason = batch.choose(subscriber)
    if picks is None:
        return None
    return batch.build(subscriber, picks, day)


def baseline_readers(sample_size, now, pool):
    """(subscribers, their compose.Batch with the History of a first digest) for the first readers by id."""
    from datetime import timedelta

    from django.conf import settings

    from digest.selection import History
    from subscriptions.models import Subscriber

    readers = list(Subscriber.objects.order_by("id")[:sample_size])
    ids = [reader.id for reader in readers]
    # As before the product run sent them anything: the same papers are eligible, nothing excluded.
    first_since = now - timedelta(hours=settings.DIGEST_FIRST_WINDOW_HOURS)
    history = History(since=dict.fromkeys(ids, first_since), sent={})
    return readers, baseline_batch(readers, history, pool, now)


def naive_message(subscriber, picks, *, day, labels, css, responsive_css):
    """One reader's digest the simple way: the same templates, whole email rendered and premailer-inlined per reader."""
    from email.utils import make_msgid

    from django.conf import settings
    from django.core.mail import EmailMultiAlternatives
    from django.template.loader import render_to_string
    from django.utils.safestring import mark_safe
    from django.utils.text import Truncator, wrap

    from digest import rendering
    from subscriptions import emails, tokens

    host = emails.site_host()
    cards_html, cards_text = [], []
    for position, pick in enumerate(picks, start=1):
        context = {
            "paper": pick.paper,
            "snippet": Truncator(" ".join(pick.paper.abstract.split())).chars(rendering.SNIPPET_LENGTH),
            "topics": pick.labels,
            "position": position,
        }
        why = rendering.why_items(pick.labels, pick.reasons)
        cards_html.append(render_to_string("emails/digest-paper.html", {**context, "why": why}))
        why_line = rendering.why_line(pick.labels, pick.reasons)
        cards_text.append(render_to_string("emails/digest-paper.txt", {**context, "why_line": why_line}).strip())
    unsubscribe = tokens.unsubscribe_url(subscriber)
    manage = tokens.manage_url(subscriber)
    date_label, date_label_short = rendering.date_labels(day)
    count = len(picks)
    top_title = picks[0].paper.title if picks else ""
    plural = "" if count == 1 else "s"
    # The variables the digest templates use (both before and after the shell became one per date: unused ones are
    # harmless), with this reader's real values instead of placeholders.
    context = {
        "site_name": settings.DIGEST_SITE_NAME,
        "site_url": settings.SITE_URL,
        "date_label": date_label,
        "date_label_short": date_label_short,
        "count": count,
        "top_title": top_title,
        "intro": f"{count} new paper{plural} matching your topics",
        "why": f"You subscribed at {host} to: {', '.join(labels) or 'no topics yet'}.",
        "manage_url": manage,
        "unsubscribe_url": unsubscribe,
        "email": subscriber.email,
        "postal_address": settings.DIGEST_POSTAL_ADDRESS,
        "responsive_css": mark_safe(responsive_css),
        "cards_html": mark_safe("".join(cards_html)),
        "cards_text": "\n\n".join(cards_text),
    }
    subject = emails.one_line(render_to_string("emails/digest-subject.txt", context))
    context["subject"] = subject
    context["preheader"] = f"{count} new paper{plural}, led by {top_title}"
    html = emails.inline_css(render_to_string("emails/digest-body.html", context), css, keep_style_tags=True)
    text = render_to_string("emails/digest-body.txt", {**context, "why": wrap(context["why"], 72)})
    message = EmailMultiAlternatives(
        subject,
        text,
        to=[subscriber.email],
        headers={
            "List-Unsubscribe": f"<{unsubscribe}>",
            "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
            "List-Id": f"{emails.one_line(settings.DIGEST_SITE_NAME)} <digest.{host}>",
            "Message-ID": make_msgid(domain=host),
        },
    )
    message.attach_alternative(html, "text/html")
    return message


def naive_baseline(readers, batch, now, sink):
    from django.core.mail import get_connection

    from subscriptions import emails

    css, responsive_css = emails.stylesheets()
    day = now.date()
    sink.reset()
    connection = get_connection()
    started = time.perf_counter()
    connection.open()
    sent = skipped = 0
    try:
        for subscriber in readers:
            picks = batch.pick(subscriber)
            if not picks:
                skipped += 1
                continue
            labels = batch.labels_for(subscriber)
            message = naive_message(subscriber, picks, day=day, labels=labels, css=css, responsive_css=responsive_css)
            connection.send_messages([message])
            sent += 1
    finally:
        connection.close()
    seconds = time.perf_counter() - started
    received = sink.snapshot()
    return {
        "readers": len(readers),
        "sent": sent,
        "skipped": skipped,
        "received": received["messages"],
        "seconds": round(seconds, 3),
        "digests_per_second": round(len(readers) / seconds, 1),
        "avg_message_bytes": round(received["bytes"] / received["messages"]) if received["messages"] else None,
    }


def raw_baseline(readers, batch, now, sink):
    from django.core.mail import get_connection

    built = time.perf_counter()
    messages = []
    for subscriber in readers:
        message = build_message(subscriber, now.date(), batch=batch)
        if message is not None:
            messages.append(message)
    build_seconds = time.perf_counter() - built
    sink.reset()
    started = time.perf_counter()
    connection = get_connection()
    sent = connection.send_messages(messages)
    seconds = time.perf_counter() - started
    received = sink.snapshot()
    return {
        "messages": len(messages),
        "sent": sent,
        "received": received["messages"],
        "seconds": round(seconds, 3),
        "messages_per_second": round(len(messages) / seconds, 1) if seconds else None,
        "untimed_build_seconds": round(build_seconds, 3),
        "avg_message_bytes": round(received["bytes"] / received["messages"]) if received["messages"] else None,
    }


class _Sink:
    """What the active backend received, whichever backend it is."""

    def __init__(self, smtp_handler):
        from bench.digest_backends import Counter

        self.handler = smtp_handler
        self.counter = Counter

    def reset(self):
        (self.handler or self.counter).reset()

    def snapshot(self):
        return (self.handler or self.counter).snapshot()


class _MailEndSink:
    """What provider_bench's mail end (a child process) accepted, in the sink's terms."""

    def __init__(self, mail_end):
        self.mail_end = mail_end
        self.offset = {"messages": 0, "bytes": 0}

    def _totals(self):
        stats = self.mail_end.stats()
        return {"messages": stats["accepted"], "bytes": stats["accepted"] * (stats["avg_message_bytes"] or 0)}

    def reset(self):
        self.offset = self._totals()

    def snapshot(self):
        totals = self._totals()
        return {name: totals[name] - self.offset[name] for name in totals}


def profile_sending_threads(profilers):
    """Profile each sending thread (digest.senders) too: cProfile sees only the thread that enables it."""
    import cProfile

    from digest import senders

    run = senders.Senders._run

    def profiled_run(self, connection):
        profiler = cProfile.Profile()
        profilers.append(profiler)
        profiler.runcall(run, self, connection)

    senders.Senders._run = profiled_run


def dump_thread_profiles(profilers, path, top):
    import io
    import pstats

    if not profilers:
        return
    stream = io.StringIO()
    stats = pstats.Stats(*profilers, stream=stream)
    stats.dump_stats(path)
    stats.sort_stats("tottime").print_stats(top)
    log(f"sending threads' profile ({len(profilers)} threads, by own time):\n" + stream.getvalue())


def profile_rows(profiler, path, top):
    import io
    import pstats

    profiler.dump_stats(path)
    stream = io.StringIO()
    stats = pstats.Stats(profiler, stream=stream).sort_stats("cumulative")
    stats.print_stats(top)
    log("profile (cumulative):\n" + stream.getvalue())
    rows = []
    for (filename, line, name), (_cc, calls, tottime, cumtime, _callers) in sorted(
        stats.stats.items(), key=lambda item: item[1][3], reverse=True
    )[:top]:
        where = filename.replace(str(ROOT) + "/", "")
        rows.append(
            {
                "function": f"{where}:{line}({name})",
                "ncalls": calls,
                "tottime": round(tottime, 3),
                "cumtime": round(cumtime, 3),
            }
        )
    tottime_rows = []
    for (filename, line, name), (_cc, calls, tottime, _cumtime, _callers) in sorted(
        stats.stats.items(), key=lambda item: item[1][2], reverse=True
    )[:top]:
        where = filename.replace(str(ROOT) + "/", "")
        tottime_rows.append({"function": f"{where}:{line}({name})", "ncalls": calls, "tottime": round(tottime, 3)})
    return rows, tottime_rows


def deep_size(value, seen=None):
    """Approximate bytes held by str/bytes/numbers and containers of them (model instances count 0: shared)."""
    seen = set() if seen is None else seen
    if id(value) in seen:
        return 0
    seen.add(id(value))
    if isinstance(value, (str, bytes, int, float, bool)) or value is None:
        return sys.getsizeof(value)
    if isinstance(value, dict):
        return sys.getsizeof(value) + sum(deep_size(k, seen) + deep_size(v, seen) for k, v in value.items())
    if isinstance(value, (tuple, list, set, frozenset)):
        return sys.getsizeof(value) + sum(deep_size(item, seen) for item in value)
    if hasattr(value, "__dataclass_fields__"):
        return sys.getsizeof(value) + sum(deep_size(getattr(value, name), seen) for name in value.__dataclass_fields__)
    return 0


def memory_report(renderer, pool):
    """MB held by each per-run cache: what grows with the number of readers."""
    caches = {f"renderer.{name}": value for name, value in vars(renderer).items() if isinstance(value, dict)}
    # The pool's own caches (dicts named with "_"; the week's trending is None until a weekly reader asks for it).
    private = {name: value for name, value in vars(pool).items() if name.startswith("_")}
    caches.update({f"pool.{name}": value for name, value in private.items() if isinstance(value, dict)})
    # The renderer's per-process stores (inlined cards and shells), in versions that have them.
    from digest import rendering

    for name in ("_CARDS", "_SHELLS"):
        if hasattr(rendering, name):
            caches[f"process.{name}"] = dict(getattr(rendering, name)._values)
    report = {}
    for name, value in caches.items():
        report[name] = {"entries": len(value), "mb": round(deep_size(value) / 2**20, 1)}
    return report


def git_state():
    """(HEAD commit, product files with uncommitted changes): which code was measured. Read-only git calls."""
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=True
        ).stdout.strip()
        status = subprocess.run(
            ["git", "status", "--porcelain", "--", "digest", "subscriptions", "templates"],
            cwd=ROOT, capture_output=True, text=True, check=True,
        ).stdout  # fmt: skip
    except (OSError, subprocess.CalledProcessError):
        return None, None
    return head, [line[3:] for line in status.splitlines()]


def targets(args, result):
    """The issue's targets this one run can judge; the others need two runs (see the report)."""
    checks = {}
    rate = result["digests_per_second"]
    if args.backend == "test":
        checks["rate_ge_2000_per_s_test_backend"] = {
            "value": rate, "met": rate is not None and rate >= 2000,
            "applies": args.subscribers >= 100_000,
        }  # fmt: skip
    if args.subscribers >= 100_000:
        checks["peak_rss_le_300_mb"] = {"value": result["peak_rss_mb"], "met": result["peak_rss_mb"] <= 300}
    if result.get("ratio_vs_naive") is not None:
        checks["ge_10x_naive"] = {"value": result["ratio_vs_naive"], "met": result["ratio_vs_naive"] >= 10}
    if args.backend == "smtp" and result.get("ratio_vs_raw") is not None:
        checks["ge_80pct_raw_smtp"] = {"value": result["ratio_vs_raw"], "met": result["ratio_vs_raw"] >= 0.8}
    if result.get("truncated"):
        for check in checks.values():
            check["note"] = "partial run (time limit): the figure covers only the digests sent before it"
    return checks


def _terminate(signum, _frame):
    # Let the finally blocks run (drop the PostgreSQL database, remove the temporary directory, stop the server).
    raise SystemExit(128 + signum)


def main():
    signal.signal(signal.SIGTERM, _terminate)
    args = parse_args()
    if args.generate_only:
        generate_main(args)
        return

    code = git_state()  # before the run: other people may commit meanwhile
    temp_dir = Path(tempfile.mkdtemp(prefix="digest_bench_"))
    created_pg = False
    controller = handler = None
    email_env = {"EMAIL_BACKEND": MIME_BACKEND if args.backend == "mime" else TEST_BACKEND}
    if args.database_url:
        database_url = args.database_url
        if not database_url.startswith(("postgres://", "postgresql://")):
            raise SystemExit("--database-url: only postgres:// URLs are supported (SQLite is the default)")
        created_pg = prepare_postgres(database_url, args.recreate_db)
    else:
        database_url = f"sqlite:///{temp_dir / 'bench.sqlite3'}"
    try:
        if args.backend == "smtp":
            sys.path.insert(0, str(ROOT))
            from bench.digest_backends import start_smtp_process, start_smtp_server

            controller, handler = start_smtp_server() if args.smtp_server == "thread" else start_smtp_process()
            email_env = {
                "EMAIL_BACKEND": SMTP_BACKEND, "EMAIL_HOST": "127.0.0.1", "EMAIL_PORT": str(controller.port),
                "EMAIL_USE_TLS": "false", "EMAIL_USE_SSL": "false", "EMAIL_HOST_USER": "", "EMAIL_HOST_PASSWORD": "",
            }  # fmt: skip
            log(f"aiosmtpd listening on 127.0.0.1:{controller.port} ({args.smtp_server})")
        elif args.backend in ("mailgun", "postmark"):
            sys.path.insert(0, str(ROOT))
            from bench.provider_bench import start_mail_end

            mail_end, email_env = start_mail_end(argparse.Namespace(path="http", latency_ms=0, provider=args.backend))
            email_env["NO_PROXY"] = "127.0.0.1,localhost"
            handler = _MailEndSink(mail_end)
            log(f"loopback {args.backend} API on 127.0.0.1:{mail_end.port} (child process)")

        env = dict(os.environ, DATABASE_URL=database_url, DEBUG="true", DJANGO_SETTINGS_MODULE="config.settings")
        env.setdefault("LOG_LEVEL", "WARNING")
        env["VAR_DIR"] = str(temp_dir / "var")
        os.environ["VAR_DIR"] = env["VAR_DIR"]
        log(f"generating {args.subscribers} readers, {args.papers} papers, {args.topics} topics on {database_url}")
        data = run_generator(args, env)

        settings = setup_django(database_url, email_env, keep_debug=args.keep_debug)
        import django
        from django.db import connection
        from django.utils import timezone

        sink = _Sink(handler)
        sink.reset()
        rss_before = rss_mb()
        peak_before = peak_rss_mb()
        now = timezone.now()
        profiler = None
        thread_profilers = []
        if args.profile:
            import cProfile

            profile_sending_threads(thread_profilers)
            profiler = cProfile.Profile()
            profiler.enable()
        result, renderer, pool = product_run(args, now)
        if profiler:
            profiler.disable()
        peak = peak_rss_mb()
        rss_after = rss_mb()
        received = sink.snapshot()

        from django.db.models import Count

        from digest.models import Delivery

        run_rows = Delivery.objects.filter(run_id=result.pop("run_id"))
        statuses = dict(run_rows.order_by().values_list("status").annotate(n=Count("id")))
        output = {
            "backend": {
                "test": TEST_BACKEND,
                "mime": MIME_BACKEND,
                "mailgun": "anymail.backends.mailgun.EmailBackend -> loopback Mailgun API (own process, no latency)",
                "postmark": "anymail.backends.postmark.EmailBackend -> loopback Postmark API (own process, no latency)",
                "smtp": f"{SMTP_BACKEND} -> aiosmtpd on 127.0.0.1 "
                + ("(thread of this process, shares its GIL)" if args.smtp_server == "thread" else "(child process)"),
            }[args.backend],
            "database": connection.vendor,
            "database_version": connection.Database.sqlite_version
            if connection.vendor == "sqlite"
            else connection.pg_version,
            "subscribers": args.subscribers,
            "topics": data["topics"],
            "papers": data["papers"],
            "pool_papers": len(pool),
            "per_email": args.per_email,
            "topic_skew": args.topic_skew,
            "readers_with_feedback": data.get("readers_with_feedback", 0),
            "matches_per_topic": data["matches_per_topic"],
            **result,
            "rss_before_mb": rss_before,
            "peak_rss_before_run_mb": peak_before,
            "peak_rss_mb": peak,
            "rss_after_mb": rss_after,
            "backend_received": received["messages"],
            "avg_message_bytes": round(received["bytes"] / received["messages"]) if received["messages"] else None,
            "delivery_rows": statuses,
            "debug_query_log": bool(settings.DEBUG),
            "profiled": bool(args.profile),
            "python": platform.python_version(),
            "django": django.get_version(),
            "cpus": os.cpu_count(),
            "git_head": code[0],
            "product_files_modified": code[1],
            "data_generation_seconds": data["migrate_and_generate_seconds"],
        }
        if "seconds" in received:
            output["backend_seconds"] = round(received["seconds"], 3)
        if received["messages"] != result["sent"]:
            log(f"WARNING: backend received {received['messages']} messages but the outcome says {result['sent']} sent")
        if profiler:
            output["profile_top_cumulative"], output["profile_top_tottime"] = profile_rows(
                profiler, args.profile, args.profile_top
            )
            dump_thread_profiles(thread_profilers, f"{args.profile}.threads", args.profile_top)
            output["profile_path"] = args.profile

        if args.memory_report:
            output["cache_sizes"] = memory_report(renderer, pool)
            log(f"cache sizes: {output['cache_sizes']}")

        if not args.skip_baselines:
            sample = min(args.subscribers, args.baseline_sample)
            readers, batch = baseline_readers(sample, now, pool)
            log(f"naive baseline on {sample} readers")
            naive = naive_baseline(readers, batch, now, sink)
            log(f"naive: {naive['digests_per_second']}/s")
            log(f"raw baseline on {sample} readers")
            raw = raw_baseline(readers, batch, now, sink)
            log(f"raw: {raw['messages_per_second']}/s")
            output["baseline_sample"] = sample
            output["naive"] = naive
            output["raw"] = raw
            rate = output["digests_per_second"]
            output["ratio_vs_naive"] = round(rate / naive["digests_per_second"], 2)
            output["ratio_vs_raw"] = round(rate / raw["messages_per_second"], 3) if raw["messages_per_second"] else None
            output["peak_rss_after_baselines_mb"] = peak_rss_mb()
        output["targets"] = targets(args, output)
        print(json.dumps(output, indent=2))
    finally:
        if controller is not None:
            controller.stop()
        if isinstance(handler, _MailEndSink):
            handler.mail_end.stop()
        if "django" in sys.modules:
            from django.db import connections

            connections.close_all()
        if created_pg and not args.keep_db:
            drop_postgres(args.database_url)
        if args.keep_db:
            log(f"kept {temp_dir}")
        else:
            shutil.rmtree(temp_dir, ignore_errors=True)


if __name__ == "__main__":
    main()
