"""Baseline teachers on the real arithmetic domain: allocation, label-free error targeting, determinism."""

from __future__ import annotations

import logging
import random
from pathlib import Path

import pytest

from tutorkd.agents.baselines.policies import ErrorDrivenPolicy, UniformPolicy, even_split
from tutorkd.agents.baselines.procedural import ProceduralEngine
from tutorkd.agents.teacher import build_teacher
from tutorkd.config import TeacherConfig, load_config
from tutorkd.environments.arithmetic import ArithmeticDomain
from tutorkd.environments.heldout import HeldOut
from tutorkd.protocols import GenerationContext
from tutorkd.schema import Attempt, Feedback, Plan, PlanItem, StructureLevel
from tutorkd.verify import verify

REPO = Path(__file__).resolve().parents[1]
DOMAIN = ArithmeticDomain()
LEAVES = DOMAIN.tree.leaves()
CONTEXT = GenerationContext(run_id="run", round=1, teacher="t", seed=7)


def feedback(
    errors: tuple[Attempt, ...] = (), used: int = 0, total: int = 10_000, done: bool = False
) -> Feedback:
    return Feedback(
        level=StructureLevel.OPEN_ENDED,
        round=0,
        errors=errors,
        budget_used=used,
        budget_total=total,
        done=done,
    )


def open_ended_errors(skills: list[str], seed: int = 0) -> tuple[Attempt, ...]:
    """Wrong attempts on problems of ``skills``, with labels stripped as open-ended feedback does."""
    rng = random.Random(seed)
    problems = [DOMAIN.sample(s, 1, rng)[0] for s in skills]
    return tuple(
        Attempt(
            problem=p.model_copy(update={"skill_ids": ()}), output="A:1", parsed_answer="1", correct=False
        )
        for p in problems
    )


@pytest.mark.parametrize(
    ("per_round", "used", "total"), [(100, 0, 1000), (100, 950, 1000), (7, 0, 50), (5, 3, 4)]
)
def test_uniform_allocates_min_of_round_and_budget_evenly(per_round: int, used: int, total: int) -> None:
    plan = UniformPolicy(LEAVES, per_round).plan(feedback(used=used, total=total))
    expected = min(per_round, total - used)
    assert plan.total == expected
    counts = {item.skill_id: item.count for item in plan.items}
    assert set(counts) <= set(LEAVES)
    full = [counts.get(s, 0) for s in LEAVES]
    assert full == even_split(expected, len(LEAVES))
    assert max(full) - min(full) <= 1
    # The remainder goes to the first skills in tree order.
    assert full == sorted(full, reverse=True)
    assert plan.reasoning.startswith("Uniform")


def test_uniform_asks_for_nothing_once_done_or_over_budget() -> None:
    assert UniformPolicy(LEAVES, 100).plan(feedback(done=True)).total == 0
    assert UniformPolicy(LEAVES, 100).plan(feedback(used=1000, total=1000)).items == ()


@pytest.mark.parametrize("policy", [UniformPolicy, ErrorDrivenPolicy])
@pytest.mark.parametrize("per_round", [1, 9, 10, 101])
def test_mixed_style_alternates_across_the_whole_plan(policy: type, per_round: int) -> None:
    errors = open_ended_errors(LEAVES * 3) if policy is ErrorDrivenPolicy else ()
    plan = policy(LEAVES, per_round, "mixed").plan(feedback(errors))
    rationale = sum(i.count for i in plan.items if i.style == "rationale")
    direct = sum(i.count for i in plan.items if i.style == "direct")
    assert (rationale, direct) == ((per_round + 1) // 2, per_round // 2)


def test_error_driven_spreads_over_errors_without_labels() -> None:
    errors = open_ended_errors(["add.carry", "sub.borrow", "cmp.same_lead"])
    plan = ErrorDrivenPolicy(LEAVES, 10, "direct").plan(feedback(errors, used=0, total=8))
    assert plan.total == 8
    assert [i.count for i in plan.items] == [3, 3, 2]
    assert all(i.skill_id is None and i.style == "direct" for i in plan.items)
    assert [i.like for i in plan.items] == [a.problem for a in errors]
    assert "Error-driven" in plan.reasoning


def test_error_driven_generates_the_error_skill_from_the_question_alone() -> None:
    skills = ["add.carry", "sub.borrow", "mul.by_digit", "cmp.same_lead", "multi.add_sub"]
    errors = open_ended_errors(skills)
    # A wrong label must not matter either: the policy and engine never read labels.
    mislabelled = tuple(
        a.model_copy(update={"problem": a.problem.model_copy(update={"skill_ids": ("cmp.lead",)})})
        for a in errors
    )
    for shown in (errors, mislabelled):
        plan = ErrorDrivenPolicy(LEAVES, 20).plan(feedback(shown))
        examples = ProceduralEngine(DOMAIN).generate(plan, CONTEXT)
        assert len(examples) == 20
        by_source = {a.problem.id: skill for a, skill in zip(shown, skills, strict=True)}
        for ex in examples:
            expected = by_source[ex.provenance.generator.source_problem_id]
            assert DOMAIN.classify(ex.problem.question) == expected
            assert ex.provenance.skill_id == expected


def test_error_driven_falls_back_to_uniform_without_errors() -> None:
    plan = ErrorDrivenPolicy(LEAVES, 18).plan(feedback())
    assert [(i.skill_id, i.count) for i in plan.items] == [(s, 2) for s in LEAVES]
    assert plan.reasoning.startswith("No errors shown; falling back")


def test_engine_is_deterministic_per_seed_and_round() -> None:
    plan = UniformPolicy(LEAVES, 45, "mixed").plan(feedback())
    engine = ProceduralEngine(DOMAIN)
    first = engine.generate(plan, CONTEXT)
    assert first == ProceduralEngine(ArithmeticDomain()).generate(plan, CONTEXT)
    assert [e.id for e in first] == [f"run/r1/{i:06d}" for i in range(45)]
    for other in (CONTEXT.model_copy(update={"round": 2}), CONTEXT.model_copy(update={"seed": 8})):
        again = engine.generate(plan, other)
        assert {e.problem.question for e in again} != {e.problem.question for e in first}


def test_engine_fills_provenance_and_honours_style() -> None:
    plan = Plan(
        items=(
            PlanItem(count=4, skill_id="add.carry", style="rationale"),
            PlanItem(count=3, skill_id="cmp.lead", style="direct"),
        )
    )
    examples = ProceduralEngine(DOMAIN).generate(plan, CONTEXT)
    assert len(examples) == 7
    for ex in examples:
        prov = ex.provenance
        assert (prov.run_id, prov.round, prov.teacher) == ("run", 1, "t")
        assert prov.skill_id == ex.problem.skill_ids[0]
        assert prov.generator.engine == "procedural" and prov.generator.source_problem_id is None
        assert prov.verification is None
        assert ex.prompt == ex.problem.question
    assert [e.provenance.skill_id for e in examples] == ["add.carry"] * 4 + ["cmp.lead"] * 3
    assert all(e.completion == f"R:{e.problem.rationale} A:{e.problem.answer}" for e in examples[:4])
    assert all(e.completion == f"A:{e.problem.answer}" for e in examples[4:])
    # Each item has its own seed, so regenerating one item alone reproduces its problems.
    seeds = [e.provenance.generator.seed for e in examples]
    assert len(set(seeds[:4])) == 1 and len(set(seeds[4:])) == 1 and seeds[0] != seeds[4]


def test_engine_excludes_held_out_and_never_repeats_a_question() -> None:
    heldout = HeldOut.build(DOMAIN, test_per_skill=40, val_per_skill=20, seed=3)
    errors = open_ended_errors(["add.carry"] * 4)  # same structure four times: overlapping requests
    plan = ErrorDrivenPolicy(LEAVES, 200).plan(feedback(errors))
    examples = ProceduralEngine(DOMAIN, exclude=heldout.questions).generate(plan, CONTEXT)
    questions = [e.problem.question for e in examples]
    assert len(questions) == 200 == len(set(questions))
    assert not heldout.overlapping(examples)


@pytest.mark.parametrize("name", ["uniform", "open-ended"])
def test_built_teacher_output_passes_verification(name: str) -> None:
    cfg = load_config(TeacherConfig, REPO / "agents" / f"{name}.yaml")
    heldout = HeldOut.build(DOMAIN, test_per_skill=20, val_per_skill=10, seed=1)
    teacher = build_teacher(cfg, DOMAIN, exclude=heldout.questions)
    assert teacher.name == cfg.name
    plan = teacher.plan(feedback(open_ended_errors(["sub.borrow", "multi.add_add"]), used=0, total=300))
    assert plan.total == 300
    examples = teacher.generate(plan, CONTEXT)
    result = verify(examples, DOMAIN, heldout.questions)
    assert len(result.kept) == 300 and not result.rejected


class UnlabelledDomain(ArithmeticDomain):
    """A broken domain whose problems carry no skill label."""

    def sample(self, skill_id, n, rng, exclude=frozenset()):  # noqa: ANN001, ANN201
        return [p.model_copy(update={"skill_ids": ()}) for p in super().sample(skill_id, n, rng, exclude)]


def test_problem_without_a_leaf_skill_fails_loudly() -> None:
    plan = Plan(items=(PlanItem(count=1, skill_id="add.carry"),))
    with pytest.raises(ValueError, match="no leaf skill"):
        ProceduralEngine(UnlabelledDomain()).generate(plan, CONTEXT)


def test_engine_avoids_earlier_rounds_questions() -> None:
    plan = UniformPolicy(LEAVES, 90).plan(feedback())
    first = ProceduralEngine(DOMAIN).generate(plan, CONTEXT)
    avoid = frozenset(e.problem.question for e in first)
    later = CONTEXT.model_copy(update={"round": 2, "avoid": avoid})
    second = ProceduralEngine(DOMAIN).generate(plan, later)
    assert len(second) == 90 and not avoid & {e.problem.question for e in second}


def test_an_exhausted_skill_yields_fewer_examples_with_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    space = DOMAIN.space_size("mul.by_digit")
    plan = Plan(
        items=(PlanItem(count=space + 5, skill_id="mul.by_digit"), PlanItem(count=3, skill_id="add.carry"))
    )
    with caplog.at_level(logging.WARNING, logger="tutorkd.agents.baselines.procedural"):
        examples = ProceduralEngine(DOMAIN).generate(plan, CONTEXT)
    assert [e.provenance.skill_id for e in examples] == ["mul.by_digit"] * space + ["add.carry"] * 3
    assert f"made {space} of {space + 5} examples" in caplog.text
