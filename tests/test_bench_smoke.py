"""The benchmark script at a tiny size: it runs, measures every part, and its cross-check
against the Cedar translation finds agreement, and finds a wrong translation wrong.
(The full runs are `make bench` and `make bench-quick`; wrk and HTTP are left to them.)"""

from __future__ import annotations

import json
import re
import subprocess
import sys

import pytest

from tests.support import ROOT

pytestmark = pytest.mark.full  # the benchmark script, with its stores and timings: the full tier

CEDAR_POLICY = ROOT / "bench" / "cedar" / "policy.cedar"


def run_bench(tmp_path, *extra):
    out = tmp_path / "results.json"
    proc = subprocess.run(
        [sys.executable, "-m", "bench.run", "--scale", "0.002", "--requests", "400", "--rounds", "1",
         "--no-http", "--stop-groups", "200", "--naive-lines", "200", "--no-progress",
         "--store-dir", str(tmp_path / "stores"), "--out", str(out), *extra],
        cwd=ROOT, capture_output=True, text=True, timeout=300)
    return proc, (json.loads(out.read_text()) if out.exists() else None)


def test_bench_measures_everything_and_agrees_with_cedar(tmp_path):
    proc, results = run_bench(tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    figures = results["figures"]
    for key in ("inproc_decision_us", "policy_only_us", "cedarpy_decision_us", "policy_vs_cedarpy",
                "naive_casbin_us", "scale_ratio_2k_vs_1k", "stop_sharing_10k_s", "facts_query_us",
                "wsgi_authorize_us", "wsgi_ping_us"):
        assert figures[key] > 0, key
    checked = results["cross_check"]["cedar"]
    assert checked["requests"] == 400
    assert 0 < checked["allowed"] < 400  # both answers occur in the sample
    assert checked["mismatches"] == 0 and checked["reason_mismatches"] == 0, checked["examples"]
    stop = results["details"]["stop_sharing"]
    assert stop["ad_groups"] == 200 and stop["complete"], stop
    assert stop["last"]["effects"]["disconnect_audience"] == 200
    assert "cross-check vs Cedar: 400 requests, 0 decision mismatches" in proc.stdout


def test_cross_check_reports_a_wrong_cedar_translation(tmp_path):
    # drop the permit that lets a recipient view a shared audience: Cedar now denies what
    # the policy allows, and the benchmark must say so and fail
    text = CEDAR_POLICY.read_text()
    wrong, removed = re.subn(r'@id\("recipient_may_view"\)\npermit[^;]*;', "", text)
    assert removed == 1
    policy = tmp_path / "wrong.cedar"
    policy.write_text(wrong)
    proc, results = run_bench(tmp_path, "--cedar-policy", str(policy))
    assert proc.returncode == 2, proc.stderr[-3000:]
    checked = results["cross_check"]["cedar"]
    assert checked["mismatches"] > 0
    assert all(e["request"]["action"] == "view" and e["service"][0] == "allow" for e in checked["examples"])
