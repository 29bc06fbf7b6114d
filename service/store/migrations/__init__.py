"""Schema migrations, run by peewee's own migration runner (``playhouse.migrations``).

Each change to the schema is a numbered file in this directory (``0001_initial.py`` is the
schema as first released) defining ``up(migrator, db)``; the runner applies the pending
ones in order and records each in its history table ``schema_migration``.

An empty database is created from the models (``create_tables``) and stamped with every
migration, so a fresh install needs no ``migrate``; ``tests/test_migrations.py`` checks
that this and running the migrations give the same schema. A database that has tables
but misses a migration is *behind*: ``serve``, ``demo`` and ``import`` refuse it until
``audience-authz migrate`` has run.
"""

from __future__ import annotations

import contextlib
from pathlib import Path

from peewee import Database, PostgresqlDatabase
from playhouse.migrations import Runner

DIRECTORY = Path(__file__).resolve().parent
HISTORY_TABLE = "schema_migration"
_LOCK_KEY = 0x61757468_7A5F6D67  # PostgreSQL advisory lock: one schema change at a time


class SchemaBehind(Exception):
    """The database misses migrations this release needs."""

    def __init__(self, pending: list[str]):
        self.pending = pending
        super().__init__(f"the database schema is behind: pending migration(s) {', '.join(pending)};"
                         " run `audience-authz migrate` first")


def runner(db: Database) -> Runner:
    return Runner(db, str(DIRECTORY), table_name=HISTORY_TABLE)


def pending(db: Database) -> list[str]:
    return [m.name for m in runner(db).status() if m.path is not None and not m.applied]


def applied(db: Database) -> list[str]:
    return [m.name for m in runner(db).status() if m.applied]


@contextlib.contextmanager
def _exclusive(db: Database):
    """Only one process at a time creates or migrates the schema (PostgreSQL: an advisory
    lock; SQLite: the caller's BEGIN IMMEDIATE transaction, or the runner's own)."""
    with db.connection_context():
        if isinstance(db, PostgresqlDatabase):
            db.execute_sql("SELECT pg_advisory_lock(%s)", (_LOCK_KEY,))
            try:
                yield
            finally:
                db.execute_sql("SELECT pg_advisory_unlock(%s)", (_LOCK_KEY,))
        else:
            yield


def ensure_current(db: Database, models: list) -> bool:
    """Create the schema in an empty database (and stamp every migration); otherwise check
    that no migration is pending. Returns True when the schema was created."""
    names = {m._meta.table_name for m in models}
    with _exclusive(db):
        with db.atomic():
            if not names & set(db.get_tables()):
                db.create_tables(models, safe=True)
                runner(db).fake()
                return True
        missing = pending(db)
    if missing:
        raise SchemaBehind(missing)
    return False


def upgrade(db: Database, on_applied=None) -> list[str]:
    """Apply every pending migration in order; ``on_applied(name)`` after each."""
    done = []
    with _exclusive(db):
        run = runner(db)
        for name in pending(db):
            run.up(target=name)
            done.append(name)
            if on_applied:
                on_applied(name)
    return done
