"""Bad input, authentication and unknown ids: clear answers, nothing stored."""

from __future__ import annotations

import pytest

from tests.support import last_event_id, world_factory


def raw(api, method, path, **kwargs):
    """A request that carries only the headers given (no token unless they hold one)."""
    return api.with_token(None).call(method, path, **kwargs)


AUTH = {"Authorization": "Bearer test-token"}


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer wrong"}, {"Authorization": "Basic dGVzdA=="},
                                     {"Authorization": "test-token"}])
def test_missing_or_wrong_token_is_401(api, headers):
    r = raw(api, "POST", "/v1/authorize", headers=headers, json={})
    assert r.status == 401
    assert r.body["error"]["code"] == "unauthorized"
    assert r.headers["WWW-Authenticate"] == "Bearer"


def test_probes_need_no_token_and_readiness_shows_the_reload_figures_only_with_one(api):
    assert raw(api, "GET", "/healthz").status == 200
    for headers in ({}, {"Authorization": "Bearer wrong"}):  # a load balancer's probe
        anonymous = raw(api, "GET", "/readyz", headers=headers)
        assert anonymous.status == 200, anonymous.body
        assert set(anonymous.body) == {"status", "database", "policy", "policy_version", "decisions", "capacity"}
        assert anonymous.body["status"] == "ready" and anonymous.body["database"] == "ok"
    ready = raw(api, "GET", "/readyz", headers=AUTH)
    assert ready.status == 200 and ready.body["database"] == "ok" and ready.body["policy_version"]
    assert {"policy_reloads", "last_reload_error", "subscribers", "analyses"} <= set(ready.body)


@pytest.mark.parametrize("body, fragment", [
    ('{"principal": ', "malformed_json"),
    ("[1, 2]", "invalid_request"),
    ('{"principal": {"account_id": 7}, "action": "view", "resource": {"audience_id": "a"}}', "invalid_request"),
    ('{"principal": {"account_id": "a"}, "action": "fly", "resource": {"audience_id": "a"}}', "invalid_request"),
    ('{"principal": {"account_id": "a"}, "action": "view", "resource": {"audience_id": "a"}, "extra": 1}',
     "invalid_request"),
    ('{"principal": {"account_id": "a", "role": "x"}, "action": "view", "resource": {"audience_id": "a"}}',
     "invalid_request"),
    ('{"principal": {"account_id": ""}, "action": "view", "resource": {"audience_id": "a"}}', "invalid_request"),
    ('{"action": "view", "resource": {"audience_id": "a"}}', "invalid_request"),
])
def test_bad_authorize_bodies_are_400(api, body, fragment):
    r = raw(api, "POST", "/v1/authorize", data=body, headers={**AUTH, "Content-Type": "application/json"})
    assert r.status == 400, r.body
    assert r.body["error"]["code"] == fragment
    assert r.body["error"]["message"]


def test_body_over_the_limit_is_413(api):
    big = '{"checks": [' + ",".join(['{"x": "' + "y" * 1000 + '"}'] * 1100) + "]}"
    r = raw(api, "POST", "/v1/authorize/batch", data=big, headers={**AUTH, "Content-Type": "application/json"})
    assert r.status == 413
    assert r.body["error"]["code"] == "body_too_large"


def test_action_endpoints_need_the_acting_account(api):
    w = world_factory(api)
    r = api.get(f"/v1/audiences/{w.A}")
    assert r.status == 400 and r.body["error"]["code"] == "invalid_request"
    assert "X-Account-Id" in r.body["error"]["message"]


def test_unknown_ids_on_entity_reads_are_404(api):
    w = world_factory(api)
    for path in (f"/v1/audiences/{w.id('x')}", f"/v1/ad-groups/{w.id('x')}", f"/v1/accounts/{w.id('x')}/audiences",
                 f"/v1/audiences/{w.id('x')}/shares", f"/v1/audiences/{w.id('x')}/share-log"):
        r = api.get(path, account=w.owner)
        assert r.status == 404, path
        assert r.body["error"]["code"].startswith("unknown_")
    assert api.delete(f"/v1/audiences/{w.id('x')}", account=w.owner).status == 404
    assert api.get("/v1/no-such-thing", account=w.owner).status == 404
    unknown_bc = api.put(f"/v1/accounts/{w.id('acc')}", {"name": "n", "business_center_id": w.id("nobc")})
    assert unknown_bc.status == 404 and unknown_bc.body["error"]["code"] == "unknown_business_center"


def test_bad_action_bodies_are_400_and_store_nothing(api):
    w = world_factory(api)
    cases = [
        ("post", f"/v1/audiences/{w.A}/shares", {"account_ids": []}),
        ("post", f"/v1/audiences/{w.A}/shares", {"account_ids": [w.peer, w.peer]}),
        ("post", f"/v1/audiences/{w.A}/shares", {"account_ids": [f"a{i}" for i in range(101)]}),
        ("post", f"/v1/audiences/{w.A}/shares", {"account_ids": w.peer}),
        ("post", "/v1/audiences", {"name": "x", "source": "pixel"}),
        ("post", "/v1/audiences", {"name": "x", "source": "partner", "member_count": "7"}),
        ("patch", f"/v1/audiences/{w.A}", {"members": {"op": "double", "count": 1}}),
        ("patch", f"/v1/audiences/{w.A}", {"name": 5}),
        ("put", f"/v1/ad-groups/{w.ag}", {"name": "g", "include": [w.A], "exclude": [w.A]}),
        ("put", f"/v1/ad-groups/{w.ag}", {"name": "g", "include": [w.A, w.A]}),
        ("put", f"/v1/ad-groups/{w.ag}", {"name": "g", "targeting": []}),
        ("put", f"/v1/business-centers/{w.bc}", {"name": "g", "cross_bc_allowlisted": "yes"}),
        ("put", f"/v1/accounts/{w.owner}", {"name": ""}),
        ("post", "/v1/audiences", {"id": "bad id with spaces", "name": "x", "source": "partner"}),
    ]
    shares = api.ok(api.get(f"/v1/audiences/{w.A}/shares", account=w.owner))
    last_event = last_event_id(api)
    for method, path, body in cases:
        r = getattr(api, method)(path, body, account=w.owner)
        assert r.status == 400, (method, path, body, r.body)
        assert r.body["error"]["code"] == "invalid_request"
    assert api.ok(api.get(f"/v1/audiences/{w.A}/shares", account=w.owner)) == shares
    assert api.get(f"/v1/ad-groups/{w.ag}", account=w.owner).status == 404
    assert last_event_id(api) == last_event


def test_duplicate_audience_id_is_409(api):
    w = world_factory(api)
    r = api.post("/v1/audiences", {"id": w.A, "name": "again", "source": "partner"}, account=w.owner)
    assert r.status == 409 and r.body["error"]["code"] == "already_exists"


def test_wrong_method_is_405(api):
    r = api.call("PATCH", "/v1/authorize", json={})
    assert r.status == 405 and r.body["error"]["code"] == "method_not_allowed"


def test_openapi_document_describes_every_endpoint(api):
    doc = api.ok(api.get("/openapi.json"))
    assert doc["openapi"].startswith("3.")
    paths = {(method.upper(), path) for path, ops in doc["paths"].items() for method in ops}
    expected = {
        ("PUT", "/v1/business-centers/{id}"), ("PUT", "/v1/accounts/{id}"),
        ("GET", "/v1/business-centers/{id}"), ("GET", "/v1/accounts/{id}"),
        ("POST", "/v1/accounts/{id}/terms-acceptance"), ("GET", "/v1/accounts/{id}/audiences"),
        ("POST", "/v1/audiences"), ("GET", "/v1/audiences/{id}"), ("PATCH", "/v1/audiences/{id}"),
        ("DELETE", "/v1/audiences/{id}"), ("POST", "/v1/audiences/{id}/shares"),
        ("GET", "/v1/audiences/{id}/shares"), ("DELETE", "/v1/audiences/{id}/shares/{account_id}"),
        ("DELETE", "/v1/audiences/{id}/shares"), ("GET", "/v1/audiences/{id}/share-log"),
        ("POST", "/v1/audiences/{id}/lookalikes"), ("POST", "/v1/audiences/{id}/refresh"),
        ("PUT", "/v1/ad-groups/{id}"), ("GET", "/v1/ad-groups/{id}"), ("POST", "/v1/authorize"),
        ("POST", "/v1/authorize/batch"), ("GET", "/v1/events"), ("GET", "/v1/decisions"),
        ("GET", "/healthz"), ("GET", "/readyz"),
    }
    assert expected <= paths
    authorize = doc["paths"]["/v1/authorize"]["post"]
    assert authorize["security"] == [{"bearer": []}]
    schema_ref = authorize["requestBody"]["content"]["application/json"]["schema"]["$ref"]
    schema = doc["components"]["schemas"][schema_ref.rsplit("/", 1)[1]]
    assert schema["additionalProperties"] is False
