"""Access: every endpoint tried as a stranger, token scopes, the rate limit, size limits,
and tokens that never reach the log."""

from __future__ import annotations

import json
import sqlite3
import time
from urllib.parse import urlparse

import pytest

from tests.support import Api, world_factory
from tests.support.reliability import DATABASES, last_ids, private_server, server_log


def _operations(api: Api) -> set[tuple[str, str]]:
    doc = api.ok(api.get("/openapi.json"))
    return {(method.upper(), path) for path, item in doc["paths"].items() for method in item}


def _acting_operations(api: Api) -> set[tuple[str, str]]:
    doc = api.ok(api.get("/openapi.json"))
    return {(method.upper(), path) for path, item in doc["paths"].items() for method, op in item.items()
            if any(p["name"] == "X-Account-Id" for p in op.get("parameters", []))}


def _attempts(w) -> dict[tuple[str, str], tuple[str, dict | None]]:
    """What a stranger tries on each endpoint that acts for an account: the owner's and the
    recipient's things."""
    return {
        # an account and a Business Center none of the strangers belongs to (made below)
        ("GET", "/v1/accounts/{id}"): (f"/v1/accounts/{w.id('lone')}", None),
        ("GET", "/v1/business-centers/{id}"): (f"/v1/business-centers/{w.id('bc3')}", None),
        ("POST", "/v1/accounts/{id}/terms-acceptance"): (f"/v1/accounts/{w.owner}/terms-acceptance", None),
        ("GET", "/v1/accounts/{id}/audiences"): (f"/v1/accounts/{w.recipient}/audiences", None),
        ("GET", "/v1/audiences/{id}"): (f"/v1/audiences/{w.A}", None),
        ("PATCH", "/v1/audiences/{id}"): (f"/v1/audiences/{w.A}", {"name": "mine now"}),
        ("DELETE", "/v1/audiences/{id}"): (f"/v1/audiences/{w.A}", None),
        ("POST", "/v1/audiences/{id}/lookalikes"): (f"/v1/audiences/{w.A}/lookalikes", {"name": "copy"}),
        ("POST", "/v1/audiences/{id}/refresh"): (f"/v1/audiences/{w.L}/refresh", None),
        ("POST", "/v1/audiences/{id}/shares"): (f"/v1/audiences/{w.A}/shares", {"account_ids": [w.peer]}),
        ("GET", "/v1/audiences/{id}/shares"): (f"/v1/audiences/{w.A}/shares", None),
        ("DELETE", "/v1/audiences/{id}/shares"): (f"/v1/audiences/{w.A}/shares", None),
        ("DELETE", "/v1/audiences/{id}/shares/{account_id}"): (f"/v1/audiences/{w.A}/shares/{w.recipient}", None),
        ("GET", "/v1/audiences/{id}/share-log"): (f"/v1/audiences/{w.A}/share-log", None),
        ("GET", "/v1/ad-groups/{id}"): (f"/v1/ad-groups/{w.ag}", None),
        ("PUT", "/v1/ad-groups/{id}"): (f"/v1/ad-groups/{w.ag}", {"name": "taken", "include": []}),
    }


def test_a_stranger_can_read_or_change_nothing_on_any_endpoint(api):
    w = world_factory(api)
    api.ok(api.post(f"/v1/audiences/{w.A}/lookalikes", {"id": w.L, "name": "lal"}, account=w.owner), 201)
    api.ok(api.put(f"/v1/ad-groups/{w.ag}", {"name": "recipient's", "include": [w.A], "exclude": [w.B]},
                   account=w.recipient))
    api.ok(api.put(f"/v1/business-centers/{w.id('bc3')}", {"name": "BC 3", "cross_bc_allowlisted": False}))
    api.ok(api.put(f"/v1/accounts/{w.id('lone')}", {"name": "lone", "business_center_id": w.id("bc3")}))
    attempts = _attempts(w)
    # every endpoint acting for an account is tried, but creating one's own audience (below)
    assert set(attempts) | {("POST", "/v1/audiences")} == _acting_operations(api)
    snapshot = [api.ok(api.get(p, account=a)) for p, a in (
        (f"/v1/audiences/{w.A}", w.owner), (f"/v1/audiences/{w.L}", w.owner), (f"/v1/ad-groups/{w.ag}", w.recipient),
        (f"/v1/audiences/{w.A}/shares", w.owner), (f"/v1/accounts/{w.recipient}/audiences", w.recipient))]
    events_before = last_ids(api)[0]
    secret_names = ("audience A", "recipient's")
    for stranger in (w.peer, w.other, w.nobc, f"unknown_{w.u}"):
        for (method, template), (path, body) in attempts.items():
            r = api.call(method, path, json=body, account=stranger)
            assert r.status in (403, 404), (stranger, method, template, r.status, r.body)
            assert not any(name in json.dumps(r.body) for name in secret_names), r.body
    # the recipient, who has a relation, still may not see the owner's share list or log
    for path in (f"/v1/audiences/{w.A}/shares", f"/v1/audiences/{w.A}/share-log"):
        assert api.get(path, account=w.recipient).codes == ["not_owner"]
    assert last_ids(api)[0] == events_before
    assert snapshot == [api.ok(api.get(p, account=a)) for p, a in (
        (f"/v1/audiences/{w.A}", w.owner), (f"/v1/audiences/{w.L}", w.owner), (f"/v1/ad-groups/{w.ag}", w.recipient),
        (f"/v1/audiences/{w.A}/shares", w.owner), (f"/v1/accounts/{w.recipient}/audiences", w.recipient))]
    # creating an audience only ever creates one of the acting account's own
    made = api.ok(api.post("/v1/audiences", {"name": "own", "source": "partner"}, account=w.peer), 201)
    assert made["audience"]["owner_account_id"] == w.peer


def _as_unknown(response, ids: dict[str, str]) -> tuple:
    """An answer with the named ids replaced by placeholders: what the caller can compare."""
    text = json.dumps(response.body, sort_keys=True)
    for real, placeholder in sorted(ids.items(), key=lambda item: -len(item[0])):  # longest first
        text = text.replace(real, placeholder)
    return response.status, text


def test_a_stranger_cannot_tell_another_accounts_audience_or_ad_group_from_an_unknown_id(api):
    """docs/visibility.md: for an account with no relation, another account's audience (live,
    deleted, or no longer shared with it) and ad group answer exactly as an id that does
    not exist; creating an ad group under an id another account holds is the exception."""
    w = world_factory(api)
    api.ok(api.post(f"/v1/audiences/{w.A}/lookalikes", {"id": w.L, "name": "lal"}, account=w.owner), 201)
    api.ok(api.post("/v1/audiences", {"id": w.gone, "name": "gone", "source": "partner"}, account=w.owner), 201)
    api.ok(api.delete(f"/v1/audiences/{w.gone}", account=w.owner))
    api.ok(api.put(f"/v1/ad-groups/{w.ag}", {"name": "nobc's"}, account=w.nobc))  # no stranger's
    api.ok(api.delete(f"/v1/audiences/{w.B}/shares/{w.recipient}", account=w.owner))  # a former recipient
    attempts = {op: target for op, target in _attempts(w).items() if "/accounts/" not in op[1]}
    unknown = {w.A: "<audience>", w.L: "<audience>", w.ag: "<ad group>", w.gone: "<audience>",
               w.B: "<audience>", w.id("nope"): "<audience>", w.id("nope_ag"): "<ad group>"}
    for stranger, hidden in ((w.peer, w.A), (w.other, w.A), (w.peer, w.gone), (w.recipient, w.B), (w.peer, w.L)):
        for (method, template), (path, body) in attempts.items():
            if method == "PUT" and "ad-groups" in template:
                continue  # below
            path = path.replace(w.A, hidden).replace(w.L, hidden)
            missing = path.replace(hidden, w.id("nope")).replace(w.ag, w.id("nope_ag"))
            seen = api.call(method, path, json=body, account=stranger)
            assert seen.status == 404, (stranger, method, path, seen.body)
            assert _as_unknown(seen, unknown) == _as_unknown(api.call(method, missing, json=body, account=stranger),
                                                             unknown), (stranger, method, template)
        # an ad group listing another account's audience: refused as for an unknown audience
        listed = api.put(f"/v1/ad-groups/{w.id('own')}_{stranger}", {"name": "g", "include": [hidden]},
                         account=stranger)
        nothing = api.put(f"/v1/ad-groups/{w.id('own')}_{stranger}", {"name": "g", "include": [w.id("nope")]},
                          account=stranger)
        assert listed.status == 403 and listed.codes == ["unknown_audience"]
        assert listed.body["reasons"][0]["message"] == nothing.body["reasons"][0]["message"]
    # the exception: ad group ids are global and chosen by the caller, so creating one under a
    # taken id must refuse, which tells that the id is taken (ad_group_not_owned)
    taken = api.put(f"/v1/ad-groups/{w.ag}", {"name": "mine"}, account=w.peer)
    assert taken.status == 403 and taken.codes == ["ad_group_not_owned"]
    # the platform's own question (/v1/authorize) keeps the exact reason: no_access, even for
    # a deleted audience (the stranger is not told it was deleted)
    assert api.authorize(w.peer, "view", w.gone).codes == ["no_access"]
    assert api.authorize(w.owner, "edit", w.gone).codes == ["audience_deleted"]


def test_each_relation_sees_what_docs_visibility_says(api):
    w = world_factory(api)
    api.ok(api.post(f"/v1/audiences/{w.A}/lookalikes", {"id": w.L, "name": "lal"}, account=w.owner), 201)
    api.ok(api.post(f"/v1/audiences/{w.L}/shares", {"account_ids": [w.recipient]}, account=w.owner), 201)
    owners = api.ok(api.get(f"/v1/audiences/{w.L}", account=w.owner))
    recipients = api.ok(api.get(f"/v1/audiences/{w.L}", account=w.recipient))
    assert owners["seed_audience_id"] == w.A
    assert recipients["seed_audience_id"] is None  # the seed is the owner's own audience
    listed = {a["id"]: a for a in api.ok(api.get(f"/v1/accounts/{w.recipient}/audiences",
                                                 account=w.recipient))["audiences"]}
    assert listed[w.L]["seed_audience_id"] is None and w.A not in json.dumps(listed[w.L])
    # everything else of the audience is the same for both, but the relation and the actions
    same = {k for k in owners if k not in ("seed_audience_id", "relation", "actions")}
    assert {k: owners[k] for k in same} == {k: recipients[k] for k in same}
    assert (owners["relation"], recipients["relation"]) == ("owner", "recipient")
    # the recipient knows the audience, but not who else received it
    assert api.get(f"/v1/audiences/{w.L}/shares", account=w.recipient).codes == ["not_owner"]
    assert api.get(f"/v1/audiences/{w.L}/share-log", account=w.recipient).codes == ["not_owner"]


SCOPED_ENV = {"AUDIENCE_AUTHZ_CHECK_TOKENS": "check-1, check-2", "AUDIENCE_AUTHZ_ADMIN_TOKENS": "admin-1"}


@pytest.mark.full  # a server of its own, with settings of its own
@pytest.mark.parametrize("kind", DATABASES)
def test_scoped_tokens_reach_only_their_endpoints(kind, tmp_path):
    with private_server(kind, tmp_path, env=SCOPED_ENV) as (url, live, api):
        w = world_factory(api)
        check, admin = Api(live.base_url, "check-2"), Api(live.base_url, "admin-1")
        attempts = _attempts(w)
        attempts.update({
            ("POST", "/v1/audiences"): ("/v1/audiences", {"name": "n", "source": "partner"}),
            ("PUT", "/v1/business-centers/{id}"): (f"/v1/business-centers/{w.bc}", {"name": "renamed"}),
            ("PUT", "/v1/accounts/{id}"): (f"/v1/accounts/{w.peer}", {"name": "p", "business_center_id": w.bc}),
            ("POST", "/v1/authorize"): ("/v1/authorize", {"principal": {"account_id": w.recipient}, "action": "view",
                                                          "resource": {"audience_id": w.A}}),
            ("POST", "/v1/authorize/batch"): ("/v1/authorize/batch", {"checks": [{
                "principal": {"account_id": w.recipient}, "action": "view", "resource": {"audience_id": w.A}}]}),
            ("GET", "/v1/events"): ("/v1/events", None), ("GET", "/v1/decisions"): ("/v1/decisions", None),
            ("GET", "/v1/decisions/{decision_id}"): ("/v1/decisions/" + "0" * 32, None),
            ("GET", "/v1/events/latest"): ("/v1/events/latest", None),
            # a cursor past the end answers at once (400) instead of streaming for ever
            ("GET", "/v1/events/stream"): ("/v1/events/stream?after=999999999999", None),
            ("GET", "/healthz"): ("/healthz", None), ("GET", "/readyz"): ("/readyz", None),
            # the policy authors' endpoints: full tokens only
            ("POST", "/v1/policy/reload"): ("/v1/policy/reload", None),
            ("POST", "/v1/policy/diff"): ("/v1/policy/diff", {"files": {}, "last": 1}),
            ("GET", "/v1/policy/shadow"): ("/v1/policy/shadow", None),
            ("PUT", "/v1/policy/shadow"): ("/v1/policy/shadow", {"files": {}}),
            ("DELETE", "/v1/policy/shadow"): ("/v1/policy/shadow", None),
        })
        assert set(attempts) == _operations(api)  # every documented endpoint is tried
        writes = {op for op in attempts if op[0] != "GET" and not op[1].startswith("/v1/authorize")}
        admin_writes = {("PUT", "/v1/business-centers/{id}"), ("PUT", "/v1/accounts/{id}")}
        events = last_ids(api)[0]
        for client, allowed_writes in ((check, set()), (admin, admin_writes)):
            for op, (path, body) in attempts.items():
                r = client.call(op[0], path, json=body, account=w.owner)
                refused = r.status == 403 and isinstance(r.body, dict) and r.body.get("error", {}).get(
                    "code") == "insufficient_scope"
                assert refused == (op in writes - allowed_writes), (client.session.headers, op, r.status, r.body)
        assert last_ids(api)[0] == events + 2  # only the admin's two upserts changed anything
        assert Api(live.base_url, "check-3").get("/v1/events").status == 401
        first_check = Api(live.base_url, "check-1")
        assert first_check.ok(first_check.get("/openapi.json"))["paths"]  # any known token reads the document
        # a full token keeps every endpoint
        assert api.ok(api.post(f"/v1/audiences/{w.A}/shares", {"account_ids": [w.peer]}, account=w.owner), 201)


@pytest.mark.full
def test_rate_limit_answers_429_per_token(tmp_path):
    env = {"AUDIENCE_AUTHZ_RATE_LIMIT": "15/minute", "AUDIENCE_AUTHZ_CHECK_TOKENS": "other-token"}
    with private_server("sqlite", tmp_path, env=env) as (url, live, api):
        statuses = [api.get("/v1/events").status for _ in range(20)]
        assert statuses[:15] == [200] * 15 and statuses[15:] == [429] * 5, statuses
        limited = api.get("/v1/events")
        assert limited.body["error"]["code"] == "rate_limited" and int(limited.headers["Retry-After"]) >= 1
        assert api.post("/v1/authorize", {}).status == 429
        assert Api(live.base_url, "other-token").get("/v1/events").status == 200  # its own budget
        assert all(api.get("/healthz").status == 200 for _ in range(5))  # liveness is never limited


@pytest.mark.full
def test_request_and_response_size_limits(tmp_path):
    env = {"AUDIENCE_AUTHZ_MAX_BODY": "2000", "AUDIENCE_AUTHZ_MAX_RESPONSE": "3000"}
    with private_server("sqlite", tmp_path, env=env) as (url, live, api):
        w = world_factory(api)
        check = {"principal": {"account_id": w.recipient}, "action": "view", "resource": {"audience_id": w.A}}
        assert api.ok(api.post("/v1/authorize/batch", {"checks": [check] * 5}))
        too_big = api.post("/v1/authorize/batch", {"checks": [check] * 50})
        assert too_big.status == 413 and too_big.body["error"]["code"] == "body_too_large"
        r = api.get("/v1/events?limit=1000")  # the scenario's events take more than 3000 bytes
        assert r.status == 200 and int(r.headers["Content-Length"]) <= 3000, r.body  # a page cut short ...
        cut = r.body["events"]
        assert cut and r.body["next_after"] == cut[-1]["id"]
        rest = api.ok(api.get(f"/v1/events?after={r.body['next_after']}&limit=1000"))["events"]
        assert rest and rest[0]["id"] > cut[-1]["id"]  # ... that the cursor continues
        explained = api.post("/v1/authorize/batch", {"checks": [dict(check, explain=True)] * 5})
        assert explained.status == 500 and explained.body["decision"] == "deny"  # fails closed
        assert [r["code"] for r in explained.body["reasons"]] == ["response_too_large"]


@pytest.mark.full
def test_tokens_never_reach_the_log(tmp_path):
    token, wrong = "tok-SECRET-6f1c2b", "tok-WRONG-99aa"
    env = {"AUDIENCE_AUTHZ_SQLITE_BUSY_TIMEOUT_MS": "200", "AUDIENCE_AUTHZ_RATE_LIMIT": "40/minute"}
    with private_server("sqlite", tmp_path, token=token, env=env) as (url, live, api):
        w = world_factory(api)
        Api(live.base_url, wrong).get("/v1/events")
        api.call("GET", "/v1/events", headers={"Authorization": f"Basic {token}"})
        api.post(f"/v1/audiences/{w.A}/shares", {"account_ids": ["nope"]}, account=w.owner)
        holder = sqlite3.connect(urlparse(url).path, isolation_level=None)
        holder.execute("BEGIN EXCLUSIVE")  # make the server log errors
        try:
            assert api.post(f"/v1/audiences/{w.A}/shares", {"account_ids": [w.peer]}, account=w.owner).status == 503
        finally:
            holder.execute("ROLLBACK")
            holder.close()
        while api.get("/v1/events").status != 429:  # and a rate-limit warning
            pass
        time.sleep(0.2)
        log = server_log(live)
        assert "database is locked" in log  # the log did record the errors ...
        assert token not in log and wrong not in log  # ... but no token
        assert "SECRET" not in log and "WRONG" not in log
