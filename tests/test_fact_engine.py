"""The fact-tracing engine of ``benchmarks/fact_engine.py`` (weak facts first, by the steps the quizzed
student wrote) and its teachers; the fact-balanced engine it builds on is ``tests/test_facts_engine.py``'s."""

from __future__ import annotations

import sys
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType

import pytest

from tutorkd.agents.baselines.facts import facts
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
    # plug-in as ``fact_engine:FactTracingEngine``
    monkeypatch.setattr(sys, "path", [str(BENCHMARKS), *sys.path])
    import fact_engine

    return fact_engine


def test_the_balanced_teachers_load(fact_engine: ModuleType) -> None:
    for name, (_, engine) in fact_engine.BALANCED.items():
        cfg = TeacherConfig.model_validate(fact_engine.facts_teacher(name))
        built = cfg.engine if engine == "facts" else cfg.engine.load()
        assert cfg.name == name and built == (engine if engine == "facts" else getattr(fact_engine, engine))


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
    ones = Counter(facts(e.problem)[0] for e in made)
    assert len(made) == 40 and student.asked > 200
    assert ones["7+8"] == max(ones.values()) >= 3  # plain draws give it 40/45 of an example
    assert len(ones) >= 30  # and the rest still spread over the other ones facts
    assert {e.provenance.generator.engine for e in made} == {"traced"}
