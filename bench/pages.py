"""A section of a docs page generated from a result file: the text between two markers is
``render(results)``, so the page shows exactly what a run wrote. Used by ``bench.report``
(docs/performance.md) and ``tests.support.stress_report`` (docs/reliability.md)."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import click


def load(path: Path) -> dict | None:
    return json.loads(path.read_text()) if path.exists() else None


@dataclass(frozen=True)
class GeneratedSection:
    begin: str
    end: str
    render: Callable[[dict | None], str]
    rerun: str  # the command that writes the section again

    def section(self, text: str) -> str:
        """The rendered part of ``text`` (between the markers)."""
        return text[text.index(self.begin) + len(self.begin):text.index(self.end)].strip("\n")

    def write(self, doc_text: str, results: dict | None) -> str:
        start, end = doc_text.index(self.begin) + len(self.begin), doc_text.index(self.end)
        return doc_text[:start] + "\n" + self.render(results) + "\n" + doc_text[end:]

    def command(self, results: Path, doc: Path) -> click.Command:
        """The command line: write the section from ``results``, or ``--check`` that it shows them."""
        @click.command()
        @click.option("--results", "results_path", default=str(results), show_default=True,
                      type=click.Path(dir_okay=False))
        @click.option("--doc", "doc_path", default=str(doc), show_default=True,
                      type=click.Path(exists=True, dir_okay=False))
        @click.option("--check", is_flag=True, help="do not write; exit 1 when the page differs from the results file")
        def main(results_path, doc_path, check):
            page = Path(doc_path)
            text = page.read_text()
            updated = self.write(text, load(Path(results_path)))
            if check:
                if updated != text:
                    click.echo(f"{doc_path} does not show the figures of {results_path}: run `{self.rerun}`", err=True)
                    sys.exit(1)
                return
            page.write_text(updated)
            click.echo(f"figures of {results_path} written into {doc_path}", err=True)
        return main
