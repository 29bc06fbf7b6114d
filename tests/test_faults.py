"""Faults: a server killed with SIGKILL in the middle of a large stop sharing, a database
that is locked or unreachable. All or nothing is applied, authorize fails closed with
`database_unavailable`, /readyz tells, and the service recovers by itself.

Sizes: AUDIENCE_AUTHZ_STRESS_FANOUT recipients (ad groups) per stop sharing.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from urllib.parse import urlparse

import psycopg2
import pytest
import requests

from tests.support import Api, LiveServer, _postgres_admin_url, world_factory
from tests.support.bulk import fan_out
from tests.support.invariants import check_invariants
from tests.support.reliability import DATABASES, TOKEN, fresh_database, kill_hard, query, size
from tests.support.stress_results import record

pytestmark = pytest.mark.full  # server processes: the full tier

KILL_DELAYS = (0.0, 0.3, 0.6)  # after the transaction is seen open, as a share of its full duration


def _writer_is_open(url: str) -> bool:
    """Is a write transaction open in the database right now (another process's)?"""
    if url.startswith("sqlite"):
        conn = sqlite3.connect(urlparse(url).path, timeout=0, isolation_level=None)
        try:
            conn.execute("BEGIN IMMEDIATE")
            conn.execute("ROLLBACK")
            return False
        except sqlite3.OperationalError:
            return True
        finally:
            conn.close()
    name = urlparse(url).path.lstrip("/")
    with psycopg2.connect(_postgres_admin_url()) as admin, admin.cursor() as cur:
        cur.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = %s AND xact_start IS NOT NULL"
                    " AND pid != pg_backend_pid() AND backend_xid IS NOT NULL", [name])
        open_writers = cur.fetchone()[0]
    admin.close()
    return open_writers > 0


def _targeting_of(url: str, groups: list[str], audience: str) -> int:
    marks = ", ".join("?" * len(groups))
    return query(url, f"SELECT COUNT(*) FROM ad_group_audience WHERE audience_id = ? AND ad_group_id IN ({marks})",
                 [audience, *groups])[0][0]


def _active_shares(url: str, audience: str) -> int:
    return query(url, "SELECT COUNT(*) FROM audience_share WHERE audience_id = ? AND status = 'active'",
                 [audience])[0][0]


@pytest.mark.parametrize("kind", DATABASES)
def test_sigkill_during_a_large_stop_sharing_applies_all_or_nothing(kind, tmp_path):
    n = size("fanout", 2000)
    with fresh_database(kind, tmp_path) as url:
        live = LiveServer(url, token=TOKEN, extra_args=["--workers", "2"]).start()
        api = Api(live.base_url, TOKEN)
        w = world_factory(api)
        trials = []
        for t in range(len(KILL_DELAYS) + 1):
            audience = api.ok(api.post("/v1/audiences", {"name": f"big {t}", "source": "partner"},
                                       account=w.owner), 201)["audience"]["id"]
            groups = fan_out(url, owner=w.owner, business_center=w.bc, shared=[audience, w.B],
                             prefix=f"t{t}", recipients=n)
            trials.append((audience, groups))
        # the first one runs to the end: how long a whole stop sharing takes, and that it works
        audience, groups = trials[0]
        started = time.monotonic()
        body = api.ok(api.delete(f"/v1/audiences/{audience}/shares", account=w.owner))
        duration = time.monotonic() - started
        assert len(body["stopped"]) == n and _targeting_of(url, groups, audience) == 0
        outcomes, statuses = [], [200]  # the full stop sharing above answered 200
        for delay, (audience, groups) in zip(KILL_DELAYS, trials[1:]):
            answer = {}

            def stop_all(answer=answer, audience=audience, live=live):
                try:
                    answer["status"] = requests.delete(f"{live.base_url}/v1/audiences/{audience}/shares", timeout=120,
                                                       headers={"Authorization": f"Bearer {TOKEN}",
                                                                "X-Account-Id": w.owner}).status_code
                except requests.ConnectionError as exc:
                    answer["error"] = exc

            caller = threading.Thread(target=stop_all)
            caller.start()
            deadline = time.monotonic() + 30
            while not _writer_is_open(url):
                assert time.monotonic() < deadline, "the stop sharing never started writing"
                time.sleep(0.005)
            time.sleep(delay * duration)
            kill_hard(live)
            caller.join(30)
            live = LiveServer(url, token=TOKEN, extra_args=["--workers", "2"]).start()
            api = Api(live.base_url, TOKEN)
            remaining, shares = _targeting_of(url, groups, audience), _active_shares(url, audience)
            outcome = {"delay": delay, "answered": "status" in answer, "groups_still_targeting": remaining,
                       "active_shares": shares}
            outcomes.append(outcome)
            statuses += [answer["status"]] if "status" in answer else []
            if (remaining, shares) == (n, n):  # nothing applied: the stop sharing can simply be asked again
                again = api.delete(f"/v1/audiences/{audience}/shares", account=w.owner)
                statuses.append(again.status)
                assert len(api.ok(again)["stopped"]) == n and _targeting_of(url, groups, audience) == 0
        try:
            violations = check_invariants(url, api)
        finally:
            live.stop()
        print(f"\nKILL {kind}: {n} recipient ad groups; a full stop sharing took {duration:.2f}s; "
              f"SIGKILL outcomes: {outcomes}")
        half_applied = [o for o in outcomes if (o["groups_still_targeting"], o["active_shares"]) not in ((n, n), (0, 0))]
        record("SIGKILL during a stop sharing", kind, requests=len(statuses) + len(outcomes) - sum(
               o["answered"] for o in outcomes), errors=sum(status >= 500 for status in statuses),
               invariant_violations=len(violations), recipient_ad_groups=n, stop_sharing_s=round(duration, 2),
               kills=len(outcomes), half_applied=len(half_applied))
        assert half_applied == [], half_applied  # all or nothing
        assert violations == []
        assert not outcomes[0]["answered"]  # killed while its transaction was open: no answer came


def _authorize(api: Api, w) -> object:
    return api.authorize(w.recipient, "apply", w.A, ad_group_id=w.ag)


def test_locked_sqlite_fails_closed_and_recovers(tmp_path):
    """Another process holds the SQLite database's write lock longer than busy_timeout."""
    with fresh_database("sqlite", tmp_path) as url:
        env = {"AUDIENCE_AUTHZ_SQLITE_BUSY_TIMEOUT_MS": "300"}
        with LiveServer(url, token=TOKEN, extra_args=["--workers", "2"], env=env) as live:
            api = Api(live.base_url, TOKEN)
            w = world_factory(api)
            api.ok(api.put(f"/v1/ad-groups/{w.ag}", {"name": "g"}, account=w.recipient))
            assert _authorize(api, w).body["decision"] == "allow"
            holder = sqlite3.connect(urlparse(url).path, isolation_level=None)
            holder.execute("BEGIN EXCLUSIVE")
            try:
                # WAL: reading the facts needs no lock, so a decision is still made, and
                # right; its decision-log row waits in the server's batch until the lock goes
                answered = api.ok(_authorize(api, w))
                assert answered["decision"] == "allow"
                shared = api.post(f"/v1/audiences/{w.A}/shares", {"account_ids": [w.peer]}, account=w.owner)
                assert shared.status == 503 and shared.body["error"]["code"] == "database_unavailable"
                assert shared.headers.get("Retry-After")
                ready = api.get("/readyz")
                assert ready.status == 503 and ready.body["status"] == "not_ready"
            finally:
                holder.execute("ROLLBACK")
                holder.close()
            assert api.ok(api.get("/readyz"))["status"] == "ready"
            assert api.ok(_authorize(api, w))["decision"] == "allow"
            logged = set()
            deadline = time.monotonic() + 20  # each worker writes its batch once the lock is gone
            while answered["decision_id"] not in logged and time.monotonic() < deadline:
                logged = {d["decision_id"] for d in api.ok(api.get("/v1/decisions?after=0&limit=1000"))["decisions"]}
                time.sleep(0.2)
            assert answered["decision_id"] in logged  # the decision made under the lock was not lost
            shares = api.ok(api.get(f"/v1/audiences/{w.A}/shares", account=w.owner))["shares"]
            assert [s["account_id"] for s in shares] == [w.recipient]  # the refused share left nothing
            assert check_invariants(url, api) == []
            assert "database is locked" in live.log_path.read_text()


def test_unreachable_postgresql_fails_closed_and_recovers(tmp_path):
    """The database refuses connections and every open one is cut; then it comes back."""
    with fresh_database("postgresql", tmp_path) as url:
        name = urlparse(url).path.lstrip("/")
        admin = psycopg2.connect(_postgres_admin_url())
        admin.autocommit = True

        def database_accepts(on: bool):
            with admin.cursor() as cur:
                cur.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS {str(on).lower()}')
                if not on:
                    cur.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s", [name])

        try:
            with LiveServer(url, token=TOKEN, extra_args=["--workers", "2"]) as live:
                api = Api(live.base_url, TOKEN)
                w = world_factory(api)
                api.ok(api.put(f"/v1/ad-groups/{w.ag}", {"name": "g"}, account=w.recipient))
                for _ in range(10):  # warm the pools of both workers
                    assert _authorize(api, w).body["decision"] == "allow"
                database_accepts(False)
                for _ in range(6):  # whichever worker and pooled connection answers
                    denied = _authorize(api, w)
                    assert denied.status == 503, denied.body
                    assert denied.body["decision"] == "deny" and denied.codes == ["database_unavailable"]
                    ready = api.get("/readyz")
                    assert ready.status == 503, ready.body
                shared = api.post(f"/v1/audiences/{w.A}/shares", {"account_ids": [w.peer]}, account=w.owner)
                assert shared.status == 503 and shared.body["error"]["code"] == "database_unavailable"
                database_accepts(True)
                answers = [_authorize(api, w) for _ in range(10)]
                assert [a.status for a in answers] == [200] * 10, [a.body for a in answers]
                assert all(a.body["decision"] == "allow" for a in answers)
                assert api.ok(api.get("/readyz"))["status"] == "ready"
                assert [s["account_id"] for s in api.ok(api.get(f"/v1/audiences/{w.A}/shares", account=w.owner))[
                    "shares"]] == [w.recipient]
                assert check_invariants(url, api) == []
        finally:
            database_accepts(True)
            admin.close()
