"""``policy diff --symbolic``: where two policies answer differently, over every request.

For each (relation, action) the service asks, the first-match regions of the policy in
force and of the candidate (``symbolic.py``) are intersected: wherever a region of one and
a region of the other overlap with different outcomes (decision, reason code or effects),
the answer changes. The overlaps with the same (before, after) outcomes are joined into one
changed region, printed as a condition over the facts (simplified by z3, without what the
invariants of facts.yaml say anyway) with one concrete request in it. Since the regions of
each policy partition every possible request, the changed regions are exact and complete:
a request is in one exactly when its answer changes.

Beside each region, the decision log replay says how many real past requests fall in it
(decided again by both policies).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import z3

from audience_authz import contract
from audience_authz.engine.policy import Policy
from audience_authz.policytools.symbolic import Encoder, Outcome, simplify


@dataclass
class Region:
    relation: str
    action: str
    before: Outcome
    after: Outcome
    before_lines: list[int]
    after_lines: list[int]
    condition: str
    example: dict
    replayed: int | None = None  # past requests of the decision log in this region
    examples_replayed: list[str] = field(default_factory=list)  # their decision ids

    @property
    def kind(self) -> str:
        if self.before.decision != self.after.decision:
            return f"{self.before.decision}->{self.after.decision}"
        return "reason" if self.before.reason != self.after.reason else "effects"

    def as_dict(self) -> dict:
        def side(outcome: Outcome, lines: list[int]) -> dict:
            return {"decision": outcome.decision, "reason": outcome.reason, "effects": list(outcome.effects),
                    "lines": lines}
        body = {"relation": self.relation, "action": self.action, "kind": self.kind,
                "before": side(self.before, self.before_lines), "after": side(self.after, self.after_lines),
                "condition": self.condition, "example": self.example}
        if self.replayed is not None:
            body["replayed"] = self.replayed
            body["replayed_decision_ids"] = self.examples_replayed
        return body


@dataclass
class Report:
    baseline_version: str
    candidate_version: str
    pairs: int
    regions: list[Region]
    replayed: int | None = None

    def as_dict(self) -> dict:
        return {"baseline_version": self.baseline_version, "candidate_version": self.candidate_version,
                "pairs": self.pairs, "changed_regions": len(self.regions), "replayed": self.replayed,
                "regions": [r.as_dict() for r in self.regions]}


def symbolic_diff(baseline: Policy, candidate: Policy) -> Report:
    before_encoder, after_encoder = Encoder(baseline), Encoder(candidate)
    regions = []
    for rel, act in contract.ASKED:
        invariants = before_encoder.invariants(act) + after_encoder.invariants(act)
        changed: dict[tuple, list] = {}
        for b in before_encoder.regions(rel, act):
            for a in after_encoder.regions(rel, act):
                if b.outcome.key != a.outcome.key:
                    changed.setdefault((b.outcome.key, a.outcome.key), []).append((b, a))
        for overlaps in changed.values():
            union = z3.Or(*[z3.And(b.formula, a.formula) for b, a in overlaps])
            solver = z3.Solver()
            solver.add(*invariants, union)
            if solver.check() != z3.sat:
                continue
            example = before_encoder.example(*invariants, union, also=after_encoder)
            inside = [(b, a) for b, a in overlaps
                      if _satisfiable(invariants, z3.And(b.formula, a.formula))]
            condition = before_encoder.text(simplify(z3.Or(*[z3.And(b.formula, a.formula) for b, a in inside]),
                                                     invariants))
            first_b, first_a = inside[0]
            regions.append(Region(rel, act, first_b.outcome, first_a.outcome,
                                  sorted({_line(b.outcome) for b, _ in inside}),
                                  sorted({_line(a.outcome) for _, a in inside}), condition, example))
    return Report(baseline.version, candidate.version, len(contract.ASKED), regions)


def _satisfiable(invariants, formula) -> bool:
    solver = z3.Solver()
    solver.add(*invariants, formula)
    return solver.check() == z3.sat


def _line(outcome: Outcome) -> int:
    return outcome.rule.line if outcome.rule else 0


def count_replayed(report: Report, rows, baseline: Policy, candidate: Policy, examples: int = 3) -> None:
    """How many decision log ``rows`` fall in each changed region (decided again by both)."""
    index = {(r.relation, r.action, r.before.key, r.after.key): r for r in report.regions}
    for region in report.regions:
        region.replayed = 0
    report.replayed = 0
    for row in rows:
        try:
            stored = json.loads(row.facts)
            before = baseline.decide(row.relation, row.action, baseline.facts(
                **{k: v for k, v in stored.items() if k in baseline.facts_schema}))
            after = candidate.decide(row.relation, row.action, candidate.facts(
                **{k: v for k, v in stored.items() if k in candidate.facts_schema}))
        except Exception:  # noqa: BLE001 - a row that cannot be decided again is not counted
            continue
        report.replayed += 1
        region = index.get((row.relation, row.action, Outcome.of(before.rule).key, Outcome.of(after.rule).key))
        if region is not None:
            region.replayed += 1
            if len(region.examples_replayed) < examples:
                region.examples_replayed.append(row.decision_id)


def text(report: Report, defaults: dict) -> str:
    """The report for a person; ``defaults``: each fact's default (an example names the others)."""
    out = [f"Symbolic diff, policy {report.baseline_version} -> candidate {report.candidate_version}:"
           f" {len(report.regions)} changed region(s) over the {report.pairs} (relation, action) pairs the"
           " service asks; exact over every request it can make."]
    if report.replayed is not None:
        out.append(f"Decision log: {report.replayed} past request(s) replayed;"
                   f" {sum(r.replayed or 0 for r in report.regions)} fall in a changed region.")
    for region in report.regions:
        before = f"{region.before.describe()} ({_where(region.before_lines)})"
        after = f"{region.after.describe()} ({_where(region.after_lines)})"
        out.append(f"\n  ({region.relation}, {region.action}) {region.kind}: {before} -> {after}")
        out.append(f"      when: {region.condition}")
        changed = [f"{k}={v!r}" for k, v in region.example.items() if v != defaults.get(k)]
        out.append("      e.g.: " + (", ".join(changed) + " (every other fact at its default)" if changed
                                     else "every fact at its default"))
        if region.replayed is not None:
            ids = f" (e.g. {', '.join(region.examples_replayed)})" if region.examples_replayed else ""
            out.append(f"      past requests in this region: {region.replayed}{ids}")
    return "\n".join(out) + "\n"


def _where(lines: list[int]) -> str:
    named = [str(n) for n in lines if n]
    return ("policy.csv:" + ",".join(named) if named else "") + (" no line" if 0 in lines else "")


def policy_at_revision(rev: str, path: str, dest) -> None:
    """The policy files of ``path`` at git revision ``rev`` (of the repository here) into ``dest``.

    ``rev`` is the caller's text: it is resolved to a commit first, with ``--end-of-options``
    so that text starting with ``-`` is never read as an option of git (``--output=FILE``
    would make git write files), and only the commit id it names is passed on."""
    import subprocess
    from pathlib import Path

    from audience_authz.vocabulary import POLICY_FILES

    if not rev or rev.startswith("-") or any(ord(c) < 32 or ord(c) == 127 for c in rev) or ":" in rev:
        raise ValueError(f"{rev!r} is not a git revision (a commit, branch or tag name, not an option or a path)")
    found = subprocess.run(["git", "rev-parse", "--verify", "--quiet", "--end-of-options", f"{rev}^{{commit}}"],
                           capture_output=True)
    if found.returncode != 0:
        raise ValueError(f"{rev!r} names no commit of the repository here")
    commit = found.stdout.decode().strip()
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    for name in (*POLICY_FILES, "properties.yaml"):
        run = subprocess.run(["git", "show", "--end-of-options", f"{commit}:{path.rstrip('/')}/{name}"],
                             capture_output=True)
        if run.returncode != 0:
            if name == "properties.yaml":
                continue
            raise ValueError(f"git show {rev}:{path}/{name}: {run.stderr.decode(errors='replace').strip()}")
        (dest / name).write_bytes(run.stdout)
