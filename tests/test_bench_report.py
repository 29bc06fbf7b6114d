"""docs/performance.md shows the figures of the committed result file, exactly: its figures
section is what `python -m bench.report` writes from bench-results.json (or says that no
result file is committed), so a figure on the page cannot drift from a run."""

from __future__ import annotations

import json

import pytest

from bench import report
from tests.support import ROOT


def test_performance_page_shows_the_result_file():
    text = report.DOC.read_text()
    assert report.section(text) == report.render(report.load(ROOT / "bench-results.json"))


@pytest.mark.full  # runs the benchmark script (test_bench_smoke's run): the full tier
def test_report_renders_every_goal_and_figure(tmp_path):
    # a result file in the shape bench/run.py writes (the smoke test's run, without HTTP)
    from tests.test_bench_smoke import run_bench

    proc, results = run_bench(tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    text = report.render(results)
    for key, verdict in results["targets"].items():
        assert f"| `{key}` | {report.shown(verdict['value'])} | {verdict['target']} |" in text
    for key, value in results["figures"].items():
        if key != "naive_casbin_lines" and key != "stop_sharing_ad_groups":
            assert f"| `{key}` | {report.shown(value)}" in text, key
    for row in results["details"]["wsgi"]["profile"]["parts"]:
        assert f"`{row['function']}`" in text
    # and the page rewritten from it holds it between the markers, the rest untouched
    page = report.write(report.DOC.read_text(), results)
    assert report.section(page) == text
    assert page.split(report.BEGIN)[0] == report.DOC.read_text().split(report.BEGIN)[0]
    json.dumps(results)  # what the page was made from is plain JSON
