"""The hot path's SQL reads through indexes only (SQLite's EXPLAIN QUERY PLAN): every form
of the facts statement, and the queries that plan effects and list attached ad groups.
A table scan here would make a decision's cost grow with the store (docs/performance.md)."""

from __future__ import annotations

import itertools

import pytest

from audience_authz.engine import facts
from audience_authz.store import db, effects


@pytest.fixture
def sqlite_db(tmp_path):
    database = db.init(f"sqlite:///{tmp_path / 'plans.db'}")
    yield database
    db.close()


def plan(database, sql: str) -> list[str]:
    return [row[3] for row in database.execute_sql("EXPLAIN QUERY PLAN " + sql, ["x"] * sql.count("?"))]


def assert_indexed(steps: list[str]) -> None:
    tables = [s for s in steps if s.startswith(("SCAN", "SEARCH"))]
    assert tables, steps
    for step in tables:
        # the one-row constant the facts statement starts from is the only thing scanned
        assert step.startswith("SEARCH") or step in ("SCAN one", "SCAN CONSTANT ROW"), steps
        assert "AUTOMATIC" not in step, steps  # no index built on the fly either


@pytest.mark.parametrize("shape", list(itertools.product([False, True], repeat=3)),
                         ids=lambda s: "target={},ad_group={},attached={}".format(*s))
def test_every_form_of_the_facts_statement_uses_indexes(sqlite_db, shape):
    steps = plan(sqlite_db, facts._statement(*shape))
    assert_indexed(steps)
    # audience and account facts come from their covering indexes, one B-tree each
    assert any("COVERING INDEX audience_facts" in s for s in steps), steps
    assert any("COVERING INDEX account_facts" in s for s in steps), steps


def test_effect_planning_and_attached_ad_groups_use_indexes(sqlite_db, monkeypatch):
    captured = []
    original = sqlite_db.execute_sql

    def capture(sql, params=None, *args, **kwargs):
        captured.append(sql)
        return original(sql, params, *args, **kwargs)

    monkeypatch.setattr(sqlite_db, "execute_sql", capture)
    assert effects.active_recipients("aud", None) == []
    assert effects.active_recipients("aud", "acc") == []
    assert effects._targeting_of_recipient_groups("aud", None) == {}
    assert effects._targeting_of_recipient_groups("aud", "acc") == {}
    assert effects.attached_ad_groups("aud", "acc") == []
    monkeypatch.undo()
    assert len(captured) == 5
    for sql in captured:
        assert_indexed(plan(sqlite_db, sql))
