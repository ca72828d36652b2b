#!/usr/bin/env python
"""Sending through a provider: the Procfile's worker sends one day's digests to a loopback provider API or SMTP relay.

    python bench/provider_bench.py [--path http|smtp] [--provider mailgun|postmark] [--readers 2000]
        [--latency-ms 150] [--smtp-delay-ms 50]
        [--worker-args "--concurrency=16"] [--chunk-size N] [--database-url postgres://…/NAME]
        [--redis-url redis://127.0.0.1:6379/6] [--timeout SECONDS] [--keep-db]

Needs PostgreSQL and Redis. Prints one JSON object on stdout; progress goes to stderr. Not part of the test run.

The mail end runs in a child process of its own, started before anything else:

- `http`: a threaded HTTP server that speaks Mailgun's sending API as Anymail's Mailgun backend uses it:
  `POST /v3/<domain>/messages` (form fields from, to, subject, text, html, h:…, v:…, o:tag) with HTTP basic auth
  `api:<key>`, answering `{"id": "<…@domain>", "message": "Queued. Thank you."}` after --latency-ms, each request in
  its own thread, so any number wait at once. It also takes `POST /v3/<domain>/messages.mime` (to, message), and answers
  as Mailgun does a wrong key (401 "Forbidden"), an unknown domain (404 "Domain not found") and a missing field (400).
  Anymail reaches it through the project's own settings: EMAIL_BACKEND=anymail.backends.mailgun.EmailBackend and
  ANYMAIL_MAILGUN_API_KEY, ANYMAIL_MAILGUN_SENDER_DOMAIN and ANYMAIL_MAILGUN_API_URL=http://127.0.0.1:PORT/v3.
- `http --provider postmark`: Postmark's `POST /email` (a JSON body; the server token in X-Postmark-Server-Token;
  answered `{"To": …, "MessageID": …, "ErrorCode": 0, "Message": "OK"}`), reached through
  EMAIL_BACKEND=anymail.backends.postmark.EmailBackend and ANYMAIL_POSTMARK_API_URL.
- `smtp`: an aiosmtpd relay that holds each message --smtp-delay-ms before its 250 (without blocking other sessions),
  reached through Django's SMTP backend (EMAIL_HOST, EMAIL_PORT).

Either end counts messages, the most waiting at once ("in flight"), the time from the first arrival to the last
answer, the busiest second, and recipients that got more than one message.

The database is a throwaway PostgreSQL one this script creates (dropping it first if it exists) and drops at the end;
the Redis database of --redis-url (db 6 by default) is emptied before and after: give the bench one of its own. It runs
the Procfile's `release` line, seeds --readers readers with bench/digest_data.py (1,000 papers, 50 topics, 10 papers an
email, every reader due: UTC, send hour 0), then starts the Procfile's `worker` line as it stands, with
WORKER_CONCURRENCY unset (so the Procfile's default) and --worker-args appended, in production settings (DEBUG off).

The planner: beat is not started (its schedule would also fetch papers from the internet). Instead the bench sends
`digest.tasks.plan_digests` to the broker as beat does for the "Plan and send digests" entry (`send_task` with no
arguments or options), once the worker is ready; a worker process takes it, plans and queues the chunks. Each chunk
(DIGEST_CHUNK_SIZE readers, 250 unless --chunk-size says otherwise) is one task: a run of fewer chunks than worker
processes leaves the others idle.

The run is over when its DigestRun is finished and no delivery is pending or sending. Figures:

- digests_per_second: sent digests / seconds from the mail end's first arrival to its last answer;
- requests_in_flight: the most API requests (or SMTP messages in their hold after DATA) waiting at the mail end at
  once, and the mean over the sending window;
- worker_cpu_ms_per_digest: user + system CPU of the worker's process tree (the main process, its pool, and any
  pool process that exited) while the run lasted, planning included, divided by the digests sent;
- worker_peak_rss_mb: the peak RSS (VmHWM) of each worker process;
- projected_100k_readers: 100,000 / digests_per_second, at this worker setup (planning not included).
"""

import argparse
import asyncio
import base64
import json
import multiprocessing
import os
import re
import secrets
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from email.parser import BytesParser
from email.policy import HTTP
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_URL = "postgres://root@127.0.0.1:5432/digest_provider_bench"
DEFAULT_REDIS = "redis://127.0.0.1:6379/6"
SENDER_DOMAIN = "mg.example.org"
PROJECTED_READERS = 100_000

sys.path.insert(0, str(ROOT))
from bench.load_bench import flush_redis, free_port, procfile_line, release, stop_and_clean_up  # noqa: E402
from bench.processes import stop_group  # noqa: E402


def log(message):
    print(f"[provider_bench] {message}", file=sys.stderr, flush=True)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--path", choices=["http", "smtp"], default="http", help="a provider's HTTP API or SMTP")
    parser.add_argument(
        "--provider", choices=["mailgun", "postmark"], default="mailgun",
        help="whose HTTP API (--path http): Mailgun's takes a urlencoded form, Postmark's JSON",
    )  # fmt: skip
    parser.add_argument("--readers", type=int, default=2000)
    parser.add_argument("--latency-ms", type=float, default=150, help="the HTTP API's time to answer each request")
    parser.add_argument("--smtp-delay-ms", type=float, default=50, help="the relay's time to accept each message")
    parser.add_argument("--worker-args", default="", help='appended to the Procfile\'s worker line, e.g. "-c 16"')
    parser.add_argument("--chunk-size", type=int, help="DIGEST_CHUNK_SIZE for the run (default: the setting's)")
    parser.add_argument("--database-url", default=DEFAULT_URL)
    parser.add_argument("--redis-url", default=DEFAULT_REDIS, help="a Redis database for the bench alone (emptied)")
    parser.add_argument("--papers", type=int, default=1000)
    parser.add_argument("--topics", type=int, default=50)
    parser.add_argument("--per-email", type=int, default=10)
    parser.add_argument("--seed", type=int, default=20260101)
    parser.add_argument("--timeout", type=float, default=3600, help="give up after this many seconds of sending")
    parser.add_argument("--keep-db", action="store_true", help="keep the database afterwards")
    args = parser.parse_args(argv)
    if not args.database_url.startswith(("postgres://", "postgresql://")):
        parser.error("--database-url must be a postgres:// URL: production runs on PostgreSQL")
    return args


# ---------------------------------------------------------------------------------------------------------------------
# The mail ends, each in a process of its own


class Stats:
    """What reached a mail end: messages, the most waiting at once, first arrival and last answer, busiest second."""

    def __init__(self):
        self.lock = threading.RLock()  # reentrant: answer_pipe holds it across snapshot and reset
        self.in_flight = 0
        self.reset()

    def reset(self):
        """Count afresh (the messages in flight stay counted as such)."""
        self.accepted = self.rejected = self.bytes = 0
        self.max_in_flight = self.in_flight
        self.busy_seconds = 0.0
        self.first = self.last = None
        self.per_second = Counter()
        self.recipients = Counter()
        self.answers = Counter()

    def begin(self):
        with self.lock:
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
            started = time.time()
            self.first = started if self.first is None else min(self.first, started)
            return started

    def end(self, started, status, size=0, recipients=()):
        with self.lock:
            finished = time.time()
            self.in_flight -= 1
            self.busy_seconds += finished - started
            self.last = finished if self.last is None else max(self.last, finished)
            self.answers[status] += 1
            if recipients:  # a message taken for delivery
                self.accepted += 1
                self.bytes += size
                self.per_second[int(finished)] += 1
                self.recipients.update(recipients)
            else:
                self.rejected += 1

    def snapshot(self):
        with self.lock:
            window = (self.last - self.first) if self.first is not None and self.last is not None else 0.0
            return {
                "accepted": self.accepted,
                "rejected": self.rejected,
                "answers": {str(status): count for status, count in sorted(self.answers.items())},
                "first": self.first,
                "last": self.last,
                "window_seconds": round(window, 3),
                "max_in_flight": self.max_in_flight,
                "mean_in_flight": round(self.busy_seconds / window, 2) if window else None,
                "busiest_second": max(self.per_second.values(), default=0),
                "avg_message_bytes": round(self.bytes / self.accepted) if self.accepted else None,
                "recipients": len(self.recipients),
                "recipients_sent_twice": sum(1 for count in self.recipients.values() if count > 1),
            }


class ProviderHandler(BaseHTTPRequestHandler):
    """A provider's HTTP sending API: each request answered after the configured latency, on a keep-alive
    connection. Subclasses say what the provider answers (`answer`)."""

    protocol_version = "HTTP/1.1"  # keep-alive: Anymail's requests.Session reuses one connection per chunk
    # The answer's headers and body go out in two writes; with Nagle's algorithm on, the second waits for the client's
    # delayed ACK of the first (40 ms on Linux), a stall of this server's making, not of the provider's.
    disable_nagle_algorithm = True

    def do_POST(self):
        stats, config = self.server.stats, self.server.config
        started = stats.begin()
        status, size, recipients = 500, 0, ()
        try:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            size = len(body)
            status, answer, recipients = self.answer(body, config)
            time.sleep(config["latency"])
            self.reply(status, answer)
        finally:
            stats.end(started, status, size, recipients)

    def reply(self, status, answer):
        if isinstance(answer, dict):
            payload, kind = json.dumps(answer).encode(), "application/json"
        else:
            payload, kind = answer.encode(), "text/plain; charset=utf-8"
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, format, *args):
        pass


class MailgunHandler(ProviderHandler):
    """Mailgun's sending API, as far as a sender sees it: auth, the two send endpoints, their answers and errors."""

    def answer(self, body, config):
        """(status, answer, recipients) for one request, as Mailgun would answer it."""
        expected = "Basic " + base64.b64encode(f"api:{config['api_key']}".encode()).decode()
        if self.headers.get("Authorization") != expected:
            return 401, "Forbidden", ()
        match = re.fullmatch(r"/v3/([^/]+)/messages(\.mime)?", self.path)
        if not match:
            return 200, "Mailgun Magnificent API", ()  # what Mailgun answers on a wrong endpoint
        domain, mime = match.groups()
        if domain != config["domain"]:
            return 404, {"message": f"Domain not found: {domain}"}, ()
        fields = form_fields(self.headers.get("Content-Type", ""), body)
        required = ("to", "message") if mime else ("from", "to", "subject")
        for name in required:
            if not fields.get(name):
                return 400, {"message": f"'{name}' parameter is missing"}, ()
        if not mime and not (fields.get("text") or fields.get("html")):
            return 400, {"message": "Need at least one of 'text', 'html' or 'template' parameters specified"}, ()
        stamp = time.strftime("%Y%m%d%H%M%S", time.gmtime())
        message_id = f"<{stamp}.{secrets.token_hex(8)}@{domain}>"
        recipients = [value.decode() if isinstance(value, bytes) else value for value in fields["to"]]
        return 200, {"id": message_id, "message": "Queued. Thank you."}, recipients


class PostmarkHandler(ProviderHandler):
    """Postmark's single-message API (`POST /email`, a JSON body, the server token in X-Postmark-Server-Token), with
    its answers to a wrong token (401, ErrorCode 10) and a message without recipients or body (422)."""

    def answer(self, body, config):
        if self.headers.get("X-Postmark-Server-Token") != config["api_key"]:
            return 401, {"ErrorCode": 10, "Message": "The Server Token you provided was invalid."}, ()
        if self.path != "/email":
            return 404, {"ErrorCode": 404, "Message": "Not found"}, ()
        try:
            fields = json.loads(body)
        except ValueError:
            return 400, {"ErrorCode": 402, "Message": "Received invalid JSON input."}, ()
        if not fields.get("To"):
            return 422, {"ErrorCode": 300, "Message": "Invalid email request: No recipients defined."}, ()
        if not (fields.get("HtmlBody") or fields.get("TextBody")):
            return 422, {"ErrorCode": 300, "Message": "Provide either email TextBody or HtmlBody or both."}, ()
        recipients = [address.strip() for address in fields["To"].split(",")]
        answer = {
            "To": fields["To"], "SubmittedAt": time.strftime("%Y-%m-%dT%H:%M:%S.0000000Z", time.gmtime()),
            "MessageID": str(uuid.uuid4()), "ErrorCode": 0, "Message": "OK",
        }  # fmt: skip
        return 200, answer, recipients


def form_fields(content_type, body):
    """{name: [values]} of a urlencoded or multipart/form-data body."""
    if content_type.startswith("multipart/form-data"):
        message = BytesParser(policy=HTTP).parsebytes(f"Content-Type: {content_type}\r\n\r\n".encode() + body)
        fields = {}
        for part in message.iter_parts():
            name = part.get_param("name", header="content-disposition")
            fields.setdefault(name, []).append(part.get_payload(decode=True))
        return fields
    return parse_qs(body.decode(), keep_blank_values=True)


class DelayedHandler:
    """aiosmtpd handler: hold each message `delay` seconds (other sessions go on meanwhile), then accept it."""

    def __init__(self, stats, delay):
        self.stats, self.delay = stats, delay

    async def handle_DATA(self, server, session, envelope):
        started = self.stats.begin()
        await asyncio.sleep(self.delay)
        self.stats.end(started, 250, len(envelope.original_content or envelope.content or b""), envelope.rcpt_tos)
        return "250 OK: queued"


def serve_http(pipe, port, config):
    handler = PostmarkHandler if config.get("provider") == "postmark" else MailgunHandler
    server = ThreadingHTTPServer(("127.0.0.1", port), handler, bind_and_activate=False)
    server.request_queue_size = 256
    server.daemon_threads = True
    server.server_bind()
    server.server_activate()
    server.stats, server.config = Stats(), config
    threading.Thread(target=server.serve_forever, daemon=True).start()
    answer_pipe(pipe, server.stats)
    server.shutdown()


def serve_smtp(pipe, port, delay):
    from aiosmtpd.controller import Controller

    stats = Stats()
    controller = Controller(
        DelayedHandler(stats, delay), hostname="127.0.0.1", port=port, data_size_limit=64 * 1024 * 1024
    )
    controller.start()
    answer_pipe(pipe, stats)
    controller.stop()


def answer_pipe(pipe, stats):
    """Tell the bench the server is up, then answer its "stats" requests until it says "stop". "reset" answers the
    figures so far and starts counting afresh (a bench sending twice to one mail end)."""
    pipe.send("ready")
    while True:
        command = pipe.recv()
        with stats.lock:
            pipe.send(stats.snapshot())
            if command == "reset":
                stats.reset()
        if command == "stop":
            return


class MailEnd:
    """A mail end in a child process (forked before Django is set up), asked for its figures through a pipe."""

    def __init__(self, target, *args):
        context = multiprocessing.get_context("fork")
        self.pipe, child = context.Pipe()
        self.port = free_port()
        self.process = context.Process(target=target, args=(child, self.port, *args), daemon=True)
        self.process.start()
        if not self.pipe.poll(30) or self.pipe.recv() != "ready":
            raise SystemExit("the mail end did not start")

    def stats(self, command="stats"):
        self.pipe.send(command)
        return self.pipe.recv()

    def stop(self):
        if not self.process.is_alive():
            return None
        stats = self.stats("stop")
        self.process.join(10)
        return stats


# ---------------------------------------------------------------------------------------------------------------------
# Production environment, database and data


def production_env(args, var_dir, mail_env):
    env = {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
        "NO_PROXY": "127.0.0.1,localhost",
        "DJANGO_SETTINGS_MODULE": "config.settings",
        "DEBUG": "false",
        "SECRET_KEY": secrets.token_urlsafe(50),
        "SITE_URL": "https://digest.example.org",
        "DATABASE_URL": args.database_url,
        "REDIS_URL": args.redis_url,
        "DEFAULT_FROM_EMAIL": f"Paper Digest <digest@{SENDER_DOMAIN}>",
        "DIGEST_POSTAL_ADDRESS": "Paper Digest\n1 Example Street\n10115 Berlin, Germany",
        "ANYMAIL_WEBHOOK_SECRET": f"{secrets.token_urlsafe(9)}:{secrets.token_urlsafe(24)}",
        "LOG_LEVEL": "INFO",
        "VAR_DIR": str(var_dir),
        "STATIC_ROOT": str(var_dir / "static"),
        **mail_env,
    }
    env.pop("WORKER_CONCURRENCY", None)  # the Procfile's default
    if args.chunk_size:
        env["DIGEST_CHUNK_SIZE"] = str(args.chunk_size)
    return env


def start_mail_end(args):
    """(MailEnd, the environment that points the project's mail settings at it)."""
    if args.path == "http" and getattr(args, "provider", "mailgun") == "postmark":
        token = str(uuid.uuid4())
        config = {"provider": "postmark", "api_key": token, "latency": args.latency_ms / 1000}
        end = MailEnd(serve_http, config)
        return end, {
            "EMAIL_BACKEND": "anymail.backends.postmark.EmailBackend",
            "ANYMAIL_POSTMARK_SERVER_TOKEN": token,
            "ANYMAIL_POSTMARK_API_URL": f"http://127.0.0.1:{end.port}/",
        }
    if args.path == "http":
        api_key = "key-" + secrets.token_hex(16)
        config = {"api_key": api_key, "domain": SENDER_DOMAIN, "latency": args.latency_ms / 1000}
        end = MailEnd(serve_http, config)
        return end, {
            "EMAIL_BACKEND": "anymail.backends.mailgun.EmailBackend",
            "ANYMAIL_MAILGUN_API_KEY": api_key,
            "ANYMAIL_MAILGUN_SENDER_DOMAIN": SENDER_DOMAIN,
            "ANYMAIL_MAILGUN_API_URL": f"http://127.0.0.1:{end.port}/v3",
        }
    end = MailEnd(serve_smtp, args.smtp_delay_ms / 1000)
    return end, smtp_env(end.port)


def smtp_env(port):
    """The project's mail settings for Django's SMTP backend to a relay on 127.0.0.1:`port`."""
    return {
        "EMAIL_BACKEND": "django.core.mail.backends.smtp.EmailBackend",
        "EMAIL_HOST": "127.0.0.1",
        "EMAIL_PORT": str(port),
    }


def seed(args, env):
    os.environ.update(env)
    import django

    django.setup()
    from bench.digest_data import generate

    stats = generate(
        papers=args.papers,
        topics=args.topics,
        subscribers=args.readers,
        per_email=args.per_email,
        seed=args.seed,
        log=log,
    )
    from django.db import connections

    connections.close_all()
    return stats


# ---------------------------------------------------------------------------------------------------------------------
# The worker and its process tree


def worker_command(args):
    command = procfile_line("worker")
    return f"{command} {args.worker_args}".strip()


def start_worker(args, env, var_dir):
    command = worker_command(args)
    log(f"starting: {command}")
    process = subprocess.Popen(
        ["sh", "-c", f"exec {command}"],
        cwd=ROOT,
        env=env,
        stdout=open(var_dir / "worker.log", "ab"),  # noqa: SIM115
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    deadline = time.monotonic() + 120
    while " ready." not in (var_dir / "worker.log").read_text(errors="replace"):
        if process.poll() is not None or time.monotonic() > deadline:
            stop_group(process, timeout=60)
            raise SystemExit(f"the worker did not start; see {var_dir / 'worker.log'}")
        time.sleep(0.3)
    return process


def proc_stat(pid):
    """(ppid, user + system seconds, children's user + system seconds) from /proc/PID/stat."""
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return int(fields[1]), (int(fields[11]) + int(fields[12])) / ticks, (int(fields[13]) + int(fields[14])) / ticks


def process_tree(root):
    """The pids of `root` and all its descendants."""
    parents = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                parents[int(entry)] = proc_stat(entry)[0]
            except (OSError, IndexError):
                continue  # gone meanwhile
    tree, grown = {root}, True
    while grown:
        more = {pid for pid, parent in parents.items() if parent in tree} - tree
        grown = bool(more)
        tree |= more
    return sorted(tree)


def tree_cpu(root):
    """{pid: own CPU seconds} of the tree, and the CPU seconds of its reaped children (counted by their parents)."""
    own, reaped = {}, 0.0
    for pid in process_tree(root):
        try:
            _ppid, cpu, children = proc_stat(pid)
        except OSError:
            continue
        own[pid] = cpu
        reaped += children
    return own, reaped


def cpu_between(before, after):
    """CPU seconds the tree used between two tree_cpu() samples, including processes that started or ended."""
    (own_before, reaped_before), (own_after, reaped_after) = before, after
    return sum(cpu - own_before.get(pid, 0.0) for pid, cpu in own_after.items()) + reaped_after - reaped_before


def peak_rss(root):
    """[{pid, role, peak_rss_mb}] for the worker's processes: VmHWM, the most each held resident."""
    rows = []
    for pid in process_tree(root):
        try:
            status = Path(f"/proc/{pid}/status").read_text()
        except OSError:
            continue
        match = re.search(r"^VmHWM:\s+(\d+) kB", status, re.MULTILINE)
        if match:
            role = "main" if pid == root else "pool"
            rows.append({"pid": pid, "role": role, "peak_rss_mb": round(int(match[1]) / 1024, 1)})
    return rows


# ---------------------------------------------------------------------------------------------------------------------
# The run


def plan_as_beat_does():
    """Send the "Plan and send digests" entry's task to the broker, as beat's scheduler does (no args, no options)."""
    from config.celery import app

    app.send_task("digest.tasks.plan_digests")


def deliveries_by_status():
    from django.db.models import Count

    from digest.models import Delivery

    rows = Delivery.objects.order_by().values_list("status").annotate(count=Count("id"))
    return dict(rows)


def wait_for_run(args, end, worker):
    """Poll until the run is finished and no delivery is pending or sending; (statuses, run, timed_out)."""
    from digest.models import DigestRun

    deadline = time.monotonic() + args.timeout
    last_report = 0.0
    while True:
        statuses = deliveries_by_status()
        run = DigestRun.objects.order_by("id").last()
        open_rows = statuses.get("pending", 0) + statuses.get("sending", 0)
        if run is not None and run.finished_at is not None and not open_rows:
            return statuses, run, False
        if worker.poll() is not None:
            raise SystemExit(f"the worker exited (code {worker.returncode})")
        if time.monotonic() > deadline:
            return statuses, run, True
        if time.monotonic() - last_report > 10:
            last_report = time.monotonic()
            log(f"deliveries {statuses}; mail end accepted {end.stats()['accepted']}")
        time.sleep(0.5)


def worker_log_counts(path):
    text = path.read_text(errors="replace")
    return {
        "tasks_succeeded": len(re.findall(r"Task digest\.tasks\.send_deliveries\[[^\]]+\] succeeded", text)),
        "task_retries": len(re.findall(r"Task digest\.tasks\.send_deliveries\[[^\]]+\] retry", text)),
        "error_lines": len(re.findall(r"\b(?:ERROR|CRITICAL)[/ ]", text)),
        "warning_lines": len(re.findall(r"\bWARNING[/ ]", text)),
    }


def figures(end_stats, statuses, run, chunk_size, cpu_seconds, rss_rows, plan_sent_at, finished_at):
    sent = statuses.get("sent", 0)
    window = end_stats["window_seconds"]
    rate = sent / window if window else None
    return {
        "digests_per_second": round(rate, 1) if rate else None,
        "requests_in_flight": {"max": end_stats["max_in_flight"], "mean": end_stats["mean_in_flight"]},
        "requests_per_second": {
            "mean": round(end_stats["accepted"] / window, 1) if window else None,
            "busiest_second": end_stats["busiest_second"],
        },
        "worker_cpu_seconds": round(cpu_seconds, 2),
        "worker_cpu_ms_per_digest": round(1000 * cpu_seconds / sent, 1) if sent else None,
        "worker_peak_rss_mb": {
            "main": next((row["peak_rss_mb"] for row in rss_rows if row["role"] == "main"), None),
            "pool_max": max((row["peak_rss_mb"] for row in rss_rows if row["role"] == "pool"), default=None),
            "pool_processes": sum(1 for row in rss_rows if row["role"] == "pool"),
            "each": rss_rows,
        },
        "projected_100k_readers": {
            "seconds": round(PROJECTED_READERS / rate) if rate else None,
            "hours": round(PROJECTED_READERS / rate / 3600, 2) if rate else None,
            "how": "100,000 / digests_per_second at this worker setup; planning not included. Each chunk is one "
            "task, so no more worker processes send at once than there are chunks (run.chunks).",
        },
        "deliveries": {
            status: statuses.get(status, 0) for status in ("sent", "failed", "skipped", "pending", "sending")
        },
        "run": {
            "planned": run.planned_count if run else 0,
            "chunks": -(-run.planned_count // chunk_size) if run else 0,
            "sent": run.sent_count if run else 0,
            "failed": run.failed_count if run else 0,
            "skipped": run.skipped_count if run else 0,
            "finished": bool(run and run.finished_at),
        },
        "seconds": {
            "first_to_last_send": window,
            "plan_task_sent_to_first_send": round(end_stats["first"] - plan_sent_at, 2) if end_stats["first"] else None,
            "plan_task_sent_to_run_finished": round(finished_at - plan_sent_at, 2),
        },
        "mail_end": {key: end_stats[key] for key in ("accepted", "rejected", "answers", "avg_message_bytes")}
        | {"recipients": end_stats["recipients"], "recipients_sent_twice": end_stats["recipients_sent_twice"]},
    }


def send_as_production(args, end, env, var_dir):
    """One day's digests sent as production does, to the mail end `end` that `env` points the project at.

    Creates the database (dropping it first), empties the Redis database, runs the Procfile's `release` line, seeds
    the readers, starts the Procfile's worker, sends the plan task as beat does and waits for the run; then stops the
    worker, drops the database (unless --keep-db) and empties Redis again. Returns what the figures need."""
    from bench.throwaway_db import create_database

    create_database(args.database_url, recreate=True)
    flush_redis(args.redis_url)
    (var_dir / "worker.log").unlink(missing_ok=True)  # start_worker waits for this run's " ready."
    worker = None
    load_before = os.getloadavg()
    try:
        release(env)
        data = seed(args, env)
        from django.conf import settings

        chunk_size = settings.DIGEST_CHUNK_SIZE
        worker = start_worker(args, env, var_dir)
        before = tree_cpu(worker.pid)
        plan_sent_at = time.time()
        plan_as_beat_does()
        log("sent digest.tasks.plan_digests to the broker, as beat does")
        statuses, run, timed_out = wait_for_run(args, end, worker)
        finished_at = time.time()
        cpu_seconds = cpu_between(before, tree_cpu(worker.pid))
        rss_rows = peak_rss(worker.pid)
        load_after = os.getloadavg()
        end_stats = end.stats()
        log(f"deliveries {statuses}; run {'timed out' if timed_out else 'finished'}")
    finally:
        stop_and_clean_up(worker, args, timeout=60)
    return {
        "data": data,
        "chunk_size": chunk_size,
        "timed_out": timed_out,
        "figures": figures(end_stats, statuses, run, chunk_size, cpu_seconds, rss_rows, plan_sent_at, finished_at),
        "mail_end_stats": end_stats,
        "worker_log": worker_log_counts(var_dir / "worker.log"),
        "load_average_before": [round(value, 2) for value in load_before],
        "load_average_after": [round(value, 2) for value in load_after],
    }


def main(argv=None):
    args = parse_args(argv)
    var_dir = Path(tempfile.mkdtemp(prefix="provider-bench-"))
    end, mail_env = start_mail_end(args)  # forked first: the child inherits nothing of Django
    env = production_env(args, var_dir, mail_env)
    log(f"mail end: {args.path} on 127.0.0.1:{end.port}")
    try:
        sent = send_as_production(args, end, env, var_dir)
    finally:
        end.stop()
    data = sent["data"]
    result = {
        "path": args.path,
        "readers": args.readers,
        "mail_server": (
            f"{args.provider.title()} API on loopback, {args.latency_ms:g} ms per request"
            if args.path == "http"
            else f"SMTP relay on loopback, {args.smtp_delay_ms:g} ms per message"
        ),
        "worker_command": worker_command(args),
        "planner": "digest.tasks.plan_digests sent to the broker as beat sends it; run by the worker",
        "chunk_size": sent["chunk_size"],
        "redis_url": args.redis_url,
        "cores": os.cpu_count(),
        "timed_out": sent["timed_out"],
        **sent["figures"],
        "worker_log": sent["worker_log"],
        "data": {key: data[key] for key in ("papers", "topics", "subscribers", "topic_choices", "matches_per_topic")},
        "load_average_before": sent["load_average_before"],
        "load_average_after": sent["load_average_after"],
    }
    print(json.dumps(result, indent=2))
    shutil.rmtree(var_dir, ignore_errors=True)


if __name__ == "__main__":
    main()
