#!/usr/bin/env python
"""Admin changelist speed on a large PostgreSQL database: 100,000 subscribers and 1,000,000 deliveries by default.

    python bench/admin_bench.py [--database-url postgres://root@127.0.0.1:5432/digest_admin_bench] [--reuse]
        [--subscribers 100000] [--deliveries 1000000] [--papers 50000] [--runs 7] [--warmup 2] [--drop]

Prints one JSON object on stdout ({rows, timings_ms, queries, sql_ms, export_csv_all, ...}); progress goes to
stderr. Not part of the test run.

The database is a throwaway one this script owns: it is dropped and created again unless --reuse is given and it
already holds the requested numbers of rows (then only new migrations are applied and the tables vacuumed and
analysed). It is
kept afterwards so the next run can --reuse it; --drop removes it at the end. Data is written with INSERT ... SELECT
over generate_series, not the ORM row by row: subscribers with 1-5 of 50 topics, a mix of statuses, frequencies and
time zones, consent records, one DigestRun every 15 minutes for a year (most of them empty, as beat makes them) and,
for the last ceil(deliveries / subscribers) days, a delivery per subscriber and day (sent, failed, skipped, a few
pending today), each sent one listing 10 papers.

Each page is fetched by the Django test Client as a logged-in superuser, in this process, with DEBUG off (as in
production; DEBUG=true only supplies the development SECRET_KEY and SITE_URL): `--warmup` untimed requests, then
`--runs` timed ones; timings_ms is the median wall time of the whole request (URL resolving, session, queries, template
rendering), sql_ms the median time spent executing SQL, queries the number of queries of one request.
"""

import argparse
import json
import os
import statistics
import sys
import time
from datetime import timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_URL = "postgres://root@127.0.0.1:5432/digest_admin_bench"


def log(message):
    print(f"[admin_bench] {message}", file=sys.stderr, flush=True)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--database-url", default=os.environ.get("DATABASE_URL") or DEFAULT_URL)
    parser.add_argument("--reuse", action="store_true", help="keep the database if it already holds this data")
    parser.add_argument("--drop", action="store_true", help="drop the database at the end")
    parser.add_argument("--subscribers", type=int, default=100_000)
    parser.add_argument("--deliveries", type=int, default=1_000_000)
    parser.add_argument("--papers", type=int, default=50_000)
    parser.add_argument("--topics", type=int, default=50)
    parser.add_argument("--runs", type=int, default=7, help="timed requests per page (the median is reported)")
    parser.add_argument("--warmup", type=int, default=2, help="untimed requests per page first")
    parser.add_argument("--only", help="time only the pages whose name contains this")
    parser.add_argument("--explain", action="store_true", help="log EXPLAIN ANALYZE of each page's slowest query")
    args = parser.parse_args(argv)
    if not args.database_url.startswith(("postgres://", "postgresql://")):
        parser.error("--database-url must be a postgres:// URL: the figures are for PostgreSQL")
    return args


# ---------------------------------------------------------------------------------------------------------------------
# The throwaway database


def create_database(url, *, recreate):
    sys.path.insert(0, str(ROOT))
    from bench.throwaway_db import create_database

    return create_database(url, recreate=recreate)


def drop_database(url):
    sys.path.insert(0, str(ROOT))
    from bench.throwaway_db import drop_database

    drop_database(url)


def setup_django(database_url):
    sys.path.insert(0, str(ROOT))
    os.environ["DJANGO_SETTINGS_MODULE"] = "config.settings"
    os.environ["DEBUG"] = "true"  # the development SECRET_KEY, SITE_URL, ... (switched off below)
    os.environ["DATABASE_URL"] = database_url
    os.environ.setdefault("LOG_LEVEL", "WARNING")
    import django

    django.setup()
    from django.conf import settings

    settings.DEBUG = False  # as in production: no query log, no template debug information
    settings.ALLOWED_HOSTS = [*settings.ALLOWED_HOSTS, "testserver"]
    return settings


# ---------------------------------------------------------------------------------------------------------------------
# Seeding


def table(model):
    return model._meta.db_table


def seed(args, cursor):
    import random

    from bench.digest_data import topic_specs
    from digest.models import Delivery, DigestRun
    from papers.models import Paper, Topic
    from subscriptions.models import Consent, Subscriber

    started = time.perf_counter()
    specs = topic_specs(args.topics, random.Random(1))
    Topic.objects.bulk_create(
        [
            Topic(name=name, slug=slug, aliases="\n".join(aliases), display_order=number)
            for number, (name, slug, aliases, _key, _domain) in enumerate(specs)
        ]
    )

    log(f"{args.papers} papers")
    cursor.execute(
        f"""
        INSERT INTO {table(Paper)} (arxiv_id, title, raw_title, abstract, authors, published_at, featured_at,
            first_seen_at, updated_at, upvotes, num_comments, github_url, thumbnail_url, keywords, categories,
            primary_category, source, search_title, search_abstract)
        SELECT '26' || lpad((1 + n / 100000)::text, 2, '0') || '.' || lpad((n %% 100000)::text, 5, '0'),
            'Scalable method number ' || n || ' for graph learning',
            'Scalable method number ' || n || ' for graph learning',
            repeat('We study a problem and propose a method that improves on strong baselines. ', 12),
            '["Ana Silva", "Wei Zhang", "Sara Kim"]'::jsonb,
            now() - make_interval(mins => n * 10 + 600),
            CASE WHEN n %% 3 = 0 THEN now() - make_interval(mins => n * 10) END,
            now() - make_interval(mins => n * 10),
            now() - make_interval(mins => n * 10),
            n %% 97, n %% 7, '', '', '[]'::jsonb, '["cs.LG"]'::jsonb,
            (ARRAY['cs.LG', 'cs.CL', 'cs.CV', 'cs.AI', 'cs.RO', 'stat.ML'])[1 + n %% 6],
            CASE WHEN n %% 3 = 0 THEN 'hf' ELSE 'arxiv' END,
            'scalabl method number ' || n || ' graph learn', 'studi problem propos method improv strong baselin'
        FROM generate_series(1, %s) AS n
        """,
        [args.papers],
    )

    log(f"{args.subscribers} subscribers")
    # Statuses by n % 100: 80 % active, 8 % paused, 5 % pending, 5 % unsubscribed, 2 % suppressed. Ids and
    # created_at grow together, five minutes apart, as sign-ups do.
    cursor.execute(
        f"""
        INSERT INTO {table(Subscriber)} (email, status, keywords, time_zone, send_hour, frequency, weekly_day,
            papers_per_email, token, status_reason, created_at, confirmed_at, unsubscribed_at)
        SELECT 'reader' || n || '@example.com',
            CASE WHEN n %% 100 < 80 THEN 'active' WHEN n %% 100 < 88 THEN 'paused' WHEN n %% 100 < 93 THEN 'pending'
                 WHEN n %% 100 < 98 THEN 'unsubscribed' ELSE 'suppressed' END,
            CASE WHEN n %% 3 = 0 THEN '["protein folding", "graph transformers"]'::jsonb ELSE '[]'::jsonb END,
            (ARRAY['UTC', 'Europe/Berlin', 'America/New_York', 'Asia/Tokyo', 'Australia/Sydney'])[1 + n %% 5],
            n %% 24,
            CASE WHEN n %% 10 < 7 THEN 'daily' WHEN n %% 10 < 9 THEN 'weekdays' ELSE 'weekly' END,
            n %% 7, 10, 'bench-' || md5(n::text) || '-' || n,
            CASE WHEN n %% 100 >= 98 THEN 'The mail server refused the address: 550 5.1.1 no such user' ELSE '' END,
            now() - make_interval(mins => (%s - n) * 5 + 60),
            CASE WHEN n %% 100 NOT BETWEEN 88 AND 92 THEN now() - make_interval(mins => (%s - n) * 5 + 50) END,
            CASE WHEN n %% 100 BETWEEN 93 AND 97 THEN now() - interval '1 day' END
        FROM generate_series(1, %s) AS n
        """,
        [args.subscribers + 1, args.subscribers + 1, args.subscribers],
    )
    through = Subscriber.topics.through
    cursor.execute(
        f"""
        INSERT INTO {table(through)} (subscriber_id, topic_id)
        SELECT s.id, t.ids[1 + (s.id * 31 + j * 11) % cardinality(t.ids)]
        FROM {table(Subscriber)} s,
            (SELECT array_agg(id ORDER BY id) AS ids FROM {table(Topic)}) t,
            generate_series(0, s.id % 5) AS j
        ON CONFLICT DO NOTHING
        """
    )
    cursor.execute(
        f"""
        INSERT INTO {table(Consent)} (subscriber_id, action, at, ip, user_agent, form_version, wording, details)
        SELECT id, 'subscribe', created_at, '192.0.2.10'::inet, 'Mozilla/5.0 (X11; Linux x86_64) bench', 'signup-1',
            'Send me the daily digest of papers on the topics I chose.', '{{}}'::jsonb
        FROM {table(Subscriber)}
        UNION ALL
        SELECT id, 'confirm', confirmed_at, '192.0.2.10'::inet, 'Mozilla/5.0 (X11; Linux x86_64) bench', 'signup-1', '',
            '{{}}'::jsonb
        FROM {table(Subscriber)} WHERE confirmed_at IS NOT NULL
        UNION ALL
        SELECT id, 'pause', now() - interval '2 days', '192.0.2.10'::inet, 'bench', '', '', '{{}}'::jsonb
        FROM {table(Subscriber)} WHERE status = 'paused'
        """
    )

    days = -(-args.deliveries // args.subscribers)
    log(f"digest runs every 15 minutes for a year; {args.deliveries} deliveries over {days} days")
    cursor.execute(
        f"""
        INSERT INTO {table(DigestRun)} (started_at, finished_at, pool_size, planned_count, sent_count, failed_count,
            skipped_count, note)
        SELECT date_trunc('hour', now()) - make_interval(mins => 15 * k),
            date_trunc('hour', now()) - make_interval(mins => 15 * k) + interval '0.4 seconds', 300, 0, 0, 0, 0, ''
        FROM generate_series(1, 365 * 96) AS k
        """
    )
    # The runs that planned something: one a day at 06:00 UTC, for `days` days ending today.
    cursor.execute("CREATE TEMPORARY TABLE bench_days (d integer, day date, run_id bigint)")
    cursor.execute(
        "INSERT INTO bench_days (d, day) SELECT d, current_date - d FROM generate_series(0, %s - 1) AS d", [days]
    )
    cursor.execute("SELECT d, day FROM bench_days ORDER BY d")
    for d, day in cursor.fetchall():
        cursor.execute(
            f"""
            INSERT INTO {table(DigestRun)} (started_at, finished_at, pool_size, planned_count, sent_count,
                failed_count, skipped_count, note)
            VALUES (%s::date + interval '6 hours' + interval '1 second',
                    %s::date + interval '6 hours' + interval '71 seconds', 2000, 0, 0, 0, 0, '')
            RETURNING id
            """,
            [day, day],
        )
        cursor.execute("UPDATE bench_days SET run_id = %s WHERE d = %s", [cursor.fetchone()[0], d])

    # Oldest day first, so ids grow with the date as planning makes them. By (id * 7 + d * 13) % 100: 3 % failed,
    # 6 % skipped, the rest sent; today 10 % still pending. A sent one lists 10 papers (one of 100 lists).
    cursor.execute(
        f"""
        WITH lists AS (
            SELECT array_agg(list ORDER BY k) AS lists FROM (
                SELECT k, jsonb_agg(((k * 37 + i * 101) %% %s) + 1 ORDER BY i) AS list
                FROM generate_series(0, 99) AS k, generate_series(0, 9) AS i GROUP BY k
            ) per_list
        ), plan AS (
            SELECT s.id AS subscriber_id, b.run_id, b.day, b.d, (s.id * 7 + b.d * 13) %% 100 AS x
            FROM bench_days b CROSS JOIN {table(Subscriber)} s
            ORDER BY b.d DESC, s.id
            LIMIT %s
        )
        INSERT INTO {table(Delivery)} (subscriber_id, run_id, digest_date, status, paper_ids, claim_token,
            message_id, error, attempts, created_at, claimed_at, finished_at)
        SELECT p.subscriber_id, p.run_id, p.day,
            CASE WHEN p.d = 0 AND p.x >= 90 THEN 'pending' WHEN p.x < 3 THEN 'failed' WHEN p.x < 9 THEN 'skipped'
                 ELSE 'sent' END,
            CASE WHEN p.x >= 9 AND NOT (p.d = 0 AND p.x >= 90) THEN lists.lists[1 + p.subscriber_id %% 100]
                 ELSE '[]'::jsonb END,
            NULL,
            CASE WHEN p.x >= 9 AND NOT (p.d = 0 AND p.x >= 90)
                 THEN '<' || p.subscriber_id || '.' || p.d || '.bench@digest.example.org>' ELSE '' END,
            CASE WHEN p.x < 3 THEN 'The mail server refused the message: 552 5.2.2 mailbox full'
                 WHEN p.x < 9 THEN 'No new paper matched the reader''s topics and keywords.' ELSE '' END,
            CASE WHEN p.d = 0 AND p.x >= 90 THEN 0 ELSE 1 END,
            p.day + interval '6 hours',
            CASE WHEN p.d = 0 AND p.x >= 90 THEN NULL ELSE p.day + interval '6 hours 30 seconds' END,
            CASE WHEN p.d = 0 AND p.x >= 90 THEN NULL ELSE p.day + interval '6 hours 40 seconds' END
        FROM plan p, lists
        """,
        [args.papers, args.deliveries],
    )
    cursor.execute(
        f"""
        UPDATE {table(DigestRun)} r SET planned_count = c.planned, sent_count = c.sent, failed_count = c.failed,
            skipped_count = c.skipped
        FROM (
            SELECT run_id, count(*) AS planned, count(*) FILTER (WHERE status = 'sent') AS sent,
                count(*) FILTER (WHERE status = 'failed') AS failed,
                count(*) FILTER (WHERE status = 'skipped') AS skipped
            FROM {table(Delivery)} GROUP BY run_id
        ) c
        WHERE r.id = c.run_id
        """
    )
    cursor.execute(
        f"UPDATE {table(DigestRun)} SET finished_at = NULL WHERE id = (SELECT run_id FROM bench_days WHERE d = 0)"
    )
    log(f"seeded in {time.perf_counter() - started:.1f} s")


def vacuum_analyze():
    """VACUUM ANALYZE every table: fresh statistics and visibility maps, as autovacuum keeps them on a live server."""
    from django.db import connection

    connection.ensure_connection()
    raw = connection.connection
    autocommit = raw.autocommit
    raw.autocommit = True
    try:
        with raw.cursor() as cursor:
            started = time.perf_counter()
            cursor.execute("VACUUM ANALYZE")
            log(f"VACUUM ANALYZE in {time.perf_counter() - started:.1f} s")
    finally:
        raw.autocommit = autocommit


def row_counts():
    from digest.models import Delivery, DigestRun
    from papers.models import Paper, Topic
    from subscriptions.models import Consent, Subscriber

    models = {
        "subscribers": Subscriber,
        "subscriber_topics": Subscriber.topics.through,
        "consents": Consent,
        "deliveries": Delivery,
        "digest_runs": DigestRun,
        "topics": Topic,
        "papers": Paper,
    }
    return {name: model.objects.count() for name, model in models.items()}


# ---------------------------------------------------------------------------------------------------------------------
# Measuring


class QueryLog:
    """Counts and times the queries run while it is installed (connection.execute_wrapper)."""

    def __init__(self):
        self.queries = []

    def __call__(self, execute, sql, params, many, context):
        started = time.perf_counter()
        try:
            return execute(sql, params, many, context)
        finally:
            self.queries.append((time.perf_counter() - started, sql, params))


def pages(args):
    """[(name, url)] of every changelist and its common filtered, searched and paged variants."""
    from django.utils import timezone

    from digest.models import Delivery, DigestRun
    from papers.models import Topic
    from subscriptions.models import Subscriber

    today = timezone.now().date()
    topic = Topic.objects.order_by("id").values_list("id", flat=True)[len(Topic.objects.all()) // 2]
    middle = Subscriber.objects.order_by("id").values_list("id", "email")[args.subscribers // 2]
    delivery = Delivery.objects.filter(subscriber_id=middle[0]).order_by("-digest_date").first()
    sent = Delivery.objects.filter(subscriber_id=middle[0], status=Delivery.Status.SENT).order_by("-digest_date")[0]
    run = DigestRun.objects.filter(planned_count__gt=0).order_by("-started_at").values_list("id", flat=True)[1]
    day = today - timedelta(days=1)
    page = max(1, min(50, args.subscribers // 100 - 1))  # a page well inside the list, not the first
    subscribers = "/admin/subscriptions/subscriber/"
    deliveries = "/admin/digest/delivery/"
    return [
        ("subscriber", subscribers),
        ("subscriber_status_active", f"{subscribers}?status__exact=active"),
        ("subscriber_status_suppressed", f"{subscribers}?status__exact=suppressed"),
        ("subscriber_topic", f"{subscribers}?topics__id__exact={topic}"),
        ("subscriber_frequency_weekly", f"{subscribers}?frequency__exact=weekly"),
        ("subscriber_search_email", f"{subscribers}?q={middle[1]}"),
        ("subscriber_search_partial", f"{subscribers}?q=reader4242"),
        ("subscriber_facets", f"{subscribers}?_facets=1"),
        ("subscriber_page_50", f"{subscribers}?p={page}"),
        ("subscriber_change", f"{subscribers}{middle[0]}/change/"),
        ("delivery", deliveries),
        ("delivery_status_failed", f"{deliveries}?status__exact=failed"),
        ("delivery_status_sent", f"{deliveries}?status__exact=sent"),
        ("delivery_date_yesterday", f"{deliveries}?digest_date__gte={day}&digest_date__lt={today}"),
        ("delivery_past_7_days", f"{deliveries}?digest_date__gte={today - timedelta(days=7)}"),
        ("delivery_failed_today", f"{deliveries}?status__exact=failed&digest_date__gte={today}"),
        ("delivery_run", f"{deliveries}?run__id__exact={run}"),
        ("delivery_search_email", f"{deliveries}?q={middle[1]}"),
        ("delivery_search_partial", f"{deliveries}?q=reader4242"),
        ("delivery_search_broad", f"{deliveries}?q=example.com"),
        ("delivery_search_message_id", f"{deliveries}?q={sent.message_id}"),
        ("delivery_facets", f"{deliveries}?_facets=1"),
        ("delivery_page_50", f"{deliveries}?p={page}"),
        ("delivery_change", f"{deliveries}{delivery.pk}/change/"),
        ("digestrun", "/admin/digest/digestrun/"),
        ("topic", "/admin/papers/topic/"),
        ("topic_change", f"/admin/papers/topic/{topic}/change/"),
        ("paper", "/admin/papers/paper/"),
        ("paper_search_id", "/admin/papers/paper/?q=2601.04242"),
        ("paper_search_title", "/admin/papers/paper/?q=number 4242 for"),
        ("fetchrun", "/admin/papers/fetchrun/"),
        ("erasedaddress", "/admin/subscriptions/erasedaddress/"),
    ]


def explain(sql, params):
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("EXPLAIN (ANALYZE, BUFFERS) " + sql, params)
        return "\n".join(row[0] for row in cursor.fetchall())


def measure(client, url, args):
    from django.db import connection

    for _ in range(args.warmup):
        response = client.get(url)
        if response.status_code != 200:
            raise SystemExit(f"{url}: HTTP {response.status_code}")
    walls, sqls, counts, slowest = [], [], [], (0, "", None)
    for _ in range(args.runs):
        queries = QueryLog()
        with connection.execute_wrapper(queries):
            started = time.perf_counter()
            response = client.get(url)
            walls.append(time.perf_counter() - started)
        if response.status_code != 200:
            raise SystemExit(f"{url}: HTTP {response.status_code}")
        sqls.append(sum(seconds for seconds, _sql, _params in queries.queries))
        counts.append(len(queries.queries))
        slowest = max([slowest, *queries.queries], key=lambda query: query[0])
    return {
        "ms": round(statistics.median(walls) * 1000, 1),
        "sql_ms": round(statistics.median(sqls) * 1000, 1),
        "queries": max(counts),
        "slowest_query_ms": round(slowest[0] * 1000, 1),
        "slowest": slowest,
    }


def measure_export(client):
    """The subscribers' CSV export of every subscriber ("select all" across pages), read to the end as a browser
    would: seconds, rows, size and queries; then again under tracemalloc for the peak Python memory it took."""
    import tracemalloc

    from django.db import connection

    from subscriptions.models import Subscriber

    first = Subscriber.objects.order_by("pk").values_list("pk", flat=True)[0]
    data = {"action": "export_csv", "select_across": "1", "_selected_action": [first]}

    def export():
        response = client.post("/admin/subscriptions/subscriber/", data)
        lines = size = 0
        for chunk in response.streaming_content:
            lines += chunk.count(b"\n")
            size += len(chunk)
        return lines, size

    queries = QueryLog()
    with connection.execute_wrapper(queries):
        started = time.perf_counter()
        lines, size = export()
        seconds = time.perf_counter() - started
    tracemalloc.start()
    export()
    _current, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return {
        "rows": lines - 1,
        "seconds": round(seconds, 2),
        "mb": round(size / 2**20, 1),
        "queries": len(queries.queries),
        "peak_python_memory_mb": round(peak / 2**20, 1),
    }


def main():
    args = parse_args()
    url = args.database_url
    created = create_database(url, recreate=not args.reuse)
    setup_django(url)
    from django.core.management import call_command
    from django.db import connection, connections

    def migrate():
        started = time.perf_counter()
        call_command("migrate", verbosity=0, interactive=False)
        log(f"migrated in {time.perf_counter() - started:.1f} s")

    try:
        migrate()
        if not created:
            counts = row_counts()
            if counts["subscribers"] == args.subscribers and counts["deliveries"] == args.deliveries:
                log("reusing the seeded database")
            else:
                log(f"--reuse: the database holds {counts['subscribers']} subscribers and {counts['deliveries']} "
                    "deliveries, not the numbers asked for; seeding it again")  # fmt: skip
                connections.close_all()
                created = create_database(url, recreate=True)
                migrate()
        if created:
            with connection.cursor() as cursor:
                seed(args, cursor)
        vacuum_analyze()
        rows = row_counts()
        log(f"rows: {rows}")

        from django.contrib.auth import get_user_model
        from django.test import Client

        user, _ = get_user_model().objects.get_or_create(
            username="bench-admin", defaults={"is_staff": True, "is_superuser": True, "email": "bench@example.org"}
        )
        client = Client()
        client.force_login(user)

        timings, queries, sql_ms, slowest = {}, {}, {}, {}
        for name, page in pages(args):
            if args.only and args.only not in name:
                continue
            result = measure(client, page, args)
            timings[name], queries[name], sql_ms[name] = result["ms"], result["queries"], result["sql_ms"]
            slowest[name] = result["slowest_query_ms"]
            log(f"{name:32} {result['ms']:8.1f} ms  sql {result['sql_ms']:7.1f} ms  {result['queries']:3} queries")
            if args.explain:
                _seconds, sql, params = result["slowest"]
                log(f"{name}: slowest query ({result['slowest_query_ms']} ms):\n{sql}\n{params}\n"
                    f"{explain(sql, params)}")  # fmt: skip

        export = measure_export(client) if not args.only or args.only in "export_csv_all" else None
        if export:
            log(f"CSV export of every subscriber: {export}")

        from django.conf import settings

        output = {
            "rows": rows,
            "timings_ms": timings,
            "queries": queries,
            "sql_ms": sql_ms,
            "slowest_query_ms": slowest,
            "export_csv_all": export,
            "runs": args.runs,
            "statistic": "median",
            "database": f"PostgreSQL {connection.pg_version // 10000}.{connection.pg_version % 100}",
            "debug": settings.DEBUG,
        }
        print(json.dumps(output, indent=2))
    finally:
        connections.close_all()
        if args.drop:
            drop_database(url)


if __name__ == "__main__":
    main()
