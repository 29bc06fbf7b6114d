"""One decision: gather facts, ask the policy, plan effects, log the decision."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import orjson
import uuid_utils

from audience_authz import metrics, spans
from audience_authz.contract import APPLIED_TO_AD_GROUPS
from audience_authz.engine import context, decision_log
from audience_authz.engine.facts import Gathered, Request, gather
from audience_authz.engine.policy import Decision, Policy
from audience_authz.engine.shadow import Shadow
from audience_authz.store import budget
from audience_authz.store import effects as fx
from audience_authz.store.models import utcnow

AD_GROUPS_NAMED = 100  # ad groups a deny reason names (the first, by id)


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
            "effect_counts": fx.effect_counts(self.effects),
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
        self.failing: dict | None = None  # the last failed decision, while its policy serves
        self.shadow: Shadow | None = None  # a candidate deciding beside it (engine/shadow.py)

    def check(self, req: Request, *, plan_effects: bool = True, log: bool = True,
              explain: bool = False, ad_group_override=None) -> Outcome:
        """One decision; traced (under a traced request) as a span with the facts, the
        policy and the effects planned as its children."""
        with spans.child("authz.decision", {"authz.action": req.action}) as span:
            outcome = self._check(req, plan_effects, log, explain, ad_group_override)
            if span is not None:
                span.set_attributes({"authz.decision": outcome.decision.decision, "authz.reason": outcome.decision.reason
                                     or "", "authz.decision_id": outcome.decision_id,
                                     "authz.policy_version": outcome.policy_version,
                                     "authz.effects": len(outcome.effects)})
            return outcome

    def _check(self, req: Request, plan_effects: bool, log: bool, explain: bool, ad_group_override) -> Outcome:
        policy = self.policy  # one policy for the whole decision, even across a reload
        budget.charge(1)
        # the caller's facts first: a bad one is the caller's 400, not a failing policy
        supplied = context.supplied(policy, req.context if req.context is not None else context.current())
        try:
            with spans.child("authz.facts"):
                gathered = gather(policy, req, ad_group_override, supplied)
                if req.action == "share" and req.target_account_id is None:  # with some account
                    gathered = dataclasses.replace(gathered, facts=with_some_target(gathered.facts))
            with spans.child("authz.policy", {"authz.relation": gathered.relation}):
                decision = policy.decide(gathered.relation, req.action, gathered.facts)
        except Exception as exc:
            if not metrics.is_database_error(exc):  # the policy cannot decide: /readyz says so
                self.failing = {"policy_version": policy.version, "action": req.action,
                                "error": f"{type(exc).__name__}: {exc}"[:500]}
                metrics.decision_failed(req.action)
            raise
        if self.failing is not None and self.failing["policy_version"] != policy.version:
            self.failing = None  # a decision of another policy succeeded: that one decides
        outcome = Outcome(req, decision, gathered, decision_id(), policy.version)
        shadow = self.shadow
        if shadow is not None:  # decided again by the candidate; the answer stays this one
            shadow.compare(gathered.relation, req.action, gathered.facts, decision, outcome.decision_id)
        if not decision.allowed:
            reason = {"code": decision.reason, "message": policy.message(decision.reason)}
            if req.target_account_id is not None:
                reason["account_id"] = req.target_account_id
            outcome.reasons = [reason]
        elif plan_effects and decision.effects:
            with spans.child("authz.effects"):
                outcome.effects = fx.plan(req, decision, gathered)
        if not decision.allowed and decision.reason == APPLIED_TO_AD_GROUPS:
            attached = fx.attached_ad_groups(req.audience_id, req.principal, limit=AD_GROUPS_NAMED + 1)
            outcome.reasons[0]["ad_group_ids"] = attached[:AD_GROUPS_NAMED]
            if len(attached) > AD_GROUPS_NAMED:  # a reason (and its log row) stays small
                outcome.reasons[0]["more_ad_groups"] = True
        if explain:
            outcome.explanation = explanation(policy, gathered, decision, supplied)
        if log:
            log_decision(outcome)
            metrics.decision(req.action, decision.decision, decision.reason)
        return outcome


def with_some_target(facts):
    """``share`` asked without a target means: may this account share this audience with
    some account? It is asked of a would-be target in the same Business Center that has no
    share yet, the question the account's audience list asks for its ``share`` action
    (actions/views.py); the policy decides it like any other."""
    return dataclasses.replace(facts, target_specified=True, target_known=True, target_in_bc=True,
                               target_is_self=False, same_bc=True, target_has_share=False)


def decision_id() -> str:
    """A new decision's id: a UUIDv7 as 32 hex digits. Time-ordered, so that each row of the
    decision log goes to the right edge of its unique index instead of a random page (on a
    large log, a third of the cost of a random uuid4's insert; docs/performance.md)."""
    return uuid_utils.uuid7().hex


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
        orjson.dumps(resource).decode(), outcome.decision.decision,
        orjson.dumps(outcome.reasons).decode(), outcome.policy_version,
        outcome.gathered.relation, orjson.dumps(_facts_dict(outcome.gathered.facts)).decode(),
        outcome.decision.rule.line if outcome.decision.rule else None,
    ))


def _facts_dict(facts) -> dict:
    """The facts as a plain dict (what dataclasses.asdict gives, without its deep copies)."""
    names = _FACT_NAMES.get(type(facts))
    if names is None:
        names = _FACT_NAMES[type(facts)] = tuple(f.name for f in dataclasses.fields(facts))
    return {name: getattr(facts, name) for name in names}


_FACT_NAMES: dict[type, tuple[str, ...]] = {}
