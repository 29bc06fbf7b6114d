"""Every statement of the hot paths uses an index, never a scan of a whole table.

The statements are the ones the service really runs: the test binds the service's own
modules to a database full of rows, records the SQL they execute (peewee logs each
statement with its parameters) and asks the database for each plan: PostgreSQL's
``EXPLAIN`` (with ``enable_seqscan = off``, so that an index is used wherever one can be;
a table without a usable index still shows a Seq Scan) and SQLite's ``EXPLAIN QUERY PLAN``.
"""

from __future__ import annotations

import contextlib
import json
import logging

import pytest

from audience_authz import actions
from audience_authz.engine.authorizer import Authorizer
from audience_authz.engine.facts import Request, gather_listed
from audience_authz.engine.policy import Policy
from audience_authz.store import db
from audience_authz.store.models import (
    Account,
    AdGroup,
    AdGroupAudience,
    Audience,
    BusinessCenter,
    DecisionLog,
    Event,
    Share,
    database,
)
from tests.support import FIXTURE_POLICY, postgres_database

ACCOUNTS, AUDIENCES, RECIPIENTS, GROUPS_PER_RECIPIENT, FEED_ROWS = 3000, 3000, 40, 5, 5000


def _load_rows() -> None:
    def many(model, rows):
        for start in range(0, len(rows), 500):
            model.insert_many(rows[start:start + 500]).execute()

    with database.atomic():
        many(BusinessCenter, [{"id": f"bc_{i}", "name": "bc"} for i in range(100)])
        many(Account, [{"id": f"acc_{i}", "name": "a", "business_center": f"bc_{i % 100}",
                        "terms_accepted_at": Audience.created_at.default()} for i in range(ACCOUNTS)])
        many(Audience, [{"id": f"aud_{i}", "owner_account": f"acc_{i}", "name": "x", "type": "custom",
                         "source": "customer_file"} for i in range(AUDIENCES)])
        # aud_0 of acc_0 is shared with acc_1..acc_N, each applying it in its ad groups;
        # every other audience is shared with one account
        shares = [{"audience": "aud_0", "recipient_account": f"acc_{r}", "created_by": "acc_0"}
                  for r in range(1, RECIPIENTS + 1)]
        shares += [{"audience": f"aud_{i}", "recipient_account": f"acc_{(i + 1) % ACCOUNTS}",
                    "created_by": f"acc_{i}"} for i in range(1, AUDIENCES)]
        many(Share, shares)
        groups, targeting = [], []
        for r in range(1, ACCOUNTS):
            for g in range(GROUPS_PER_RECIPIENT if r <= RECIPIENTS else 1):
                groups.append({"id": f"ag_{r}_{g}", "account": f"acc_{r}", "name": "g"})
                audience = "aud_0" if r <= RECIPIENTS else f"aud_{r - 1}"
                targeting.append({"ad_group": f"ag_{r}_{g}", "audience": audience, "mode": "include",
                                  "position": 0})
        many(AdGroup, groups)
        many(AdGroupAudience, targeting)
        many(Event, [{"type": "share_created", "audience_id": f"aud_{i % AUDIENCES}", "payload": "{}"}
                     for i in range(FEED_ROWS)])
        many(DecisionLog, [{"decision_id": f"d{i}", "principal": "acc_0", "action": "view", "resource": "{}",
                            "decision": "allow", "reasons": "[]", "policy_version": "v", "relation": "owner",
                            "facts": "{}"} for i in range(FEED_ROWS)])
    database.execute_sql("ANALYZE")


class _Recorder(logging.Handler):
    def __init__(self):
        super().__init__(logging.DEBUG)
        self.statements: list[tuple[str, tuple]] = []

    def emit(self, record):
        if isinstance(record.msg, tuple) and len(record.msg) == 2:
            sql, params = record.msg
            if sql.lstrip().upper().startswith("SELECT"):
                self.statements.append((sql, tuple(params or ())))


@contextlib.contextmanager
def _recorded():
    logger = logging.getLogger("peewee")
    recorder, level = _Recorder(), logger.level
    logger.addHandler(recorder)
    logger.setLevel(logging.DEBUG)
    try:
        yield recorder.statements
    finally:
        logger.removeHandler(recorder)
        logger.setLevel(level)


def _hot_statements() -> dict[str, list[tuple[str, tuple]]]:
    """The SELECTs of each hot path, as the service runs them."""
    authz = Authorizer(Policy.load(FIXTURE_POLICY))
    paths = {
        "facts (share, with target and ad group)": lambda: authz.check(
            Request("acc_0", "share", "aud_0", target_account_id="acc_77", ad_group_id="ag_77_0"),
            log=False),
        "facts with attached count, recipients, targeting (delete)": lambda: authz.check(
            Request("acc_0", "delete", "aud_0"), log=False),
        "recipients and targeting of one recipient (stop_sharing)": lambda: authz.check(
            Request("acc_0", "stop_sharing", "aud_0", target_account_id="acc_3"), log=False),
        "recipients and targeting of all (stop_sharing)": lambda: authz.check(
            Request("acc_0", "stop_sharing", "aud_0"), log=False),
        "facts of an account's audience list": lambda: gather_listed(authz.policy, "acc_3"),
        "events feed": lambda: actions.events(FEED_ROWS // 2, 100),
        "decision log feed": lambda: actions.decisions(FEED_ROWS // 2, 100),
    }
    statements = {}
    for name, call in paths.items():
        with _recorded() as recorded:
            call()
        statements[name] = recorded
    return statements


def _plan(sql: str, params: tuple):
    if db.is_postgres():
        (plan,), = database.execute_sql("EXPLAIN (FORMAT JSON) " + sql, params).fetchall()
        return plan if isinstance(plan, list) else json.loads(plan)
    return [row[-1] for row in database.execute_sql("EXPLAIN QUERY PLAN " + sql, params)]


def _pg_nodes(node: dict):
    yield node
    for child in node.get("Plans", ()):
        yield from _pg_nodes(child)


def _full_scans(plan) -> list[str]:
    """The steps of a plan that read a whole table or a whole index."""
    if db.is_postgres():
        return [f"{n['Node Type']} on {n.get('Relation Name') or n.get('Index Name')}"
                for n in _pg_nodes(plan[0]["Plan"])
                if n["Node Type"] == "Seq Scan"
                or (n["Node Type"] in ("Index Scan", "Index Only Scan", "Bitmap Index Scan")
                    and "Index Cond" not in n)]
    # SQLite: SEARCH uses an index to find rows; SCAN reads a whole table or index, except
    # the constant row and the one-row subquery the facts statement starts from, and the
    # account's list of audience ids that the list statement builds by index searches
    return [line for line in plan
            if line.startswith("SCAN ") and line not in ("SCAN CONSTANT ROW", "SCAN one", "SCAN listed")]


@pytest.fixture(scope="module", params=["sqlite", pytest.param("postgresql", marks=pytest.mark.full)])
def loaded_database(request, tmp_path_factory):
    with contextlib.ExitStack() as stack:
        if request.param == "sqlite":
            url = f"sqlite:///{tmp_path_factory.mktemp('plans') / 'plans.db'}"
        else:
            url = stack.enter_context(postgres_database())
        db.init(url)
        with database.connection_context():
            if db.is_postgres():
                database.execute_sql("SET enable_seqscan = off")
            _load_rows()
            yield request.param
        db.close()


def test_every_hot_statement_uses_an_index(loaded_database):
    with database.connection_context():
        statements = _hot_statements()
        texts = {name: " ".join(sql for sql, _ in found) for name, found in statements.items()}
        # each hot query is among what was recorded (so the check below covers it)
        assert "FROM (SELECT 1 AS one)" in texts["facts (share, with target and ad group)"]
        assert "COUNT(*) FROM ad_group_audience" in texts["facts with attached count, recipients, targeting (delete)"]
        for name in ("facts with attached count, recipients, targeting (delete)",
                     "recipients and targeting of one recipient (stop_sharing)",
                     "recipients and targeting of all (stop_sharing)"):
            assert "SELECT recipient_account_id FROM audience_share" in texts[name], name
            assert "JOIN ad_group_audience x" in texts[name], name
        assert '"event"' in texts["events feed"] and '"decision_log"' in texts["decision log feed"]
        problems = {}
        for name, found in statements.items():
            for sql, params in found:
                scans = _full_scans(_plan(sql, params))
                if scans:
                    problems.setdefault(name, []).append({"sql": " ".join(sql.split()), "scans": scans})
        assert not problems, problems
