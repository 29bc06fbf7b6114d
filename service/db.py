"""Binding the models to a database chosen by URL, and the one transaction of each action."""

from __future__ import annotations

import contextlib
import os
from urllib.parse import urlparse

from peewee import PostgresqlDatabase
from playhouse.db_url import connect

from . import migrations
from .models import TABLES, database

DEFAULT_DATABASE_URL = "sqlite:///audience-authz.db"
DEFAULT_POOL_SIZE = 32  # per process: at least the threads of a worker
DEFAULT_POOL_TIMEOUT = 10  # seconds a request waits for a free connection when all are in use
SQLITE_PRAGMAS = {
    "journal_mode": "wal",  # readers never wait for the writer
    "synchronous": "normal",  # durable at each WAL checkpoint; safe against process crashes
    "foreign_keys": 1,
    "busy_timeout": 10000,
    # pages read straight from the OS page cache, without a read() system call per B-tree
    # page of the hot path's lookups
    "mmap_size": 1 << 30,
    "cache_size": -16384,  # 16 MiB of page cache per connection
}


def database_url(url: str | None = None) -> str:
    return url or os.environ.get("AUDIENCE_AUTHZ_DATABASE") or DEFAULT_DATABASE_URL


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name, "").strip()
    if not value:
        return default
    if not value.isdigit() or int(value) < 1:
        raise ValueError(f"{name} must be a positive integer, not {value!r}")
    return int(value)


def init(url: str | None = None, create: bool = True):
    """Connect the models to ``url`` (sqlite:///file or postgresql://...). With ``create``,
    an empty database gets the schema and any other must have every migration applied
    (else ``migrations.SchemaBehind``)."""
    url = database_url(url)
    scheme = urlparse(url).scheme
    if scheme in ("postgres", "postgresql"):
        # pooled connections: a request takes one and gives it back at its end (app.py)
        db = connect(url.replace(scheme + "://", "postgresql+pool://", 1),
                     max_connections=_env_int("AUDIENCE_AUTHZ_DB_POOL_SIZE", DEFAULT_POOL_SIZE),
                     timeout=_env_int("AUDIENCE_AUTHZ_DB_POOL_TIMEOUT", DEFAULT_POOL_TIMEOUT),
                     stale_timeout=300)
    elif scheme == "sqlite":
        # BEGIN IMMEDIATE: a writer takes the lock up front, so two actions never deadlock;
        # it waits up to busy_timeout for the lock (AUDIENCE_AUTHZ_SQLITE_BUSY_TIMEOUT_MS).
        # Pooled as well: opening a SQLite connection and setting its pragmas costs far more
        # than a decision, and closing the last one checkpoints the WAL; a request borrows an
        # open connection instead (one thread at a time, hence check_same_thread off).
        pragmas = {**SQLITE_PRAGMAS, "busy_timeout": int(os.environ.get(
            "AUDIENCE_AUTHZ_SQLITE_BUSY_TIMEOUT_MS", SQLITE_PRAGMAS["busy_timeout"]))}
        db = connect(url.replace("sqlite://", "sqlite+pool://", 1), pragmas=pragmas,
                     lock_type="IMMEDIATE", autoconnect=True, check_same_thread=False,
                     max_connections=64, stale_timeout=3600)
    else:
        raise ValueError(f"unsupported database URL {url!r}: use sqlite:///PATH or postgresql://...")
    database.initialize(db)
    if create:
        migrations.ensure_current(db, TABLES)
    return db


def close() -> None:
    """Close the database (e.g. in a parent process before gunicorn forks its workers)."""
    if database.obj is not None:
        if hasattr(database.obj, "close_all"):
            database.obj.close_all()
        elif not database.obj.is_closed():
            database.obj.close()


def is_postgres() -> bool:
    return isinstance(database.obj, PostgresqlDatabase)


@contextlib.contextmanager
def transaction():
    """One action, all or nothing."""
    with database.atomic():
        yield


def lock_clause() -> str:
    """Row lock for read-then-write in PostgreSQL; SQLite's IMMEDIATE lock covers it."""
    return " FOR UPDATE" if is_postgres() else ""


def insert_rows(table: str, columns: tuple[str, ...], rows: list[tuple]) -> None:
    """Append many rows with one prepared statement (executemany; execute_values on
    PostgreSQL, which sends them in pages instead of one round trip per row). The ORM's
    insert_many builds the SQL text of every value in Python, which costs more than the
    insert itself for thousands of rows."""
    if not rows:
        return
    cols = ", ".join(columns)
    if is_postgres():
        from psycopg2.extras import execute_values

        execute_values(database.cursor(), f"INSERT INTO {table} ({cols}) VALUES %s", rows, page_size=1000)
    else:
        marks = ", ".join([database.obj.param] * len(columns))
        database.cursor().executemany(f"INSERT INTO {table} ({cols}) VALUES ({marks})", rows)
