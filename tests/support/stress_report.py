"""The figures of the last `make stress`, written into docs/reliability.md (between the
markers below) from the results file the run wrote, so the page shows exactly what ran:

    python -m tests.support.stress_report            # stress-results.json into the page
    python -m tests.support.stress_report --check    # exit 1 when the page differs from the file

`make stress` runs it after the tests; tests/test_stress_report.py checks that the page and
the committed results file agree.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

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
           "SIGKILL during a stop sharing": ("recipient_ad_groups", "stop_sharing_s", "kills", "half_applied"),
           "backends terminated during actions": ("seconds", "terminations", "backends_terminated",
                                                  "unavailable_503", "large_stop_sharings", "recovered_s"),
           "schemathesis": ("examples_per_operation", "failures"),
           "hypothesis state machine": ("steps_up_to",)}


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


def load(path: Path = RESULTS) -> dict | None:
    return json.loads(path.read_text()) if path.exists() else None


def section(text: str) -> str:
    """The rendered part of ``text`` (between the markers)."""
    return text[text.index(BEGIN) + len(BEGIN):text.index(END)].strip("\n")


def write(doc_text: str, results: dict | None) -> str:
    return doc_text[:doc_text.index(BEGIN) + len(BEGIN)] + "\n" + render(results) + "\n" + doc_text[doc_text.index(END):]


@click.command()
@click.option("--results", default=str(RESULTS), show_default=True, type=click.Path(dir_okay=False))
@click.option("--doc", default=str(DOC), show_default=True, type=click.Path(exists=True, dir_okay=False))
@click.option("--check", is_flag=True, help="do not write; exit 1 when the page differs from the results file")
def main(results, doc, check):
    doc_path = Path(doc)
    text = doc_path.read_text()
    updated = write(text, load(Path(results)))
    if check:
        if updated != text:
            click.echo(f"{doc} does not show {results}: run `python -m tests.support.stress_report`", err=True)
            sys.exit(1)
        return
    doc_path.write_text(updated)
    click.echo(f"wrote the figures of {results} into {doc}")


if __name__ == "__main__":
    main()
