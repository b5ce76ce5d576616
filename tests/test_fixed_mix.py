"""The benchmark's fixed allocations (``benchmarks/fixed_mix.py``): teacher specs that load as plug-ins
and split each round by their weights, whatever the feedback says."""

from __future__ import annotations

import sys
from pathlib import Path
from types import ModuleType

import pytest

from tutorkd.agents.teacher import BuildInputs
from tutorkd.config import TeacherConfig
from tutorkd.environments.arithmetic import ArithmeticDomain
from tutorkd.schema import Feedback, StructureLevel

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


@pytest.fixture
def fixed_mix(monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    # Why on sys.path: the benchmark runs with its own folder first on the path, and the spec names the
    # plug-in as ``fixed_mix:FixedMixPolicy``
    monkeypatch.setattr(sys, "path", [str(BENCHMARKS), *sys.path])
    import fixed_mix

    return fixed_mix


def feedback(used: int) -> Feedback:
    accuracy = dict.fromkeys(ArithmeticDomain().tree.leaves(), 0.5)
    return Feedback(level=StructureLevel.SKILL_TREE, round=0, errors=(), skill_accuracy=accuracy,
                    budget_used=used, budget_total=750)


def policy_of(fixed_mix: ModuleType, name: str, per_round: int = 250):
    cfg = TeacherConfig.model_validate(fixed_mix.mix_teacher(name) | {"per_round": per_round})
    return cfg.policy.load()(BuildInputs(cfg=cfg, domain=ArithmeticDomain()), **cfg.policy.options())


def test_every_mix_splits_a_round_by_its_weights(fixed_mix: ModuleType) -> None:
    for name, weights in fixed_mix.MIXES.items():
        plan = policy_of(fixed_mix, name).plan(feedback(0))
        got = {item.skill_id: item.count for item in plan.items}
        assert sum(got.values()) == 250 and set(got) == set(weights)
        for skill, weight in weights.items():
            assert abs(got[skill] - 250 * weight / sum(weights.values())) < 1
        assert all(item.style == "rationale" for item in plan.items)


def test_a_mix_asks_for_no_more_than_the_budget_left(fixed_mix: ModuleType) -> None:
    plan = policy_of(fixed_mix, "mix-contrast35").plan(feedback(700))
    assert sum(item.count for item in plan.items) == 50


def test_a_mix_naming_an_unknown_skill_fails(fixed_mix: ModuleType) -> None:
    cfg = TeacherConfig.model_validate(fixed_mix.mix_teacher("mix-targets"))
    with pytest.raises(ValueError, match="add.nope"):
        fixed_mix.FixedMixPolicy(BuildInputs(cfg=cfg, domain=ArithmeticDomain()), {"add.nope": 1.0})
