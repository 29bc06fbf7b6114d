"""docs/reliability.md shows the figures of the committed `make stress` results file, exactly,
and those figures are what the tests counted: a test run with the results variable set
writes its own counts, and a run without it writes nothing."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.support import ROOT, stress_report


def test_reliability_page_shows_the_results_file():
    text = stress_report.DOC.read_text()
    assert stress_report.section(text) == stress_report.render(stress_report.load())


def _race(tmp_path, **env):
    """The apply-against-stop-sharing race on SQLite, 3 rounds, in a pytest of its own."""
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-s", "-p", "no:cacheprovider", "tests/test_concurrency.py", "-k",
         "recipient_applying and sqlite"], cwd=ROOT, capture_output=True, text=True, timeout=300,
        env={**os.environ, "AUDIENCE_AUTHZ_STRESS_ROUNDS": "3", **env})


@pytest.mark.full  # starts a server process: the full tier
def test_a_stress_test_records_what_it_counted_and_the_page_renders_it(tmp_path):
    results = tmp_path / "stress-results.json"
    run = _race(tmp_path, AUDIENCE_AUTHZ_STRESS_RESULTS=str(results))
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-2000:]
    recorded = json.loads(results.read_text())
    assert recorded["sizes"]["rounds"] == 3
    assert recorded["commit"] == subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True,
                                                text=True).stdout.strip()
    [race] = recorded["tests"]
    assert (race["test"], race["database"], race["rounds"]) == ("apply against stop sharing", "sqlite", 3)
    assert race["requests"] == 3 * 4  # per round: share, apply, stop sharing, read the ad group
    assert race["errors"] == 0 and race["invariant_violations"] == 0
    assert sum(race["outcomes"].values()) == 3
    page = stress_report.write(stress_report.DOC.read_text(), recorded)
    section = stress_report.section(page)
    assert "**sqlite**" in section and "| apply against stop sharing | 12 | 0 | 0 |  | rounds 3;" in section
    assert page.split(stress_report.BEGIN)[0] == stress_report.DOC.read_text().split(stress_report.BEGIN)[0]


@pytest.mark.full
def test_without_the_variable_nothing_is_written(tmp_path, monkeypatch):
    monkeypatch.delenv("AUDIENCE_AUTHZ_STRESS_RESULTS", raising=False)
    committed = stress_report.RESULTS.read_bytes() if stress_report.RESULTS.exists() else None
    run = _race(tmp_path)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-2000:]
    assert (stress_report.RESULTS.read_bytes() if stress_report.RESULTS.exists() else None) == committed
    assert "RACE sqlite: 3 rounds" in run.stdout  # the test did run, and counted
