"""The figures of a benchmark run, written into docs/performance.md (between the markers
below), so that the page shows exactly what the result file holds:

    python -m bench.report                  # bench-results.json into docs/performance.md
    python -m bench.report --check          # exit 1 when the page differs from the file

`make bench` runs it after the benchmark; tests/test_bench_report.py checks that the page
and the committed result file agree.
"""

from __future__ import annotations

from pathlib import Path

from bench import pages
from bench.pages import GeneratedSection
from bench.run import ROOT, figure_rows, shown

BEGIN = "<!-- figures: written by `python -m bench.report` from bench-results.json; do not edit -->"
END = "<!-- end of figures -->"
RESULTS = ROOT / "bench-results.json"
DOC = ROOT / "docs" / "performance.md"


def render(results: dict | None) -> str:
    """The markdown of the figures of ``results`` (None: no result file yet)."""
    if results is None:
        return "No result file is committed yet: run `make bench` (it writes `bench-results.json` and this section)."
    f, targets, m = results["figures"], results["targets"], results["machine"]
    versions = m.get("versions", {})
    lines = [
        f"From `bench-results.json`: the run of {results['started_at']} at scale {results['scale']:g} "
        f"({results['store']['sizes']['audiences']:,} audiences), {results['seconds']:,.0f} s, on "
        f"{m['cpus']} CPUs ({m['cpu_model']}), Python {m['python']}, "
        + ", ".join(f"{k} {versions[k]}" for k in ("cerbos", "gunicorn", "granian", "sqlite", "wrk") if versions.get(k))
        + ". Load average during the run: "
        + ", ".join(f"{k} {v[0]:g}" for k, v in results.get("load_average", {}).items()) + ".",
        "",
        "**Goals**",
        "",
        "| figure | value | goal | met |",
        "| --- | ---: | --- | --- |",
    ]
    for key, verdict in targets.items():
        met = "yes" if verdict["met"] else "**no**"
        if "minimum" in verdict:
            met += f" (at least {verdict['minimum']}: {'yes' if verdict['minimum_met'] else '**no**'})"
        lines.append(f"| `{key}` | {shown(verdict['value'])} | {verdict['target']} | {met} |")
    lines += ["", "**Every figure**", "", "| figure | value | what |", "| --- | ---: | --- |"]
    for key, unit, what in figure_rows(results):
        if f.get(key) is not None:
            lines.append(f"| `{key}` | {shown(f[key])}{' ' + unit if unit else ''} | {what} |")
    http = (results.get("details") or {}).get("http")
    if http and all(kind in http for kind in http.get("servers", ())):
        lines += ["", "**The HTTP servers, same app, same run** (`serve` runs the first)", "",
                  "| server | authorize req/s | p50 ms | p99 ms | CPU µs per authorize | /healthz req/s "
                  "| CPU µs per ping | errors |", "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
        for kind in http["servers"]:
            s = http[kind]
            lines.append(f"| {kind} | {shown(s['http_rps'])} | {shown(s['http_p50_ms'])} | {shown(s['http_p99_ms'])} "
                         f"| {_maybe(s['http_cpu_us_per_request'])} | {shown(s['ping_rps'])} "
                         f"| {_maybe(s['ping_cpu_us_per_request'])} | {s.get('wrk_errors', '')} |")
    profile = ((results.get("details") or {}).get("wsgi") or {}).get("profile")
    if profile:
        lines += ["", f"**Where an authorize's time goes** (cProfile of {profile['requests']:,} requests through the "
                  "Flask app in process; shares of the whole request, µs as profiled, so inflated by the "
                  "profiler)", "", "| part | share | µs profiled | function |", "| --- | ---: | ---: | --- |"]
        for row in profile["parts"]:
            indent = "&nbsp;&nbsp;" if row["part"].startswith("  ") else ""
            lines.append(f"| {indent}{row['part'].strip()} | {row['share'] * 100:.1f}% | {shown(row['us'])} "
                         f"| `{row['function']}` |")
    checks = results["cross_check"]
    lines += ["", "**Cross-checks**", "",
              f"- Cedar: {checks['cedar']['requests']:,} requests, {checks['cedar']['mismatches']} decision "
              f"mismatches, {checks['cedar']['reason_mismatches']} reason mismatches"]
    if checks.get("cerbos"):
        c = checks["cerbos"]
        lines.append(f"- Cerbos: {c['single']['checks'] + c['batch']['checks']:,} checks (every check of its HTTP "
                     f"runs, single and batch), {c['single']['mismatches'] + c['batch']['mismatches']} mismatches")
    if checks.get("http"):
        lines.append(f"- over HTTP: {checks['http']['requests']} requests, {checks['http']['mismatches']} mismatches")
    if http and "decision_log" in http:
        log = http["decision_log"]
        lines.append(f"- decision log: {log['rows_written']:,} rows written for at least "
                     f"{log['requests_answered_at_least']:,} decisions answered over HTTP "
                     f"({'complete' if log['complete'] else '**incomplete**'})")
    return "\n".join(lines)


def _maybe(value) -> str:
    return "" if value is None else shown(value)


PAGE = GeneratedSection(BEGIN, END, render, "python -m bench.report")
section, write = PAGE.section, PAGE.write
main = PAGE.command(RESULTS, DOC)


def load(path: Path = RESULTS) -> dict | None:
    return pages.load(path)


if __name__ == "__main__":
    main()
