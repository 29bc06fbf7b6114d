"""Impact analysis: replay stored decisions against a candidate policy, report what flips.

Every decision log row holds the relation and the facts the decision was made on, so a
candidate policy can decide the same request again without touching the database state it
came from. A row *changes* when the candidate's decision differs (allow -> deny, deny ->
allow), or the decision is the same but the reason code differs, or an allow carries other
effects. The reason and effects of a stored *allow* are known when the row was decided by
the baseline policy (same version): its line is looked up there; otherwise only the
decision and deny codes are compared.

``only_version`` keeps the replay to the decisions one policy version made (the CLI's
default: the version in force), so that decisions of earlier policies do not show up as
changes of unknown origin. A fact the candidate declares but a stored row lacks (a fact
added after the row was decided) is replayed with its declared default: every changed row
says which of its facts were so defaulted, since its change may be the default's doing.
"""

from __future__ import annotations

import datetime
import json
from dataclasses import dataclass, field

from audience_authz.engine.policy import Policy
from audience_authz.store.models import DecisionLog

KINDS = ("allow->deny", "deny->allow", "reason", "effects")


def parse_since(text: str) -> datetime.datetime:
    """An ISO 8601 time as the naive UTC the decision log stores."""
    return as_utc(datetime.datetime.fromisoformat(text.replace("Z", "+00:00")))


def as_utc(value: datetime.datetime) -> datetime.datetime:
    """``value`` as the naive UTC the decision log stores; ValueError when UTC cannot hold it
    (9999-12-31T23:59:59-23:59 is after the last datetime)."""
    if value.tzinfo is None:
        return value
    try:
        return value.astimezone(datetime.timezone.utc).replace(tzinfo=None)
    except OverflowError:
        raise ValueError("the time in UTC is outside the range of dates (years 1 to 9999)") from None


def select(last: int | None = None, since: datetime.datetime | None = None, version: str | None = None):
    """The rows to replay: the newest ``last`` (of those at or after ``since``, made by
    policy ``version`` when given), newest first."""
    query = DecisionLog.select().order_by(DecisionLog.id.desc())
    if since is not None:
        query = query.where(DecisionLog.at >= since)
    if version is not None:
        query = query.where(DecisionLog.policy_version == version)
    if last is not None:
        query = query.limit(last)
    return query


@dataclass
class Group:
    kind: str
    action: str
    before: str  # reason code (deny) or rule id (allow), "" when not known
    after: str
    before_effects: list[str] | None = None
    after_effects: list[str] | None = None
    count: int = 0
    examples: list[dict] = field(default_factory=list)
    defaulted_facts: set[str] = field(default_factory=set)  # over all its rows, not only the examples


@dataclass
class Report:
    candidate_version: str
    baseline_version: str | None
    replayed: int = 0
    changed: int = 0
    skipped: int = 0
    first_id: int | None = None
    last_id: int | None = None
    groups: dict[tuple, Group] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    only_version: str | None = None  # the policy version whose decisions were replayed (None: all)

    def as_dict(self) -> dict:
        return {
            "candidate_version": self.candidate_version, "baseline_version": self.baseline_version,
            "only_version": self.only_version, "replayed": self.replayed, "changed": self.changed,
            "unchanged": self.replayed - self.changed,
            "skipped": self.skipped, "decision_ids": {"from": self.first_id, "to": self.last_id},
            "by_kind": {k: sum(g.count for g in self.groups.values() if g.kind == k) for k in KINDS},
            "changes": [
                {"kind": g.kind, "action": g.action, "before": g.before, "after": g.after,
                 **({"before_effects": g.before_effects, "after_effects": g.after_effects}
                    if g.kind == "effects" else {}),
                 "count": g.count, "defaulted_facts": sorted(g.defaulted_facts), "examples": g.examples}
                for g in sorted(self.groups.values(), key=lambda g: (KINDS.index(g.kind), g.action, -g.count))],
            "notes": self.notes,
        }


def _effects(effects) -> list[str]:
    return [f"{n}:{a}" if a else n for n, a in effects]


def replay(rows, candidate: Policy, baseline: Policy | None = None, examples: int = 3) -> Report:
    """Decide every row again with ``candidate``; ``rows`` is an iterable of DecisionLog."""
    report = Report(candidate.version, baseline.version if baseline else None)
    baseline_rules = {r.line: r for r in baseline.rules} if baseline else {}
    defaulted: set[str] = set()
    dropped: set[str] = set()
    for row in rows:
        report.first_id = row.id if report.first_id is None else min(report.first_id, row.id)
        report.last_id = row.id if report.last_id is None else max(report.last_id, row.id)
        try:
            stored = json.loads(row.facts)
            reasons = json.loads(row.reasons)
        except (TypeError, ValueError):
            report.skipped += 1
            continue
        known = {k: v for k, v in stored.items() if k in candidate.facts_schema}
        dropped |= set(stored) - set(known)
        missing = sorted(set(candidate.facts_schema) - set(stored))
        defaulted |= set(missing)
        try:
            after = candidate.decide(row.relation, row.action, candidate.facts(**known))
        except Exception as exc:  # noqa: BLE001 - a candidate that cannot decide a row is reported
            report.skipped += 1
            report.notes.append(f"decision {row.decision_id}: the candidate failed: {type(exc).__name__}: {exc}")
            continue
        report.replayed += 1
        before_reason, before_effects = "", None
        if row.decision == "deny":
            before_reason, before_effects = (reasons[0]["code"] if reasons else ""), []
        if baseline is not None and row.policy_version == baseline.version and row.rule_line in baseline_rules:
            rule = baseline_rules[row.rule_line]
            before_reason, before_effects = rule.reason, (_effects(rule.effects) if rule.eft == "allow" else [])
        after_effects = _effects(after.effects)
        if row.decision != after.decision:
            kind = f"{row.decision}->{after.decision}"
        elif before_reason and before_reason != after.reason:
            kind = "reason"
        elif before_effects is not None and sorted(before_effects) != sorted(after_effects):
            kind = "effects"
        else:
            continue
        report.changed += 1
        key = (kind, row.action, before_reason, after.reason,
               tuple(before_effects or ()) if kind == "effects" else (), tuple(after_effects) if kind == "effects" else ())
        group = report.groups.get(key)
        if group is None:
            group = report.groups[key] = Group(kind, row.action, before_reason, after.reason,
                                               before_effects, after_effects)
        group.count += 1
        group.defaulted_facts |= set(missing)
        if len(group.examples) < examples:
            group.examples.append({"decision_id": row.decision_id, "principal": row.principal,
                                   "resource": json.loads(row.resource), "relation": row.relation,
                                   "policy_version": row.policy_version, "defaulted_facts": missing,
                                   # the facts the caller sent (facts.yaml source: context)
                                   "context_facts": {n: stored[n] for n in candidate.context_facts if n in stored},
                                   "at": row.at.isoformat() + "Z" if isinstance(row.at, datetime.datetime)
                                   else str(row.at)})
    if dropped:
        report.notes.append(f"facts the candidate does not declare were ignored: {', '.join(sorted(dropped))}")
    if defaulted:
        report.notes.append(f"facts the log does not hold took their defaults: {', '.join(sorted(defaulted))}")
    return report


def text(report: Report, candidate_dir) -> str:
    data = report.as_dict()
    span = (f" (decision log ids {data['decision_ids']['from']}..{data['decision_ids']['to']})"
            if report.replayed else "")
    made_by = f" made by policy {report.only_version}" if report.only_version else ""
    out = [f"Replayed {report.replayed} decision(s){made_by}{span} against {candidate_dir}"
           f" (policy {report.candidate_version}; baseline {report.baseline_version or 'none'}).",
           f"{report.changed} would change: " + ", ".join(f"{v} {k}" for k, v in data["by_kind"].items())
           + f"; {data['unchanged']} unchanged" + (f"; {report.skipped} skipped" if report.skipped else "") + "."]
    for change in data["changes"]:
        before, after = change["before"] or "?", change["after"]
        if change["kind"] == "effects":
            before, after = f"{before} [{' '.join(change['before_effects'])}]", f"{after} [{' '.join(change['after_effects'])}]"
        out.append(f"\n  {change['kind']:<12} {change['action']:<18} {before} -> {after}: {change['count']}")
        if change["defaulted_facts"]:
            out.append(f"      facts these rows lack, replayed with their defaults: {', '.join(change['defaulted_facts'])}")
        for ex in change["examples"]:
            defaulted = f" (defaulted: {', '.join(ex['defaulted_facts'])})" if ex["defaulted_facts"] else ""
            supplied = (f", caller's facts {json.dumps(ex['context_facts'])}" if ex.get("context_facts") else "")
            out.append(f"      e.g. principal {ex['principal']}, resource {json.dumps(ex['resource'])}{supplied},"
                       f" decision {ex['decision_id']} at {ex['at']}{defaulted}")
    out += [f"\nnote: {n}" for n in report.notes]
    return "\n".join(out) + "\n"
