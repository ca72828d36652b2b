#!/usr/bin/env python
"""What writing one digest's outcome costs, by the way sending writes it and by the ORM, side by side.

    python bench/record_bench.py [--database-url postgres://root@127.0.0.1:5432/digest_record_bench] [--rows 2000]
        [--rounds 5]

Sending writes each outcome the moment the backend answers (at most once depends on it), so this write happens once per
email. Compared, on the same throwaway PostgreSQL database, in alternating rounds of `--rows` writes each:
- `record`: Delivery.record, the project's way: one hand-written UPDATE whose commit does not wait for the disk;
- `orm_update`: Delivery.objects.filter(pk=…, claim_token=…).update(…), committed (and flushed) at once;
- `orm_update_no_flush`: the same ORM update inside a transaction that first runs SET LOCAL synchronous_commit = off.

Prints one JSON object: the median microseconds per write of each way over the rounds, and every round's figure.
The database is created for the run and dropped after it. Not part of the test run.
"""

import argparse
import json
import os
import statistics
import sys
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.throwaway_db import create_database, drop_database, log  # noqa: E402

DEFAULT_URL = "postgres://root@127.0.0.1:5432/digest_record_bench"


def setup_django(url):
    os.environ["DATABASE_URL"] = url
    os.environ.setdefault("DEBUG", "true")
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)


def claimed_rows(count, claim, now):
    from digest.models import Delivery
    from subscriptions.models import Subscriber

    start = Subscriber.objects.count()
    readers = Subscriber.objects.bulk_create(
        [Subscriber(email=f"reader{start + n}@example.com", status="active") for n in range(count)]
    )
    rows = Delivery.objects.bulk_create(
        [
            Delivery(subscriber=reader, digest_date=now.date(), status="sending", claim_token=claim, claimed_at=now)
            for reader in readers
        ]
    )
    for row in rows:
        row.status, row.message_id, row.paper_ids, row.finished_at = "sent", f"<{row.pk}@bench>", [1, 2, 3], now
    return rows


def write_record(rows, claim):
    for row in rows:
        assert row.record(claim)


def write_orm(rows, claim, *, flush):
    from django.db import connection, transaction

    from digest.models import Delivery

    for row in rows:
        values = {name: getattr(row, name) for name in Delivery.RECORDED_FIELDS if name != "claim_token"}
        if flush:
            Delivery.objects.filter(pk=row.pk, claim_token=claim).update(claim_token=None, **values)
        else:
            with transaction.atomic(), connection.cursor() as cursor:
                cursor.execute("SET LOCAL synchronous_commit = off")
                Delivery.objects.filter(pk=row.pk, claim_token=claim).update(claim_token=None, **values)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--database-url", default=DEFAULT_URL)
    parser.add_argument("--rows", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()

    create_database(args.database_url, recreate=True)
    try:
        setup_django(args.database_url)
        from django.utils import timezone

        ways = {
            "record": lambda rows, claim: write_record(rows, claim),
            "orm_update": lambda rows, claim: write_orm(rows, claim, flush=True),
            "orm_update_no_flush": lambda rows, claim: write_orm(rows, claim, flush=False),
        }
        rounds = {name: [] for name in ways}
        for number in range(args.rounds):
            # Alternating order, so a busy moment on the shared machine does not fall on one way only.
            order = list(ways) if number % 2 == 0 else list(reversed(ways))
            for name in order:
                claim = uuid.uuid4()
                rows = claimed_rows(args.rows, claim, timezone.now())
                started = time.perf_counter()
                ways[name](rows, claim)
                rounds[name].append(round((time.perf_counter() - started) / args.rows * 1e6, 1))
            log(f"round {number + 1}: {json.dumps({name: values[-1] for name, values in rounds.items()})}")
        result = {
            "rows_per_round": args.rows,
            "rounds": args.rounds,
            "median_us_per_write": {name: statistics.median(values) for name, values in rounds.items()},
            "us_per_write_by_round": rounds,
        }
        print(json.dumps(result, indent=2))
    finally:
        from django.db import connections

        connections.close_all()
        drop_database(args.database_url)


if __name__ == "__main__":
    main()
