"""The fact-balanced engine (``engine: facts``, ``tutorkd.agents.baselines.facts``): a round's examples
practise each skill's facts (its rationale steps' left-hand sides) as evenly as the count allows; held-out
questions never."""

from __future__ import annotations

import random
from collections import Counter

import pytest

from tutorkd.agents.baselines.facts import FactsEngine, facts
from tutorkd.agents.teacher import build_teacher
from tutorkd.config import TeacherConfig
from tutorkd.environments.arithmetic import ArithmeticDomain
from tutorkd.protocols import GenerationContext
from tutorkd.schema import Plan, PlanItem

CONTEXT = GenerationContext(run_id="run", round=1, teacher="f", seed=0)


def test_facts_are_the_steps_left_hand_sides() -> None:
    assert facts(ArithmeticDomain().make("add.carry", (37, 68))) == ["7+8", "3+6+1"]
    assert facts(ArithmeticDomain().make("sub.borrow", (43, 14))) == ["13-4", "3-1"]


def test_a_round_covers_every_fact_that_plain_draws_leave_out() -> None:
    # 90 add.carry examples: 45 ones facts (a+b >= 10) and 81 tens facts (a+b+1), each practised at
    # most twice; plain draws of the same count miss some of both.
    plan = Plan(items=(PlanItem(count=90, skill_id="add.carry"),))
    made = FactsEngine(ArithmeticDomain()).generate(plan, CONTEXT)
    ones = Counter(facts(e.problem)[0] for e in made)
    tens = Counter(facts(e.problem)[1] for e in made)
    assert len(made) == 90 and len({e.problem.question for e in made}) == 90
    assert (len(ones), len(tens)) == (45, 81) and max(ones.values()) == 2 and max(tens.values()) <= 2
    plain = ArithmeticDomain().sample("add.carry", 90, random.Random(0))
    assert len({facts(p)[1] for p in plain}) < 81
    assert {e.provenance.generator.engine for e in made} == {"facts"}
    assert {e.provenance.skill_id for e in made} == {"add.carry"}


def test_each_item_gets_its_count_and_held_out_questions_are_never_made() -> None:
    held = {p.question for p in ArithmeticDomain().sample("sub.borrow", 600, random.Random(1))}
    plan = Plan(items=(PlanItem(count=40, skill_id="sub.borrow"),
                       PlanItem(count=10, skill_id="sub.no_borrow")))
    made = FactsEngine(ArithmeticDomain(), held, pool=4).generate(plan, CONTEXT)
    assert Counter(e.provenance.skill_id for e in made) == {"sub.borrow": 40, "sub.no_borrow": 10}
    assert not {e.problem.question for e in made} & held
    again = FactsEngine(ArithmeticDomain(), held, pool=4).generate(plan, CONTEXT)
    assert [e.problem.question for e in again] == [e.problem.question for e in made]  # seeded


def test_items_like_a_problem_are_refused() -> None:
    like = ArithmeticDomain().make("add.carry", (47, 38))
    with pytest.raises(ValueError, match="plain skill items"):
        FactsEngine(ArithmeticDomain()).generate(Plan(items=(PlanItem(count=1, like=like),)), CONTEXT)


def test_a_teacher_names_it_and_gets_it() -> None:
    cfg = TeacherConfig.model_validate({"name": "f", "policy": "uniform", "engine": "facts"})
    teacher = build_teacher(cfg, ArithmeticDomain())
    made = teacher.generate(Plan(items=(PlanItem(count=9, skill_id="add.carry"),)), CONTEXT)
    assert len(made) == 9 and {e.provenance.generator.engine for e in made} == {"facts"}


@pytest.mark.parametrize(("fields", "named"), [
    ({"policy": "error_driven"}, "policy error_driven"),
    ({"policy": "progress", "progress": {"focus": "steps"}}, "progress.focus: steps"),
])
def test_a_policy_that_plans_items_like_a_problem_is_refused_with_the_fix(fields: dict, named: str) -> None:
    with pytest.raises(ValueError, match=f"{named} plans items like a problem or at a step: use engine: "
                                         "procedural"):
        TeacherConfig.model_validate({"name": "f", "engine": "facts"} | fields)
