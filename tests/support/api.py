"""A small client of the HTTP API, the same whether the service runs in this process or in
a server process, and the scenario the tests build through it."""

from __future__ import annotations

import json as jsonlib
import uuid
from dataclasses import dataclass

import requests


@dataclass
class Response:
    status: int
    body: object
    headers: dict

    @property
    def codes(self) -> list[str]:
        return [r["code"] for r in self.body.get("reasons", [])]


def _body(data: bytes, text: str):
    """The JSON document of an answer, or its text when it is not JSON."""
    try:
        return jsonlib.loads(data)
    except ValueError:
        return text


class BaseApi:
    """``api.put(path, json, account=...)``: the calls every test makes; ``send`` is the
    transport (HTTP to a server, or Flask's test client)."""

    token: str | None

    def send(self, method: str, path: str, headers: dict, **kwargs) -> Response:
        raise NotImplementedError

    def with_token(self, token: str | None) -> BaseApi:
        """A client of the same service presenting ``token`` (None: no Authorization header)."""
        raise NotImplementedError

    def call(self, method: str, path: str, json=None, account: str | None = None, **kwargs) -> Response:
        headers = dict(kwargs.pop("headers", {}))
        if account is not None:
            headers["X-Account-Id"] = account
        if json is not None:
            kwargs["json"] = json
        return self.send(method, path, headers, **kwargs)

    def get(self, path, **kw):
        return self.call("GET", path, **kw)

    def post(self, path, json=None, **kw):
        return self.call("POST", path, json=json, **kw)

    def put(self, path, json=None, **kw):
        return self.call("PUT", path, json=json, **kw)

    def patch(self, path, json=None, **kw):
        return self.call("PATCH", path, json=json, **kw)

    def delete(self, path, **kw):
        return self.call("DELETE", path, **kw)

    def authorize(self, account, action, audience, **context) -> Response:
        body = {"principal": {"account_id": account}, "action": action,
                "resource": {"audience_id": audience}}
        if context:
            body["context"] = context
        return self.post("/v1/authorize", body)

    def ok(self, response: Response, status: int = 200) -> dict:
        assert response.status == status, response.body
        return response.body


class Api(BaseApi):
    """The client of a server process, over HTTP (requests)."""

    def __init__(self, base_url: str, token: str | None):
        self.base_url = base_url
        self.token = token
        self.session = requests.Session()
        if token is not None:
            self.session.headers["Authorization"] = f"Bearer {token}"

    def send(self, method: str, path: str, headers: dict, **kwargs) -> Response:
        r = self.session.request(method, self.base_url + path, headers=headers, timeout=60, **kwargs)
        return Response(r.status_code, _body(r.content, r.text), dict(r.headers))

    def with_token(self, token: str | None) -> Api:
        return Api(self.base_url, token)


@dataclass
class World:
    """The source's scenario: ids unique to one test."""

    api: BaseApi
    u: str

    def id(self, name: str) -> str:
        return f"{name}_{self.u}"

    def __getattr__(self, name: str) -> str:
        if name.startswith("_"):
            raise AttributeError(name)
        return self.id(name)


def one_share(api: BaseApi) -> None:
    """The smallest sharing scenario: Business Center bc, its accounts owner (terms accepted)
    and recipient, and owner's audience A shared with recipient."""
    api.ok(api.put("/v1/business-centers/bc", {"name": "bc"}))
    for account in ("owner", "recipient"):
        api.ok(api.put(f"/v1/accounts/{account}", {"name": account, "business_center_id": "bc"}))
    api.ok(api.post("/v1/accounts/owner/terms-acceptance", account="owner"))
    api.ok(api.post("/v1/audiences", {"id": "A", "name": "A", "source": "customer_file"}, account="owner"), 201)
    api.ok(api.post("/v1/audiences/A/shares", {"account_ids": ["recipient"]}, account="owner"), 201)


def world_factory(api: BaseApi, *, terms: bool = True, share_with_recipient: bool = True) -> World:
    """BCs bc (owner's) and bc2 (another), accounts owner, recipient, peer (same BC),
    other (bc2), nobc (no BC); audiences A, B, C of owner shared with recipient; none applied."""
    w = World(api, uuid.uuid4().hex[:8])
    api.ok(api.put(f"/v1/business-centers/{w.bc}", {"name": "BC", "cross_bc_allowlisted": False}))
    api.ok(api.put(f"/v1/business-centers/{w.bc2}", {"name": "BC 2", "cross_bc_allowlisted": False}))
    for name, bc in (("owner", w.bc), ("recipient", w.bc), ("peer", w.bc), ("other", w.bc2), ("nobc", None)):
        api.ok(api.put(f"/v1/accounts/{w.id(name)}", {"name": name, "business_center_id": bc}))
    if terms:
        api.ok(api.post(f"/v1/accounts/{w.owner}/terms-acceptance", account=w.owner))
    for name, source in (("A", "website_traffic"), ("B", "customer_file"), ("C", "engagement")):
        api.ok(api.post("/v1/audiences", {"id": w.id(name), "name": f"audience {name}", "source": source},
                        account=w.owner), 201)
        if share_with_recipient:
            api.ok(api.post(f"/v1/audiences/{w.id(name)}/shares", {"account_ids": [w.recipient]},
                            account=w.owner), 201)
    return w


def last_id(api: BaseApi, feed: str = "events") -> int:
    """The id of the newest entry of a feed (events or decisions; 0 when it is empty)."""
    after = 0
    while True:
        page = api.ok(api.get(f"/v1/{feed}?after={after}&limit=1000"))
        if not page[feed]:
            return after
        after = page["next_after"]


def last_event_id(api: BaseApi) -> int:
    return last_id(api, "events")
