"""Idempotency-Key on the actions (docs/spec.md): the same call made again is answered again,
not applied again; another request with the key is 422; keys are the caller's. Through the
HTTP API on both databases (the ``server`` fixture)."""

from __future__ import annotations

import threading
import uuid

import pytest
import requests

from tests.support import Api, LiveServer, world_factory
from tests.support.inproc import InProcessServer
from tests.support.reliability import frozen

FULL = pytest.mark.full


def _key() -> dict:
    return {"Idempotency-Key": uuid.uuid4().hex}


def _members(api, w, audience) -> int:
    return api.ok(api.get(f"/v1/audiences/{audience}", account=w.owner))["member_count"]


def test_the_same_edit_twice_adds_members_once(api, world):
    w, key = world, _key()
    before = _members(api, w, w.A)
    first = api.patch(f"/v1/audiences/{w.A}", {"members": {"op": "add", "count": 5}}, account=w.owner, headers=key)
    again = api.patch(f"/v1/audiences/{w.A}", {"members": {"op": "add", "count": 5}}, account=w.owner, headers=key)
    assert first.status == again.status == 200, (first.body, again.body)
    assert again.body == first.body
    assert again.headers.get("Idempotent-Replayed") == "true"
    assert "Idempotent-Replayed" not in first.headers
    assert _members(api, w, w.A) == before + 5
    # without a key, or with another, it is a new call
    api.ok(api.patch(f"/v1/audiences/{w.A}", {"members": {"op": "add", "count": 5}}, account=w.owner, headers=_key()))
    assert _members(api, w, w.A) == before + 10


def test_a_create_without_id_retried_makes_one_audience(api, world):
    w, key = world, _key()
    body = {"name": "retried", "source": "customer_file"}
    first = api.post("/v1/audiences", body, account=w.owner, headers=key)
    again = api.post("/v1/audiences", body, account=w.owner, headers=key)
    assert first.status == again.status == 201, (first.body, again.body)
    assert again.body == first.body
    listed = api.ok(api.get(f"/v1/accounts/{w.owner}/audiences?limit=100", account=w.owner))
    named = [a for a in listed["audiences"] if a["name"] == "retried"]
    assert len(named) == 1, named


def test_a_share_retried_is_answered_as_shared_not_already_shared(api):
    w = world_factory(api, share_with_recipient=False)
    key = _key()
    first = api.post(f"/v1/audiences/{w.A}/shares", {"account_ids": [w.recipient]}, account=w.owner, headers=key)
    again = api.post(f"/v1/audiences/{w.A}/shares", {"account_ids": [w.recipient]}, account=w.owner, headers=key)
    assert first.status == again.status == 201, (first.body, again.body)
    assert again.body == first.body
    # another caller's share (no key) of the same audience is told it exists
    other = api.post(f"/v1/audiences/{w.A}/shares", {"account_ids": [w.recipient]}, account=w.owner)
    assert other.status != 201, other.body


def test_another_request_with_the_key_is_422_and_changes_nothing(api, world):
    w, key = world, _key()
    before = _members(api, w, w.A)
    api.ok(api.patch(f"/v1/audiences/{w.A}", {"members": {"op": "add", "count": 5}}, account=w.owner, headers=key))
    for method, path, body, account in (
            ("PATCH", f"/v1/audiences/{w.A}", {"members": {"op": "add", "count": 6}}, w.owner),
            ("PATCH", f"/v1/audiences/{w.B}", {"members": {"op": "add", "count": 5}}, w.owner),
            ("PATCH", f"/v1/audiences/{w.A}", {"members": {"op": "add", "count": 5}}, w.peer)):
        answer = api.call(method, path, json=body, account=account, headers=key)
        assert answer.status == 422, answer.body
        assert answer.body["error"]["code"] == "idempotency_key_reused"
    assert _members(api, w, w.A) == before + 5


def test_keys_are_the_callers_own(tmp_path):
    """The same key from another token is another call (an app of its own: two tokens)."""
    with InProcessServer(tmp_path, token="token-one,token-two") as server:
        _two_callers(server.client("token-one"), server.client("token-two"))


def _two_callers(one, two):
    w, key = world_factory(one), _key()
    before = _members(one, w, w.A)
    for caller in (one, two):
        caller.ok(caller.patch(f"/v1/audiences/{w.A}", {"members": {"op": "add", "count": 5}}, account=w.owner,
                               headers=key))
    assert _members(one, w, w.A) == before + 10
    replay = two.patch(f"/v1/audiences/{w.A}", {"members": {"op": "add", "count": 5}}, account=w.owner, headers=key)
    assert replay.headers.get("Idempotent-Replayed") == "true"
    assert _members(one, w, w.A) == before + 10


def test_a_deny_is_answered_again_as_it_was(api, world):
    w, key = world, _key()
    first = api.patch(f"/v1/audiences/{w.A}", {"name": "mine"}, account=w.recipient, headers=key)
    again = api.patch(f"/v1/audiences/{w.A}", {"name": "mine"}, account=w.recipient, headers=key)
    assert first.status == again.status == 403, (first.body, again.body)
    assert again.body == first.body
    assert again.headers.get("Idempotent-Replayed") == "true"


def test_an_error_that_rolls_back_stores_nothing(api, world):
    """A 409/422 precondition commits nothing, so the same key runs the call again."""
    w, key = world, _key()
    body = {"id": w.A, "name": "dup", "source": "customer_file"}
    first = api.post("/v1/audiences", body, account=w.owner, headers=key)
    assert first.status == 409, first.body
    api.ok(api.delete(f"/v1/audiences/{w.A}", account=w.owner))
    again = api.post("/v1/audiences", body, account=w.owner, headers=key)
    assert again.status in (201, 409) and "Idempotent-Replayed" not in again.headers, again.body


@pytest.mark.parametrize("bad", ["", "a" * 256, "has space", "tab\tkey", "é"])
def test_a_malformed_key_is_400(api, world, bad):
    answer = api.patch(f"/v1/audiences/{world.A}", {"name": "x"}, account=world.owner,
                       headers={"Idempotency-Key": bad.encode("utf-8").decode("latin-1")})
    assert answer.status == 400, answer.body
    assert answer.body["error"]["code"] == "invalid_idempotency_key"


def test_concurrent_calls_with_one_key_apply_once(live_api):
    """Six calls at once with one key, to a server process (each its own connection): one
    applies, the others wait for its commit and answer it."""
    api = live_api
    w, key = world_factory(api), _key()
    before = _members(api, w, w.A)
    answers = []

    def call():
        answers.append(api.patch(f"/v1/audiences/{w.A}", {"members": {"op": "add", "count": 5}}, account=w.owner,
                                 headers=key))

    threads = [threading.Thread(target=call) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert [a.status for a in answers] == [200] * 6, [a.body for a in answers]
    assert all(a.body == answers[0].body for a in answers)
    assert _members(api, w, w.A) == before + 5


def test_the_openapi_document_shows_the_header_on_the_actions(api):
    doc = api.get("/openapi.json").body
    for path, method, takes in (("/v1/audiences/{id}", "patch", True), ("/v1/audiences", "post", True),
                                ("/v1/audiences/{id}", "get", False), ("/v1/authorize", "post", False)):
        names = {p["name"] for p in doc["paths"][path][method].get("parameters", [])}
        assert ("Idempotency-Key" in names) is takes, (path, method)


@pytest.mark.full
def test_a_worker_frozen_past_the_deadline_then_resumed_applies_each_call_once(empty_database):
    """The issue's scenario: the worker is frozen (SIGSTOP) while a call is sent, the caller
    gives up after 1.5 s, the worker resumes (SIGCONT) and applies the call it had queued,
    and the caller's retry with the call's key is answered with that first answer."""
    with LiveServer(empty_database) as live:
        api = Api(live.base_url, live.token)
        w = world_factory(api, share_with_recipient=False)
        before = _members(api, w, w.A)
        calls = [("PATCH", f"/v1/audiences/{w.A}", {"members": {"op": "add", "count": 5}}),
                 ("POST", "/v1/audiences", {"name": f"frozen {w.u}", "source": "customer_file"}),
                 ("POST", f"/v1/audiences/{w.B}/shares", {"account_ids": [w.recipient]})]
        answers = []
        for method, path, body in calls:
            headers = {"Authorization": f"Bearer {live.token}", "X-Account-Id": w.owner, **_key()}
            with frozen(live), pytest.raises(requests.Timeout):
                requests.request(method, live.base_url + path, json=body, headers=headers, timeout=1.5)
            retried = requests.request(method, live.base_url + path, json=body, headers=headers, timeout=60)
            answers.append(retried)
        assert [a.status_code for a in answers] == [200, 201, 201], [a.text for a in answers]
        assert _members(api, w, w.A) == before + 5
        listed = api.ok(api.get(f"/v1/accounts/{w.owner}/audiences?limit=100", account=w.owner))
        assert len([a for a in listed["audiences"] if a["name"] == f"frozen {w.u}"]) == 1
        log = api.ok(api.get(f"/v1/audiences/{w.B}/share-log", account=w.owner))
        assert [e["action"] for e in log["entries"]] == ["share"], log


def test_every_action_is_answered_again_as_it_was(api, world):
    w = world
    calls = [
        ("PUT", f"/v1/business-centers/{w.bc}", {"name": "BC again", "cross_bc_allowlisted": False}, None),
        ("PUT", f"/v1/accounts/{w.peer}", {"name": "peer again", "business_center_id": w.bc}, None),
        ("POST", f"/v1/accounts/{w.owner}/terms-acceptance", None, w.owner),
        ("POST", f"/v1/audiences/{w.A}/lookalikes", {"name": "like A"}, w.owner),
        ("PUT", f"/v1/ad-groups/{w.ag}", {"name": "ag", "include": [w.B], "exclude": []}, w.recipient),
        ("DELETE", f"/v1/audiences/{w.B}/shares/{w.recipient}", None, w.owner),
        ("POST", f"/v1/audiences/{w.C}/shares", {"account_ids": [w.peer]}, w.owner),
        ("DELETE", f"/v1/audiences/{w.C}/shares", None, w.owner),
        ("DELETE", f"/v1/audiences/{w.A}", None, w.owner),
    ]
    for method, path, body, account in calls:
        key = _key()
        first = api.call(method, path, json=body, account=account, headers=key)
        again = api.call(method, path, json=body, account=account, headers=key)
        assert first.status in (200, 201), (method, path, first.body)
        assert (again.status, again.body) == (first.status, first.body), (method, path)
        assert again.headers.get("Idempotent-Replayed") == "true", (method, path)
