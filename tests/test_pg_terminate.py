"""A fault on PostgreSQL: the server's backends are terminated (pg_terminate_backend) again
and again while ordinary actions and large stop-sharings run. Every answer is an answer
(2xx, 4xx, or 503 database_unavailable; never 500), nothing is left partial (the invariant
checker, and each large stop sharing all or nothing), and the same server, not restarted,
serves every request once the terminations stop.

Sizes: AUDIENCE_AUTHZ_STRESS_FANOUT // 4 recipients per large stop sharing,
AUDIENCE_AUTHZ_STRESS_SECONDS of faults.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from urllib.parse import urlparse

import psycopg2
import pytest

from tests.support import Api, _postgres_admin_url, world_factory
from tests.support.bulk import fan_out
from tests.support.invariants import check_invariants
from tests.support.reliability import TOKEN, private_server, query, server_log, size
from tests.support.stress_results import record, server_errors

pytestmark = pytest.mark.full


def _terminate_backends(admin, name: str) -> int:
    with admin.cursor() as cur:
        cur.execute("SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
                    " WHERE datname = %s AND pid <> pg_backend_pid()", [name])
        return cur.fetchone()[0]


def _state_of(url: str, audience: str, groups: list[str]) -> tuple[int, int]:
    """(ad groups still targeting the audience, its active shares)."""
    marks = ", ".join("?" * len(groups))
    targeting = query(url, f"SELECT COUNT(*) FROM ad_group_audience WHERE audience_id = ? AND ad_group_id IN ({marks})",
                      [audience, *groups])[0][0]
    shares = query(url, "SELECT COUNT(*) FROM audience_share WHERE audience_id = ? AND status = 'active'",
                   [audience])[0][0]
    return targeting, shares


def test_terminated_backends_leave_nothing_partial_and_the_service_recovers(tmp_path):
    n, seconds = max(50, size("fanout", 2000) // 4), max(4, size("seconds", 8))
    with private_server("postgresql", tmp_path, extra_args=["--workers", "2", "--threads", "4"]) as (url, live, api):
        name = urlparse(url).path.lstrip("/")
        admin = psycopg2.connect(_postgres_admin_url())
        admin.autocommit = True
        w = world_factory(api)
        api.ok(api.put(f"/v1/ad-groups/{w.ag}", {"name": "g", "include": [w.A]}, account=w.recipient))
        big = []
        for t in range(4):
            audience = api.ok(api.post("/v1/audiences", {"name": f"big {t}", "source": "partner"},
                                       account=w.owner), 201)["audience"]["id"]
            big.append((audience, fan_out(url, owner=w.owner, business_center=w.bc, shared=[audience],
                                          prefix=f"k{t}", recipients=n)))
        statuses: Counter = Counter()
        stop_answers: dict[str, int] = {}
        stop = threading.Event()

        def ordinary(k: int):
            client = Api(live.base_url, TOKEN)
            i = 0
            while not stop.is_set():
                i += 1
                made = client.post("/v1/audiences", {"id": f"f{k}_{i}_{w.u}", "name": "f", "source": "partner"},
                                   account=w.owner)
                calls = [made,
                         client.post(f"/v1/audiences/{w.B}/shares", {"account_ids": [w.peer]}, account=w.owner),
                         client.patch(f"/v1/audiences/{w.A}", {"members": {"op": "add", "count": 1}},
                                      account=w.owner),
                         client.put(f"/v1/ad-groups/{w.ag}", {"name": f"g{i}", "include": [w.A, w.C][:1 + i % 2]},
                                    account=w.recipient),
                         client.delete(f"/v1/audiences/{w.B}/shares/{w.peer}", account=w.owner),
                         client.authorize(w.recipient, "apply", w.A, ad_group_id=w.ag),
                         client.get(f"/v1/accounts/{w.recipient}/audiences", account=w.recipient)]
                for answer in calls:
                    statuses[answer.status] += 1

        def stop_big(audience: str):
            client = Api(live.base_url, TOKEN)
            answer = client.delete(f"/v1/audiences/{audience}/shares", account=w.owner)
            stop_answers[audience] = answer.status
            statuses[answer.status] += 1

        workers = [threading.Thread(target=ordinary, args=(k,)) for k in range(3)]
        for thread in workers:
            thread.start()
        kills = terminated = 0
        deadline = time.monotonic() + seconds
        big_calls = []
        while time.monotonic() < deadline:
            if len(big_calls) < len(big):  # a large stop sharing, then cut it and everything else
                audience = big[len(big_calls)][0]
                big_calls.append(threading.Thread(target=stop_big, args=(audience,)))
                big_calls[-1].start()
                time.sleep(0.05 * len(big_calls))
            terminated += _terminate_backends(admin, name)
            kills += 1
            time.sleep(0.3)
        stop.set()
        for thread in workers + big_calls:
            thread.join(120)
        # the same server, not restarted, answers everything again
        recovered = None
        give_up = time.monotonic() + 20
        while time.monotonic() < give_up:
            answers = [api.authorize(w.recipient, "view", w.A).status, api.get("/readyz").status,
                       api.put(f"/v1/ad-groups/{w.ag}", {"name": "after", "include": [w.A]},
                               account=w.recipient).status]
            if answers == [200, 200, 200]:
                recovered = time.monotonic() - (give_up - 20)
                break
            time.sleep(0.2)
        outcomes = {audience: (stop_answers.get(audience), _state_of(url, audience, groups))
                    for audience, groups in big}
        print(f"\nPG TERMINATE: {kills} rounds terminated {terminated} backends over {seconds}s;"
              f" answers {dict(statuses)}; large stop sharings of {n}: {list(outcomes.values())};"
              f" recovered {recovered}s after")
        admin.close()
        assert recovered is not None, "the server did not recover without a restart"
        assert kills >= 4 and terminated > 0 and 503 in statuses  # the fault really hit requests
        assert set(statuses) <= {200, 201, 403, 404, 409, 503}, statuses  # never a 500
        for audience, (status, state) in outcomes.items():
            assert state in ((n, n), (0, 0)), (audience, status, state)  # all or nothing
            if status == 200:
                assert state == (0, 0)  # answered done: it is done
        for audience, groups in big:  # one cut short is simply asked again, and completes
            if _state_of(url, audience, groups) == (n, n):
                assert len(api.ok(api.delete(f"/v1/audiences/{audience}/shares", account=w.owner))["stopped"]) == n
            assert _state_of(url, audience, groups) == (0, 0)
        violations = check_invariants(url, api)
        record("backends terminated during actions", "postgresql", requests=sum(statuses.values()),
               errors=server_errors(statuses) - statuses[503], invariant_violations=len(violations),
               unavailable_503=statuses[503], seconds=seconds, terminations=kills, backends_terminated=terminated,
               large_stop_sharings=len(big), recipient_ad_groups=n, recovered_s=round(recovered, 2))
        assert violations == []
        assert "unhandled error" not in server_log(live)
