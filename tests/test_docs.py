"""The documentation says what the code does: the configuration table is the settings
object's, the specification names every reason code, action and source the service knows,
and no link between the documents points at nothing. In process, no server."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from audience_authz import config, contract, vocabulary

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
OPERATIONS = DOCS / "operations.md"
SPEC = DOCS / "spec.md"
SETTINGS_HEADING = "### Environment variables"
# reason codes the service gives without a policy line (besides reasons.yaml's own)
HTTP_ONLY_REASONS = ("response_too_large",)


def _table_after(text: str, heading: str) -> list[list[str]]:
    """The rows (cells, stripped) of the first Markdown table after ``heading``."""
    assert heading in text, f"{heading!r} not found"
    rows, started = [], False
    for line in text.split(heading, 1)[1].splitlines():
        if line.startswith("|"):
            started = True
            cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
            if not all(set(cell) <= set("-: ") for cell in cells):  # not the separator row
                rows.append(cells)
        elif started:
            break
    return rows[1:]  # without the header


def _shown(default: str) -> str:
    """How the table writes a default: in backticks, or as plain words when there is no
    literal value (the shipped policy; an empty string)."""
    if default == "":
        return "(empty)"
    return default if default.startswith("(") else f"`{default}`"


def test_the_configuration_table_is_the_settings_object():
    rows = _table_after(OPERATIONS.read_text(), SETTINGS_HEADING)
    table = {}
    for cells in rows:
        variable = cells[0].strip("`")
        assert variable not in table, f"{variable} is listed twice"
        table[variable] = cells[1]
    settings = config.environment_variables()
    assert sorted(table) == sorted(settings), (
        f"docs/operations.md lacks {sorted(set(settings) - set(table))} "
        f"and lists {sorted(set(table) - set(settings))}, which config.Settings does not read")
    for variable, (default, _) in settings.items():
        assert table[variable] == _shown(default), (
            f"{variable}: the table says {table[variable]!r}, config.Settings' default is {_shown(default)!r}")


def test_the_table_reader_sees_a_missing_row():
    text = OPERATIONS.read_text()
    row = next(line for line in text.splitlines() if line.startswith("| `AUDIENCE_AUTHZ_MAX_BODY`"))
    rows = _table_after(text.replace(row + "\n", ""), SETTINGS_HEADING)
    assert "`AUDIENCE_AUTHZ_MAX_BODY`" not in [cells[0] for cells in rows]
    assert len(rows) == len(config.environment_variables()) - 1


def _named(text: str) -> set[str]:
    return set(re.findall(r"`([a-z_]+)`", text))


def test_the_specification_names_every_reason_code_the_code_relies_on():
    # the codes the service gives or branches on; a policy author adds others to reasons.yaml
    # (which holds their messages), so the spec's table may lack those, never the reverse
    codes = set(contract.RELIED_REASONS) | set(HTTP_ONLY_REASONS) | set(vocabulary.SERVICE_REASONS)
    missing = sorted(codes - _named(SPEC.read_text()))
    assert not missing, f"docs/spec.md does not name the reason codes {missing}"


def test_every_code_of_the_specifications_table_is_a_published_code_of_the_policy():
    published = yaml.safe_load((ROOT / "policy" / "reasons.yaml").read_text())["deny"]
    table = [row[0].strip("`") for row in _table_after(SPEC.read_text(), "### Reason codes")]
    assert len(table) > 10
    unknown = sorted(set(table) - set(published))
    assert not unknown, f"docs/spec.md lists reason codes reasons.yaml does not: {unknown}"


def test_the_specification_names_every_action_relation_and_source():
    named = _named(SPEC.read_text())
    for kind, names in (("actions", vocabulary.ACTIONS), ("relations", vocabulary.RELATIONS),
                        ("sources", vocabulary.SOURCES), ("effects", vocabulary.EFFECTS)):
        missing = sorted(set(names) - named)
        assert not missing, f"docs/spec.md does not name the {kind} {missing}"


DOCUMENTS = [ROOT / "README.md", ROOT / "ARCHITECTURE.md", *sorted(DOCS.glob("*.md"))]


@pytest.mark.parametrize("document", DOCUMENTS, ids=lambda p: str(p.relative_to(ROOT)))
def test_links_between_documents_resolve(document: Path):
    broken = []
    for target in re.findall(r"\]\(([^)\s]+)\)", document.read_text()):
        if re.match(r"[a-z]+:", target) or target.startswith("#"):
            continue  # a web address or an anchor of the same page
        path = (document.parent / target.split("#", 1)[0]).resolve()
        if not path.exists():
            broken.append(target)
    assert not broken, f"{document.name} links to missing files: {broken}"


def test_the_readme_stays_a_front_door():
    lines = (ROOT / "README.md").read_text().splitlines()
    assert len(lines) <= 150, f"README.md has {len(lines)} lines; move the detail into docs/"
