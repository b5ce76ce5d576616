"""The quiz engine of ``benchmarks/quiz_engine.py``: an item's examples are the problems the student
misses when quizzed, first; skills with a pool of 1 are drawn unquizzed; held-out questions never."""

from __future__ import annotations

import random
import sys
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


@pytest.fixture
def quiz(monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    # Why on sys.path: the benchmark runs with its own folder first on the path, and the spec names the
    # plug-in as ``quiz_engine:QuizEngine``
    monkeypatch.setattr(sys, "path", [str(BENCHMARKS), *sys.path])
    import quiz_engine

    return quiz_engine


class OddMisser:
    """A student that misses every problem whose first operand is odd, and counts what it was asked."""

    def __init__(self) -> None:
        self.asked: list[str] = []

    def answer(self, problems: Sequence[Problem], explanations=None) -> list[Attempt]:
        self.asked += [p.question for p in problems]
        return [Attempt(problem=p, output="", parsed_answer=None, correct=not odd(p)) for p in problems]


def odd(problem: Problem) -> bool:
    return int(problem.question.split("+")[0].split("-")[0]) % 2 == 1


def engine(quiz: ModuleType, student: OddMisser, exclude=frozenset(), **options):
    cfg = TeacherConfig.model_validate({"name": "q", "policy": "uniform", "engine": "procedural"})
    inputs = BuildInputs(cfg=cfg, domain=ArithmeticDomain(), exclude=exclude, student=student)
    return quiz.QuizEngine(inputs, **options)


CONTEXT = GenerationContext(run_id="run", round=1, teacher="q", seed=0)


def test_a_quizzed_items_examples_are_the_students_misses(quiz: ModuleType) -> None:
    student = OddMisser()
    plan = Plan(items=(PlanItem(count=30, skill_id="add.carry"),
                       PlanItem(count=20, skill_id="sub.no_borrow")))
    made = engine(quiz, student, pool={"add.carry": 4}, default=1).generate(plan, CONTEXT)
    carry = [e.problem for e in made if e.provenance.skill_id == "add.carry"]
    plain = [e.problem for e in made if e.provenance.skill_id == "sub.no_borrow"]
    assert len(carry) == 30 and len(plain) == 20
    assert all(odd(p) for p in carry)  # 120 candidates hold far more than 30 misses
    assert 3 < sum(odd(p) for p in plain) < 17  # unquizzed: about half
    assert set(student.asked) >= {p.question for p in carry}
    assert not {p.question for p in plain} & set(student.asked)
    assert len({e.problem.question for e in made}) == 50
    assert {e.provenance.generator.engine for e in made} == {"quiz"}


def test_hard_share_leaves_the_rest_to_right_answers(quiz: ModuleType) -> None:
    plan = Plan(items=(PlanItem(count=20, skill_id="add.carry"),))
    made = engine(quiz, OddMisser(), default=4, hard_share=0.25).generate(plan, CONTEXT)
    assert sum(odd(e.problem) for e in made) == 5


def test_held_out_questions_are_never_made(quiz: ModuleType) -> None:
    held = {p.question for p in ArithmeticDomain().sample("add.carry", 400, random.Random(1))}
    plan = Plan(items=(PlanItem(count=40, skill_id="add.carry"),))
    made = engine(quiz, OddMisser(), exclude=held, default=4).generate(plan, CONTEXT)
    assert len(made) == 40 and not {e.problem.question for e in made} & held


def test_items_like_a_problem_are_refused(quiz: ModuleType) -> None:
    like = ArithmeticDomain().make("add.carry", (47, 38))
    with pytest.raises(ValueError, match="plain skill items"):
        engine(quiz, OddMisser()).generate(Plan(items=(PlanItem(count=1, like=like),)), CONTEXT)


def test_the_quizzed_teachers_load(quiz: ModuleType) -> None:
    for name in quiz.QUIZZED:
        cfg = TeacherConfig.model_validate(quiz.quiz_teacher(name))
        assert cfg.name == name and cfg.engine.load() is quiz.QuizEngine


def test_a_skill_split_over_two_items_is_quizzed_once_for_both(quiz: ModuleType) -> None:
    student = OddMisser()
    plan = Plan(items=(PlanItem(count=15, skill_id="add.carry", style="rationale"),
                       PlanItem(count=15, skill_id="add.carry", style="direct")))
    made = engine(quiz, student, default=4).generate(plan, CONTEXT)
    assert len(made) == 30 and all(odd(e.problem) for e in made)
    assert [e.provenance.generator.style for e in made] == ["rationale"] * 15 + ["direct"] * 15
    assert len(student.asked) == len(set(student.asked)) <= 120  # one draw of 4 per example, quizzed once
