"""The benchmarks' throwaway PostgreSQL databases: created (or recreated) for a run, dropped after it.

They refuse the databases the project and CI use: a benchmark drops what it creates.
"""

import sys
from urllib.parse import urlsplit, urlunsplit

PROTECTED = ("digest_main", "digest_ci", "postgres", "template0", "template1")


def log(message):
    print(f"[bench] {message}", file=sys.stderr, flush=True)


def _server(url):
    """(psycopg autocommit connection to the server's `postgres` database, database name) for a postgres:// URL."""
    import psycopg

    parts = urlsplit(url)
    name = parts.path.lstrip("/")
    if not name:
        raise SystemExit("--database-url must name a database, e.g. postgres://root@127.0.0.1:5432/digest_bench")
    if name in PROTECTED:
        raise SystemExit(f"refusing to use {name!r}: the benchmark drops and recreates its database")
    return psycopg.connect(urlunsplit(parts._replace(path="/postgres", query="")), autocommit=True), name


def create_database(url, *, recreate):
    """Create the database, dropping it first when `recreate`. True if it was created now, False if it exists."""
    from psycopg import sql

    server, name = _server(url)
    with server:
        exists = server.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone()
        if exists and not recreate:
            return False
        if exists:
            log(f"dropping database {name}")
            server.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(name)))
        server.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    log(f"created database {name}")
    return True


def drop_database(url):
    from psycopg import sql

    server, name = _server(url)
    with server:
        server.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
    log(f"dropped database {name}")
