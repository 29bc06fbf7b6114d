"""Safe hot reload, through HTTP against live servers serving a copy of policy/: an edited
policy is taken up (file watch in every worker, SIGHUP, POST /v1/policy/reload); a policy
that fails `policy check` or its own tests is refused while the last good one answers, and
the refusal shows in /readyz, the log and the counters."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from tests.support import ROOT, Api, LiveServer, world_factory
from tests.support.policy import (
    RECIPIENT_REFRESH_DENY,
    copy_policy,
    let_recipients_refresh_lookalikes,
    line_of,
    replace,
)

TOKEN = "reload-token"
CLOSE = {"Connection": "close"}  # a new connection per request: gunicorn's workers take turns


@pytest.fixture
def policy(tmp_path):
    return copy_policy(tmp_path / "policy")


@pytest.fixture
def serve(tmp_path):
    servers = []

    def start(policy_dir, *args) -> tuple[LiveServer, Api]:
        live = LiveServer(f"sqlite:///{tmp_path / 'authz.db'}", token=TOKEN, policy_dir=str(policy_dir),
                          extra_args=list(args)).start()
        servers.append(live)
        return live, Api(live.base_url, TOKEN)

    yield start
    for live in servers:
        live.stop()


def _lookalike_world(api: Api):
    w = world_factory(api)
    api.ok(api.post(f"/v1/audiences/{w.A}/lookalikes", {"id": w.L, "name": "lal"}, account=w.owner), 201)
    api.ok(api.post(f"/v1/audiences/{w.L}/shares", {"account_ids": [w.recipient]}, account=w.owner), 201)
    return w


def _refresh(api: Api, w) -> dict:
    """May the recipient refresh the shared lookalike? (asked on a new connection)"""
    body = {"principal": {"account_id": w.recipient}, "action": "refresh_lookalike",
            "resource": {"audience_id": w.L}}
    return api.ok(api.post("/v1/authorize", body, headers=dict(CLOSE)))


def _ready(api: Api) -> dict:
    return api.ok(api.get("/readyz", headers=dict(CLOSE)))


def _eventually(check, timeout: float = 20.0, times: int = 1):
    """Wait until ``check()`` holds ``times`` times in a row; return its last value."""
    deadline = time.monotonic() + timeout
    streak, value = 0, None
    while time.monotonic() < deadline:
        value = check()
        streak = streak + 1 if value else 0
        if streak >= times:
            return value
        if not value:
            time.sleep(0.2)
    raise AssertionError(f"not within {timeout}s; last: {value}")


@pytest.mark.full
def test_the_watchers_of_every_worker_take_up_an_edit(policy, serve):
    live, api = serve(policy, "--workers", "2", "--policy-poll", "0.5")
    w = _lookalike_world(api)
    before = _refresh(api, w)
    assert before["decision"] == "deny" and before["reasons"][0]["code"] == "recipient_action_forbidden"
    old_version = before["policy_version"]

    let_recipients_refresh_lookalikes(policy)
    # 20 answers in a row from fresh connections, spread over both workers, all decided anew
    after = _eventually(lambda: (a := _refresh(api, w))["decision"] == "allow" and a, times=20)
    assert after["policy_version"] != old_version
    assert after["effects"] == [{"type": "propagate_update", "audience_id": w.L, "account_ids": [w.recipient]}]
    ready = _eventually(lambda: (r := _ready(api))["policy_reloads"]["loaded"] == 1 and r, times=10)
    assert ready["policy_version"] == after["policy_version"] and ready["last_reload_error"] is None


@pytest.mark.full
def test_a_broken_policy_is_refused_and_the_last_good_one_answers(policy, serve):
    live, api = serve(policy, "--workers", "2", "--policy-poll", "0.5")
    w = _lookalike_world(api)
    good = _refresh(api, w)["policy_version"]

    # 1. a line that names a reason code reasons.yaml does not have: fails policy check
    replace(policy / "policy.csv", RECIPIENT_REFRESH_DENY,
            "p, recipient, refresh_lookalike, True, deny, no_refresh_for_you,")
    line = line_of(policy / "policy.csv", "no_refresh_for_you")
    ready = _eventually(lambda: (r := _ready(api))["last_reload_error"] and r, times=10)
    assert ready["policy_version"] == good and ready["policy"] == "loaded" and ready["status"] == "ready"
    assert ready["policy_reloads"]["refused"] >= 1
    error = ready["last_reload_error"]
    assert error["source"] == "watch" and error["kept_version"] == good
    assert {"file": "policy.csv", "line": line,
            "message": "reason 'no_refresh_for_you' is not listed in reasons.yaml"} in error["problems"]
    for _ in range(10):  # the last good policy keeps answering, in every worker
        answer = _refresh(api, w)
        assert answer["policy_version"] == good and answer["reasons"][0]["code"] == "recipient_action_forbidden"

    # 2. a change that passes policy check but fails the policy's own tests
    replace(policy / "policy.csv", "p, recipient, refresh_lookalike, True, deny, no_refresh_for_you,",
            RECIPIENT_REFRESH_DENY)
    let_recipients_refresh_lookalikes(policy, with_tests=False, with_properties=False)  # refused by its tests first
    ready = _eventually(lambda: (r := _ready(api))["last_reload_error"]
                        and r["last_reload_error"]["problems"][0]["file"] == "tests/matrix.yaml" and r, times=10)
    assert "recipient cannot refresh a lookalike: expected deny (recipient_action_forbidden), got allow" in \
        ready["last_reload_error"]["problems"][0]["message"]
    assert _refresh(api, w)["decision"] == "deny" and ready["policy_version"] == good

    # 3. the files put right again: the refusal clears, nothing changed
    replace(policy / "policy.csv", "p, recipient, refresh_lookalike, True, allow, recipient_may_refresh_lookalike,"
            " propagate_update", RECIPIENT_REFRESH_DENY)
    ready = _eventually(lambda: (r := _ready(api))["last_reload_error"] is None and r, times=10)
    assert ready["policy_version"] == good and ready["policy_reloads"]["loaded"] == 0
    log = live.log_path.read_text()
    assert f"policy reload refused (watch); still serving {good}: policy.csv:{line}: reason 'no_refresh_for_you'" in log


@pytest.mark.full  # its counters are per process: a server of its own
def test_the_reload_endpoint(policy, serve):
    live, api = serve(policy, "--policy-poll", "0")
    w = _lookalike_world(api)
    old = _refresh(api, w)["policy_version"]
    assert Api(live.base_url, "wrong").post("/v1/policy/reload").status == 401

    let_recipients_refresh_lookalikes(policy)
    assert _refresh(api, w)["decision"] == "deny"  # no watcher: nothing changes by itself
    loaded = api.ok(api.post("/v1/policy/reload"))
    assert loaded["status"] == "loaded" and loaded["previous_version"] == old and loaded["policy_version"] != old
    answer = _refresh(api, w)
    assert answer["decision"] == "allow" and answer["policy_version"] == loaded["policy_version"]
    assert api.ok(api.post("/v1/policy/reload"))["status"] == "unchanged"
    # a new proven property is a new version too: replayed decisions name what vetted them
    properties = policy / "properties.yaml"
    properties.write_text(properties.read_text() + "\n# an author's note\n")
    renamed = api.ok(api.post("/v1/policy/reload"))
    assert renamed["status"] == "loaded" and renamed["previous_version"] == loaded["policy_version"]
    loaded = renamed
    reload_lines = [json.loads(line) for line in live.log_path.read_text().split("\n") if "policy reloaded" in line]
    assert reload_lines and {r["level"] for r in reload_lines} == {"INFO"}  # a success is no warning

    (policy / "model.conf").write_text((policy / "model.conf").read_text().replace(
        "e = priority(p.eft) || deny", "e = some(where (p.eft == allow))"))
    refused = api.post("/v1/policy/reload")
    assert refused.status == 422 and refused.body["error"]["code"] == "policy_refused"
    assert refused.body["policy_version"] == loaded["policy_version"]
    assert refused.body["error"]["problems"][0]["file"] == "model.conf"
    assert "[policy_effect] must be e = priority(p.eft) || deny" in refused.body["error"]["problems"][0]["message"]
    assert _refresh(api, w)["policy_version"] == loaded["policy_version"]
    ready = _ready(api)
    assert ready["policy_reloads"] == {"loaded": 2, "refused": 1, "last_loaded_at": ready["policy_reloads"]["last_loaded_at"]}
    assert ready["last_reload_error"]["source"] == "api"
    # the metrics say the same: one refusal counted, the reloaded version in force
    metrics = api.get("/metrics").body
    assert "audience_authz_policy_reload_failures_total 1.0" in metrics
    assert f'audience_authz_policy_info{{version="{loaded["policy_version"]}"}} 1.0' in metrics
    assert f'audience_authz_policy_info{{version="{old}"}} 0.0' in metrics


def _answering_pids(live) -> set[int]:
    """The processes that have written an access line (one per request answered)."""
    pids = set()
    for line in live.log_path.read_text().splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if isinstance(record, dict) and "status" in record and "pid" in record:
            pids.add(record["pid"])
    return pids


def _workers(master: int) -> set[int]:
    with open(f"/proc/{master}/task/{master}/children") as f:
        return {int(pid) for pid in f.read().split()}


@pytest.mark.full
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads worker pids from /proc")
def test_sighup_restarts_workers_on_the_last_good_policy(policy, serve):
    live, api = serve(policy, "--workers", "2", "--policy-poll", "0")
    w = _lookalike_world(api)
    good = _refresh(api, w)["policy_version"]
    master, first = live.process.pid, _workers(live.process.pid)

    # gunicorn's SIGHUP starts new workers; the files are broken, so they serve the last good
    (policy / "facts.yaml").write_text((policy / "facts.yaml").read_text() + "[\n")
    os.kill(master, signal.SIGHUP)
    _eventually(lambda: len(_workers(master)) == 2 and not _workers(master) & first)
    ready = _eventually(lambda: (r := _ready(api))["last_reload_error"] and r, times=10)
    assert ready["last_reload_error"]["source"] == "start" and ready["policy_version"] == good
    assert ready["last_reload_error"]["problems"][0]["file"] == "facts.yaml"
    assert _refresh(api, w)["policy_version"] == good

    # put right and changed: the next SIGHUP serves the change in every worker
    (policy / "facts.yaml").write_text((policy / "facts.yaml").read_text().removesuffix("[\n"))
    let_recipients_refresh_lookalikes(policy)
    second = _workers(master)
    os.kill(master, signal.SIGHUP)
    answer = _eventually(lambda: (a := _refresh(api, w))["decision"] == "allow" and a, times=20)
    assert answer["policy_version"] != good
    # the workers SIGHUP replaced finish in the background: wait for them to be gone, and
    # for both new ones to have answered (a worker still booting dies of a SIGHUP)
    _eventually(lambda: len(_workers(master)) == 2 and not _workers(master) & second)
    _eventually(lambda: _refresh(api, w) and _workers(master) <= _answering_pids(live))

    # SIGHUP to one worker reloads that worker in place (a new comment is a new version)
    (policy / "policy.csv").write_text((policy / "policy.csv").read_text() + "# reviewed\n")
    worker = sorted(_workers(master))[0]
    os.kill(worker, signal.SIGHUP)
    _eventually(lambda: "policy reloaded (signal)" in live.log_path.read_text())
    assert worker in _workers(master)  # the same process, not a restart


@pytest.mark.full
def test_a_server_does_not_start_on_a_broken_policy(policy, tmp_path):
    replace(policy / "policy.csv", "deny, reshare_forbidden,", "deny, reshare_forbiden,")
    run = subprocess.run([sys.executable, "-m", "audience_authz", "serve", "--port", "0", "--policy-dir", str(policy),
                          "--database", f"sqlite:///{tmp_path / 'x.db'}"], cwd=ROOT, capture_output=True, text=True,
                         timeout=60, env={**os.environ, "AUDIENCE_AUTHZ_TOKENS": TOKEN})
    assert run.returncode == 1
    line = line_of(policy / "policy.csv", "reshare_forbiden")
    assert f"policy.csv:{line}: reason 'reshare_forbiden' is not listed in reasons.yaml" in run.stderr
