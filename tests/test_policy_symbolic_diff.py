"""`policy diff --symbolic` (CLI and POST /v1/policy/diff): every region of requests whose
answer changes, as a condition over facts with an example, exact and complete, beside the
decision-log replay."""

from __future__ import annotations

import json
import random

import pytest

from audience_authz import contract
from audience_authz.engine.expressions import Compiled
from audience_authz.engine.policy import Policy
from audience_authz.policytools import symdiff
from audience_authz.policytools.symbolic import Outcome
from tests.support import ROOT, world_factory
from tests.support.policy import cli, copy_policy, line_of, replace

RESHARE_DENY = "p, recipient, share, True, deny, reshare_forbidden,"
RESHARE_ALLOW = "p, recipient, share, True, allow, recipient_may_reshare,"
BROADEN = "end_share remove_from_list disconnect_audience:broaden"


def _four_changes(policy):
    """deny -> allow, another reason, allow -> deny, other effects; each in one cell."""
    replace(policy / "policy.csv", RESHARE_DENY, RESHARE_ALLOW)
    replace(policy / "policy.csv", "p, recipient, edit, True, deny, recipient_action_forbidden,",
            "p, recipient, edit, True, deny, not_owner,")
    replace(policy / "policy.csv", "p, recipient, apply, True, allow, recipient_may_apply,",
            "p, recipient, apply, r.f.attached_ad_groups > 3, deny, recipient_action_forbidden,\n"
            "p, recipient, apply, True, allow, recipient_may_apply,")
    replace(policy / "policy.csv", f"owner_delete, {BROADEN}", f"owner_delete, {BROADEN.replace('broaden', 'pause')}")


@pytest.mark.full  # a solver or a reload of its own: seconds each
def test_a_recipient_allowed_to_reshare_is_exactly_one_region(tmp_path):
    policy = copy_policy(tmp_path / "policy")
    replace(policy / "policy.csv", RESHARE_DENY, RESHARE_ALLOW)
    line = line_of(policy / "policy.csv", RESHARE_ALLOW)
    result = cli("policy", "diff", "--symbolic", "--candidate", policy, "--no-replay")
    assert result.exit_code == 0, result.output
    assert f"1 changed region(s) over the {len(contract.ASKED)} (relation, action) pairs" in result.stdout
    assert (f"(recipient, share) deny->allow: deny reshare_forbidden (policy.csv:{line}) ->"
            f" allow recipient_may_reshare (policy.csv:{line})") in result.stdout
    assert 'when: r.f.principal_known and r.f.audience_known and r.f.audience_status != "deleted"' in result.stdout
    data = json.loads(cli("policy", "diff", "--symbolic", "--candidate", policy, "--no-replay", "--format", "json").stdout)
    [region] = data["symbolic"]["regions"]
    assert (region["relation"], region["action"], region["kind"]) == ("recipient", "share", "deny->allow")
    assert cli("policy", "diff", "--symbolic", "--candidate", policy, "--no-replay", "--fail-on-change").exit_code == 1


class _R:
    def __init__(self, facts):
        self.f = facts


def _random_facts(policy: Policy, rng: random.Random) -> dict:
    values = {"audience_type": ["custom", "lookalike", ""], "audience_source": ["customer_file", "engagement", "", "x"],
              "audience_status": ["active", "deleted", ""], "seed_status": ["active", "deleted", ""],
              "seed_source": ["customer_file", "lead_generation", ""]}
    facts = {}
    for name, kind in contract.FACTS.items():
        if kind is bool:
            facts[name] = rng.random() < 0.5
        elif kind is int:
            facts[name] = rng.choice([0, 1, 3, 4, 9])
        else:
            facts[name] = rng.choice(values[name])
    return facts


@pytest.mark.full  # a solver or a reload of its own: seconds each
def test_the_regions_are_exact_and_complete(tmp_path):
    """On random requests that can happen: the answer changes exactly when the request meets
    the printed condition of a changed region of its (relation, action), whose outcomes are
    the ones the two engines give; and each region's example is in it."""
    baseline = Policy.load(ROOT / "policy")
    policy = copy_policy(tmp_path / "policy")
    _four_changes(policy)
    candidate = Policy.load(policy)
    report = symdiff.symbolic_diff(baseline, candidate)
    cells = {(r.relation, r.action, r.kind) for r in report.regions}
    assert cells == {("recipient", "share", "deny->allow"), ("recipient", "edit", "reason"),
                     ("recipient", "apply", "allow->deny"), ("owner", "delete", "effects")}
    invariants = [Compiled(t) for spec in baseline.facts_schema.values()
                  for t in ([spec["invariant"]] if isinstance(spec.get("invariant"), str) else [])]
    conditions = {id(r): Compiled(r.condition) for r in report.regions}
    rng = random.Random(11)
    checked = changed = 0
    for region in report.regions:  # each example is in its region, with its outcomes
        before = baseline.decide(region.relation, region.action, baseline.facts(**region.example))
        after = candidate.decide(region.relation, region.action, candidate.facts(**region.example))
        assert (Outcome.of(before.rule).key, Outcome.of(after.rule).key) == (region.before.key, region.after.key)
    while checked < 20000:
        rel, act = rng.choice(contract.ASKED if rng.random() < 0.5 else sorted((r, a) for r, a, _ in cells))
        facts = _random_facts(baseline, rng)
        for name in set(contract.FACTS) - set(contract.gathered_facts(act)):
            facts[name] = getattr(baseline.facts(), name)
        env = {"r": _R(baseline.facts(**facts))}
        if not all(inv.eval(env) for inv in invariants):
            continue
        checked += 1
        before = Outcome.of(baseline.decide(rel, act, baseline.facts(**facts)).rule).key
        after = Outcome.of(candidate.decide(rel, act, candidate.facts(**facts)).rule).key
        inside = [r for r in report.regions if (r.relation, r.action) == (rel, act) and conditions[id(r)].eval(env)]
        if before != after:
            changed += 1
            assert len(inside) == 1 and (inside[0].before.key, inside[0].after.key) == (before, after), (rel, act, facts)
        else:
            assert not inside, (rel, act, facts)
    assert changed > 100


@pytest.mark.full  # a solver or a reload of its own: seconds each
def test_the_endpoint_shows_the_regions_beside_the_replay(service):
    api = service.client()
    w = world_factory(api)
    api.ok(api.put(f"/v1/ad-groups/{w.ag}", {"name": "recipient's"}, account=w.recipient))
    for _ in range(3):
        api.ok(api.authorize(w.recipient, "share", w.A, target_account_id=w.peer))
    for _ in range(2):
        api.ok(api.authorize(w.recipient, "apply", w.A, ad_group_id=w.ag))
    api.ok(api.get("/v1/decisions?after=0&limit=1"))  # writes the batched decision-log rows
    policy = (service.policy_dir / "policy.csv").read_text()
    edited = policy.replace(RESHARE_DENY, RESHARE_ALLOW).replace(
        "p, recipient, apply, True, allow, recipient_may_apply,", "p, recipient, apply, True, deny, recipient_action_forbidden,")
    answer = api.ok(api.post("/v1/policy/diff", {"files": {"policy.csv": edited}, "symbolic": True, "last": 100000}))
    regions = {(r["relation"], r["action"]): r for r in answer["symbolic"]["regions"]}
    assert set(regions) == {("recipient", "share"), ("recipient", "apply")}
    # the replay and the regions count the same past requests
    replay = {(c["kind"], c["action"]): c["count"] for c in answer["changes"]}
    assert regions[("recipient", "share")]["replayed"] == replay[("deny->allow", "share")] >= 3
    assert regions[("recipient", "apply")]["replayed"] == replay[("allow->deny", "apply")] >= 2
    assert answer["symbolic"]["replayed"] == answer["replayed"]
    without = api.ok(api.post("/v1/policy/diff", {"files": {"policy.csv": edited}}))
    assert "symbolic" not in without or without["symbolic"] is None


@pytest.mark.full  # a solver or a reload of its own: seconds each
def test_between_two_git_revisions():
    result = cli("policy", "diff", "--symbolic", "--baseline-rev", "HEAD", "--candidate-rev", "HEAD", "--no-replay")
    assert result.exit_code == 0, result.output
    assert "0 changed region(s)" in result.stdout
    result = cli("policy", "diff", "--symbolic", "--candidate-rev", "no-such-revision", "--no-replay")
    assert result.exit_code == 2 and "no-such-revision" in result.output



@pytest.mark.parametrize("option", ["--baseline-rev", "--candidate-rev"])
def test_a_revision_is_never_an_option_of_git(tmp_path, option):
    """`--baseline-rev=--output=FILE` made `git show` write FILE; a revision is resolved to a
    commit first (after --end-of-options), and text that is not one is a usage error."""
    written = tmp_path / "written"
    for rev in (f"--output={written}", "-p", "", "HEAD:policy", "HE\x00AD", "no-such-revision"):
        args = ["policy", "diff", "--symbolic", option, rev, "--no-replay"]
        if option == "--baseline-rev":
            args += ["--candidate-rev", "HEAD"]
        result = cli(*args)
        assert result.exit_code == 2, (rev, result.exit_code, result.output)
        assert option in result.output and ("not a git revision" in result.output or "names no commit" in result.output), \
            (rev, result.output)
    assert not written.exists() and list(tmp_path.iterdir()) == []
