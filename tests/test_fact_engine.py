"""The fact-balanced engine of ``benchmarks/fact_engine.py``: a round's examples practise each skill's
facts (its rationale steps' left-hand sides) as evenly as the count allows; held-out questions never."""

from __future__ import annotations

import random
import sys
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType

import pytest

from tutorkd.agents.teacher import BuildInputs
from tutorkd.config import TeacherConfig
from tutorkd.environments.arithmetic import ArithmeticDomain
from tutorkd.protocols import GenerationContext
from tutorkd.schema import Attempt, Plan, PlanItem, Problem

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
CONTEXT = GenerationContext(run_id="run", round=1, teacher="f", seed=0)


@pytest.fixture
def fact_engine(monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    # Why on sys.path: the benchmark runs with its own folder first on the path, and the spec names the
    # plug-in as ``fact_engine:FactBalancedEngine``
    monkeypatch.setattr(sys, "path", [str(BENCHMARKS), *sys.path])
    import fact_engine

    return fact_engine


def engine(fact_engine: ModuleType, exclude=frozenset(), **options):
    cfg = TeacherConfig.model_validate({"name": "f", "policy": "uniform", "engine": "procedural"})
    return fact_engine.FactBalancedEngine(BuildInputs(cfg=cfg, domain=ArithmeticDomain(), exclude=exclude),
                                          **options)


def test_facts_are_the_steps_left_hand_sides(fact_engine: ModuleType) -> None:
    assert fact_engine.facts(ArithmeticDomain().make("add.carry", (37, 68))) == ["7+8", "3+6+1"]
    assert fact_engine.facts(ArithmeticDomain().make("sub.borrow", (43, 14))) == ["13-4", "3-1"]


def test_a_round_covers_every_fact_that_plain_draws_leave_out(fact_engine: ModuleType) -> None:
    # 90 add.carry examples: 45 ones facts (a+b >= 10) and 81 tens facts (a+b+1), each practised at
    # most twice; plain draws of the same count miss some of both.
    plan = Plan(items=(PlanItem(count=90, skill_id="add.carry"),))
    made = engine(fact_engine).generate(plan, CONTEXT)
    ones = Counter(fact_engine.facts(e.problem)[0] for e in made)
    tens = Counter(fact_engine.facts(e.problem)[1] for e in made)
    assert len(made) == 90 and len({e.problem.question for e in made}) == 90
    assert (len(ones), len(tens)) == (45, 81) and max(ones.values()) == 2 and max(tens.values()) <= 2
    plain = ArithmeticDomain().sample("add.carry", 90, random.Random(0))
    assert len({fact_engine.facts(p)[1] for p in plain}) < 81
    assert {e.provenance.generator.engine for e in made} == {"facts"}
    assert {e.provenance.skill_id for e in made} == {"add.carry"}


def test_each_item_gets_its_count_and_held_out_questions_are_never_made(fact_engine: ModuleType) -> None:
    held = {p.question for p in ArithmeticDomain().sample("sub.borrow", 600, random.Random(1))}
    plan = Plan(items=(PlanItem(count=40, skill_id="sub.borrow"),
                       PlanItem(count=10, skill_id="sub.no_borrow")))
    made = engine(fact_engine, exclude=held, pool=4).generate(plan, CONTEXT)
    assert Counter(e.provenance.skill_id for e in made) == {"sub.borrow": 40, "sub.no_borrow": 10}
    assert not {e.problem.question for e in made} & held
    again = engine(fact_engine, exclude=held, pool=4).generate(plan, CONTEXT)
    assert [e.problem.question for e in again] == [e.problem.question for e in made]  # seeded


def test_items_like_a_problem_are_refused(fact_engine: ModuleType) -> None:
    like = ArithmeticDomain().make("add.carry", (47, 38))
    with pytest.raises(ValueError, match="plain skill items"):
        engine(fact_engine).generate(Plan(items=(PlanItem(count=1, like=like),)), CONTEXT)


def test_the_balanced_teachers_load(fact_engine: ModuleType) -> None:
    for name, (_, engine_class) in fact_engine.BALANCED.items():
        cfg = TeacherConfig.model_validate(fact_engine.facts_teacher(name))
        assert cfg.name == name and cfg.engine.load() is getattr(fact_engine, engine_class)


class SlipsOnSevenPlusEight:
    """A student that writes every gold rationale, except ``7+8=14`` (and so a wrong answer)."""

    def __init__(self) -> None:
        self.asked = 0

    def answer(self, problems: Sequence[Problem], explanations=None) -> list[Attempt]:
        self.asked += len(problems)
        out = []
        for p in problems:
            rationale = p.rationale.replace("7+8=15", "7+8=14")
            out.append(Attempt(problem=p, output=f"R:{rationale} A:{p.answer}", parsed_answer=p.answer,
                               correct=rationale == p.rationale))
        return out


def test_fact_weights_read_the_steps_the_student_wrote(fact_engine: ModuleType) -> None:
    domain = ArithmeticDomain()
    problems = [domain.make("add.carry", ops) for ops in ((37, 68), (17, 18), (47, 38), (29, 54))]
    attempts = SlipsOnSevenPlusEight().answer(problems)
    attempts.append(Attempt(problem=problems[3], output="A:83", parsed_answer="83", correct=True))
    weight = fact_engine.fact_weights(attempts)
    assert weight["7+8"] == (3 + 1) / (3 + 2)   # written 3 times, wrong each time
    assert weight["9+4"] == (0 + 1) / (1 + 2)   # a rationale-less answer says nothing
    assert weight["3+6+1"] == weight["1+1+1"] == 1 / 3


def test_the_tracing_engine_practises_the_weak_fact_first_and_then_spreads(fact_engine: ModuleType) -> None:
    cfg = TeacherConfig.model_validate({"name": "t", "policy": "uniform", "engine": "procedural"})
    student = SlipsOnSevenPlusEight()
    inputs = BuildInputs(cfg=cfg, domain=ArithmeticDomain(), student=student)
    plan = Plan(items=(PlanItem(count=40, skill_id="add.carry"),))
    made = fact_engine.FactTracingEngine(inputs, pool=8).generate(plan, CONTEXT)
    ones = Counter(fact_engine.facts(e.problem)[0] for e in made)
    assert len(made) == 40 and student.asked > 200
    assert ones["7+8"] == max(ones.values()) >= 3  # plain draws give it 40/45 of an example
    assert len(ones) >= 30  # and the rest still spread over the other ones facts
    assert {e.provenance.generator.engine for e in made} == {"traced"}
