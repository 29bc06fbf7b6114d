"""The same rules in Cedar, evaluated by cedarpy: the benchmark's peer and its cross-check.

``Cedar.prepare(req)`` reads the store with its own SQL (not the service's facts.py) and
builds only the entities one request needs; ``Cedar.decide(prepared)`` asks cedarpy with
the policy set parsed once. Reason codes come back as the @id of the determining policies.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from pathlib import Path

import cedarpy

POLICY_FILE = Path(__file__).with_name("policy.cedar")


@dataclass
class Prepared:
    request: dict
    entities: list[dict]


def _uid(kind: str, id_: str) -> dict:
    return {"type": kind, "id": id_}


class Cedar:
    def __init__(self, store_path, policy_file=None):
        self.text = Path(policy_file or POLICY_FILE).read_text()
        self.policies = cedarpy.PolicySet.from_str(self.text)
        self.conn = sqlite3.connect(f"file:{store_path}?mode=ro", uri=True)

    def close(self) -> None:
        self.conn.close()

    # -- entities from the store -------------------------------------------------------------
    def _account(self, account_id: str, out: dict) -> bool:
        key = ("Account", account_id)
        if key in out:
            return True
        row = self.conn.execute("SELECT business_center_id, terms_accepted_at FROM account WHERE id = ?",
                                [account_id]).fetchone()
        if row is None:
            return False
        bc, terms = row
        attrs = {"terms_accepted": terms is not None}
        if bc is not None:
            attrs["bc"] = {"__entity": _uid("BusinessCenter", bc)}
            (allowlisted,) = self.conn.execute(
                "SELECT cross_bc_allowlisted FROM business_center WHERE id = ?", [bc]).fetchone()
            out[("BusinessCenter", bc)] = {"uid": _uid("BusinessCenter", bc),
                                           "attrs": {"allowlisted": bool(allowlisted)}, "parents": []}
        out[key] = {"uid": _uid("Account", account_id), "attrs": attrs, "parents": []}
        return True

    def _audience(self, audience_id: str, out: dict, with_seed: bool = True) -> tuple | None:
        row = self.conn.execute("SELECT owner_account_id, type, source, status, seed_audience_id"
                                " FROM audience WHERE id = ?", [audience_id]).fetchone()
        if row is None:
            return None
        owner, kind, source, status, seed = row
        shared_with = [{"__entity": _uid("Account", r)} for (r,) in self.conn.execute(
            "SELECT recipient_account_id FROM audience_share WHERE audience_id = ? AND status = 'active'",
            [audience_id])]
        attrs = {"owner": {"__entity": _uid("Account", owner)}, "type": kind, "source": source or "",
                 "status": status, "shared_with": shared_with}
        if seed is not None and with_seed:
            attrs["seed"] = {"__entity": _uid("Audience", seed)}
            seed_status, seed_source = self.conn.execute("SELECT status, source FROM audience WHERE id = ?",
                                                         [seed]).fetchone()
            out[("Audience", seed)] = {"uid": _uid("Audience", seed), "parents": [], "attrs": {
                "status": seed_status, "source": seed_source or ""}}
        out[("Audience", audience_id)] = {"uid": _uid("Audience", audience_id), "attrs": attrs, "parents": []}
        return row

    def prepare(self, req) -> Prepared:
        """The Cedar request and the entities it needs: principal, audience (with its seed,
        owner and their Business Centers), target account, ad group."""
        out: dict = {}
        principal_known = self._account(req.principal, out)
        audience = self._audience(req.audience_id, out)
        if audience is not None:
            self._account(audience[0], out)
        context: dict = {"attached_ad_groups": 0}
        if req.target_account_id is not None:
            context["target"] = {"__entity": _uid("Account", req.target_account_id)}
            self._account(req.target_account_id, out)
        if req.ad_group_id is not None:
            context["ad_group"] = {"__entity": _uid("AdGroup", req.ad_group_id)}
            row = self.conn.execute("SELECT account_id FROM ad_group WHERE id = ?", [req.ad_group_id]).fetchone()
            if row is not None:
                out[("AdGroup", req.ad_group_id)] = {"uid": _uid("AdGroup", req.ad_group_id), "parents": [],
                                                     "attrs": {"account": {"__entity": _uid("Account", row[0])}}}
        if req.action == "delete" and principal_known:
            (context["attached_ad_groups"],) = self.conn.execute(
                "SELECT COUNT(*) FROM ad_group_audience t JOIN ad_group g ON g.id = t.ad_group_id"
                " WHERE t.audience_id = ? AND g.account_id = ?", [req.audience_id, req.principal]).fetchone()
        request = {"principal": _uid("Account", req.principal), "action": _uid("Action", req.action),
                   "resource": _uid("Audience", req.audience_id), "context": context}
        return Prepared(request, list(out.values()))

    # -- deciding --------------------------------------------------------------------------
    def decide(self, prepared: Prepared, policies=None) -> cedarpy.AuthzResult:
        return cedarpy.is_authorized(prepared.request, self.policies if policies is None else policies,
                                     prepared.entities)

    @staticmethod
    def reason_codes(result: cedarpy.AuthzResult) -> set[str]:
        """The @id (reason code) of each policy that determined the decision."""
        ids = result.diagnostics.id_annotations_by_reason
        return {ids.get(r, r) for r in result.diagnostics.reasons}
