"""DataEnvGym's skill-list and skill-tree heuristics: targeting, explore/exploit, and surviving a resume."""

from __future__ import annotations

from pathlib import Path

import pytest
from feedbacks import feedback
from hypothesis import given
from hypothesis import strategies as st

from tutorkd.agents.dataenvgym.policies import (
    STATE_FILE,
    SkillListPolicy,
    SkillTreePolicy,
    SkillTreeState,
    TreeAction,
    split_by_weight,
)
from tutorkd.agents.teacher import build_teacher
from tutorkd.config import SkillPolicyConfig, TeacherConfig, load_config
from tutorkd.environments.arithmetic import ArithmeticDomain
from tutorkd.io import read_json, write_json
from tutorkd.loop import LoopState, TeachingLoop, round_dir
from tutorkd.schema import Plan, StructureLevel

REPO = Path(__file__).resolve().parents[1]
DOMAIN = ArithmeticDomain()
CFG = SkillPolicyConfig(weak_below=0.9, explore_amount=30, exploit_step=10, max_allocation=200)
WEAK = {"add.carry": 0.2, "sub.borrow": 0.5, "mul.by_digit": 0.0, "multi.add_sub": 0.4, "multi.add_add": 0.3}
"""Validation accuracy on the weak skills (20 problems each; the other skills are perfect)."""


def counts(plan: Plan) -> dict[str, int]:
    return {i.skill_id: i.count for i in plan.items}


@given(st.integers(0, 5000), st.lists(st.integers(0, 50), min_size=1, max_size=12).filter(any))
def test_split_by_weight_sums_to_the_total_and_is_proportional(total: int, weights: list[int]) -> None:
    parts = split_by_weight(total, weights)
    assert sum(parts) == total
    assert all(abs(p - total * w / sum(weights)) < 1 for p, w in zip(parts, weights, strict=True))


def test_skill_list_splits_the_round_evenly_over_the_weak_skills() -> None:
    fb = feedback(DOMAIN, WEAK, level=StructureLevel.SKILL_LIST)
    plan = SkillListPolicy(100, "rationale", CFG).plan(fb)
    assert counts(plan) == {"add.carry": 20, "sub.borrow": 20, "mul.by_digit": 20, "multi.add_sub": 20,
                            "multi.add_add": 20}
    strong = SkillListPolicy(90, "rationale", CFG).plan(feedback(DOMAIN, {}))
    assert counts(strong) == dict.fromkeys(DOMAIN.tree.leaves(), 10) and "no skill below" in strong.reasoning


@pytest.mark.parametrize("policy", [SkillListPolicy, SkillTreePolicy])
def test_skill_policies_refuse_open_ended_feedback(policy: type) -> None:
    with pytest.raises(ValueError, match="needs skill labels.*skill_list or skill_tree"):
        policy(100, "rationale", CFG).plan(feedback(DOMAIN, WEAK, level=StructureLevel.OPEN_ENDED))


def test_skill_tree_explores_the_weakest_leaf_of_each_branch_first() -> None:
    policy = SkillTreePolicy(90, "rationale", CFG)
    plan = policy.plan(feedback(DOMAIN, WEAK))
    # add: add.carry; sub: sub.borrow; mul: its only leaf; multi: multi.add_add (0.3 < 0.4); cmp: none weak.
    targeted = ["add.carry", "sub.borrow", "mul.by_digit", "multi.add_add"]
    assert policy.state.allocation == dict.fromkeys(targeted, 30)
    assert counts(plan) == {"add.carry": 23, "sub.borrow": 23, "mul.by_digit": 22, "multi.add_add": 22}
    assert policy.state.action.kind == "explore" and policy.state.action.source == "heuristic"


def test_skill_tree_alternates_exploit_by_gain_and_explore() -> None:
    policy = SkillTreePolicy(120, "rationale", CFG)
    policy.plan(feedback(DOMAIN, WEAK))
    assert set(policy.state.allocation) == {"add.carry", "sub.borrow", "mul.by_digit", "multi.add_add"}
    # Round 1: add.carry gained most (+0.4: the full step), mul.by_digit +0.15, sub.borrow -0.15, and
    # multi.add_add is no longer weak (0.95: loses a full step whatever its gain).
    later = WEAK | {"add.carry": 0.6, "mul.by_digit": 0.15, "sub.borrow": 0.35, "multi.add_add": 0.95}
    plan = policy.plan(feedback(DOMAIN, later, round=1))
    action = policy.state.action
    assert action.kind == "exploit"
    assert action.amounts == {"add.carry": 10, "sub.borrow": -4, "mul.by_digit": 4, "multi.add_add": -10}
    assert policy.state.allocation == {
        "add.carry": 40, "sub.borrow": 26, "mul.by_digit": 34, "multi.add_add": 20}
    assert counts(plan) == policy.state.allocation  # 120 examples over 120 units
    # Round 2: explore the next weak leaf of a branch (multi.add_sub; the other branches have none left).
    policy.plan(feedback(DOMAIN, later, round=2))
    assert policy.state.action.kind == "explore" and policy.state.action.amounts == {"multi.add_sub": 30}


def test_exploit_keeps_allocations_within_bounds() -> None:
    cfg = CFG.model_copy(update={"exploit_step": 50, "max_allocation": 60})
    policy = SkillTreePolicy(100, "rationale", cfg)
    policy.plan(feedback(DOMAIN, {"add.carry": 0.0, "sub.borrow": 0.5}))
    policy.plan(feedback(DOMAIN, {"add.carry": 0.5, "sub.borrow": 0.0}, round=1))
    assert policy.state.allocation == {"add.carry": 60, "sub.borrow": 1}


def test_skill_tree_at_the_skill_list_level_treats_the_skills_as_one_branch() -> None:
    policy = SkillTreePolicy(90, "rationale", CFG)
    policy.plan(feedback(DOMAIN, WEAK, level=StructureLevel.SKILL_LIST))
    assert policy.state.allocation == {"mul.by_digit": 30}  # the weakest of all, since there is no tree


@pytest.mark.parametrize(("action", "reason"), [
    (TreeAction(kind="explore", amounts={}), "empty"),
    (TreeAction(kind="explore", amounts={"add.nope": 5}), "unknown_skill"),
    (TreeAction(kind="explore", amounts={"add.carry": 5}), "already_targeted"),
    (TreeAction(kind="exploit", amounts={"cmp.lead": 5}), "not_targeted"),
    (TreeAction(kind="exploit", amounts={"add.carry": 171}), "over_budget"),
    (TreeAction(kind="exploit", amounts={"add.carry": -30}), "over_budget"),
    (TreeAction(kind="explore", amounts={"cmp.lead": 201}), "over_budget"),
    (TreeAction(kind="exploit", amounts={"add.carry": 170}), None),
])
def test_check_names_why_an_action_is_invalid(action: TreeAction, reason: str | None) -> None:
    policy = SkillTreePolicy(90, "rationale", CFG)
    policy.plan(feedback(DOMAIN, WEAK))
    assert policy.check(action, policy.context(feedback(DOMAIN, WEAK, round=1))) == reason


def test_a_restored_policy_plans_exactly_as_an_uninterrupted_one(tmp_path: Path) -> None:
    rounds = [feedback(DOMAIN, WEAK, round=0),
              feedback(DOMAIN, WEAK | {"add.carry": 0.6, "sub.borrow": 0.3}, round=1),
              feedback(DOMAIN, WEAK | {"add.carry": 0.9, "mul.by_digit": 0.3}, round=2),
              feedback(DOMAIN, WEAK | {"add.carry": 0.95, "multi.add_add": 0.6}, round=3)]
    steady = SkillTreePolicy(100, "mixed", CFG)
    expected = [steady.plan(fb) for fb in rounds]
    plans = []
    for k, fb in enumerate(rounds):
        fresh = SkillTreePolicy(100, "mixed", CFG)  # a new process at every round
        fresh.restore(round_dir(tmp_path, k))
        plans.append(fresh.plan(fb))
        ((name, state),) = fresh.views()
        write_json(round_dir(tmp_path, k + 1) / name, state)
    assert plans == expected
    assert read_json(round_dir(tmp_path, 4) / STATE_FILE, SkillTreeState) == steady.state


def test_the_loop_saves_the_tree_state_and_restores_it_before_planning(tmp_path: Path) -> None:
    cfg = load_config(TeacherConfig, REPO / "agents" / "skill-tree.yaml").model_copy(update={"per_round": 50})
    fbs = [feedback(DOMAIN, WEAK), feedback(DOMAIN, WEAK | {"add.carry": 0.7}, round=1)]
    for k, fb in enumerate(fbs):
        write_json(round_dir(tmp_path, k) / "feedback.json", fb)

    def plan_round(teacher, k: int) -> Plan:
        loop = TeachingLoop(run_dir=tmp_path, run_id="run", seed=0, env=None, teacher=teacher, domain=DOMAIN,
                            heldout=None)
        loop._plan(LoopState(round=k))
        return read_json(round_dir(tmp_path, k + 1) / "plan.json", Plan)

    teacher = build_teacher(cfg, DOMAIN)
    first = plan_round(teacher, 0)
    assert read_json(round_dir(tmp_path, 1) / STATE_FILE, SkillTreeState).action.kind == "explore"
    second = plan_round(teacher, 1)
    resumed = plan_round(build_teacher(cfg, DOMAIN), 1)  # a resumed run: fresh teacher, same round
    assert resumed == second != first
    assert read_json(round_dir(tmp_path, 2) / STATE_FILE, SkillTreeState).action.kind == "exploit"
