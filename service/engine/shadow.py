"""Shadow evaluation: a candidate policy decides every live request too, and changes nothing.

The Authorizer asks the shadow after the policy in force has decided, on the same relation
and facts; the answer given is always the live one. Where the two differ (decision, reason
code or effects) the disagreement is counted in ``shadow_disagreements_total{action, from,
to}``, logged with the decision id, and kept (a few decision ids per kind) for ``GET
/v1/policy/shadow``. A shadow that fails to decide is counted and logged, never raised.
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict

from audience_authz import metrics
from audience_authz.engine.policy import Decision, Policy

log = logging.getLogger("audience_authz.shadow")
EXAMPLES = 5  # decision ids kept per (action, from, to)
KINDS = 200  # (action, from, to) kinds kept with examples


def label(decision: Decision) -> str:
    """``allow owner_may_share`` / ``deny reshare_forbidden``, with effects when there are any."""
    text = f"{decision.decision} {decision.reason}"
    if decision.effects:
        text += " [" + " ".join(sorted(f"{n}:{a}" if a else n for n, a in decision.effects)) + "]"
    return text


class Shadow:
    """A candidate policy deciding beside ``live_schema``'s policy; its disagreements."""

    def __init__(self, policy: Policy, live_schema: dict, source: str = ""):
        self.policy = policy
        self.source = source
        # the same facts (names, types, defaults): the live facts object serves both
        self.same_facts = policy.facts_schema == live_schema
        self._lock = threading.Lock()
        self.examples: OrderedDict[tuple[str, str, str], list[str]] = OrderedDict()

    def compare(self, relation: str, action: str, facts, live: Decision, decision_id: str) -> None:
        try:
            if not self.same_facts:
                names = self.policy.facts_schema
                facts = self.policy.facts(**{n: getattr(facts, n) for n in names if hasattr(facts, n)})
            other = self.policy.decide(relation, action, facts)
        except Exception as exc:  # noqa: BLE001 - the shadow never changes an answer
            metrics.shadow_decided(self.policy.version, action, failed=True)
            log.warning("shadow policy %s failed on decision %s (%s): %s: %s", self.policy.version, decision_id,
                        action, type(exc).__name__, exc)
            return
        metrics.shadow_decided(self.policy.version, action)
        if (other.allowed, other.reason, sorted(other.effects)) == (live.allowed, live.reason, sorted(live.effects)):
            return
        before, after = label(live), label(other)
        metrics.shadow_disagreed(self.policy.version, action, before, after)
        log.info("shadow policy %s disagrees on decision %s: %s %s: %s -> %s", self.policy.version,
                 decision_id, relation, action, before, after)
        with self._lock:
            key = (action, before, after)
            kept = self.examples.get(key)
            if kept is None:
                if len(self.examples) >= KINDS:
                    self.examples.popitem(last=False)
                kept = self.examples[key] = []
            if len(kept) < EXAMPLES:
                kept.append(decision_id)
