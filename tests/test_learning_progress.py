"""The learning-progress teacher: zone-of-proximal-development prior, measured gains, contrast, guard,
replay, and a resumed policy planning as an unbroken one."""

from __future__ import annotations

import random
from collections import Counter
from pathlib import Path

import pytest

from tutorkd.agents.baselines.procedural import ProceduralEngine, has_step
from tutorkd.agents.progress.focus import focus_split, missed_step, missed_steps
from tutorkd.agents.progress.policy import STATE_FILE, ProgressPolicy
from tutorkd.config import ProgressConfig
from tutorkd.environments.arithmetic import ArithmeticDomain
from tutorkd.io import write_json
from tutorkd.protocols import GenerationContext
from tutorkd.schema import Attempt, Feedback, StructureLevel

BASE = {"add.no_carry": 0.99, "add.carry": 0.14, "sub.no_borrow": 0.97, "sub.borrow": 0.15,
        "mul.by_digit": 0.01, "cmp.lead": 1.0, "cmp.same_lead": 0.92, "multi.add_sub": 0.01,
        "multi.add_add": 0.01}
"""The default tiny student's base validation accuracy, roughly."""


def feedback(round: int, accuracy: dict[str, float], used: int = 0,
             level: StructureLevel = StructureLevel.SKILL_LIST) -> Feedback:
    labelled = level != StructureLevel.OPEN_ENDED
    return Feedback(level=level, round=round, errors=(), skill_accuracy=accuracy if labelled else None,
                    budget_used=used, budget_total=3000)


def policy(**cfg: float | None) -> ProgressPolicy:
    """The policy as ``agents/progress.yaml`` configures it for the tiny student (exploration of 10)."""
    return ProgressPolicy(ArithmeticDomain().tree, 250, "rationale",
                          ProgressConfig(**({"explore_examples": 10} | cfg)))


def counts(p: ProgressPolicy, fb: Feedback) -> dict[str, int]:
    plan = p.plan(fb)
    out: dict[str, int] = {}
    for item in plan.items:
        out[item.skill_id] = out.get(item.skill_id, 0) + item.count
    return out


def test_the_first_round_goes_to_partly_known_skills_with_their_mastered_siblings() -> None:
    p = policy()
    got = counts(p, feedback(0, BASE))
    assert sum(got.values()) == 250
    # 4 acc (1 - acc): 0.14 and 0.15 are in the zone, 0.01 is not yet
    assert got["add.carry"] > 4 * got["mul.by_digit"] and got["sub.borrow"] > 4 * got["multi.add_sub"]
    # a target never measured gets explore_examples (10), so the next feedback measures its gain
    assert got["mul.by_digit"] == got["multi.add_sub"] == got["multi.add_add"] == 10
    # contrast: the mastered sibling of each target gets contrast_share of it, and keeps its replay; the
    # 3 x 6 examples the unmeasured targets took came out of the other replay (the comparisons' 12),
    # then out of the largest target
    assert "cmp.lead" not in got and "cmp.same_lead" not in got
    assert got["add.no_carry"] >= got["add.carry"] + 5 and got["sub.no_borrow"] >= got["sub.borrow"] + 5
    assert got["add.carry"] + got["sub.borrow"] >= 100
    assert p.state is not None and p.state.roles["add.no_carry"] == "replay+contrast"


def test_measured_progress_moves_data_to_the_skill_that_is_learning() -> None:
    p = policy()
    first = counts(p, feedback(0, BASE))
    # add.carry rose by 30 points on its examples, sub.borrow not at all
    after = counts(p, feedback(1, dict(BASE, **{"add.carry": 0.44}), used=250))
    assert p.state is not None
    assert p.state.gain["add.carry"] == pytest.approx(0.30 / first["add.carry"])
    assert p.state.gain["sub.borrow"] == pytest.approx(0.0)
    assert after["add.carry"] > first["add.carry"] and after["sub.borrow"] < first["sub.borrow"]
    # the profile 4 acc (1 - acc) times progress over the median gain, clipped to [0.5, 2]: add.carry's
    # is the median (factor 1), sub.borrow's 0 (clipped to 0.5)
    weights = p.state.weights
    assert weights["add.carry"] == pytest.approx(4 * 0.44 * 0.56)
    assert weights["sub.borrow"] == pytest.approx(4 * 0.15 * 0.85 * 0.5)
    # a skill at 1 % is not learnable yet: the exploration floor, 5 % of the best weight
    assert weights["mul.by_digit"] == pytest.approx(0.05 * weights["add.carry"])


def test_an_unmeasured_target_is_explored_once_then_falls_to_its_weight() -> None:
    p = policy()
    assert counts(p, feedback(0, BASE))["multi.add_add"] == 10
    # 10 examples and no gain: measured at 0, the 0.01 skill falls back to the exploration floor
    stalled = counts(p, feedback(1, BASE, used=250))
    assert p.state is not None and p.state.gain["multi.add_add"] == 0.0
    assert stalled["multi.add_add"] < 10
    # one that learned from its 10 (a pretrained student's 0 % skill) is fed by its measured progress
    p = policy()
    counts(p, feedback(0, BASE))
    learned = counts(p, feedback(1, dict(BASE, **{"multi.add_add": 0.3}), used=250))
    assert learned["multi.add_add"] > 2 * learned["mul.by_digit"] and learned["multi.add_add"] > 20


def test_exploration_is_the_uniform_share_by_default_and_never_below_min_examples() -> None:
    # the default (explore_examples None): ceil(250 / 9) = 28, what uniform gives each skill, taken
    # from the comparisons' replay, then from the largest targets; no target is drained below it, so the
    # last one explored gets what the targets' share has left (contrast shares are never taken)
    got = counts(policy(explore_examples=None), feedback(0, BASE))
    assert got["add.carry"] == got["sub.borrow"] == got["mul.by_digit"] == got["multi.add_sub"] == 28
    assert got["multi.add_add"] == 19 and got["sub.no_borrow"] == 61
    assert sum(got.values()) == 250 and "cmp.lead" not in got
    assert counts(policy(explore_examples=4, min_examples=6), feedback(0, BASE))["multi.add_add"] == 6


def test_a_student_that_knows_nothing_yet_gets_a_uniform_first_round() -> None:
    # a pretrained LLM before it learned the answer format: every skill a target, none measured
    low = {s: 0.1 if s.startswith("cmp") else 0.0 for s in BASE}
    got = counts(policy(explore_examples=None), feedback(0, low))
    assert sum(got.values()) == 250 and set(got) == set(BASE)
    assert max(got.values()) - min(got.values()) <= 2  # 27 or 28 each, as uniform's 250 / 9


HEADROOM = {"profile": "zpd-headroom", "zone_above": 0.04, "progress_mode": "gate", "learning_rise": 0.04,
            "guard_siblings": False, "progress_range": (0.25, 2.0),
            "explore_floor": 0.0, "replay_share": 0.05, "replay_to": "unpractised", "contrast_share": 0.75,
            "min_contrast": 0.25, "max_contrast": 1.0}
"""``agents/progress-headroom.yaml``'s settings."""


@pytest.mark.parametrize(("cfg", "more_to"), [({}, "add.carry"), (HEADROOM, "sub.borrow")])
def test_the_headroom_profile_feeds_the_slow_learner_with_more_left_to_learn(cfg: dict, more_to: str) -> None:
    p = policy(**cfg)
    counts(p, feedback(0, BASE))
    # add.carry rose 50 points (almost had), sub.borrow 5: both learning, add.carry ten times faster
    after = counts(p, feedback(1, dict(BASE, **{"add.carry": 0.64, "sub.borrow": 0.20}), used=250))
    assert p.state is not None
    assert p.state.gain["add.carry"] > 5 * p.state.gain["sub.borrow"] > 0
    # by default, 4 acc (1 - acc) times gain over the median keeps feeding the fast learner; the headroom
    # profile times the gate (both learning: 1) gives more to the skill with more left to learn
    other = "add.carry" if more_to == "sub.borrow" else "sub.borrow"
    assert after[more_to] > after[other]
    if cfg:
        weights = p.state.weights
        assert weights["sub.borrow"] == pytest.approx(27 / 4 * 0.20 * 0.80 ** 2)
        assert weights["add.carry"] == pytest.approx(27 / 4 * 0.64 * 0.36 ** 2)
        # within noise of 0 % (under zone_above): no weight, and no exploration floor under it
        assert weights["mul.by_digit"] == 0.0 and "mul.by_digit" not in after


def test_the_gate_opens_on_a_rise_above_noise_only() -> None:
    p = policy(**HEADROOM)
    first = counts(p, feedback(0, BASE))
    # below the zone at first (0.01 < 0.04): exploration only, its 10 examples
    assert first["multi.add_add"] == first["multi.add_sub"] == 10
    # multi.add_sub rose 0.03 (noise: gate at the low bound), multi.add_add 0.15 (learning: gate open)
    counts(p, feedback(1, dict(BASE, **{"multi.add_sub": 0.04, "multi.add_add": 0.16}), used=250))
    assert p.state is not None
    weights = p.state.weights
    assert weights["multi.add_sub"] == pytest.approx(27 / 4 * 0.04 * 0.96 ** 2 * 0.25)
    assert weights["multi.add_add"] == pytest.approx(27 / 4 * 0.16 * 0.84 ** 2)
    # add.carry measured no rise (gate at the low bound) and sub.borrow neither
    assert weights["add.carry"] == pytest.approx(27 / 4 * 0.14 * 0.86 ** 2 * 0.25)


def test_a_student_below_the_zone_everywhere_gets_its_targets_evenly() -> None:
    # a pretrained LLM before it learned the answer format: nothing is within the zone, all are explored
    low = {s: 0.02 if s.startswith("cmp") else 0.0 for s in BASE}
    got = counts(policy(**HEADROOM), feedback(0, low))
    assert sum(got.values()) == 250
    assert max(got.values()) - min(got.values()) <= 2


def test_inertia_carries_half_of_the_last_split_into_the_next() -> None:
    # the headroom profile alone would cut add.carry (0.74, nearly had) far below sub.borrow (0.25)
    progress = dict(BASE, **{"add.carry": 0.74, "sub.borrow": 0.25})
    shares = {}
    for inertia in (0.0, 0.5):
        p = policy(**HEADROOM, inertia=inertia)
        counts(p, feedback(0, BASE))
        assert p.state is not None
        first = dict(p.state.weights)
        got = counts(p, feedback(1, progress, used=250))
        weights = p.state.weights
        shares[inertia] = weights["add.carry"] / sum(weights.values())
        if inertia:
            # half the new split, half the first round's (add.carry's and sub.borrow's even halves)
            fresh = 27 / 4 * 0.74 * 0.26 ** 2, 27 / 4 * 0.25 * 0.75 ** 2
            assert shares[0.5] == pytest.approx(0.5 * fresh[0] / sum(fresh) + 0.5 * first["add.carry"]
                                                / sum(first.values()))
            assert got["add.carry"] > 50
    assert shares[0.0] < 0.3 < shares[0.5] < 0.5


def test_replay_to_unpractised_replays_only_what_no_contrast_practises() -> None:
    p = policy(**HEADROOM)
    counts(p, feedback(0, BASE))
    # the second round: every target measured, so exploration takes nothing from the replay
    got = counts(p, feedback(1, BASE, used=250))
    assert p.state is not None
    # the comparisons share the 5 % replay; the no-carry / no-borrow skills are practised as contrast
    # (0.75 per target example, halved by contrast_relax: the siblings held) and get no replay
    assert p.state.roles["add.no_carry"] == p.state.roles["sub.no_borrow"] == "contrast"
    assert p.state.roles["cmp.lead"] == p.state.roles["cmp.same_lead"] == "replay"
    assert got["cmp.lead"] + got["cmp.same_lead"] == round(0.05 * 250)
    assert got["sub.no_borrow"] == pytest.approx(0.375 * got["sub.borrow"], abs=1)
    # the default spreads the replay over every mastered skill
    q = policy()
    counts(q, feedback(0, BASE))
    counts(q, feedback(1, BASE, used=250))
    assert q.state is not None and q.state.roles["sub.no_borrow"] == "replay+contrast"


def test_a_strong_sibling_that_slipped_below_mastery_still_contrasts_its_target() -> None:
    p = policy()
    counts(p, feedback(0, BASE))
    # sub.no_borrow fell from 0.97 to 0.85: a target of its own now, and still sub.borrow's contrast
    slipped = dict(BASE, **{"sub.no_borrow": 0.85, "sub.borrow": 0.4})
    got = counts(p, feedback(1, slipped, used=250))
    assert p.state is not None
    assert p.state.roles["sub.no_borrow"] == "guard+target+contrast"
    assert p.state.contrast["sub.borrow"] == 2.0  # doubled: its sibling slipped
    assert got["sub.no_borrow"] > 2 * got["sub.borrow"]


@pytest.mark.parametrize(("relax", "after"), [(0.5, 1.0), (1.0, 2.0)])
def test_a_raised_contrast_comes_down_by_contrast_relax_once_the_siblings_hold(relax: float,
                                                                              after: float) -> None:
    p = policy(contrast_relax=relax)
    counts(p, feedback(0, BASE))
    counts(p, feedback(1, dict(BASE, **{"sub.no_borrow": 0.93}), used=250))  # slipped 4 points
    assert p.state is not None and p.state.contrast["sub.borrow"] == 2.0
    counts(p, feedback(2, BASE, used=500))  # held: x contrast_relax, not below min_contrast (1.0)
    assert p.state.contrast["sub.borrow"] == after


def test_a_strong_skill_that_slips_is_guarded_until_it_is_back() -> None:
    p = policy()
    counts(p, feedback(0, BASE))
    slipped = counts(p, feedback(1, dict(BASE, **{"sub.no_borrow": 0.80}), used=250))
    assert p.state is not None and "guard" in p.state.roles["sub.no_borrow"]
    assert slipped["sub.no_borrow"] >= 25  # guard_share 0.1 of the round, beside its targets' examples
    counts(p, feedback(2, BASE, used=500))
    assert p.state is not None and "guard" not in p.state.roles["sub.no_borrow"]
    assert p.state.roles["sub.no_borrow"] == "replay+contrast"  # back among the mastered


def test_a_resumed_policy_plans_as_the_unbroken_one(tmp_path: Path) -> None:
    unbroken = policy()
    rounds = [BASE, dict(BASE, **{"add.carry": 0.35}), dict(BASE, **{"add.carry": 0.5, "sub.borrow": 0.3})]
    plans = []
    for k, acc in enumerate(rounds):
        plans.append(unbroken.plan(feedback(k, acc, used=250 * k)))
        if k == 1:
            assert unbroken.state is not None
            write_json(tmp_path / STATE_FILE, unbroken.state)
    resumed = policy()
    resumed.restore(tmp_path)
    assert resumed.plan(feedback(2, rounds[2], used=500)) == plans[2]


def test_open_ended_feedback_is_refused_with_the_fix() -> None:
    with pytest.raises(ValueError, match="skill_list or skill_tree"):
        policy().plan(feedback(0, BASE, level=StructureLevel.OPEN_ENDED))


def test_every_skill_mastered_replays_them_all() -> None:
    got = counts(policy(), feedback(0, dict.fromkeys(BASE, 0.95)))
    assert set(got) == set(BASE) and sum(got.values()) == 250 and max(got.values()) - min(got.values()) <= 1


def test_contrast_follows_how_the_siblings_held() -> None:
    p = policy(min_contrast=0.2)
    counts(p, feedback(0, BASE))
    assert p.state is not None and p.state.contrast["sub.borrow"] == 1.0
    # sub.no_borrow slipped 10 points while sub.borrow was taught; add.no_carry held
    counts(p, feedback(1, dict(BASE, **{"sub.no_borrow": 0.91}), used=250))
    assert p.state.contrast["sub.borrow"] == 2.0 and p.state.contrast["add.carry"] == 0.5
    counts(p, feedback(2, BASE, used=500))
    assert p.state.contrast["sub.borrow"] == 1.0 and p.state.contrast["add.carry"] == 0.25
    counts(p, feedback(3, BASE, used=750))
    assert p.state.contrast["add.carry"] == 0.2  # min_contrast
    # a target without a mastered sibling (the multi-step skills are each other's) has no contrast
    assert p.state.roles.get("multi.add_sub") == "target"



def test_by_default_contrast_stays_at_one_sibling_example_per_target_example() -> None:
    p = policy()
    for k in range(3):  # every sibling held: halving stops at min_contrast 1.0
        counts(p, feedback(k, BASE, used=250 * k))
    assert p.state is not None and p.state.contrast["add.carry"] == 1.0


@pytest.mark.parametrize(("fields", "message"), [
    ({"progress_range": (2.0, 0.5)}, "low bound first"),
    ({"min_contrast": 3.0}, "exceeds max_contrast"),
])
def test_inconsistent_bounds_are_refused_with_the_fix(fields: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        ProgressConfig(**fields)


def attempt(question: str, output: str, domain: ArithmeticDomain) -> Attempt:
    (problem,) = [p for p in domain.sample(domain.classify(question), 2000, random.Random(0))
                  if p.question == question][:1]
    answer = output.split("A:")[1]
    return Attempt(problem=problem, output=output, parsed_answer=answer, correct=answer == problem.answer)


def test_missed_steps_name_the_gold_step_where_a_wrong_answer_first_goes_wrong() -> None:
    d = ArithmeticDomain()
    wrong_fact = attempt("47+38=", "R:7+8=14 4+3+1=8 A:84", d)  # wrong result at the ones step
    wrong_setup = attempt("85-38=", "R:5-8=3 8-3=5 A:53", d)  # computes 5-8 where 15-8 is due
    right = attempt("47+38=", "R:7+8=15 4+3+1=8 A:85", d)
    assert [missed_step(a) for a in (wrong_fact, wrong_setup, right)] == ["7+8", "15-8", None]
    missed = missed_steps([wrong_fact, wrong_setup, right, wrong_fact], ["add.carry", "sub.borrow"])
    assert missed == {"add.carry": Counter({"7+8": 2}), "sub.borrow": Counter({"15-8": 1})}


def test_focus_split_spreads_a_share_over_the_missed_steps_by_count() -> None:
    missed = Counter({"7+8": 3, "5+6": 1})
    assert focus_split(8, missed, 1.0) == [("7+8", 6), ("5+6", 2)]
    assert focus_split(8, missed, 0.5) == [("7+8", 3), ("5+6", 1), (None, 4)]
    assert focus_split(8, Counter(), 1.0) == [(None, 8)]  # nothing missed on validation: plain draws


def test_step_focus_asks_for_the_missed_steps_of_targets_only() -> None:
    d = ArithmeticDomain()
    errors = (attempt("47+38=", "R:7+8=14 4+3+1=8 A:84", d), attempt("85-38=", "R:5-8=3 8-3=5 A:53", d))
    fb = feedback(0, BASE).model_copy(update={"errors": errors})
    plain, focused = policy().plan(fb), policy(focus="steps").plan(fb)
    assert plain.total == focused.total == 250
    assert all(i.step is None for i in plain.items)
    stepped = {(i.skill_id, i.step): i.count for i in focused.items if i.step is not None}
    by_skill = counts(policy(), fb)
    # every target example of add.carry and sub.borrow practises its one missed step; contrast (the
    # mastered siblings) and the targets without a missed step stay plain draws
    assert stepped == {("add.carry", "7+8"): by_skill["add.carry"],
                       ("sub.borrow", "15-8"): by_skill["sub.borrow"]}
    assert f"{sum(stepped.values())} target examples practise a step" in focused.reasoning


def test_step_focus_examples_contain_the_step(tmp_path: Path) -> None:
    d = ArithmeticDomain()
    fb = feedback(0, BASE).model_copy(update={"errors": (attempt("47+38=", "R:7+8=14 4+3+1=8 A:84", d),)})
    plan = policy(focus="steps").plan(fb)
    ctx = GenerationContext(run_id="t", round=0, seed=0, teacher="progress-steps")
    examples = ProceduralEngine(d).generate(plan, ctx)
    carry = [e for e in examples if e.provenance.skill_id == "add.carry"]
    # the step as written or inside a longer computation (the tens step 7+8+1=16 also uses 7+8)
    assert carry and all(has_step(e.problem, "7+8") for e in carry)
    assert sum(e.problem.rationale.startswith("7+8=15 ") for e in carry) >= len(carry) // 3
    assert all(e.provenance.generator.step == "7+8" for e in carry)
