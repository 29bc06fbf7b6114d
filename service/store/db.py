"""Binding the models to a database chosen by URL, and the one transaction of each action."""

from __future__ import annotations

import contextlib
import contextvars
import importlib.util
import logging
from urllib.parse import urlparse

from peewee import PostgresqlDatabase
from playhouse.db_url import connect

from audience_authz import spans
from audience_authz.store import migrations
from audience_authz.store.models import TABLES, database

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


class DatabaseUrlError(ValueError):
    """The database URL names a kind of database this installation cannot open."""


def init(url: str, create: bool = True, *, pool_size: int = DEFAULT_POOL_SIZE,
         pool_timeout: int = DEFAULT_POOL_TIMEOUT, sqlite_busy_timeout_ms: int = SQLITE_PRAGMAS["busy_timeout"]):
    """Connect the models to ``url`` (sqlite:///file or postgresql://...). With ``create``,
    an empty database gets the schema and any other must have every migration applied
    (else ``migrations.SchemaBehind``)."""
    scheme = urlparse(url).scheme
    if scheme in ("postgres", "postgresql"):
        if importlib.util.find_spec("psycopg2") is None:  # an extra: pip install 'audience-authz[postgresql]'
            raise DatabaseUrlError(
                f"{scheme}:// needs PostgreSQL's driver psycopg2, which is not installed: "
                "pip install 'audience-authz[postgresql]' (or psycopg2-binary)")
        # pooled connections: a request takes one and gives it back at its end (http/app.py)
        db = connect(url.replace(scheme + "://", "postgresql+pool://", 1),
                     max_connections=pool_size, timeout=pool_timeout,
                     stale_timeout=300)
    elif scheme == "sqlite":
        # BEGIN IMMEDIATE: a writer takes the lock up front, so two actions never deadlock;
        # it waits up to busy_timeout for the lock (AUDIENCE_AUTHZ_SQLITE_BUSY_TIMEOUT_MS).
        # Pooled as well: opening a SQLite connection and setting its pragmas costs far more
        # than a decision, and closing the last one checkpoints the WAL; a request borrows an
        # open connection instead (one thread at a time, hence check_same_thread off).
        pragmas = {**SQLITE_PRAGMAS, "busy_timeout": sqlite_busy_timeout_ms}
        db = connect(url.replace("sqlite://", "sqlite+pool://", 1), pragmas=pragmas,
                     lock_type="IMMEDIATE", autoconnect=True, check_same_thread=False,
                     max_connections=64, stale_timeout=3600)
    else:
        raise DatabaseUrlError(f"unsupported database URL {url!r}: use sqlite:///PATH or postgresql://...")
    _trace_statements(db)
    database.initialize(db)
    if create:
        migrations.ensure_current(db, TABLES)
    return db


STATEMENT_CHARS = 2000  # of a statement's text on its span (the text, never the parameters)


def _trace_statements(db) -> None:
    """Each SQL statement of a traced request gets a span of its own (spans.child: nothing
    when untraced). Every query of the models and every raw statement goes through
    ``execute_sql``; ``insert_rows`` opens its own span."""
    execute_sql = db.execute_sql
    system = "postgresql" if isinstance(db, PostgresqlDatabase) else "sqlite"

    def traced(sql, params=None):
        if not spans.active:  # untraced: one flag, the hot path's statements pay no more
            return execute_sql(sql, params)
        with spans.child(_span_name(sql), {"db.system": system, "db.statement": sql[:STATEMENT_CHARS]}):
            return execute_sql(sql, params)

    db.execute_sql = traced


def _span_name(sql: str) -> str:
    return "SQL " + sql.lstrip().split(None, 1)[0].upper() if sql.strip() else "SQL"


def sqlite_path(url: str) -> str | None:
    """The file of a sqlite:/// URL (None for another kind of URL or an in-memory one)."""
    if urlparse(url).scheme != "sqlite":
        return None
    path = url[len("sqlite:///"):].split("?", 1)[0] if url.startswith("sqlite:///") else ""
    return None if path in ("", ":memory:") else path


def close() -> None:
    """Close the database (e.g. in a parent process before gunicorn forks its workers)."""
    if database.obj is not None:
        if hasattr(database.obj, "close_all"):
            database.obj.close_all()
        elif not database.obj.is_closed():
            database.obj.close()


def is_postgres() -> bool:
    return isinstance(database.obj, PostgresqlDatabase)


SNAPSHOT_ISOLATION = "REPEATABLE READ"
_writing: contextvars.ContextVar[bool] = contextvars.ContextVar("writing", default=False)


def writing() -> bool:
    """Inside an action's writing transaction (not a snapshot read, not an autocommitted
    decision): what it reads to write back must be locked first (``locks``)."""
    return _writing.get()


@contextlib.contextmanager
def transaction(snapshot: bool = False):
    """One action, all or nothing. With ``snapshot``, a read made of several statements
    sees one snapshot of the database: PostgreSQL's REPEATABLE READ (its default READ
    COMMITTED gives each statement a newer one, so a list could name an audience that a
    later statement of the same read had not seen). A snapshot read writes nothing but
    decision-log rows (inserts of new keys), so it never meets a serialization failure.
    SQLite's transactions are snapshots already (and BEGIN IMMEDIATE one writer at a time)."""
    if snapshot and is_postgres():
        with database.atomic(isolation_level=SNAPSHOT_ISOLATION):
            yield
    else:
        token = _writing.set(True)
        try:
            with database.atomic():
                yield
        finally:
            _writing.reset(token)


def lock_clause() -> str:
    """Row lock for read-then-write in PostgreSQL; SQLite's IMMEDIATE lock covers it."""
    return " FOR UPDATE" if is_postgres() else ""


def insert_rows(table: str, columns: tuple[str, ...], rows: list[tuple], *,
                returning_ids: bool = False) -> list[int]:
    """Append many rows with one prepared statement (executemany; execute_values on
    PostgreSQL, which sends them in pages instead of one round trip per row). The ORM's
    insert_many builds the SQL text of every value in Python, which costs more than the
    insert itself for thousands of rows. With ``returning_ids``, the new rows' ids."""
    if not rows:
        return []
    with spans.child("SQL INSERT", {"db.system": "postgresql" if is_postgres() else "sqlite",
                                    "db.statement": f"INSERT INTO {table} ({', '.join(columns)})",
                                    "db.rows": len(rows)}):
        return _insert_rows(table, columns, rows, returning_ids)


def _insert_rows(table: str, columns: tuple[str, ...], rows: list[tuple], returning_ids: bool) -> list[int]:
    cols = ", ".join(columns)
    if is_postgres():
        from psycopg2.extras import execute_values

        sql = f"INSERT INTO {table} ({cols}) VALUES %s" + (" RETURNING id" if returning_ids else "")
        found = execute_values(database.cursor(), sql, rows, page_size=1000, fetch=returning_ids)
        return [row[0] for row in found] if returning_ids else []
    marks = ", ".join([database.obj.param] * len(columns))
    cursor = database.cursor()
    cursor.executemany(f"INSERT INTO {table} ({cols}) VALUES ({marks})", rows)
    if not returning_ids:
        return []
    # one writer at a time (BEGIN IMMEDIATE): the rows took consecutive rowids ending at the last
    last = cursor.execute("SELECT last_insert_rowid()").fetchone()[0]
    return list(range(last - len(rows) + 1, last + 1))


READY_LOCK_WAIT_MS = 1000


def database_ready() -> bool:
    """Readiness: the database answers, and (SQLite) a writer gets the lock within a second,
    so a database locked by another process reads as not ready."""
    try:
        if is_postgres():
            database.execute_sql("SELECT 1").fetchone()
            return True
        conn = database.connection()
        wait = conn.execute("PRAGMA busy_timeout").fetchone()[0]
        conn.execute(f"PRAGMA busy_timeout = {READY_LOCK_WAIT_MS}")
        try:
            conn.execute("BEGIN IMMEDIATE")
            conn.execute("ROLLBACK")
        finally:
            conn.execute(f"PRAGMA busy_timeout = {int(wait)}")
        return True
    except Exception as exc:  # noqa: BLE001 - any failure means not ready
        logging.getLogger("audience_authz").warning("readiness: database unavailable: %s", exc)
        return False
