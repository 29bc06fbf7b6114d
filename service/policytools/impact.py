"""One analysis of a candidate policy against the policy in force: ``policy check``, the
replay of past decisions, the symbolic diff (with the past decisions in each changed
region) and the candidate's proofs. ``POST /v1/policy/diff`` and the console's Candidate
page both answer with it, so they cannot disagree; a server runs it in an analysis process
(``sandbox.py``), so nothing of it runs in a thread that decides.

The decision-log rows are read by the caller (the process bound to the database) and
handed over as plain dicts: the analysis needs no database.
"""

from __future__ import annotations

import datetime
from pathlib import Path
from types import SimpleNamespace

from audience_authz.policytools import diff as policydiff

ROW_FIELDS = ("id", "decision_id", "at", "principal", "action", "resource", "decision", "reasons", "policy_version",
              "relation", "rule_line", "facts")


def rows(last: int | None, since: datetime.datetime | None = None, version: str | None = None) -> list[dict]:
    """The decision-log rows a replay reads (``diff.select``), as plain dicts."""
    fields = [getattr(policydiff.DecisionLog, name) for name in ROW_FIELDS]
    return list(policydiff.select(last, since, version).select(*fields).dicts())


def analyse(serving_dir: str, candidate_dir: str, replayed: list[dict], *, examples: int = 3,
            symbolic: bool = False, proofs: bool = False, only_version: str | None = None) -> dict:
    """The whole analysis: ``{"problems": [...]}`` when the candidate fails ``policy check``,
    else ``{"diff": <the replay>, "symbolic": <regions> (when asked), "proofs": ... (when
    asked; None without properties.yaml), "candidate_version", "retired_codes"}``: the codes
    the candidate retires, listed first by ``policy diff`` (``published.py``); one the policy
    serving gives and the candidate drops without retiring it is a problem."""
    from audience_authz.engine.policy import Policy
    from audience_authz.policytools import published, sandbox, symdiff

    problems = sandbox.check(candidate_dir)
    if problems:
        return {"problems": problems}
    serving, candidate = Policy.load(serving_dir), Policy.load(candidate_dir)
    in_force = published.Codes(dict(serving.reasons), {})  # a code it gives is never dropped silently
    problems = published.dropped(in_force, candidate_dir, f"by the policy serving, {serving.version}")
    if problems:
        return {"problems": problems}
    past = [SimpleNamespace(**row) for row in replayed]
    report = policydiff.replay(iter(past), candidate, serving, examples)
    report.only_version = only_version
    answer: dict = {"diff": report.as_dict(), "candidate_version": candidate.version,
                    "retired_codes": published.retirements(in_force, published.of_directory(candidate_dir))}
    if symbolic:
        regions = symdiff.symbolic_diff(serving, candidate)
        symdiff.count_replayed(regions, iter(past), serving, candidate, examples)
        answer["symbolic"] = regions.as_dict()
    if proofs:
        answer["proofs"] = sandbox.proofs(str(Path(candidate_dir)))
    return answer
