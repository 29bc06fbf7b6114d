"""Schema migrations: `audience-authz migrate`, the schema check of `serve`, and the promise
that a fresh database created from the models equals one built by the migrations."""

from __future__ import annotations

from pathlib import Path

import pytest

from audience_authz.store import db, migrations
from audience_authz.store.models import TABLES, database
from tests.support import Api, LiveServer, world_factory
from tests.support.ops import DATABASES, cli, fresh_database

# every migration this release ships, in order
ALL = sorted(p.stem for p in (Path(migrations.__file__).parent).glob("[0-9]*.py"))
NAMES = ", ".join(ALL)


def _schema(url: str) -> dict:
    """Tables with their columns, indexes and foreign keys, as the database describes them."""
    real = db.init(url, create=False)
    try:
        with real.connection_context():
            return {table: {
                "columns": sorted((c.name, c.data_type, c.null, c.primary_key, c.default)
                                  for c in real.get_columns(table)),
                "indexes": sorted((i.name, i.sql, tuple(i.columns), i.unique) for i in real.get_indexes(table)),
                "foreign_keys": sorted(tuple(fk) for fk in real.get_foreign_keys(table)),
            } for table in real.get_tables()}
    finally:
        db.close()


@pytest.mark.parametrize("kind", DATABASES)
def test_migrations_build_the_schema_that_a_fresh_start_creates(kind, tmp_path):
    with fresh_database(kind, tmp_path) as migrated, fresh_database(kind, tmp_path) as created:
        result = cli("migrate", "--database", migrated)
        assert result.returncode == 0, result.stderr
        assert f"applied {len(ALL)} migration(s): {NAMES}" in result.stdout
        db.init(created)  # what serve, demo and import do on an empty database
        db.close()
        schema = _schema(migrated)
        assert set(schema) == {m._meta.table_name for m in TABLES} | {"schema_migration"}
        assert schema == _schema(created)
        for url in (migrated, created):
            check = cli("migrate", "--check", "--database", url)
            assert check.returncode == 0, check.stdout + check.stderr
            assert f"schema up to date (applied: {NAMES})" in check.stdout


@pytest.mark.full
def test_serve_refuses_a_schema_behind_until_migrate_has_run(empty_database):
    with LiveServer(empty_database) as live:
        api = Api(live.base_url, live.token)
        w = world_factory(api)
    # a database made before migrations existed: the tables, but no migration history
    db.init(empty_database, create=False)
    with database.connection_context():
        database.execute_sql("DROP TABLE schema_migration")
    db.close()

    refused = cli("serve", "--port", "1", "--database", empty_database, env={"AUDIENCE_AUTHZ_TOKENS": "t"})
    assert refused.returncode != 0
    assert f"pending migration(s) {NAMES}" in refused.stderr
    assert "audience-authz migrate" in refused.stderr
    check = cli("migrate", "--check", "--database", empty_database)
    assert check.returncode == 1 and f"pending: {NAMES}" in check.stdout

    migrated = cli("migrate", "--database", empty_database)
    assert migrated.returncode == 0, migrated.stderr
    assert f"applied {len(ALL)} migration(s): {NAMES}" in migrated.stdout
    again = cli("migrate", "--database", empty_database)
    assert again.returncode == 0 and "schema up to date" in again.stdout

    with LiveServer(empty_database) as live:  # the data is all there
        api = Api(live.base_url, live.token)
        shares = api.ok(api.get(f"/v1/audiences/{w.A}/shares", account=w.owner))
        assert [s["account_id"] for s in shares["shares"]] == [w.recipient]
