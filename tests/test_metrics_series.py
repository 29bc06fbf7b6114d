"""The metrics an operator alerts on: labels a caller cannot multiply, buckets that resolve
an authorize's few milliseconds, and every counter exported at zero before its first use."""

from __future__ import annotations

import pytest
import requests
import yaml
from prometheus_client.parser import text_string_to_metric_families

from audience_authz.config import shipped_policy_dir
from audience_authz.vocabulary import ACTIONS, EFFECTS, SERVICE_REASONS
from tests.support import Api, LiveServer

pytestmark = pytest.mark.full


@pytest.fixture(scope="module")
def live(tmp_path_factory):
    url = f"sqlite:///{tmp_path_factory.mktemp('metrics') / 'authz.db'}"
    with LiveServer(url, extra_args=["--workers", "2", "--threads", "2"]) as server:
        yield server


def families(live) -> dict:
    response = requests.get(live.base_url + "/metrics", headers={"Authorization": f"Bearer {live.token}"},
                            timeout=10)
    assert response.status_code == 200
    return {f.name: f for f in text_string_to_metric_families(response.text)}


def label_values(family, label: str) -> set[str]:
    return {s.labels[label] for s in family.samples if label in s.labels}


def test_every_counter_is_exported_at_zero_from_the_start(live):
    found = families(live)  # the first request to this server
    effects = found["audience_authz_effects_applied"]
    assert label_values(effects, "type") == set(EFFECTS)
    assert all(s.value == 0 for s in effects.samples if s.name.endswith("_total"))
    errors = found["audience_authz_database_errors"]
    assert {"OperationalError", "IntegrityError", "MaxConnectionsExceeded"} <= label_values(errors, "error")
    assert [s.value for s in found["audience_authz_policy_reload_failures"].samples
            if s.name.endswith("_total")] == [0.0]
    decisions = {(s.labels["action"], s.labels["decision"], s.labels["reason"])
                 for s in found["audience_authz_decisions"].samples if s.name.endswith("_total")}
    for action in ACTIONS:  # the service's own denials, for every action
        assert {(action, "deny", reason) for reason in SERVICE_REASONS} <= decisions
    # and every reason code the shipped policy can deny with, for some action
    reasons = set(yaml.safe_load((shipped_policy_dir() / "reasons.yaml").read_text())["deny"])
    assert reasons <= {reason for _, decision, reason in decisions if decision == "deny"}


def test_an_unknown_method_or_path_creates_no_new_series(live):
    for method in ("NOAUTH215350", "BREW", "PROPFIND"):
        requests.request(method, live.base_url + "/v1/authorize", timeout=10)
        requests.request(method, live.base_url + f"/nowhere/{method}", timeout=10)
    requests.get(live.base_url + "/v1/no-such-route/12345", timeout=10)
    latency = families(live)["audience_authz_request_duration_seconds"]
    methods = label_values(latency, "method")
    assert "other" in methods and methods <= {"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "other"}
    endpoints = label_values(latency, "endpoint")
    assert "unmatched" in endpoints
    assert not any("nowhere" in e or "12345" in e for e in endpoints), endpoints


def test_latency_buckets_resolve_the_sub_millisecond_range(live):
    api = Api(live.base_url, live.token)
    api.authorize("acc_nobody", "view", "aud_none")
    latency = families(live)["audience_authz_request_duration_seconds"]
    bounds = sorted({float(s.labels["le"]) for s in latency.samples if s.name.endswith("_bucket")})
    assert bounds[0] <= 0.00025 and bounds[-2] >= 5.0  # the last is +Inf
    assert len([b for b in bounds if b <= 0.005]) >= 5  # where an authorize sits
