"""audience_authz.client against live servers (full tier): decisions, actions, and failing
closed; and against sockets and stub servers of its own: closed ports, silence, answers
that are malformed or failed."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from audience_authz.client import AuthzClient, Check, Denied, RequestError, Unavailable
from tests.support import Api, LiveServer, free_port, world_factory
from tests.support.ops import break_decisions, broken_decision_answer, json_lines


@pytest.fixture
def client(live_server):
    with AuthzClient(live_server.base_url, live_server.token, timeout=30) as c:
        yield c


@pytest.mark.full
def test_authorize_and_authorize_many_answer_as_the_service(client, live_api, live_server):
    api, server = live_api, live_server
    w = world_factory(api)
    denied = client.authorize(w.recipient, "share", w.A, target_account_id=w.peer)
    assert not denied.allowed and denied.decision == "deny" and denied.codes == ["reshare_forbidden"]
    assert denied.reasons[0].details == {"account_id": w.peer} and denied.error is None
    allowed = client.authorize(w.owner, "stop_sharing", w.A, target_account_id=w.recipient)
    assert allowed.allowed and [e["type"] for e in allowed.effects] == ["end_share", "remove_from_list"]
    assert allowed.policy_version and allowed.decision_id

    checks = [Check(w.owner, "edit", w.A), Check(w.recipient, "edit", w.A),
              Check(w.recipient, "apply", w.B, ad_group_id=w.id("nope")),
              Check(w.peer, "view", w.C), Check(w.owner, "share", w.C, target_account_id=w.other)]
    small_batches = AuthzClient(server.base_url, server.token, batch_size=2)
    for answers in (client.authorize_many(checks), small_batches.authorize_many(checks)):
        assert [(d.decision, d.codes) for d in answers] == [
            ("allow", []), ("deny", ["recipient_action_forbidden"]), ("deny", ["unknown_ad_group"]),
            ("deny", ["no_access"]), ("deny", ["not_same_business_center"])]
    assert client.authorize_many([]) == []


@pytest.mark.full
def test_action_calls_do_what_the_api_does(client, uid):
    bc, owner, recipient = f"bc_{uid}", f"own_{uid}", f"rec_{uid}"
    client.upsert_business_center(bc, "BC")
    client.upsert_account(owner, "owner", bc)
    assert client.upsert_account(recipient, "recipient", bc)["business_center_id"] == bc
    created = client.create_audience(owner, "A", "customer_file", audience_id=f"aud_{uid}")
    audience = created["audience"]["id"]
    assert audience == f"aud_{uid}" and created["audience"]["relation"] == "owner"
    with pytest.raises(Denied) as no_terms:
        client.share(owner, audience, [recipient])
    assert no_terms.value.codes == ["terms_not_accepted"]
    assert client.accept_terms(owner)["terms_accepted_at"]
    assert client.share(owner, audience, [recipient])["recipients"] == [recipient]
    assert [s["account_id"] for s in client.list_shares(owner, audience)["shares"]] == [recipient]
    assert client.get_audience(recipient, audience)["relation"] == "recipient"
    assert [a["id"] for a in client.list_audiences(recipient)["audiences"]] == [audience]

    edited = client.edit_audience(owner, audience, name="A2", members={"op": "add", "count": 5})
    assert edited["audience"]["name"] == "A2"
    assert edited["effects"][0]["type"] == "propagate_update" and edited["effects"][0]["account_ids"] == [recipient]
    group = client.upsert_ad_group(recipient, f"ag_{uid}", "g", include=[audience])  # apply
    assert group["ad_group"]["include"] == [audience]
    assert client.get_ad_group(recipient, f"ag_{uid}")["include"] == [audience]
    with pytest.raises(Denied) as reshare:
        client.share(recipient, audience, [owner])
    assert reshare.value.codes == ["reshare_forbidden"]

    lookalike = client.create_lookalike(owner, audience, "L", lookalike_id=f"lal_{uid}")
    assert lookalike["audience"]["type"] == "lookalike"
    assert client.refresh_lookalike(owner, f"lal_{uid}")["audience"]["revision"] == 2

    stopped = client.stop_sharing(owner, audience, recipient)
    assert stopped["stopped"] == [recipient]
    assert client.get_ad_group(recipient, f"ag_{uid}")["no_audience_targeting"] is True
    log = client.share_log(owner, audience)["entries"]
    assert [(e["action"], e["account_id"]) for e in log] == [("share", recipient), ("stop", recipient)]
    assert client.delete_audience(owner, f"lal_{uid}")["deleted"] is True
    assert client.stop_sharing(owner, audience) == {"audience_id": audience, "stopped": [], "effects": []}

    with pytest.raises(RequestError) as missing:
        client.get_ad_group(owner, f"nope_{uid}")
    assert missing.value.status == 404 and missing.value.code == "unknown_ad_group"
    events = client.events(after=0, limit=1000)["events"]
    assert events and client.decisions(after=0, limit=5)["decisions"]


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
    with pytest.raises(Unavailable):
        client.share("acc", "aud", ["other"])


def test_a_server_that_never_answers_is_a_deny_after_the_timeout():
    with socket.socket() as silent:  # accepts connections (the backlog), never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(16)
        client = AuthzClient(f"http://127.0.0.1:{silent.getsockname()[1]}", "t", timeout=0.3, retries=1,
                             backoff=0.01)
        started = time.monotonic()
        decision = _assert_fails_closed(client)
        assert "timed out" in decision.error.lower()
        assert time.monotonic() - started < 10


@pytest.mark.full
def test_a_failing_service_is_a_deny_and_only_idempotent_calls_are_retried(empty_database):
    with LiveServer(empty_database) as live:
        api = Api(live.base_url, live.token)
        w = world_factory(api)
        break_decisions(empty_database)  # every decision now fails: a 5xx deny
        client = AuthzClient(live.base_url, live.token, timeout=30, retries=2, backoff=0.01)
        shares_path = f"/v1/audiences/{w.A}/shares"
        authorized, shared = _served(live, "/v1/authorize"), _served(live, shares_path)
        decision = client.authorize(w.owner, "edit", w.A)
        status, code = broken_decision_answer(empty_database)
        assert not decision.allowed and decision.codes == [code] and decision.error == f"HTTP {status}"
        with pytest.raises(Unavailable):
            client.share(w.owner, w.A, [w.peer])
        time.sleep(0.3)  # the access line is written after the answer
        assert _served(live, "/v1/authorize") - authorized == 3  # tried, then retried twice
        assert _served(live, shares_path) - shared == 1  # an action is never sent twice


def _served(live: LiveServer, path: str) -> int:
    """How many requests for ``path`` the server's access log shows."""
    return sum(1 for r in json_lines(live.log_path.read_text())
               if r.get("logger") == "audience_authz.access" and r["path"] == path)


@contextlib.contextmanager
def _stub(status: int, body: bytes):
    """A server that answers every POST with ``status`` and ``body``, and counts them."""
    seen = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            self.rfile.read(int(self.headers["Content-Length"]))
            seen.append(self.path)
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

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
    (200, b'["allow"]'),
    (401, b'{"error": {"code": "unauthorized", "message": "token"}}'),
])
def test_a_malformed_or_failed_answer_is_a_deny(status, body):
    with _stub(status, body) as (url, seen):
        client = AuthzClient(url, "t", timeout=5, retries=1, backoff=0.01)
        decision = client.authorize("acc", "view", "aud")
        assert not decision.allowed and decision.error
        many = client.authorize_many([Check("acc", "view", "aud")])
        assert not many[0].allowed and many[0].error
        assert len(seen) == (4 if status >= 500 else 2)  # 5xx is retried once per call


def test_a_batch_answer_that_does_not_match_the_checks_denies_them_all():
    answer = b'{"results": [{"decision": "allow", "reasons": [], "effects": []}]}'
    with _stub(200, answer) as (url, _):
        client = AuthzClient(url, "t", timeout=5)
        assert [d.allowed for d in client.authorize_many([Check("a", "view", "x")])] == [True]
        decisions = client.authorize_many([Check("a", "view", "x"), Check("b", "view", "x")])
        assert [d.allowed for d in decisions] == [False, False]
        assert all("results do not match" in d.error for d in decisions)


@pytest.mark.full
def test_a_wrong_token_is_a_deny_with_the_services_reason(live_server):
    server = live_server
    client = AuthzClient(server.base_url, "wrong-token", timeout=10, retries=0)
    decision = client.authorize("acc", "view", f"aud_{uuid.uuid4().hex[:6]}")
    assert not decision.allowed and decision.codes == ["unauthorized"] and decision.error == "HTTP 401"
