"""Binding the models to a database chosen by URL, and the one transaction of each action."""

from __future__ import annotations

import contextlib
import os
from urllib.parse import urlparse

from peewee import PostgresqlDatabase
from playhouse.db_url import connect

from .models import TABLES, database

DEFAULT_DATABASE_URL = "sqlite:///audience-authz.db"
SQLITE_PRAGMAS = {
    "journal_mode": "wal",  # readers never wait for the writer
    "synchronous": "normal",  # durable at each WAL checkpoint; safe against process crashes
    "foreign_keys": 1,
    "busy_timeout": 10000,
}


def database_url(url: str | None = None) -> str:
    return url or os.environ.get("AUDIENCE_AUTHZ_DATABASE") or DEFAULT_DATABASE_URL


def init(url: str | None = None, create: bool = True):
    """Connect the models to ``url`` (sqlite:///file or postgresql://...) and create tables."""
    url = database_url(url)
    scheme = urlparse(url).scheme
    if scheme in ("postgres", "postgresql"):
        # pooled connections: one per thread, reused across requests
        db = connect(url.replace(scheme + "://", "postgresql+pool://", 1),
                     max_connections=32, stale_timeout=300, autorollback=True)
    elif scheme == "sqlite":
        # BEGIN IMMEDIATE: a writer takes the lock up front, so two actions never deadlock
        # a writer waits up to busy_timeout for the lock (AUDIENCE_AUTHZ_SQLITE_BUSY_TIMEOUT_MS)
        pragmas = {**SQLITE_PRAGMAS, "busy_timeout": int(os.environ.get(
            "AUDIENCE_AUTHZ_SQLITE_BUSY_TIMEOUT_MS", SQLITE_PRAGMAS["busy_timeout"]))}
        db = connect(url, pragmas=pragmas, lock_type="IMMEDIATE", autoconnect=True)
    else:
        raise ValueError(f"unsupported database URL {url!r}: use sqlite:///PATH or postgresql://...")
    database.initialize(db)
    if create:
        with db.connection_context():
            db.create_tables(TABLES, safe=True)
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
