"""Many clients at once against a multi-worker server (gunicorn, several processes) on
SQLite (WAL) and PostgreSQL: shares, stop sharing, deletes, ad-group updates, edits and
authorizes on the same few audiences, while a feed reader pages the events. Afterwards
no invariant may be broken, no request may have failed with a 5xx, and the reader must
have seen every event exactly once.

Sizes: AUDIENCE_AUTHZ_STRESS_SECONDS, _THREADS, _WORKERS, _ROUNDS (`make stress` raises them).
"""

from __future__ import annotations

import random
import threading
import time
from collections import Counter

import pytest

from tests.support import Api
from tests.support.invariants import check_invariants
from tests.support.reliability import DATABASES, TOKEN, private_server, retries_logged, size
from tests.support.stress_results import record, server_errors

pytestmark = pytest.mark.full  # server processes: the full tier


def _setup(api: Api, u: str) -> dict:
    api.ok(api.put(f"/v1/business-centers/bc_{u}", {"name": "BC"}))
    api.ok(api.put(f"/v1/business-centers/bc2_{u}", {"name": "BC 2", "cross_bc_allowlisted": True}))
    owners = [f"o{i}_{u}" for i in range(2)]
    recipients = [f"r{i}_{u}" for i in range(5)]
    outsider = f"x_{u}"  # in an allowlisted BC of its own: owner 1 may share to it, owner 0 not
    for account, bc in [*((a, f"bc_{u}") for a in owners + recipients), (outsider, f"bc2_{u}")]:
        api.ok(api.put(f"/v1/accounts/{account}", {"name": account, "business_center_id": bc}))
    api.ok(api.put(f"/v1/accounts/nobc_{u}", {"name": "no BC"}))
    for owner in owners:
        api.ok(api.post(f"/v1/accounts/{owner}/terms-acceptance", account=owner))
    audiences = {owner: [] for owner in owners}
    for owner in owners:
        for k in range(3):
            body = api.ok(api.post("/v1/audiences", {"name": f"a{k}", "source": "customer_file"},
                                   account=owner), 201)
            audiences[owner].append(body["audience"]["id"])
    return {"owners": owners, "recipients": recipients, "targets": recipients + [outsider, f"nobc_{u}"],
            "audiences": audiences, "outsider": outsider, "u": u}


class Load:
    """The random operations of one client thread; every answer is counted by status."""

    def __init__(self, base_url: str, world: dict, seed: int, stats: Counter, failures: list, lock):
        self.api = Api(base_url, TOKEN)
        self.w = world
        self.rnd = random.Random(seed)
        self.stats, self.failures, self.lock = stats, failures, lock

    def _call(self, kind: str, method: str, path: str, json=None, account=None):
        r = self.api.call(method, path, json=json, account=account)
        with self.lock:
            self.stats[kind, r.status] += 1
            if r.status >= 500:
                self.failures.append((kind, method, path, r.status, r.body))
        return r

    def _audience(self) -> tuple[str, str]:
        with self.lock:
            owner = self.rnd.choice(self.w["owners"])
            return owner, self.rnd.choice(self.w["audiences"][owner])

    def _all_audiences(self) -> list[str]:
        with self.lock:
            return [a for ids in self.w["audiences"].values() for a in ids]

    def step(self) -> None:
        rnd = self.rnd
        owner, audience = self._audience()
        op = rnd.choices(["share", "stop_one", "stop_all", "recipient_group", "owner_group", "remove",
                          "delete", "edit", "authorize", "move", "allowlist"],
                         weights=[6, 3, 1, 8, 2, 1, 1, 1, 6, 1, 1])[0]
        if op == "share":
            targets = rnd.sample(self.w["targets"], rnd.randint(1, 3))
            self._call(op, "POST", f"/v1/audiences/{audience}/shares", {"account_ids": targets}, owner)
        elif op == "stop_one":
            self._call(op, "DELETE", f"/v1/audiences/{audience}/shares/{rnd.choice(self.w['targets'])}",
                       account=owner)
        elif op == "stop_all":
            self._call(op, "DELETE", f"/v1/audiences/{audience}/shares", account=owner)
        elif op in ("recipient_group", "owner_group"):
            account = rnd.choice(self.w["recipients"] + [self.w["outsider"]]) if op == "recipient_group" else owner
            chosen = rnd.sample(self._all_audiences(), rnd.randint(0, 3))
            cut = rnd.randint(0, len(chosen))
            self._call(op, "PUT", f"/v1/ad-groups/g{rnd.randint(0, 2)}_{account}",
                       {"name": "g", "include": chosen[:cut], "exclude": chosen[cut:]}, account)
        elif op == "remove":
            self._call(op, "DELETE", f"/v1/audiences/{audience}", account=rnd.choice(self.w["recipients"]))
        elif op == "delete":
            for k in range(3):  # disconnect the owner's own groups first, then delete
                self._call("owner_group", "PUT", f"/v1/ad-groups/g{k}_{owner}", {"name": "g"}, owner)
            if self._call(op, "DELETE", f"/v1/audiences/{audience}", account=owner).status == 200:
                created = self._call("create", "POST", "/v1/audiences", {"name": "n", "source": "partner"}, owner)
                if created.status == 201:
                    with self.lock:
                        ids = self.w["audiences"][owner]
                        ids[ids.index(audience)] = created.body["audience"]["id"]
        elif op == "move":  # an account changes Business Center: shares leaving the scope end
            account = rnd.choice(self.w["recipients"] + [self.w["outsider"]])
            bc = rnd.choice([f"bc_{self.w['u']}", f"bc2_{self.w['u']}", None])
            self._call(op, "PUT", f"/v1/accounts/{account}", {"name": account, "business_center_id": bc})
        elif op == "allowlist":  # the owners' Business Center gains or loses cross-BC sharing
            self._call(op, "PUT", f"/v1/business-centers/bc_{self.w['u']}",
                       {"name": "BC", "cross_bc_allowlisted": rnd.random() < 0.5})
        elif op == "edit":
            self._call(op, "PATCH", f"/v1/audiences/{audience}", {"members": {"op": "add", "count": 5}}, owner)
        else:
            account = rnd.choice(self.w["recipients"])
            self._call(op, "POST", "/v1/authorize", {
                "principal": {"account_id": account}, "action": "apply", "resource": {"audience_id": audience},
                "context": {"ad_group_id": f"g0_{account}"}})


def _feed_reader(base_url: str, stop: threading.Event, consumed: list, errors: list) -> None:
    api, after = Api(base_url, TOKEN), 0
    while True:
        finishing = stop.is_set()
        r = api.get(f"/v1/events?after={after}&limit=200")
        if r.status != 200:
            errors.append(("feed", r.status, r.body))
            return
        consumed += [e["id"] for e in r.body["events"]]
        after = r.body["next_after"]
        if finishing and not r.body["events"]:
            return


@pytest.mark.parametrize("kind", DATABASES)
def test_many_clients_against_several_workers_lose_nothing(kind, tmp_path):
    seconds, threads, workers = size("seconds", 8), size("threads", 12), size("workers", 3)
    with private_server(kind, tmp_path, extra_args=["--workers", str(workers), "--threads", "8"]) as (url, live, api):
        world = _setup(api, "s")
        stats, failures, lock = Counter(), [], threading.Lock()
        consumed, feed_errors, stop = [], [], threading.Event()
        reader = threading.Thread(target=_feed_reader, args=(live.base_url, stop, consumed, feed_errors))
        reader.start()
        deadline = time.monotonic() + seconds

        def client(seed):
            load = Load(live.base_url, world, seed, stats, failures, lock)
            while time.monotonic() < deadline:
                load.step()

        pool = [threading.Thread(target=client, args=(seed,)) for seed in range(threads)]
        for t in pool:
            t.start()
        for t in pool:
            t.join()
        stop.set()
        reader.join(60)
        violations = check_invariants(url, api, consumed=consumed)
        done = sum(stats.values())
        by_kind = Counter()
        for (op, status), n in stats.items():
            by_kind[f"{op}:{status}"] += n
        retries = retries_logged(live)
        print(f"\nSTRESS {kind}: {done} requests in {seconds}s by {threads} threads against {workers} workers; "
              f"{retries} transaction retries; {len(consumed)} events read by a concurrent "
              f"feed reader; {len(violations)} invariant violations; {len(failures)} 5xx\n  {dict(by_kind)}")
        record("concurrent load", kind, requests=done, errors=len(failures) + len(feed_errors),
               invariant_violations=len(violations), seconds=seconds, threads=threads, workers=workers,
               transaction_retries=retries, events_read=len(consumed))
        assert not failures, failures[:5]
        assert not feed_errors, feed_errors
        assert violations == []
        assert done > threads * 5  # the load really ran
        assert stats["share", 201] and stats["recipient_group", 200] and stats["stop_one", 200]


@pytest.mark.parametrize("kind", DATABASES)
def test_recipient_applying_while_owner_stops_sharing_never_keeps_the_audience(kind, tmp_path):
    """The race of the source: a recipient puts A in its ad group at the very moment the
    owner stops sharing A. Whichever wins, the ad group must not target A afterwards."""
    rounds = size("rounds", 25)
    with private_server(kind, tmp_path, extra_args=["--workers", "3", "--threads", "4"]) as (url, live, api):
        world = _setup(api, "r")
        owner, recipient = world["owners"][0], world["recipients"][0]
        audience = world["audiences"][owner][0]
        outcomes, statuses = Counter(), Counter()
        for i in range(rounds):
            shared = api.post(f"/v1/audiences/{audience}/shares", {"account_ids": [recipient]}, account=owner)
            statuses[shared.status] += 1
            api.ok(shared, 201)
            barrier, answers = threading.Barrier(2), {}
            apply_api, stop_api = Api(live.base_url, TOKEN), Api(live.base_url, TOKEN)

            def apply_it(barrier=barrier, answers=answers, apply_api=apply_api, i=i, audience=audience):
                barrier.wait()
                answers["apply"] = apply_api.put(f"/v1/ad-groups/race_{i}", {"name": "race", "include": [audience]},
                                                 account=recipient)

            def stop_it(barrier=barrier, answers=answers, stop_api=stop_api, audience=audience):
                barrier.wait()
                answers["stop"] = stop_api.delete(f"/v1/audiences/{audience}/shares/{recipient}", account=owner)

            both = [threading.Thread(target=apply_it), threading.Thread(target=stop_it)]
            for t in both:
                t.start()
            for t in both:
                t.join()
            group = api.get(f"/v1/ad-groups/race_{i}", account=recipient)
            statuses.update(a.status for a in (answers["apply"], answers["stop"], group))
            assert answers["stop"].status == 200, answers["stop"].body
            assert answers["apply"].status in (200, 403), answers["apply"].body
            if answers["apply"].status == 200:
                outcomes["applied, then disconnected"] += 1
                assert audience not in group.body["include"], group.body
                assert any(e["type"] == "disconnect_audience" and e["ad_group_id"] == f"race_{i}"
                           for e in answers["stop"].body["effects"])
            else:
                outcomes["stopped first, apply denied"] += 1
                assert answers["apply"].codes == ["unknown_audience"]  # no longer shared (docs/visibility.md)
                assert group.status == 404
        retries, violations = retries_logged(live), check_invariants(url, api)
        print(f"\nRACE {kind}: {rounds} rounds: {dict(outcomes)}; {retries} transaction retries")
        record("apply against stop sharing", kind, requests=sum(statuses.values()),
               errors=server_errors(statuses),
               invariant_violations=len(violations), rounds=rounds, transaction_retries=retries, outcomes=dict(outcomes))
        assert violations == []


@pytest.mark.parametrize("kind", DATABASES)
def test_racing_upserts_of_one_new_ad_group_never_mix_accounts_or_targeting(kind, tmp_path):
    """Two accounts (and one account twice) create the same ad group id at once: one account
    ends up owning it, with exactly the targeting one of its own requests asked for."""
    rounds = size("rounds", 25)
    with private_server(kind, tmp_path, extra_args=["--workers", "3", "--threads", "4"]) as (url, live, api):
        world = _setup(api, "u")
        (x, y), audiences = world["owners"], world["audiences"]
        wins, statuses = Counter(), Counter()
        for i in range(rounds):
            group = f"contested_{i}"
            asks = [(x, {"name": "x1", "include": [audiences[x][0]]}),
                    (x, {"name": "x2", "include": [audiences[x][1]], "exclude": [audiences[x][2]]}),
                    (y, {"name": "y", "include": [audiences[y][0]]})]
            barrier, answers = threading.Barrier(len(asks)), [None] * len(asks)

            def put(k, account, body, barrier=barrier, answers=answers, group=group):
                client = Api(live.base_url, TOKEN)
                barrier.wait()
                answers[k] = client.put(f"/v1/ad-groups/{group}", body, account=account)

            racers = [threading.Thread(target=put, args=(k, *ask)) for k, ask in enumerate(asks)]
            for t in racers:
                t.start()
            for t in racers:
                t.join()
            statuses.update(a.status for a in answers)
            assert all(a.status in (200, 403) for a in answers), [a.body for a in answers]
            read = api.get(f"/v1/ad-groups/{group}", account=x if answers[0].status == 200 else y)
            statuses[read.status] += 1
            owner = api.ok(read)
            wins[owner["account_id"]] += 1
            for (account, _body), answer in zip(asks, answers):
                assert (answer.status == 200) == (account == owner["account_id"]), (account, answer.body)
                if answer.status == 403:
                    assert answer.codes == ["ad_group_not_owned"]
            mine = [body for account, body in asks if account == owner["account_id"]]
            assert any(owner["name"] == b["name"] and owner["include"] == b["include"]
                       and owner["exclude"] == b.get("exclude", []) for b in mine), owner
        retries, violations = retries_logged(live), check_invariants(url, api)
        print(f"\nUPSERT RACE {kind}: {rounds} rounds, owners: {dict(wins)}; {retries} retries")
        record("racing creations of one ad group", kind, requests=sum(statuses.values()),
               errors=server_errors(statuses),
               invariant_violations=len(violations), rounds=rounds, transaction_retries=retries)
        assert violations == []


@pytest.mark.parametrize("kind", DATABASES)
def test_two_owners_stopping_shares_used_by_one_ad_group_at_once_both_see_the_other(kind, tmp_path):
    """One ad group of a recipient includes owner 0's audience and excludes owner 1's; both
    owners stop sharing at the same moment. Each disconnect must start from what the other
    left (the ad group is locked before its targeting is read), so the later one's
    ``before`` lacks the earlier one's audience and the feed's last word is the empty
    targeting the ad group really has."""
    rounds = size("rounds", 25)
    with private_server(kind, tmp_path, extra_args=["--workers", "3", "--threads", "4"]) as (url, live, api):
        world = _setup(api, "d")
        (o0, o1), recipient = world["owners"], world["recipients"][0]
        a0, a1 = world["audiences"][o0][0], world["audiences"][o1][0]
        statuses = Counter()
        for i in range(rounds):
            for owner, audience in ((o0, a0), (o1, a1)):
                api.ok(api.post(f"/v1/audiences/{audience}/shares", {"account_ids": [recipient]}, account=owner), 201)
            group = f"both_{i}"
            api.ok(api.put(f"/v1/ad-groups/{group}", {"name": "both", "include": [a0], "exclude": [a1]},
                           account=recipient))
            barrier, answers = threading.Barrier(2), {}

            def stop(owner, audience, barrier=barrier, answers=answers):
                client = Api(live.base_url, TOKEN)
                barrier.wait()
                answers[audience] = client.delete(f"/v1/audiences/{audience}/shares/{recipient}", account=owner)

            racers = [threading.Thread(target=stop, args=pair) for pair in ((o0, a0), (o1, a1))]
            for t in racers:
                t.start()
            for t in racers:
                t.join()
            statuses.update(a.status for a in answers.values())
            assert [a.status for a in answers.values()] == [200, 200], [a.body for a in answers.values()]
            befores = [e["before"] for a in answers.values() for e in a.body["effects"]
                       if e["type"] == "disconnect_audience" and e["ad_group_id"] == group]
            assert len(befores) == 2
            # the first saw both audiences; the second only its own, the first's already gone
            assert sorted(len(b["include"]) + len(b["exclude"]) for b in befores) == [1, 2], befores
            read = api.ok(api.get(f"/v1/ad-groups/{group}", account=recipient))
            statuses[200] += 1
            assert (read["include"], read["exclude"]) == ([], []), read
        retries, violations = retries_logged(live), check_invariants(url, api)
        print(f"\nDISCONNECT RACE {kind}: {rounds} rounds; {retries} transaction retries")
        record("two disconnects of one ad group", kind, requests=sum(statuses.values()),
               errors=server_errors(statuses), invariant_violations=len(violations), rounds=rounds,
               transaction_retries=retries)
        assert violations == []
