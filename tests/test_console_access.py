"""The console is a second door to the same rooms, with the same locks as the API: one
table of what each scope may do (http/capabilities.py) tried through both doors with
every scope; the console's decisions counted in its token's rate limit and cost cap;
failed authentication throttled per address; a session with an absolute lifetime; the
login's ``next`` kept inside /console; no console URL without a session; the headers
that keep a page out of frames and foreign scripts."""

from __future__ import annotations

import re
import time
from email.utils import parsedate_to_datetime
from pathlib import Path

import pytest
import requests

from audience_authz.config import shipped_policy_dir
from audience_authz.http import capabilities
from tests.conftest import TOKEN
from tests.support import Api
from tests.support.api import one_share
from tests.support.reliability import DATABASES, private_server
from tests.support.reliability import TOKEN as LIVE_TOKEN

ROOT = Path(__file__).resolve().parents[1]
TOKENS = {"full": LIVE_TOKEN, "admin": "admin-token-1", "check": "check-token-1"}
SCOPED = {"AUDIENCE_AUTHZ_ADMIN_TOKENS": TOKENS["admin"], "AUDIENCE_AUTHZ_CHECK_TOKENS": TOKENS["check"]}


def _csrf(html: str) -> str:
    return re.search(r'name="csrf_token" value="([^"]+)"', html).group(1)


def _login(base: str, token: str) -> requests.Session:
    session = requests.Session()
    form = session.get(base + "/console/login")
    answer = session.post(base + "/console/login", data={"token": token, "csrf_token": _csrf(form.text)},
                          allow_redirects=False)
    assert answer.status_code == 302, re.findall(r"class=\"error\"[^>]*>([^<]*)", answer.text)
    session.csrf = _csrf(session.get(base + "/console/try").text)
    session.base = base
    return session


def _doors(world: dict) -> dict[str, tuple]:
    """capability -> (the API call, the console call or None when the console has no such
    door); each is harmless when allowed (reads, a decision, an unchanged reload, a shadow
    stopped when none runs, an upsert of the test's own Business Center)."""
    view = {"principal": {"account_id": "nobody"}, "action": "view", "resource": {"audience_id": "none"}}
    policy = str(shipped_policy_dir())
    return {
        "read": (("GET", "/v1/events", None), ("GET", "/console/rules", None)),
        "decide": (("POST", "/v1/authorize", view),
                   ("POST", "/console/try", {"account": "nobody", "action": "view", "audience": "none"})),
        "manage_entities": (("PUT", "/v1/business-centers/scope-bc", {"name": "bc"}), None),
        "analyse_candidate": (("POST", "/v1/policy/diff", {"candidate_dir": policy, "last": 1}),
                              ("POST", "/console/candidate", {"directory": policy, "last": "1"})),
        "reload_policy": (("POST", "/v1/policy/reload", None), ("POST", "/console/reload", {})),
        "shadow_policy": (("DELETE", "/v1/policy/shadow", None), ("POST", "/console/shadow/stop", {})),
        "write": (("POST", "/v1/accounts/nobody/terms-acceptance", None), None),
    }


@pytest.mark.full
@pytest.mark.parametrize("kind", DATABASES)
def test_every_capability_through_both_doors_with_every_scope(kind, tmp_path):
    with private_server(kind, tmp_path, env=SCOPED) as (url, live, api):
        doors = _doors({})
        assert set(doors) == set(capabilities.CAPABILITIES)  # every capability is tried
        for scope, token in TOKENS.items():
            client, console = Api(live.base_url, token), _login(live.base_url, token)
            for capability, (through_api, through_console) in doors.items():
                allowed = capabilities.allows(scope, capability)
                method, path, body = through_api
                r = client.call(method, path, json=body, account="nobody")
                refused = r.status == 403 and r.body["error"]["code"] == "insufficient_scope"
                assert refused == (not allowed), (scope, capability, "api", r.status, r.body)
                assert r.status not in (401, 429) and r.status < 500, (scope, capability, r.status, r.body)
                if through_console is None:
                    continue
                method, path, form = through_console
                c = console.request(method, live.base_url + path, allow_redirects=False,
                                    data=None if form is None else {**form, "csrf_token": console.csrf})
                assert (c.status_code == 403) == (not allowed), (scope, capability, "console", c.status_code,
                                                                 c.text[:300])
                assert c.status_code < 500 and c.status_code not in (302, 401, 429), (scope, capability, c.status_code)


def test_the_docs_hold_the_one_table():
    table = capabilities.markdown_table()
    for doc in ("docs/spec.md", "docs/console.md", "docs/policy-safety.md"):
        assert table in (ROOT / doc).read_text(), f"{doc} lacks the table of http/capabilities.py"


def _share_scenario(api) -> None:
    one_share(api)


@pytest.mark.full
@pytest.mark.parametrize("kind", DATABASES)
def test_console_decisions_count_in_the_tokens_rate_limit_and_cost_cap(kind, tmp_path):
    env = {**SCOPED, "AUDIENCE_AUTHZ_RATE_LIMIT": "10/minute", "AUDIENCE_AUTHZ_MAX_REQUEST_COST": "1"}
    with private_server(kind, tmp_path, env=env) as (url, live, api):
        _share_scenario(api)  # the full token's bucket
        checker, console = Api(live.base_url, TOKENS["check"]), _login(live.base_url, TOKENS["check"])
        stop = {"principal": {"account_id": "owner"}, "action": "stop_sharing", "resource": {"audience_id": "A"}}
        # one check and one recipient planned: 2 units, past the cap of 1, through both doors
        costly = checker.post("/v1/authorize", stop)
        assert costly.status == 422 and costly.body["error"]["code"] == "request_too_costly", costly.body
        form = {"account": "owner", "action": "stop_sharing", "audience": "A", "csrf_token": console.csrf}
        tried = console.post(live.base_url + "/console/try", data=form)
        assert tried.status_code == 422 and "more than 1 units" in tried.text, tried.text[:300]
        # 2 of the check token's 10 spent: 8 more decisions, then 429 through either door
        view = {"account": "recipient", "action": "view", "audience": "A", "csrf_token": console.csrf}
        statuses = [console.post(live.base_url + "/console/try", data=view).status_code for _ in range(9)]
        assert statuses == [200] * 8 + [429], statuses
        over = console.post(live.base_url + "/console/try", data=view)
        assert over.status_code == 429 and int(over.headers["Retry-After"]) >= 1
        assert checker.get("/v1/events").status == 429  # the same bucket as the API's
        assert console.get(live.base_url + "/console/rules").status_code == 200  # pages are reads, not decisions
        assert api.get("/v1/events").status in (200, 429)  # another token: its own bucket (spent by the setup)


@pytest.mark.full
def test_failed_authentication_is_throttled_per_address(tmp_path):
    env = {"AUDIENCE_AUTHZ_AUTH_FAILURE_LIMIT": "5/minute"}
    with private_server("sqlite", tmp_path, env=env) as (url, live, api):
        wrong = Api(live.base_url, "not-a-token")
        assert [wrong.get("/v1/events").status for _ in range(5)] == [401] * 5
        limited = wrong.get("/v1/events")
        assert limited.status == 429 and limited.body["error"]["code"] == "too_many_failed_authentications"
        assert int(limited.headers["Retry-After"]) >= 1
        # the right token from the same address learns nothing while the address is throttled
        assert api.get("/v1/events").status == 429
        form = requests.get(live.base_url + "/console/login")
        login = requests.post(live.base_url + "/console/login", cookies=form.cookies,
                              data={"token": LIVE_TOKEN, "csrf_token": _csrf(form.text)}, allow_redirects=False)
        assert login.status_code == 429 and int(login.headers["Retry-After"]) >= 1
        assert requests.get(live.base_url + "/healthz").status_code == 200  # the probes stay open


@pytest.mark.full
def test_failed_console_logins_are_throttled_and_a_secure_cookie(tmp_path):
    env = {"AUDIENCE_AUTHZ_AUTH_FAILURE_LIMIT": "5/minute", "AUDIENCE_AUTHZ_CONSOLE_SECURE_COOKIE": "true"}
    with private_server("sqlite", tmp_path, env=env) as (url, live, api):
        form = requests.get(live.base_url + "/console/login")
        sent = {"audience_authz_console": form.cookies.get("audience_authz_console")}  # a Secure cookie, by hand
        ok = requests.post(live.base_url + "/console/login", cookies=sent, allow_redirects=False,
                           data={"token": LIVE_TOKEN, "csrf_token": _csrf(form.text)})
        assert ok.status_code == 302 and "; Secure" in ok.headers["Set-Cookie"]  # behind TLS: never sent in clear
        csrf = _csrf(form.text)  # the session of the form above, sent by hand (plain HTTP here)
        statuses = [requests.post(live.base_url + "/console/login", cookies=sent, allow_redirects=False,
                                  data={"token": f"guess-{i}", "csrf_token": csrf}).status_code for i in range(7)]
        assert statuses == [401] * 5 + [429] * 2, statuses
        assert api.get("/v1/events").status == 429  # one throttle for both doors


@pytest.mark.full
def test_a_session_ends_its_lifetime_after_login_however_used(tmp_path):
    env = {"AUDIENCE_AUTHZ_CONSOLE_SESSION_HOURS": str(4 / 3600)}  # 4 seconds
    with private_server("sqlite", tmp_path, env=env) as (url, live, api):
        console = _login(live.base_url, LIVE_TOKEN)
        login_cookie = next(c for c in console.cookies if c.name == "audience_authz_console")
        assert 0 < login_cookie.expires - time.time() <= 5
        deadline = time.time() + 8
        while time.time() < deadline:
            page = console.get(live.base_url + "/console/rules", allow_redirects=False)
            for header in page.raw.headers.getlist("Set-Cookie"):  # never a later expiry
                expires = re.search(r"Expires=([^;]+)", header)
                assert expires and parsedate_to_datetime(expires.group(1)).timestamp() <= login_cookie.expires + 1
            if page.status_code == 302:
                break
            assert page.status_code == 200
            time.sleep(0.5)
        assert page.status_code == 302 and "/console/login" in page.headers["Location"]
        assert time.time() - (login_cookie.expires - 4) >= 3.5  # not before its lifetime
        # a cookie copied before the end, sent again afterwards, is refused too
        copied = requests.get(live.base_url + "/console/rules", allow_redirects=False,
                              cookies={"audience_authz_console": login_cookie.value})
        assert copied.status_code == 302


def _client_login(app):
    client = app.test_client()
    form = client.get("/console/login")
    answer = client.post("/console/login", data={"token": TOKEN, "csrf_token": _csrf(form.get_data(as_text=True))})
    assert answer.status_code == 302
    return client


@pytest.mark.parametrize("target", ["/console/../v1/events", "/console/%2e%2e/healthz", "/console/%2E%2E/%2e%2e/x",
                                    "/console/./../../healthz", "//evil.example/console", "/console\\..\\v1",
                                    "https://evil.example/console/rules"])
def test_login_next_never_leaves_the_console(service, target):
    client = service.app.test_client()
    form = client.get("/console/login")
    answer = client.post("/console/login", data={"token": TOKEN, "next": target,
                                                 "csrf_token": _csrf(form.get_data(as_text=True))})
    location = answer.headers["Location"]
    resolved = requests.compat.urljoin("http://host/console/login", location)
    path = requests.utils.urlparse(resolved)
    assert path.netloc == "host" and (path.path == "/console" or path.path.startswith("/console/"))
    assert ".." not in path.path and "%2e" not in path.path.lower(), location


def test_login_next_keeps_a_console_page_and_its_query(service):
    client = service.app.test_client()
    form = client.get("/console/login")
    answer = client.post("/console/login", data={"token": TOKEN, "next": "/console/decisions?account=a",
                                                 "csrf_token": _csrf(form.get_data(as_text=True))})
    assert answer.headers["Location"].endswith("/console/decisions?account=a")


def test_no_unknown_static_path_without_a_session(service):
    client = service.app.test_client()
    assert client.get("/console/static/console.css").status_code == 200  # the login page needs it
    for path in ("/console/static/nothing.js", "/console/static/", "/console/static/../templates/base.html"):
        answer = client.get(path)
        assert answer.status_code == 302 and "/console/login" in answer.headers["Location"], (path, answer.status_code)
    assert _client_login(service.app).get("/console/static/nothing.js").status_code == 404


def test_console_answers_carry_the_security_headers(service):
    client = _client_login(service.app)
    for path in ("/console/login", "/console/rules", "/console/try?account=a", "/console/static/console.css"):
        answer = client.get(path)
        csp = answer.headers.get("Content-Security-Policy", "")
        assert "frame-ancestors 'none'" in csp and "script-src 'self'" in csp and "unsafe-eval" not in csp, path
        assert answer.headers["X-Frame-Options"] == "DENY"
    form = service.app.test_client().get("/console/login")
    assert "Secure" not in form.headers["Set-Cookie"]  # the default: plain HTTP works
    page = client.get("/console/rules?line=3").get_data(as_text=True)
    nonce = re.search(r"'nonce-([^']+)'", client.get("/console/rules").headers["Content-Security-Policy"])
    assert nonce and all('nonce="' in s for s in re.findall(r"<script(?![^>]*src=)[^>]*>", page))
