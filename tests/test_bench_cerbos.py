"""The Cerbos peer of the benchmark: its policy (bench/cerbos/policies/) decides every
request of the workload as the service does, with the attributes the benchmark reads from
the store, and the cross-check finds a wrong translation wrong. Needs the PDP that
`make bench-install` installs into bench/.cerbos/ (skipped without it)."""

from __future__ import annotations

import shutil

import pytest

from bench import cerbos, workload
from bench.build_store import Sizes, build
from bench.run import bind

pytestmark = pytest.mark.skipif(not cerbos.BINARY.exists(), reason="Cerbos not installed (make bench-install)")


@pytest.fixture(scope="module")
def asked(tmp_path_factory):
    """A small store, its requests (single and batches of one account), the service's answers."""
    store = tmp_path_factory.mktemp("cerbos") / "store.db"
    sizes = Sizes.scaled(0.002)
    build(store, sizes, progress=False)
    singles = [[r] for r in workload.draw(store, sizes, 600, seed=11)]
    batches = workload.draw_batches(store, sizes, 30, 10, seed=17)
    authz = bind(store)
    attrs = cerbos.Attributes(store)
    asked = [(attrs.batch(reqs), [authz.check(r, log=False, plan_effects=False).decision.decision for r in reqs])
             for reqs in singles + batches]
    attrs.close()
    return asked


def mismatches(tmp_path, asked, policy_dir=None) -> list:
    out = []
    with cerbos.server(tmp_path / "cerbos.log", policy_dir) as (_base, port, _pid):
        client = cerbos.Client(port)
        for body, expected in asked:
            out += [(body, got, want) for got, want in zip(client.ask(body), expected) if got != want]
        client.close()
    return out


def test_cerbos_decides_the_workload_as_the_service(tmp_path, asked):
    decisions = [d for _, expected in asked for d in expected]
    assert len(decisions) == 900 and 0 < decisions.count("allow") < 900  # both answers occur
    assert mismatches(tmp_path, asked) == []


def test_cross_check_finds_a_wrong_cerbos_policy(tmp_path, asked):
    # drop the rule that lets a recipient view a shared audience: Cerbos now denies what the policy allows
    policies = tmp_path / "policies"
    shutil.copytree(cerbos.HERE / "policies", policies)
    text = (policies / "audience.yaml").read_text()
    rule = "    - actions: [view]\n      derivedRoles: [recipient]\n      effect: EFFECT_ALLOW\n"
    assert text.count(rule) == 1
    (policies / "audience.yaml").write_text(text.replace(rule, ""))
    wrong = mismatches(tmp_path, asked, policies)
    assert wrong and all((got, want) == ("deny", "allow") for _, got, want in wrong)
