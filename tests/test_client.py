"""The client-only package audience_authz_client against live servers (full tier): decisions,
actions, failing closed, what is raised, request ids; and against sockets and stub servers of
its own: closed ports, silence, the deadline, retries and 429, malformed or failed answers."""

from __future__ import annotations

import contextlib
import json
import socket
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from audience_authz.store.effects import PROPAGATE_CHUNK
from audience_authz_client import (
    AuthzClient,
    Check,
    Denied,
    EndShare,
    OtherEffect,
    PropagateUpdate,
    RateLimited,
    RequestError,
    Unavailable,
)
from tests.support import Api, LiveServer, free_port, world_factory
from tests.support.ops import break_decisions, broken_decision_answer, json_lines

pytestmark = pytest.mark.full  # sockets, stub servers and live servers, deadlines measured


@pytest.fixture
def client(live_server):
    with AuthzClient(live_server.base_url, live_server.token, timeout=30) as c:
        yield c


def test_authorize_and_authorize_many_answer_as_the_service(client, live_api, live_server):
    api, server = live_api, live_server
    w = world_factory(api)
    denied = client.authorize(w.recipient, "share", w.A, target_account_id=w.peer)
    assert not denied.allowed and denied.decision == "deny" and denied.codes == ["reshare_forbidden"]
    assert denied.reasons[0].account_id == w.peer and denied.error is None
    allowed = client.authorize(w.owner, "stop_sharing", w.A, target_account_id=w.recipient,
                               request_id=f"req-{w.u}")
    assert allowed.allowed and [e.type for e in allowed.effects] == ["end_share", "remove_from_list"]
    assert isinstance(allowed.effects[0], EndShare) and allowed.effects[0].account_id == w.recipient
    assert allowed.policy_version and allowed.decision_id and allowed.request_id == f"req-{w.u}"

    checks = [Check(w.owner, "edit", w.A), Check(w.recipient, "edit", w.A),
              Check(w.recipient, "apply", w.B, ad_group_id=w.id("nope")),
              Check(w.peer, "view", w.C), Check(w.owner, "share", w.C, target_account_id=w.other)]
    small_batches = AuthzClient(server.base_url, server.token, batch_size=2)
    for answers in (client.authorize_many(checks), small_batches.authorize_many(checks)):
        assert [(d.decision, d.codes) for d in answers] == [
            ("allow", []), ("deny", ["recipient_action_forbidden"]), ("deny", ["unknown_ad_group"]),
            ("deny", ["no_access"]), ("deny", ["not_same_business_center"])]
    assert client.authorize_many([]) == []


def test_upserts_leave_out_what_the_caller_did_not_name(client, uid):
    """A rename keeps the stored sharing scope (the client leaves the fields out instead of
    sending false or null); changing it takes naming it."""
    bc, account, group = f"bc_{uid}", f"acc_{uid}", f"ag_{uid}"
    assert client.upsert_business_center(bc, "BC", True).cross_bc_allowlisted is True
    assert client.upsert_business_center(bc, "BC renamed").cross_bc_allowlisted is True
    assert client.upsert_business_center(bc, "BC", False).cross_bc_allowlisted is False
    assert client.upsert_account(account, "acc", bc).business_center_id == bc
    assert client.upsert_account(account, "acc renamed").business_center_id == bc
    assert client.upsert_account(account, "acc", leave_business_center=True).business_center_id is None
    paused = client.upsert_ad_group(account, group, "g", status="paused")
    assert not isinstance(paused, Denied) and paused.ad_group.status == "paused"
    renamed = client.upsert_ad_group(account, group, "g renamed")
    assert not isinstance(renamed, Denied) and renamed.ad_group.status == "paused"
    resumed = client.upsert_ad_group(account, group, "g", status="enabled")
    assert not isinstance(resumed, Denied) and resumed.ad_group.status == "enabled"


def test_action_calls_do_what_the_api_does(client, uid):
    bc, owner, recipient = f"bc_{uid}", f"own_{uid}", f"rec_{uid}"
    client.upsert_business_center(bc, "BC")
    client.upsert_account(owner, "owner", bc)
    assert client.upsert_account(recipient, "recipient", bc).business_center_id == bc
    created = client.create_audience(owner, "A", "customer_file", audience_id=f"aud_{uid}")
    assert not isinstance(created, Denied)
    audience = created.audience.id
    assert audience == f"aud_{uid}" and created.audience.relation == "owner"
    no_terms = client.share(owner, audience, [recipient])
    assert isinstance(no_terms, Denied) and no_terms.codes == ["terms_not_accepted"]
    assert no_terms.decision_ids and no_terms.request_id
    accepted = client.accept_terms(owner)
    assert not isinstance(accepted, Denied) and accepted.terms_accepted_at
    shared = client.share(owner, audience, [recipient])
    assert not isinstance(shared, Denied) and shared.recipients == (recipient,)
    shares = client.list_shares(owner, audience)
    assert not isinstance(shares, Denied) and [s.account_id for s in shares.shares] == [recipient]
    seen = client.get_audience(recipient, audience)
    assert not isinstance(seen, Denied) and seen.relation == "recipient" and "apply" in seen.actions
    listed = client.list_audiences(recipient)
    assert not isinstance(listed, Denied) and [a.id for a in listed.audiences] == [audience]

    edited = client.edit_audience(owner, audience, name="A2", members=("add", 5))
    assert not isinstance(edited, Denied) and edited.audience.name == "A2"
    assert edited.effects == (PropagateUpdate("propagate_update", audience, (recipient,), 2),)
    group = client.upsert_ad_group(recipient, f"ag_{uid}", "g", include=[audience])  # apply
    assert not isinstance(group, Denied) and group.ad_group.include == (audience,)
    got = client.get_ad_group(recipient, f"ag_{uid}")
    assert not isinstance(got, Denied) and got.include == (audience,)
    reshare = client.share(recipient, audience, [owner])
    assert isinstance(reshare, Denied) and reshare.codes == ["reshare_forbidden"]

    lookalike = client.create_lookalike(owner, audience, "L", lookalike_id=f"lal_{uid}")
    assert not isinstance(lookalike, Denied) and lookalike.audience.type == "lookalike"
    refreshed = client.refresh_lookalike(owner, f"lal_{uid}")
    assert not isinstance(refreshed, Denied) and refreshed.audience.revision == 2

    stopped = client.stop_sharing(owner, audience, recipient)
    assert not isinstance(stopped, Denied) and stopped.stopped == (recipient,)
    after = client.get_ad_group(recipient, f"ag_{uid}")
    assert not isinstance(after, Denied) and after.no_audience_targeting is True
    log = client.share_log(owner, audience)
    assert not isinstance(log, Denied)
    assert [(e.action, e.account_id) for e in log.entries] == [("share", recipient), ("stop", recipient)]
    deleted = client.delete_audience(owner, f"lal_{uid}")
    assert not isinstance(deleted, Denied) and deleted.deleted is True
    again = client.stop_sharing(owner, audience)
    assert not isinstance(again, Denied) and (again.stopped, again.effects) == ((), ())

    with pytest.raises(RequestError) as missing:
        client.get_ad_group(owner, f"nope_{uid}", request_id=f"missing-{uid}")
    assert missing.value.status == 404 and missing.value.code == "unknown_ad_group"
    assert missing.value.request_id == f"missing-{uid}"
    events = client.events(after=0, limit=1000).events
    assert events and client.decisions(after=0, limit=5).decisions


def test_lists_are_paged_and_answers_summarise_their_effects(client, live_api):
    api = live_api
    w = world_factory(api)
    own = sorted(f"{w.u}_own{i:02d}" for i in range(5))
    for audience in own:
        assert not isinstance(client.create_audience(w.owner, "a", "customer_file", audience_id=audience), Denied)
    everything = client.list_audiences(w.owner, limit=1000)
    assert not isinstance(everything, Denied) and everything.next_after is None
    ids = [a.id for a in everything.audiences]
    assert sorted(ids) == sorted([w.A, w.B, w.C, *own])
    first = client.list_audiences(w.owner, limit=3)
    assert not isinstance(first, Denied) and [a.id for a in first.audiences] == ids[:3]
    assert first.next_after == ids[2]
    second = client.list_audiences(w.owner, after=first.next_after, limit=3)
    assert not isinstance(second, Denied) and [a.id for a in second.audiences] == ids[3:6]
    pages = list(client.audience_pages(w.owner, limit=3))
    assert [len(p.audiences) for p in pages if not isinstance(p, Denied)] == [3, 3, 2]
    assert [a.id for p in pages if not isinstance(p, Denied) for a in p.audiences] == ids
    received = [a for p in client.audience_pages(w.recipient) if not isinstance(p, Denied) for a in p.audiences]
    assert sorted(a.id for a in received) == sorted([w.A, w.B, w.C]) and {a.relation for a in received} == {"recipient"}
    applicable = [a.id for p in client.audience_pages(w.recipient, limit=2, action="apply")
                  if not isinstance(p, Denied) for a in p.audiences]
    assert applicable == [a.id for a in received if "apply" in a.actions]
    with pytest.raises(RequestError) as bad:
        client.list_audiences(w.owner, limit=1001)
    assert bad.value.status == 400

    recipients = [w.id(f"r{i}") for i in range(PROPAGATE_CHUNK)]  # with w.recipient: one over a chunk
    for account in recipients:
        client.upsert_account(account, account, w.bc)
    shared = client.share(w.owner, w.A, recipients)
    assert not isinstance(shared, Denied) and shared.effect_counts == {} and shared.truncated == ()
    assert shared.events is not None and shared.events.count == len(recipients)
    assert shared.events.last_id - shared.events.first_id + 1 == len(recipients)
    feed = client.events(after=shared.events.first_id - 1, limit=1000, audience_id=w.A).events
    assert [e.type for e in feed] == ["share_created"] * len(recipients)
    share_pages = list(client.share_pages(w.owner, w.A, limit=40))
    assert [len(p.shares) for p in share_pages if not isinstance(p, Denied)] == [40, 40, 21]
    listed = [s.account_id for p in share_pages if not isinstance(p, Denied) for s in p.shares]
    assert sorted(listed) == sorted([w.recipient, *recipients])
    not_owner = list(client.share_pages(w.recipient, w.A))
    assert len(not_owner) == 1 and isinstance(not_owner[0], Denied)

    edited = client.edit_audience(w.owner, w.A, name="renamed")
    assert not isinstance(edited, Denied) and edited.effect_counts == {"propagate_update": 2}
    assert [(e.type, e.part, e.parts) for e in edited.effects if isinstance(e, PropagateUpdate)] == [
        ("propagate_update", 1, 2), ("propagate_update", 2, 2)]
    assert sorted(a for e in edited.effects if isinstance(e, PropagateUpdate) for a in e.account_ids) == sorted(
        [w.recipient, *recipients])
    stopped = client.stop_sharing(w.owner, w.A, w.recipient)
    assert not isinstance(stopped, Denied)
    assert stopped.effect_counts == {"end_share": 1, "remove_from_list": 1} and stopped.events is not None
    decision = client.authorize(w.owner, "stop_sharing", w.B, target_account_id=w.recipient)
    assert decision.effect_counts == {"end_share": 1, "remove_from_list": 1} and decision.events is None


# -- failing closed ------------------------------------------------------------------------

def _assert_fails_closed(client: AuthzClient, code: str = "unavailable"):
    decision = client.authorize("acc", "view", "aud")
    assert not decision.allowed and decision.decision == "deny"
    assert decision.codes == [code] and decision.error
    many = client.authorize_many([Check("acc", "view", "aud"), Check("acc", "edit", "aud")])
    assert [(d.allowed, d.codes) for d in many] == [(False, [code]), (False, [code])]
    return decision


def test_a_closed_port_is_a_deny_and_actions_raise():
    client = AuthzClient(f"http://127.0.0.1:{free_port()}", "t", timeout=2, retries=1, backoff=0.01)
    _assert_fails_closed(client)
    with pytest.raises(Unavailable) as raised:
        client.share("acc", "aud", ["other"])
    assert raised.value.sent is False  # no connection: the service cannot have seen it


def test_an_action_sends_one_idempotency_key_per_call_on_every_retry():
    failed = b'{"error": {"code": "database_unavailable", "message": "away"}}'
    with _stub(503, failed) as (url, seen):
        client = AuthzClient(url, "t", timeout=5, retries=2, backoff=0.01)
        for call in (lambda: client.share("acc", "aud", ["other"]), lambda: client.share("acc", "aud", ["other"]),
                     lambda: client.edit_audience("acc", "aud", name="n"),
                     lambda: client.stop_sharing("acc", "aud", "other")):
            with pytest.raises(Unavailable) as raised:
                call()
            assert raised.value.sent and raised.value.status == 503
        keys = [key for _, _, key in seen]
        assert len(keys) == 12 and None not in keys
        calls = [keys[i:i + 3] for i in range(0, 12, 3)]
        assert all(len(set(attempts)) == 1 for attempts in calls)  # one key on every retry of a call
        assert len({attempts[0] for attempts in calls}) == 4  # a new key for each call
        seen.clear()
        with pytest.raises(Unavailable):
            client.list_shares("acc", "aud")
        assert [key for _, _, key in seen] == [None] * 3  # a read takes no key


def test_a_server_that_never_answers_is_a_deny_within_one_deadline_per_call():
    with socket.socket() as silent:  # accepts connections (the backlog), never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(16)
        client = AuthzClient(f"http://127.0.0.1:{silent.getsockname()[1]}", "t", timeout=0.5, retries=3,
                             backoff=0.01)
        for call in (lambda: client.authorize("acc", "view", "aud"),
                     lambda: client.authorize_many([Check("acc", "view", "aud")] * 3)):
            started = time.monotonic()
            answer = call()
            decision = answer if not isinstance(answer, list) else answer[0]
            # four attempts of 0.5 s each would take 2 s: the deadline is the call's, not an attempt's
            assert time.monotonic() - started < 1.2
            assert not decision.allowed and decision.codes == ["unavailable"]
            assert "timed out" in decision.error.lower() or "deadline" in decision.error
        started = time.monotonic()
        with pytest.raises(Unavailable):
            client.list_shares("acc", "aud")
        assert time.monotonic() - started < 1.2


def test_a_failing_service_is_a_deny_and_calls_are_retried(empty_database):
    with LiveServer(empty_database) as live:
        api = Api(live.base_url, live.token)
        w = world_factory(api)
        break_decisions(empty_database)  # every decision now fails: a 5xx deny
        client = AuthzClient(live.base_url, live.token, timeout=30, retries=2, backoff=0.01)
        shares_path = f"/v1/audiences/{w.A}/shares"
        authorized, shared = _served(live, "/v1/authorize"), _served(live, shares_path)
        decision = client.authorize(w.owner, "edit", w.A, request_id=f"broken-{w.u}")
        status, code = broken_decision_answer(empty_database)
        assert not decision.allowed and decision.codes == [code] and decision.error == f"HTTP {status}"
        with pytest.raises(Unavailable) as failed:
            client.share(w.owner, w.A, [w.peer])
        assert failed.value.sent
        time.sleep(0.3)  # the access line is written after the answer
        assert _served(live, "/v1/authorize") - authorized == 3  # tried, then retried twice
        # an action too, with its Idempotency-Key: a failure rolled back, so each retry runs
        assert _served(live, shares_path) - shared == 3
        # every attempt of one call carries the call's request id
        assert _served(live, "/v1/authorize", request_id=f"broken-{w.u}") == 3


def _served(live: LiveServer, path: str, request_id: str | None = None) -> int:
    """How many requests for ``path`` (with ``request_id``) the server's access log shows."""
    return sum(1 for r in json_lines(live.log_path.read_text())
               if r.get("logger") == "audience_authz.access" and r["path"] == path
               and request_id in (None, r.get("request_id")))


@contextlib.contextmanager
def _stub(status: int, body: bytes, headers: dict | None = None):
    """A server that answers every request with ``status``, ``body`` and ``headers``, and
    records the path and X-Request-Id of each."""
    seen = []

    class Handler(BaseHTTPRequestHandler):
        def answer(self):
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            seen.append((self.path, self.headers.get("X-Request-Id"), self.headers.get("Idempotency-Key")))
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(body)

        do_POST = do_GET = do_PUT = do_PATCH = do_DELETE = answer

        def log_message(self, *args):
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}", seen
    finally:
        httpd.shutdown()
        httpd.server_close()


@pytest.mark.parametrize("status, body", [
    (500, b'{"decision": "allow", "reasons": [], "effects": []}'),  # an allow on a 500 is no allow
    (503, b"<html>bad gateway</html>"),
    (200, b'{"decision": "allow", "reasons": [], "effec'),  # cut short
    (200, b'{"decision": "maybe", "reasons": [], "effects": []}'),
    (200, b'{"decision": "allow", "reasons": "none", "effects": []}'),
    (200, b'{"decision": "allow", "reasons": [], "effects": [{"audience_id": "a"}]}'),  # an effect without a type
    (200, b'["allow"]'),
    (302, b'{"decision": "allow", "reasons": [], "effects": []}'),
])
def test_a_malformed_or_failed_answer_is_a_deny(status, body):
    with _stub(status, body) as (url, seen):
        client = AuthzClient(url, "t", timeout=5, retries=1, backoff=0.01)
        decision = client.authorize("acc", "view", "aud")
        assert not decision.allowed and decision.error
        many = client.authorize_many([Check("acc", "view", "aud")])
        assert not many[0].allowed and many[0].error
        assert len(seen) == (4 if status >= 500 else 2)  # 5xx is retried once per call


def test_an_unknown_effect_type_or_reason_code_is_read_not_refused():
    """A newer service (or policy) may add effect types and reason codes: the answer stands."""
    body = json.dumps({"decision": "allow", "reasons": [], "policy_version": "v", "decision_id": "d",
                       "effects": [{"type": "notify_partner", "partner_id": "p1"},
                                   {"type": "end_share", "audience_id": "a", "account_id": "b",
                                    "reason": "a_code_added_later"}]}).encode()
    with _stub(200, body) as (url, _):
        decision = AuthzClient(url, "t", timeout=5, retries=0).authorize("acc", "share", "a")
    assert decision.allowed and decision.error is None
    assert decision.effects[0] == OtherEffect("notify_partner", {"type": "notify_partner", "partner_id": "p1"})
    assert isinstance(decision.effects[1], EndShare) and decision.effects[1].reason == "a_code_added_later"
    denied = json.dumps({"decision": "deny", "reasons": [{"code": "a_code_added_later", "message": "m"}],
                         "effects": [], "policy_version": "v", "decision_id": "d"}).encode()
    with _stub(200, denied) as (url, _):
        decision = AuthzClient(url, "t", timeout=5, retries=0).authorize("acc", "share", "a")
    assert not decision.allowed and decision.codes == ["a_code_added_later"] and decision.error is None


@pytest.mark.parametrize("status, code", [(400, "invalid_request"), (401, "unauthorized"),
                                          (403, "insufficient_scope"), (413, "body_too_large")])
def test_a_misuse_is_raised_not_denied(status, code):
    body = json.dumps({"error": {"code": code, "message": "yours"}}).encode()
    with _stub(status, body) as (url, seen):
        client = AuthzClient(url, "t", timeout=5, retries=2, backoff=0.01)
        with pytest.raises(RequestError) as one:
            client.authorize("acc", "view", "aud", request_id="mine-1")
        assert (one.value.status, one.value.code, one.value.request_id) == (status, code, "mine-1")
        with pytest.raises(RequestError):
            client.authorize_many([Check("acc", "view", "aud")])
        with pytest.raises(RequestError):
            client.share("acc", "aud", ["other"])
        assert len(seen) == 3  # a 4xx is never retried


def test_a_wrong_token_raises_unauthorized(live_server):
    server = live_server
    client = AuthzClient(server.base_url, "wrong-token", timeout=10, retries=0)
    with pytest.raises(RequestError) as wrong:
        client.authorize("acc", "view", f"aud_{uuid.uuid4().hex[:6]}")
    assert wrong.value.status == 401 and wrong.value.code == "unauthorized"


def test_429_waits_retry_after_only_within_the_deadline():
    limited = b'{"error": {"code": "rate_limited", "message": "over the limit"}}'
    with _stub(429, limited, {"Retry-After": "1"}) as (url, seen):
        short = AuthzClient(url, "t", timeout=0.5, retries=3)
        started = time.monotonic()
        decision = short.authorize("acc", "view", "aud")
        assert time.monotonic() - started < 0.5  # a 1 s wait does not fit in 0.5 s: no wait
        assert not decision.allowed and decision.codes == ["rate_limited"] and "429" in decision.error
        with pytest.raises(RateLimited) as raised:
            short.share("acc", "aud", ["other"])
        assert raised.value.retry_after == 1 and raised.value.status == 429
        assert len(seen) == 2

        seen.clear()
        patient = AuthzClient(url, "t", timeout=5, retries=1)
        started = time.monotonic()
        assert patient.authorize("acc", "view", "aud").codes == ["rate_limited"]
        assert 1 <= time.monotonic() - started < 3  # waited once, then out of retries
        assert len(seen) == 2 and seen[0][1] == seen[1][1]  # one call, one request id


def test_each_call_has_a_request_id_the_caller_may_choose():
    answer = b'{"decision": "deny", "reasons": [{"code": "no_access", "message": "m"}], "effects": [],' \
             b' "policy_version": "v", "decision_id": "d"}'
    with _stub(200, answer) as (url, seen):
        client = AuthzClient(url, "t", timeout=5)
        assert client.authorize("acc", "view", "aud", request_id="caller-42").request_id == "caller-42"
        generated = client.authorize("acc", "view", "aud").request_id
        assert [rid for _, rid, _ in seen] == ["caller-42", generated] and generated != "caller-42"
        with pytest.raises(ValueError):
            client.authorize("acc", "view", "aud", request_id="has spaces\r\nX-Injected: 1")


def test_a_batch_answer_that_does_not_match_the_checks_denies_them_all():
    answer = b'{"results": [{"decision": "allow", "reasons": [], "effects": []}]}'
    with _stub(200, answer) as (url, _):
        client = AuthzClient(url, "t", timeout=5)
        assert [d.allowed for d in client.authorize_many([Check("a", "view", "x")])] == [True]
        decisions = client.authorize_many([Check("a", "view", "x"), Check("b", "view", "x")])
        assert [d.allowed for d in decisions] == [False, False]
        assert all("results do not match" in d.error for d in decisions)


@pytest.mark.parametrize("audience_id", ["aud_x/../{C}", "{A}?x=1", "{A}#frag", "..", "%2e%2e", "{A}/shares",
                                         "../audiences/{C}"])
def test_an_id_cannot_steer_a_call_to_another_resource(client, live_api, audience_id):
    api = live_api
    """An id is one path segment: "aud_x/../aud_C" must not share aud_C, nor "aud_A?x=1" read aud_A."""
    w = world_factory(api, share_with_recipient=False)
    steered = audience_id.format(A=w.A, C=w.C)
    with pytest.raises(RequestError) as share:
        client.share(w.owner, steered, [w.peer])
    assert share.value.status in (400, 404)
    with pytest.raises(RequestError) as read:
        client.get_audience(w.owner, steered)
    assert read.value.status in (400, 404)
    with pytest.raises(RequestError):
        client.stop_sharing(w.owner, w.A, f"{w.peer}/../{w.recipient}")
    for audience in (w.A, w.C):  # nothing was shared
        shares = client.list_shares(w.owner, audience)
        assert not isinstance(shares, Denied) and shares.shares == ()
