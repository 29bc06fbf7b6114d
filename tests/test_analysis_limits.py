"""Policy analyses (POST /v1/policy/diff, PUT /v1/policy/shadow, the console's Candidate
page) are bounded (policytools/sandbox.py): a candidate too large is refused before any
analysis starts, one that cannot even be read is a 422 with its problems, an analysis past
its time is stopped, and past the concurrency limit the next waits its turn or is told to
come back, with nothing else affected."""

from __future__ import annotations

import re
import threading

import pytest
import requests

from tests.support.ops import json_lines
from tests.support.policy import copy_policy
from tests.support.reliability import DATABASES, TOKEN, private_server, size, worker_pids
from tests.support.stress_results import record

HUGE_CONDITION = " or ".join(f'r.f.audience_source == "s{i}"' for i in range(1000))
CANDIDATES_TOO_LARGE = {
    "a 1,000-way or": {"policy.csv": f"p, owner, view, {HUGE_CONDITION}, deny, audience_not_shareable,\n"},
    "20,000 lines": {"policy.csv": "p, owner, view, True, allow, owner_may_view,\n" * 20_000},
}
CANDIDATES_UNREADABLE = {
    "binary facts.yaml": {"facts.yaml": "\u0000\u0001\u00ff\ufffe" * 50},
    "binary model.conf": {"model.conf": "\u0000\u0007" * 50},
    "an empty policy.csv": {"policy.csv": ""},
    "a python tag in reasons.yaml": {"reasons.yaml": "deny: !!python/object/apply:os.getcwd []\n"},
}


@pytest.mark.parametrize("files", CANDIDATES_TOO_LARGE.values(), ids=CANDIDATES_TOO_LARGE.keys())
def test_a_candidate_too_large_is_refused_before_any_analysis(api, files):
    for method, path, body in (("POST", "/v1/policy/diff", {"files": files, "symbolic": True}),
                               ("PUT", "/v1/policy/shadow", {"files": files})):
        answer = api.call(method, path, json=body)
        assert answer.status == 422, answer.body
        assert answer.body["error"]["code"] == "analysis_too_costly"
        assert "AUDIENCE_AUTHZ_ANALYSIS_MAX_" in answer.body["error"]["message"]
    assert api.ok(api.get("/v1/policy/shadow"))["active"] is False


@pytest.mark.parametrize("files", CANDIDATES_UNREADABLE.values(), ids=CANDIDATES_UNREADABLE.keys())
def test_a_candidate_that_cannot_be_read_is_refused_with_its_problems(api, files):
    for method, path, body in (("POST", "/v1/policy/diff", {"files": files}), ("PUT", "/v1/policy/shadow", {"files": files})):
        answer = api.call(method, path, json=body)
        assert answer.status == 422, answer.body
        assert answer.body["error"]["code"] == "policy_refused"
        assert answer.body["error"]["problems"] and all(p["message"] for p in answer.body["error"]["problems"])
    assert api.ok(api.get("/v1/policy/shadow"))["active"] is False


def _model(live) -> str:
    """The model.conf the server serves (a candidate of the same text analyses the whole policy)."""
    return (live.policy_dir_served() / "model.conf").read_text()


@pytest.mark.full
@pytest.mark.parametrize("kind", DATABASES)
def test_an_analysis_past_its_time_or_its_place_is_refused_and_nothing_else_is_touched(kind, tmp_path):
    env = {"AUDIENCE_AUTHZ_ANALYSIS_TIMEOUT_S": "0.5", "AUDIENCE_AUTHZ_ANALYSIS_WORKERS": "1",
           "AUDIENCE_AUTHZ_ANALYSIS_QUEUE": "0"}
    with private_server(kind, tmp_path, env=env) as (_url, live, api):
        workers = worker_pids(live)
        body = {"files": {"model.conf": _model(live)}, "symbolic": True}
        answers = []

        def ask():
            answers.append(requests.post(live.base_url + "/v1/policy/diff", json=body, timeout=60,
                                         headers={"Authorization": f"Bearer {TOKEN}"}))

        threads = [threading.Thread(target=ask) for _ in range(3)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        decided = api.ok(api.post("/v1/authorize", {"principal": {"account_id": "a"}, "action": "apply",
                                                     "resource": {"audience_id": "b"}}))
        ready = api.ok(api.get("/readyz"))
        metrics = api.get("/metrics").body
        same_workers = worker_pids(live) == workers
    codes = sorted((a.status_code, a.json()["error"]["code"]) for a in answers)
    assert (422, "analysis_too_costly") in codes and (429, "analysis_busy") in codes, codes
    assert set(codes) <= {(422, "analysis_too_costly"), (429, "analysis_busy")}
    busy = next(a for a in answers if a.status_code == 429)
    assert int(busy.headers["Retry-After"]) > 0
    too_long = next(a for a in answers if a.status_code == 422)
    assert "AUDIENCE_AUTHZ_ANALYSIS_TIMEOUT_S" in too_long.json()["error"]["message"]
    assert decided["decision"] == "deny" and same_workers
    assert ready["analyses"] == {"running": 0, "queued": 0, "workers": 1, "queue": 0}
    assert 'audience_authz_policy_analyses_finished_total{outcome="too_costly"}' in metrics
    json_lines(live.log_path.read_text())  # every line the server wrote is one JSON object


def _console(base_url: str, token: str) -> requests.Session:
    session = requests.Session()
    login = session.get(base_url + "/console/login")
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', login.text).group(1)
    assert session.post(base_url + "/console/login", data={"token": token, "csrf_token": csrf}).status_code == 200
    return session


ANSWERS = {"200", "422 analysis_too_costly", "429 analysis_busy"}


@pytest.mark.full
@pytest.mark.parametrize("kind", DATABASES)
def test_concurrent_analyses_through_the_api_and_the_console_give_only_answers_or_limits(kind, tmp_path):
    """Analyses back to back from three API clients and two console sessions (one of them
    uploading an oversized candidate; a check session may not analyse: test_console_access)
    for AUDIENCE_AUTHZ_STRESS_SECONDS (`make stress`: 60): every answer is a result or a
    documented limit, no worker dies, no line of the log is anything but JSON."""
    seconds = size("seconds", 5)
    with private_server(kind, tmp_path) as (_url, live, api):
        workers = worker_pids(live)
        model = _model(live)
        counts: dict[str, int] = {}
        lock = threading.Lock()
        stop = threading.Event()

        def count(key: str) -> None:
            with lock:
                counts[key] = counts.get(key, 0) + 1

        def api_client():
            while not stop.is_set():
                r = requests.post(live.base_url + "/v1/policy/diff", json={"files": {"model.conf": model},
                                  "symbolic": True}, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=120)
                count("200" if r.status_code == 200 else f"{r.status_code} {r.json()['error']['code']}")

        def console_client(policy_csv: str):
            session = _console(live.base_url, TOKEN)
            while not stop.is_set():
                page = session.get(live.base_url + "/console/candidate")
                csrf = re.search(r'name="csrf_token" value="([^"]+)"', page.text).group(1)
                r = session.post(live.base_url + "/console/candidate", data={"csrf_token": csrf, "last": "100"},
                                 files={"files": ("policy.csv", policy_csv.encode())}, timeout=120)
                found = re.search(r"(analysis_too_costly|analysis_busy)", r.text) if r.status_code != 200 else None
                count("200" if r.status_code == 200 else f"{r.status_code} {found.group(1) if found else '?'}")

        served_csv = (live.policy_dir_served() / "policy.csv").read_text()
        threads = [threading.Thread(target=api_client) for _ in range(3)]
        threads += [threading.Thread(target=console_client, args=(served_csv,)),
                    threading.Thread(target=console_client, args=(CANDIDATES_TOO_LARGE["a 1,000-way or"]["policy.csv"],))]
        for t in threads:
            t.start()
        stop.wait(seconds)
        stop.set()
        for t in threads:
            t.join(150)
        assert api.ok(api.get("/readyz"))["status"] == "ready"
        same_workers = worker_pids(live) == workers
    record("concurrent analyses through the API and the console", kind, seconds=seconds,
           requests=sum(counts.values()), errors=sum(n for k, n in counts.items() if k[:1] == "5"),
           answers=dict(sorted(counts.items())))
    assert counts and set(counts) <= ANSWERS | {"400 analysis_too_costly", "429 analysis_busy"}, counts
    assert "200" in counts
    assert same_workers, "a worker died and was replaced"
    json_lines(live.log_path.read_text())


@pytest.mark.full
@pytest.mark.parametrize("kind", DATABASES)
def test_a_reload_past_the_time_limit_is_refused_and_the_last_good_policy_serves_on(kind, tmp_path):
    policy = copy_policy(tmp_path / "policy")
    env = {"AUDIENCE_AUTHZ_ANALYSIS_TIMEOUT_S": "0.01"}
    with private_server(kind, tmp_path, env=env, policy_dir=str(policy), extra_args=["--policy-poll", "0"]) \
            as (_url, live, api):
        serving = api.ok(api.get("/readyz"))["policy_version"]
        with (policy / "policy.csv").open("a") as out:
            out.write("# an edit the reload must vet\n")
        refused = api.post("/v1/policy/reload")
        ready = api.ok(api.get("/readyz"))
        decided = api.ok(api.post("/v1/authorize", {"principal": {"account_id": "a"}, "action": "apply",
                                                     "resource": {"audience_id": "b"}}))
    assert refused.status == 422 and "analysis_too_costly" in refused.body["error"]["problems"][0]["message"]
    assert ready["policy_version"] == serving and ready["last_reload_error"]["stage"] == "analysis"
    assert decided["decision"] == "deny" and decided["policy_version"] == serving


@pytest.mark.full
def test_an_analysis_out_of_memory_is_its_own_error_and_the_next_one_finds_the_pool_whole(tmp_path):
    with private_server("sqlite", tmp_path, env={"AUDIENCE_AUTHZ_ANALYSIS_MEMORY_MB": "120"}) as (_url, live, api):
        workers = worker_pids(live)
        body = {"files": {"model.conf": _model(live)}, "symbolic": True}
        answers = [api.post("/v1/policy/diff", body) for _ in range(2)]
        ready = api.ok(api.get("/readyz"))
        same_workers = worker_pids(live) == workers
    for answer in answers:
        assert answer.status == 422 and answer.body["error"]["code"] in ("analysis_failed", "analysis_too_costly")
    assert ready["status"] == "ready" and same_workers
    json_lines(live.log_path.read_text())
