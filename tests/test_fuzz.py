"""Generated input: schemathesis derives requests from /openapi.json and checks every answer
against the document; hypothesis drives random sequences of actions by random accounts
and checks the invariants after each step. Both against live servers on each database.

Sizes: AUDIENCE_AUTHZ_STRESS_FUZZ_EXAMPLES (schemathesis examples per operation),
AUDIENCE_AUTHZ_STRESS_MACHINE_EXAMPLES and _MACHINE_STEPS (hypothesis state machine).
"""

from __future__ import annotations

import re
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule, run_state_machine_as_test

from tests.support import Api
from tests.support.invariants import check_invariants
from tests.support.ops import json_lines
from tests.support.reliability import DATABASES, TOKEN, private_server, server_log, size
from tests.support.stress_results import record

pytestmark = pytest.mark.full  # server processes: the full tier

CONFIG = Path(__file__).with_name("schemathesis.toml")  # which checks, and why


@pytest.mark.parametrize("kind", DATABASES)
def test_schemathesis_finds_no_server_error_and_no_answer_outside_the_document(kind, tmp_path):
    examples = size("fuzz_examples", 25)
    with private_server(kind, tmp_path) as (url, live, api):
        st = Path(sys.executable).with_name("st")
        run = subprocess.run(
            [str(st), "--config-file", str(CONFIG), "run", f"{live.base_url}/openapi.json",
             "-H", f"Authorization: Bearer {TOKEN}", "--max-examples", str(examples),
             "--phases", "examples,coverage,fuzzing", "--workers", "1", "--request-timeout", "30",
             "--suppress-health-check", "all", "--no-color"],
            cwd=tmp_path, capture_output=True, text=True, timeout=900)
        failures = run.stdout.find("FAILURES")  # the failures' details, else the summary
        summary = run.stdout[failures:failures + 6000] if failures >= 0 else run.stdout[-3000:]
        generated = re.search(r"(\d+) generated", run.stdout)
        found = re.search(r"(\d+) unique failures?", run.stdout)
        answers = [r for r in json_lines(server_log(live)) if r.get("logger") == "audience_authz.access"]
        violations = check_invariants(url, api)
        print(f"\nSCHEMATHESIS {kind}: {generated.group(0) if generated else '?'} "
              f"({examples} examples per operation); exit {run.returncode}")
        record("schemathesis", kind, requests=len(answers), errors=sum(a["status"] >= 500 for a in answers),
               invariant_violations=len(violations), fuzz_cases=int(generated.group(1)) if generated else 0,
               examples_per_operation=examples, failures=int(found.group(1)) if found else 0)
        assert run.returncode == 0, summary + run.stderr[-2000:]
        assert generated and int(generated.group(1)) > 500, summary
        assert "Traceback" not in server_log(live)
        assert violations == []


# -- random sequences of actions by random accounts --------------------------------------

ACCOUNTS = ["o1", "o2", "r1", "r2", "x", "nobc"]  # o1 and o2 accept terms; x is in another BC


class Actions(RuleBasedStateMachine):
    """Each example builds a small world of its own, then does random things in it."""

    base_url: str = ""
    database_url: str = ""
    steps = 0
    server_errors = 0

    def __init__(self):
        super().__init__()
        self.api = Api(self.base_url, TOKEN)
        self.u = uuid.uuid4().hex[:8]
        api, u = self.api, self.u
        api.ok(api.put(f"/v1/business-centers/bc_{u}", {"name": "BC"}))
        api.ok(api.put(f"/v1/business-centers/bc2_{u}", {"name": "BC2", "cross_bc_allowlisted": True}))
        for name in ACCOUNTS:
            bc = {"x": f"bc2_{u}", "nobc": None}.get(name, f"bc_{u}")
            api.ok(api.put(f"/v1/accounts/{self.acc(name)}", {"name": name, "business_center_id": bc}))
        self.audiences = []

    def acc(self, name: str) -> str:
        return f"{name}_{self.u}"

    def call(self, method, path, json=None, account=None):
        r = self.api.call(method, path, json=json, account=account)
        Actions.steps += 1
        Actions.server_errors += r.status >= 500
        assert r.status < 500, (method, path, json, account, r.status, r.body)
        return r

    accounts = st.sampled_from(ACCOUNTS)

    @rule(account=accounts, source=st.sampled_from(["customer_file", "partner", "lead_generation"]))
    def create_audience(self, account, source):
        r = self.call("POST", "/v1/audiences", {"name": "a", "source": source}, self.acc(account))
        if r.status == 201:
            self.audiences.append(r.body["audience"]["id"])

    @rule(account=accounts)
    def accept_terms(self, account):
        self.call("POST", f"/v1/accounts/{self.acc(account)}/terms-acceptance", account=self.acc(account))

    @precondition(lambda self: self.audiences)
    @rule(data=st.data(), account=accounts, recipients=st.lists(st.sampled_from(ACCOUNTS), min_size=1, max_size=3,
                                                              unique=True))
    def share(self, data, account, recipients):
        audience = data.draw(st.sampled_from(self.audiences))
        self.call("POST", f"/v1/audiences/{audience}/shares", {"account_ids": [self.acc(t) for t in recipients]},
                  self.acc(account))

    @precondition(lambda self: self.audiences)
    @rule(data=st.data(), account=accounts, recipient=st.one_of(st.none(), st.sampled_from(ACCOUNTS)))
    def stop_sharing(self, data, account, recipient):
        audience = data.draw(st.sampled_from(self.audiences))
        path = f"/v1/audiences/{audience}/shares" + (f"/{self.acc(recipient)}" if recipient else "")
        self.call("DELETE", path, account=self.acc(account))

    @precondition(lambda self: self.audiences)
    @rule(data=st.data(), account=accounts)
    def delete(self, data, account):
        self.call("DELETE", f"/v1/audiences/{data.draw(st.sampled_from(self.audiences))}", account=self.acc(account))

    @rule(data=st.data(), account=accounts, group=st.integers(0, 2))
    def put_ad_group(self, data, account, group):
        chosen = data.draw(st.lists(st.sampled_from(self.audiences), unique=True, max_size=3)) if self.audiences else []
        cut = data.draw(st.integers(0, len(chosen)))
        self.call("PUT", f"/v1/ad-groups/g{group}_{self.u}", {"name": "g", "include": chosen[:cut],
                                                              "exclude": chosen[cut:]}, self.acc(account))

    @precondition(lambda self: self.audiences)
    @rule(data=st.data(), account=accounts)
    def edit(self, data, account):
        audience = data.draw(st.sampled_from(self.audiences))
        self.call("PATCH", f"/v1/audiences/{audience}", {"name": "renamed", "members": {"op": "add", "count": 1}},
                  self.acc(account))

    @precondition(lambda self: self.audiences)
    @rule(data=st.data(), account=accounts)
    def lookalike(self, data, account):
        audience = data.draw(st.sampled_from(self.audiences))
        r = self.call("POST", f"/v1/audiences/{audience}/lookalikes", {"name": "lal"}, self.acc(account))
        if r.status == 201:
            self.audiences.append(r.body["audience"]["id"])

    @precondition(lambda self: self.audiences)
    @rule(data=st.data(), account=accounts, action=st.sampled_from(["apply", "share", "delete", "view"]))
    def authorize(self, data, account, action):
        r = self.call("POST", "/v1/authorize", {
            "principal": {"account_id": self.acc(account)}, "action": action,
            "resource": {"audience_id": data.draw(st.sampled_from(self.audiences))},
            "context": {"ad_group_id": f"g0_{self.u}", "target_account_id": self.acc("r1")}})
        assert r.status == 200

    @rule(account=accounts, bc=st.sampled_from(["bc", "bc2", None]))
    def move_account(self, account, bc):
        self.call("PUT", f"/v1/accounts/{self.acc(account)}",
                  {"name": account, "business_center_id": bc and f"{bc}_{self.u}"})

    @rule(bc=st.sampled_from(["bc", "bc2"]), allowlisted=st.booleans())
    def allowlist(self, bc, allowlisted):
        self.call("PUT", f"/v1/business-centers/{bc}_{self.u}", {"name": bc, "cross_bc_allowlisted": allowlisted})

    @invariant()
    def nothing_broken(self):
        assert check_invariants(self.database_url) == []


@pytest.mark.parametrize("kind", DATABASES)
def test_random_action_sequences_keep_every_invariant(kind, tmp_path):
    with private_server(kind, tmp_path) as (url, live, api):
        Actions.base_url, Actions.database_url, Actions.steps, Actions.server_errors = live.base_url, url, 0, 0
        examples, steps = size("machine_examples", 12), size("machine_steps", 20)
        run_state_machine_as_test(Actions, settings=settings(
            max_examples=examples, stateful_step_count=steps, deadline=None, derandomize=False,
            suppress_health_check=list(HealthCheck), database=None))
        violations = check_invariants(url, api)
        print(f"\nHYPOTHESIS {kind}: {examples} sequences of up to {steps} steps, "
              f"{Actions.steps} requests, invariants checked after each step")
        record("hypothesis state machine", kind, requests=Actions.steps, errors=Actions.server_errors,
               invariant_violations=len(violations), fuzz_cases=examples, steps_up_to=steps)
        assert Actions.steps > examples
        assert violations == []
