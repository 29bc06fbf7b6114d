"""An encoded '/' in a path is not a path separator: against the real server (gunicorn
decodes the path before routing), `GET /v1/audiences/A%2Fshares` must not list A's shares."""

from __future__ import annotations

import json

import pytest

from tests.support import world_factory
from tests.support.reliability import raw_request

pytestmark = pytest.mark.full


def _send(server, api, method: str, target: str, account: str) -> tuple[int, dict]:
    request = (f"{method} {target} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {server.token}\r\n"
               f"X-Account-Id: {account}\r\nConnection: close\r\n\r\n").encode()
    status, _, body = raw_request(server.base_url, request)
    return status, json.loads(body) if body else {}


def test_an_encoded_slash_in_a_path_is_refused_not_routed(live_api, live_server):
    api, server = live_api, live_server  # raw requests on the wire: a server process
    w = world_factory(api)
    shares = f"/v1/audiences/{w.A}/shares"
    assert _send(server, api, "GET", shares, w.owner)[0] == 200  # the real path still works
    for target in (f"/v1/audiences/{w.A}%2Fshares", f"/v1/audiences/{w.A}%2fshares",
                   f"/v1/audiences/{w.A}%2Fshares?limit=5", f"/v1/audiences/{w.A}%2Fshares%2F{w.recipient}",
                   f"http://127.0.0.1/v1/audiences/{w.A}%2Fshares", f"/v1/ad-groups/x%2F..%2F{w.A}"):
        for method in ("GET", "DELETE"):
            status, body = _send(server, api, method, target, w.owner)
            assert (status, body.get("error", {}).get("code")) == (400, "invalid_path"), (method, target, body)
    # nothing was stopped by the DELETEs
    assert [s["account_id"] for s in api.ok(api.get(shares, account=w.owner))["shares"]] == [w.recipient]
    # without a token the answer is still 401: the check runs after authentication
    status, _, _ = raw_request(server.base_url, f"GET /v1/audiences/{w.A}%2Fshares HTTP/1.1\r\n"
                                                f"Host: x\r\nConnection: close\r\n\r\n".encode())
    assert status == 401
