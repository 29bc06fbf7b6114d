"""The figures of the last `make stress`, written into docs/reliability.md (between the
markers below) from the results file the run wrote, so the page shows exactly what ran:

    python -m tests.support.stress_report            # stress-results.json into the page
    python -m tests.support.stress_report --check    # exit 1 when the page differs from the file

`make stress` runs it after the tests; tests/test_stress_report.py checks that the page and
the committed results file agree.
"""

from __future__ import annotations

from pathlib import Path

from bench import pages
from bench.pages import GeneratedSection
from tests.support import ROOT

BEGIN = "<!-- stress-results:begin: written by `python -m tests.support.stress_report`; do not edit -->"
END = "<!-- stress-results:end -->"
RESULTS = ROOT / "stress-results.json"
DOC = ROOT / "docs" / "reliability.md"
NONE_YET = "_No `make stress` run recorded yet._"
COLUMNS = ("requests", "errors", "invariant_violations", "fuzz_cases")
DETAILS = {"concurrent load": ("seconds", "threads", "workers", "events_read", "transaction_retries"),
           "apply against stop sharing": ("rounds", "outcomes", "transaction_retries"),
           "racing creations of one ad group": ("rounds", "transaction_retries"),
           "two disconnects of one ad group": ("rounds", "transaction_retries"),
           "SIGKILL during a stop sharing": ("recipient_ad_groups", "stop_sharing_s", "kills", "half_applied"),
           "backends terminated during actions": ("seconds", "terminations", "backends_terminated",
                                                  "unavailable_503", "large_stop_sharings", "recovered_s"),
           "schemathesis": ("examples_per_operation", "failures"),
           "hypothesis state machine": ("steps_up_to",),
           "idle streams and long polls beside decisions": (
               "streams", "long_polls", "analyses", "p99_ms_without", "p99_ms_subscribers_only", "p99_ms_with",
               "probe_max_ms", "freed_in_s", "rss_kb_per_subscriber", "idle_cpu_ms_per_s"),
           "concurrent analyses through the API and the console": ("seconds", "answers")}


def render(results: dict | None) -> str:
    """The markdown of ``results`` (None: no run recorded yet): one table per database."""
    if results is None:
        return NONE_YET
    sizes = ", ".join(f"{k} {v:,}" for k, v in results["sizes"].items())
    lines = [f"From `stress-results.json`: the run of commit `{results['commit'][:12]}`"
             f"{' (with uncommitted changes)' if results['dirty'] else ''}, {results['started_at']} to "
             f"{results['finished_at']}, on {results['cpus']} CPUs, Python {results['python']}; sizes: {sizes}."]
    for database in sorted({t["database"] for t in results["tests"]}):
        lines += ["", f"**{database}**", "", "| test | requests | 5xx | invariant violations | fuzz cases | details |",
                  "| --- | ---: | ---: | ---: | ---: | --- |"]
        for t in (t for t in results["tests"] if t["database"] == database):
            shown = [f"{t[c]:,}" if t.get(c) is not None else "" for c in COLUMNS]
            details = "; ".join(f"{k.replace('_', ' ')} {_value(t[k])}" for k in DETAILS.get(t["test"], ()) if k in t)
            lines.append(f"| {t['test']} | " + " | ".join(shown) + f" | {details} |")
    return "\n".join(lines)


def _value(value) -> str:
    if isinstance(value, dict):
        return ", ".join(f"{k}: {v}" for k, v in value.items())
    return f"{value:,}" if isinstance(value, int) else str(value)


PAGE = GeneratedSection(BEGIN, END, render, "python -m tests.support.stress_report")
section, write = PAGE.section, PAGE.write
main = PAGE.command(RESULTS, DOC)


def load(path: Path = RESULTS) -> dict | None:
    return pages.load(path)


if __name__ == "__main__":
    main()
