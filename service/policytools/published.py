"""Reason codes are stable API: a code once published is never renamed or removed.

A caller branches on a code (``reshare_forbidden``), so a policy that stops giving it under
that name breaks the caller silently. ``reasons.yaml`` therefore never loses an entry: a
code the policy no longer gives moves from ``deny:`` to ``retired:``, saying what became of
it, and a policy line may not name it::

    retired:
      reshare_forbidden: {replaced_by: recipient_cannot_share}   # renamed: a code of deny:
      seed_deleted: {deprecated: refresh no longer checks the seed}  # no successor: why

What was published is read from a baseline: the git revision of the files (``policy check``:
HEAD unless told), the policy in force (``policy diff``'s ``--policy-dir``), or the policy
serving (a reload). A code of the baseline (live or retired) that the candidate lists
nowhere is a problem; one the candidate retires is listed first by ``policy diff``.
"""

from __future__ import annotations

import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

import yaml

from audience_authz.policytools.messages import Problem

REASONS = "reasons.yaml"
_CODE = re.compile(r"[a-z][a-z0-9_]*")


@dataclass(frozen=True)
class Codes:
    """The codes of one reasons.yaml: ``live`` (deny: code -> message) and ``retired``
    (code -> its replacement, or None when it is deprecated without one)."""

    live: dict[str, str]
    retired: dict[str, str | None]

    @property
    def published(self) -> set[str]:
        return set(self.live) | set(self.retired)


def read(text: str) -> Codes:
    """The codes of a reasons.yaml text (what does not parse reads as no codes: ``policy
    check`` reports it on its own)."""
    try:
        data = yaml.safe_load(text) or {}
    except yaml.YAMLError:
        return Codes({}, {})
    if not isinstance(data, dict):
        return Codes({}, {})
    live = data.get("deny") if isinstance(data.get("deny"), dict) else {}
    retired = data.get("retired") if isinstance(data.get("retired"), dict) else {}
    return Codes({str(k): str(v) for k, v in live.items()},
                 {str(k): (v.get("replaced_by") if isinstance(v, dict) else None) for k, v in retired.items()})


def of_directory(directory: str | Path) -> Codes:
    return read((Path(directory) / REASONS).read_text())


def at_revision(directory: str | Path, revision: str = "HEAD") -> Codes | None:
    """The codes of ``directory``'s reasons.yaml as committed at ``revision``; None when the
    directory is not in a git work tree or the file is not in that revision (nothing was
    published there yet). A revision git does not know is a ValueError."""
    directory = Path(directory)
    try:
        inside = subprocess.run(["git", "-C", str(directory), "rev-parse", "--is-inside-work-tree"],
                                capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None
    if inside.returncode != 0 or inside.stdout.strip() != "true":
        return None
    if subprocess.run(["git", "-C", str(directory), "rev-parse", "--verify", "--quiet", f"{revision}^{{commit}}"],
                      capture_output=True, timeout=30).returncode != 0:
        if revision == "HEAD":
            return None  # a repository without a commit yet
        raise ValueError(f"git does not know the revision {revision!r}")
    shown = subprocess.run(["git", "-C", str(directory), "show", f"{revision}:./{REASONS}"],
                           capture_output=True, text=True, timeout=30)
    return read(shown.stdout) if shown.returncode == 0 else None


def retired_problems(directory: str | Path) -> list[Problem]:
    """What is wrong with the ``retired:`` mapping of ``directory``'s reasons.yaml."""
    path = Path(directory) / REASONS
    try:
        node = yaml.compose(path.read_text())
    except yaml.YAMLError:
        return []  # reported by policy check's reading of the file
    if not isinstance(node, yaml.MappingNode):
        return []
    sections = {key.value: (key, value) for key, value in node.value}
    if "retired" not in sections:
        return []
    key, retired = sections["retired"]
    if not isinstance(retired, yaml.MappingNode):
        return [Problem(REASONS, key.start_mark.line + 1,
                 "'retired:' maps each retired code to {replaced_by: <code>} or {deprecated: <why>}")]
    codes = read(path.read_text())
    found: list[Problem] = []
    for code_node, spec_node in retired.value:
        line, code = code_node.start_mark.line + 1, code_node.value
        spec = yaml.safe_load(yaml.serialize(spec_node)) if isinstance(spec_node, yaml.MappingNode) else None
        if not _CODE.fullmatch(code):
            found.append(Problem(REASONS, line, f"reason code {code!r} must be lower_snake_case"))
        if code in codes.live:
            found.append(Problem(REASONS, line, f"reason code {code!r} is both in deny: and retired:; keep it in one"))
        if not isinstance(spec, dict) or len(spec) != 1 or not ({"replaced_by", "deprecated"} & set(spec)):
            found.append(Problem(REASONS, line, f"retired code {code!r}: give {{replaced_by: <code>}} or"
                                         " {deprecated: <why>}, one of them"))
            continue
        if "replaced_by" in spec and spec["replaced_by"] not in codes.live:
            found.append(Problem(REASONS, line, f"retired code {code!r} is replaced by {spec['replaced_by']!r},"
                                         " which is not a code of deny:"))
        if "deprecated" in spec and not str(spec["deprecated"] or "").strip():
            found.append(Problem(REASONS, line, f"retired code {code!r}: say why it is deprecated"))
    return found


def dropped(baseline: Codes, candidate_dir: str | Path, where: str) -> list[Problem]:
    """The codes ``baseline`` published that the candidate lists neither in deny: nor in
    retired: (a rename or a removal it does not declare). ``where`` names the baseline."""
    candidate = of_directory(candidate_dir)
    found: list[Problem] = []
    for code in sorted(baseline.published - candidate.published):
        found.append(Problem(REASONS, 1, f"reason code {code!r} was published ({where}) and is gone: a code is never"
                                  " renamed or removed; keep it under retired: with {replaced_by: <new code>}"
                                  " or {deprecated: <why>}"))
    return found


def retirements(baseline: Codes, candidate: Codes) -> list[dict]:
    """The codes live in ``baseline`` that ``candidate`` retires: a rename (``replaced_by``)
    or a deprecation (None), for ``policy diff`` to list first."""
    return [{"code": code, "replaced_by": candidate.retired[code]}
            for code in sorted(set(baseline.live) & set(candidate.retired))]
