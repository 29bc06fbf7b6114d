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
        # BEGIN IMMEDIATE: a writer takes the lock up front, so two actions never deadlock
        db = connect(url, pragmas=SQLITE_PRAGMAS, lock_type="IMMEDIATE", autoconnect=True)
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
