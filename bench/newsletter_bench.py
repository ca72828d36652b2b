#!/usr/bin/env python
"""This project beside django-newsletter 1.2.1: both send N emails to one loopback SMTP sink, in one run.

    python bench/newsletter_bench.py [--readers 2000] [--rounds 1] [--database-url postgres://…/NAME]
        [--redis-url redis://127.0.0.1:6379/6] [--venv var/newsletter-bench/venv] [--timeout SECONDS] [--keep-db]

Needs PostgreSQL, Redis and, the first time, PyPI. Prints one JSON object on stdout; progress goes to stderr. Not part
of the test run.

The sink is bench/provider_bench.py's aiosmtpd relay with no delay, in a child process of its own, started before
anything else; both sides send to it, one after the other, and it counts each side's messages, bytes and recipients
and the time from its first arrival to its last.

- This project sends one day's digests to --readers readers as production does: bench/provider_bench.py's
  `send_as_production` (the Procfile's `release` line, the readers of bench/digest_data.py, the Procfile's `worker`
  line with its default concurrency, `plan_digests` sent to the broker as beat sends it), in production settings with
  Django's SMTP backend pointed at the sink. Its database is NAME (created, then dropped).
- django-newsletter 1.2.1 sends one newsletter to as many subscribers. It runs in a virtualenv of its own, --venv
  (created and installed from PyPI the first time: django-newsletter==1.2.1, the Django 5.2 it supports,
  sorl-thumbnail, its default thumbnailer, and psycopg),
  in a minimal Django project this script writes to a temporary directory: django-newsletter installed, DEBUG off,
  PostgreSQL database NAME_django_newsletter (created, then dropped), Django's SMTP backend to the sink. The script
  runs `manage.py migrate`, creates the newsletter, its subscribers, one message of 10 articles (titles and
  abstracts written as bench/digest_data.py writes the papers', each with its link) and a Submission of it, ready
  and due, then times `manage.py submit_newsletter`, the command its documentation has operators run from cron.

With --rounds R the two alternate (this project first in odd rounds, django-newsletter first in even ones); each round
starts from fresh databases. Figures per side and round: messages/s (the sink's messages / seconds from its first
arrival to its last), bytes per message, CPU seconds (this project: the worker's process tree while the run lasted,
planning included; django-newsletter: the `submit_newsletter` process, and, apart, the same command with nothing
queued, its start-up). Then the medians, the ratio of this project's median messages/s to django-newsletter's, the load
averages and the versions.

If the virtualenv cannot be made (no `venv` module, PyPI unreachable), the script says so and exits with status 2.
"""

import argparse
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_URL = "postgres://root@127.0.0.1:5432/digest_newsletter_bench"
DEFAULT_REDIS = "redis://127.0.0.1:6379/6"
DEFAULT_VENV = ROOT / "var" / "newsletter-bench" / "venv"
# django-newsletter needs one of the thumbnailers it supports installed (its article images); sorl-thumbnail is its
# default.
REQUIREMENTS = ["django-newsletter==1.2.1", "Django>=5.2,<5.3", "sorl-thumbnail", "psycopg[binary]>=3.1"]
ARTICLES = 10
SUBSCRIBERS_DOMAIN = "example.net"


def log(message):
    print(f"[newsletter_bench] {message}", file=sys.stderr, flush=True)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--readers", type=int, default=2000, help="readers (and subscribers) on each side")
    parser.add_argument("--rounds", type=int, default=1, help="rounds of both sides, alternating which goes first")
    parser.add_argument(
        "--database-url", default=DEFAULT_URL,
        help="this project's database; django-newsletter's is the same name + _django_newsletter on that server",
    )  # fmt: skip
    parser.add_argument("--redis-url", default=DEFAULT_REDIS, help="a Redis database for the bench alone (emptied)")
    parser.add_argument(
        "--venv", type=Path, default=DEFAULT_VENV, help="django-newsletter's virtualenv (made if absent)"
    )
    parser.add_argument("--timeout", type=float, default=3600, help="give up on a side after this many seconds")
    parser.add_argument("--keep-db", action="store_true", help="keep the databases afterwards")
    parser.add_argument("--seed-django-newsletter", metavar="SPEC", help=argparse.SUPPRESS)  # run by the venv's python
    args = parser.parse_args(argv)
    if not args.database_url.startswith(("postgres://", "postgresql://")):
        parser.error("--database-url must be a postgres:// URL: production runs on PostgreSQL")
    # What bench/provider_bench.py's send_as_production reads: the Procfile's worker as shipped, the data of
    # bench/digest_data.py.
    args.path, args.smtp_delay_ms, args.worker_args, args.chunk_size = "smtp", 0, "", None
    args.papers, args.topics, args.per_email, args.seed = 1000, 50, 10, 20260101
    return args


# ---------------------------------------------------------------------------------------------------------------------
# django-newsletter's virtualenv and project


def ensure_venv(path):
    """The python of a virtualenv at `path` with REQUIREMENTS installed, made now if it is absent or different."""
    python, marker = path / "bin" / "python", path / "bench-requirements.txt"
    if python.exists() and marker.exists() and marker.read_text().split() == REQUIREMENTS:
        return python
    log(f"creating django-newsletter's virtualenv in {path}: pip install {' '.join(REQUIREMENTS)}")
    shutil.rmtree(path, ignore_errors=True)
    path.parent.mkdir(parents=True, exist_ok=True)
    base = getattr(sys, "_base_executable", sys.executable)
    try:
        subprocess.run([base, "-m", "venv", str(path)], check=True, stdout=sys.stderr)
        install = [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", *REQUIREMENTS]
        subprocess.run(install, check=True, stdout=sys.stderr)
    except (OSError, subprocess.CalledProcessError) as error:
        shutil.rmtree(path, ignore_errors=True)
        print(
            f"newsletter_bench: could not make django-newsletter's virtualenv in {path} ({error}).\n"
            f"It needs Python's venv module and PyPI. By hand: python -m venv {path} && "
            f"{python} -m pip install {' '.join(repr(r) for r in REQUIREMENTS)}",
            file=sys.stderr,
        )
        raise SystemExit(2) from None
    marker.write_text("\n".join(REQUIREMENTS) + "\n")
    return python


def venv_versions(python):
    code = (
        "import importlib.metadata as m, json, sys; "
        "print(json.dumps({'django-newsletter': m.version('django-newsletter'), 'Django': m.version('Django'), "
        "'sorl-thumbnail': m.version('sorl-thumbnail'), 'python': sys.version.split()[0]}))"
    )
    return json.loads(subprocess.run([str(python), "-c", code], check=True, capture_output=True, text=True).stdout)


def their_database_url(url):
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path=parts.path.rstrip("/") + "_django_newsletter"))


SETTINGS = """\
# A minimal project with django-newsletter, written by bench/newsletter_bench.py.
SECRET_KEY = {secret_key!r}
DEBUG = False
ALLOWED_HOSTS = ["news.example.org"]
INSTALLED_APPS = [
    "django.contrib.contenttypes",
    "django.contrib.auth",
    "django.contrib.sites",
    "sorl.thumbnail",
    "newsletter",
]
SITE_ID = 1
ROOT_URLCONF = "urls"
TEMPLATES = [{{"BACKEND": "django.template.backends.django.DjangoTemplates", "APP_DIRS": True}}]
DATABASES = {{"default": {database!r}}}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
USE_TZ = True
TIME_ZONE = "UTC"
STATIC_URL = "/static/"
MEDIA_URL = "/media/"
EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
EMAIL_HOST = "127.0.0.1"
EMAIL_PORT = {smtp_port!r}
DEFAULT_FROM_EMAIL = "Paper news <news@example.org>"
NEWSLETTER_THUMBNAIL = "sorl-thumbnail"
NEWSLETTER_USE_HTTPS = True
NEWSLETTER_CONFIRM_EMAIL = False
"""

URLS = """\
from django.urls import include, path

urlpatterns = [path("newsletter/", include("newsletter.urls"))]
"""

MANAGE = """\
import sys

from django.core.management import execute_from_command_line

execute_from_command_line(sys.argv)
"""


def write_project(directory, database_url, smtp_port, readers):
    """A Django project with django-newsletter in `directory`, its mail to the sink; and the seeding spec."""
    import secrets

    parts = urlsplit(database_url)
    database = {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": parts.path.lstrip("/"),
        "USER": parts.username or "",
        "PASSWORD": parts.password or "",
        "HOST": parts.hostname or "",
        "PORT": str(parts.port or ""),
    }
    settings = SETTINGS.format(secret_key=secrets.token_urlsafe(50), database=database, smtp_port=smtp_port)
    (directory / "settings.py").write_text(settings)
    (directory / "urls.py").write_text(URLS)
    (directory / "manage.py").write_text(MANAGE)
    (directory / "spec.json").write_text(json.dumps({"subscribers": readers, "articles": articles()}))


def articles():
    """ARTICLES articles, a title, authors and an abstract each, written as bench/digest_data.py writes papers."""
    from bench.digest_data import TOPIC_CONCEPTS, _authors, paper_text

    rng = random.Random(20260101)
    rows = []
    for number in range(1, ARTICLES + 1):
        main, extra = rng.sample(TOPIC_CONCEPTS, 2)
        title, abstract = paper_text(rng, main, [extra], "scientific literature")
        text = f"<p><em>{', '.join(_authors(rng))}</em></p>\n<p>{abstract}</p>"
        rows.append({"title": title, "text": text, "url": f"https://arxiv.org/abs/2601.{number:05d}"})
    return rows


def seed_django_newsletter(spec_path):
    """In the venv's python, in the written project: the newsletter, its subscribers, the message, its Submission."""
    import django

    django.setup()
    from datetime import timedelta

    from django.contrib.sites.models import Site
    from django.utils.timezone import now
    from newsletter.models import Article, Message, Newsletter, Submission, Subscription

    spec = json.loads(Path(spec_path).read_text())
    site, _created = Site.objects.update_or_create(id=1, defaults={"domain": "news.example.org", "name": "Paper news"})
    newsletter = Newsletter.objects.create(
        title="Paper news", slug="paper-news", email="news@example.org", sender="Paper news"
    )
    newsletter.site.set([site])
    subscribed_at = now()
    Subscription.objects.bulk_create(
        [
            Subscription(
                newsletter=newsletter,
                email_field=f"reader{number}@{SUBSCRIBERS_DOMAIN}",
                name_field=f"Reader {number}",
                subscribed=True,
                subscribe_date=subscribed_at,
            )  # fmt: skip
            for number in range(spec["subscribers"])
        ],
        batch_size=1000,
    )
    message = Message.objects.create(title="Today's papers", slug="todays-papers", newsletter=newsletter)
    for order, article in enumerate(spec["articles"], start=1):
        Article.objects.create(post=message, sortorder=10 * order, **article)
    submission = Submission.from_message(message)
    submission.prepared = True
    submission.publish_date = now() - timedelta(minutes=1)
    submission.save()
    print(json.dumps({"subscriptions": submission.subscriptions.count()}))


def manage(python, directory, *command, log_path):
    """Run `manage.py COMMAND` in the venv; (exit status, CPU seconds of the process)."""
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "settings", "PYTHONPATH": str(directory), "NO_PROXY": "127.0.0.1"}
    env.pop("DATABASE_URL", None)
    with open(log_path, "ab") as output:
        process = subprocess.Popen(
            [str(python), "manage.py", *command], cwd=directory, env=env, stdout=output, stderr=subprocess.STDOUT
        )
        _pid, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
    return process.returncode, usage.ru_utime + usage.ru_stime


def their_side(args, end, python, directory):
    """django-newsletter sends its Submission to the sink with `manage.py submit_newsletter`; its figures."""
    from bench.throwaway_db import create_database, drop_database

    url = their_database_url(args.database_url)
    log_path = directory / "django-newsletter.log"
    create_database(url, recreate=True)
    try:
        status, _cpu = manage(python, directory, "migrate", "--noinput", "-v", "0", log_path=log_path)
        if status:
            raise SystemExit(f"django-newsletter's migrate failed; see {log_path}")
        # Its start-up alone: the command with nothing queued.
        status, startup_cpu = manage(python, directory, "submit_newsletter", log_path=log_path)
        if status:
            raise SystemExit(f"submit_newsletter failed; see {log_path}")
        env = {**os.environ, "DJANGO_SETTINGS_MODULE": "settings", "PYTHONPATH": str(directory)}
        seeding = subprocess.run(
            [str(python), str(Path(__file__).resolve()), "--seed-django-newsletter", str(directory / "spec.json")],
            cwd=directory, env=env, check=True, capture_output=True, text=True,
        )  # fmt: skip
        subscriptions = json.loads(seeding.stdout)["subscriptions"]
        log(f"django-newsletter: {subscriptions} subscribers, one message of {ARTICLES} articles; submit_newsletter")
        end.stats("reset")
        load_before = os.getloadavg()
        status, cpu = manage(python, directory, "submit_newsletter", log_path=log_path)
        load_after = os.getloadavg()
        sink = end.stats()
        if status:
            raise SystemExit(f"submit_newsletter failed; see {log_path}")
    finally:
        if not args.keep_db:
            drop_database(url)
    errors = log_path.read_text(errors="replace").count("failed with error")
    return side_figures(sink, subscriptions, cpu, load_before, load_after) | {
        "command": "manage.py submit_newsletter",
        "cpu": {
            "seconds": round(cpu, 2),
            "startup_seconds": round(startup_cpu, 2),
            "ms_per_message_after_startup": per_message_ms(cpu - startup_cpu, sink["accepted"]),
            "how": "the submit_newsletter process; startup_seconds: the same command with nothing queued",
        },
        "send_errors_logged": errors,
    }


# ---------------------------------------------------------------------------------------------------------------------
# This project's side and the figures


def our_side(args, end, env, var_dir):
    """This project sends one day's digests to the sink as production does; its figures."""
    from bench.provider_bench import send_as_production, worker_command

    end.stats("reset")
    sent = send_as_production(args, end, env, var_dir)
    sink, figures = sent["mail_end_stats"], sent["figures"]
    cpu = figures["worker_cpu_seconds"]
    return side_figures(sink, args.readers, cpu, sent["load_average_before"], sent["load_average_after"]) | {
        "command": worker_command(args),
        "cpu": {
            "seconds": cpu,
            "ms_per_message": per_message_ms(cpu, sink["accepted"]),
            "how": "the worker's process tree while the run lasted, planning included",
        },
        "deliveries": figures["deliveries"],
        "timed_out": sent["timed_out"],
        "worker_log": sent["worker_log"],
    }


def per_message_ms(seconds, messages):
    return round(1000 * seconds / messages, 2) if messages else None


def side_figures(sink, expected, cpu, load_before, load_after):
    window = sink["window_seconds"]
    return {
        "messages_per_second": round(sink["accepted"] / window, 1) if window else None,
        "messages": sink["accepted"],
        "expected": expected,
        "first_to_last_arrival_seconds": window,
        "bytes_per_message": sink["avg_message_bytes"],
        "recipients": sink["recipients"],
        "recipients_sent_twice": sink["recipients_sent_twice"],
        "load_average_before": [round(value, 2) for value in load_before],
        "load_average_after": [round(value, 2) for value in load_after],
    }


def summary(rounds, side):
    rates = [row[side]["messages_per_second"] or 0.0 for row in rounds]
    cpu_key = "ms_per_message" if side == "this_project" else "ms_per_message_after_startup"
    return {
        "messages_per_second_median": round(statistics.median(rates), 1),
        "messages_per_second_each": rates,
        "bytes_per_message_median": statistics.median(row[side]["bytes_per_message"] or 0 for row in rounds),
        "cpu_ms_per_message_median": statistics.median(row[side]["cpu"][cpu_key] or 0.0 for row in rounds),
    }


def our_versions():
    import django

    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True)
    return {
        "commit": commit.stdout.strip() or None,
        "Django": django.get_version(),
        "python": sys.version.split()[0],
    }


def main(argv=None):
    args = parse_args(argv)
    if args.seed_django_newsletter:
        seed_django_newsletter(args.seed_django_newsletter)
        return
    sys.path.insert(0, str(ROOT))
    from bench.provider_bench import MailEnd, production_env, serve_smtp, smtp_env

    python = ensure_venv(args.venv.resolve())
    theirs_versions = venv_versions(python)
    var_dir = Path(tempfile.mkdtemp(prefix="newsletter-bench-"))
    site_dir = var_dir / "django-newsletter-site"
    site_dir.mkdir()
    end = MailEnd(serve_smtp, 0.0)  # forked first: the child inherits nothing of Django
    log(f"SMTP sink (aiosmtpd, no delay) on 127.0.0.1:{end.port}")
    env = production_env(args, var_dir, smtp_env(end.port))
    write_project(site_dir, their_database_url(args.database_url), end.port, args.readers)
    load_before = os.getloadavg()
    rounds = []
    try:
        for number in range(1, args.rounds + 1):
            ours_first = number % 2 == 1
            log(f"round {number}: {'this project, then django-newsletter' if ours_first else 'the other way round'}")
            row = {"round": number, "first": "this_project" if ours_first else "django_newsletter"}
            for side in ("this_project", "django_newsletter") if ours_first else ("django_newsletter", "this_project"):
                if side == "this_project":
                    row[side] = our_side(args, end, env, var_dir)
                else:
                    row[side] = their_side(args, end, python, site_dir)
                log(f"round {number}, {side}: {row[side]['messages_per_second']} messages/s")
            row["ratio"] = ratio(
                row["this_project"]["messages_per_second"], row["django_newsletter"]["messages_per_second"]
            )
            rounds.append(row)
    finally:
        end.stop()
    ours, theirs = summary(rounds, "this_project"), summary(rounds, "django_newsletter")
    result = {
        "readers": args.readers,
        "rounds": args.rounds,
        "sink": "aiosmtpd on 127.0.0.1 in its own process, no delay (bench/provider_bench.py's SMTP relay)",
        "ratio_ours_to_theirs": ratio(ours["messages_per_second_median"], theirs["messages_per_second_median"]),
        "this_project": ours,
        "django_newsletter": theirs,
        "each_round": rounds,
        "versions": {"this_project": our_versions(), "django_newsletter": theirs_versions},
        "cores": os.cpu_count(),
        "load_average_before": [round(value, 2) for value in load_before],
        "load_average_after": [round(value, 2) for value in os.getloadavg()],
    }
    print(json.dumps(result, indent=2))
    shutil.rmtree(var_dir, ignore_errors=True)


def ratio(ours, theirs):
    return round(ours / theirs, 2) if ours and theirs else None


if __name__ == "__main__":
    main()
