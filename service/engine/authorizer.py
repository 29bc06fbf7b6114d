"""One decision: gather facts, ask the policy, plan effects, log the decision."""

from __future__ import annotations

import dataclasses
import json
import uuid
from dataclasses import dataclass, field

from audience_authz.engine import context, decision_log
from audience_authz.store import effects as fx
from audience_authz import metrics
from audience_authz.engine.facts import Gathered, Request, gather
from audience_authz.store.models import utcnow
from audience_authz.engine.policy import Decision, Policy


@dataclass
class Outcome:
    request: Request
    decision: Decision
    gathered: Gathered
    decision_id: str
    policy_version: str
    reasons: list[dict] = field(default_factory=list)
    effects: list[dict] = field(default_factory=list)
    explanation: dict | None = None

    @property
    def allowed(self) -> bool:
        return self.decision.allowed

    def answer(self) -> dict:
        body = {
            "decision": self.decision.decision,
            "reasons": self.reasons,
            "effects": self.effects,
            "policy_version": self.policy_version,
            "decision_id": self.decision_id,
        }
        if self.explanation is not None:
            body["explanation"] = self.explanation
        return body


class Authorizer:
    """Holds the policy in force; swapped whole on reload, never edited in place."""

    def __init__(self, policy: Policy):
        self.policy = policy

    def check(self, req: Request, *, plan_effects: bool = True, log: bool = True,
              explain: bool = False, ad_group_override=None) -> Outcome:
        policy = self.policy  # one policy for the whole decision, even across a reload
        supplied = context.supplied(policy, req.context if req.context is not None else context.current())
        gathered = gather(policy, req, ad_group_override, supplied)
        decision = policy.decide(gathered.relation, req.action, gathered.facts)
        outcome = Outcome(req, decision, gathered, uuid.uuid4().hex, policy.version)
        if not decision.allowed:
            reason = {"code": decision.reason, "message": policy.message(decision.reason)}
            if req.target_account_id is not None:
                reason["account_id"] = req.target_account_id
            outcome.reasons = [reason]
        elif plan_effects and decision.effects:
            outcome.effects = fx.plan(req, decision, gathered)
        if not decision.allowed and decision.reason == "applied_to_ad_groups":
            outcome.reasons[0]["ad_group_ids"] = fx.attached_ad_groups(req.audience_id, req.principal)
        if explain:
            outcome.explanation = explanation(policy, gathered, decision, supplied)
        if log:
            log_decision(outcome)
            metrics.decision(req.action, decision.decision, decision.reason)
        return outcome


def explanation(policy: Policy, gathered: Gathered, decision: Decision, supplied=context.EMPTY) -> dict:
    rule = decision.rule
    return {
        "relation": gathered.relation,
        "facts": {name: getattr(gathered.facts, name) for name in policy.facts_schema},
        # which facts came from the caller: sent, or not sent and taken from their default
        "context_facts": {name: "supplied" if name in supplied else "default" for name in policy.context_facts},
        "matched_rule": None if rule is None else {
            "file": "policy.csv", "line": rule.line, "rel": rule.rel, "act": rule.act,
            "cond": rule.cond, "eft": rule.eft, "reason": rule.reason,
            "effects": [f"{n}:{a}" if a else n for n, a in rule.effects],
        },
    }


def log_decision(outcome: Outcome) -> None:
    req = outcome.request
    resource = {"audience_id": req.audience_id} if req.audience_id else {}
    if req.account_id is not None:
        resource["account_id"] = req.account_id
    if req.target_account_id is not None:
        resource["target_account_id"] = req.target_account_id
    if req.ad_group_id is not None:
        resource["ad_group_id"] = req.ad_group_id
    decision_log.writer.write((
        outcome.decision_id, utcnow(), req.principal, req.action,
        json.dumps(resource, separators=(",", ":")), outcome.decision.decision,
        json.dumps(outcome.reasons, separators=(",", ":")), outcome.policy_version,
        outcome.gathered.relation, json.dumps(_facts_dict(outcome.gathered.facts), separators=(",", ":")),
        outcome.decision.rule.line if outcome.decision.rule else None,
    ))


def _facts_dict(facts) -> dict:
    """The facts as a plain dict (what dataclasses.asdict gives, without its deep copies)."""
    names = _FACT_NAMES.get(type(facts))
    if names is None:
        names = _FACT_NAMES[type(facts)] = tuple(f.name for f in dataclasses.fields(facts))
    return {name: getattr(facts, name) for name in names}


_FACT_NAMES: dict[type, tuple[str, ...]] = {}
