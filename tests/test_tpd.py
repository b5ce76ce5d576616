"""The TPD teacher: principle sources, their uses (variants a-d), the policy across rounds, the engine."""

from __future__ import annotations

import random
from collections.abc import Sequence
from pathlib import Path

import pytest
from pydantic import ValidationError

from tutorkd.agents.baselines.procedural import has_step
from tutorkd.agents.teacher import build_teacher
from tutorkd.agents.tpd.bugs import BUGS, BUGS_BY_ID
from tutorkd.agents.tpd.principles import (
    PrincipleSet,
    ProceduralPrinciples,
    TeacherPrinciple,
    append_principles,
    rewrite_instruction,
    select_examples,
)
from tutorkd.agents.tpd.teacher import BugExposingSampler, DiscriminatingEngine, TPDPolicy, signature
from tutorkd.config import TeacherConfig, TPDConfig, load_config
from tutorkd.environments.arithmetic import ArithmeticDomain
from tutorkd.io import write_json
from tutorkd.protocols import GenerationContext
from tutorkd.schema import Attempt, Feedback, Problem, StructureLevel

REPO = Path(__file__).resolve().parents[1]
DOMAIN = ArithmeticDomain()
LEAVES = DOMAIN.tree.leaves()


def attempt(problem: Problem, answer: str | None, strip: bool = False) -> Attempt:
    if strip:  # as open-ended feedback shows it: no skill label, no skill in the id
        problem = problem.model_copy(update={"skill_ids": (), "id": f"arithmetic:{problem.question}"})
    return Attempt(problem=problem, output="R:" if answer is None else f"A:{answer}", parsed_answer=answer,
                   correct=answer == problem.answer)


def buggy(bug_id: str, skill: str, n: int, rng: random.Random, strip: bool = True) -> list[Attempt]:
    """``n`` wrong attempts on ``skill`` that ``bug_id`` explains."""
    bug = BUGS_BY_ID[bug_id]
    out: list[Attempt] = []
    while len(out) < n:
        (p,) = DOMAIN.sample(skill, 1, rng)
        wrong = bug.apply(p.question)
        if wrong is not None and wrong != p.answer and p.question not in {a.problem.question for a in out}:
            out.append(attempt(p, wrong, strip))
    return out


def feedback(errors: Sequence[Attempt], round: int = 0, per: int = 0) -> Feedback:
    return Feedback(level=StructureLevel.OPEN_ENDED, round=round, errors=tuple(errors),
                    budget_used=per * round, budget_total=100_000)


def student_errors(counts: dict[str, int], seed: int = 0) -> list[Attempt]:
    """Wrong attempts of a student with these bugs (bug id to errors, on the bug's first skill)."""
    rng = random.Random(seed)
    return [a for bug, n in counts.items() for a in buggy(bug, BUGS_BY_ID[bug].skills[0], n, rng)]


# --------------------------------------------------------------------------------------------------
# Principle sources


def test_every_bug_principle_reads_as_when_then_do() -> None:
    for bug in BUGS:
        assert bug.principle.startswith("When ") and ", " in bug.principle, bug.id


def test_procedural_principles_link_each_error_by_index_and_report_coverage() -> None:
    rng = random.Random(1)
    carry = buggy("add.forgot_carry", "add.carry", 4, rng)
    borrow = buggy("sub.smaller_from_larger", "sub.borrow", 2, rng)
    right = [attempt(p, p.answer) for p in DOMAIN.sample("mul.by_digit", 3, rng)]
    odd = attempt(DOMAIN.make("add.no_carry", (12, 13)), "99")  # no bug writes 99 for 12+13
    fmt = attempt(DOMAIN.make("add.no_carry", (21, 13)), None)
    attempts = [right[0], *carry[:2], fmt, right[1], *borrow, odd, *carry[2:], right[2]]
    pset = ProceduralPrinciples(DOMAIN).principles(attempts)
    assert (pset.wrong, pset.format_errors, pset.explained) == (7, 1, 6)
    assert pset.coverage == pytest.approx(6 / 7)
    first, second = pset.principles
    assert first.bug_id == "add.forgot_carry" and first.explains == (1, 2, 8, 9)
    assert second.bug_id == "sub.smaller_from_larger" and second.explains == (5, 6)
    assert first.skills == ("add.carry",)
    assert first.text == BUGS_BY_ID["add.forgot_carry"].principle


# --------------------------------------------------------------------------------------------------
# Exploiting principles: instructions (a, b) and example selection (c)

P1 = TeacherPrinciple(when="the ones add up to 10 or more", do="carry 1 into the tens", explains=(0, 1, 2),
                      skills=("add.carry",))
P2 = TeacherPrinciple(when="the sign is -", do="subtract", explains=(3,), skills=("sub.borrow",))
P3 = TeacherPrinciple(when="adding tens", do="add the carry last", explains=(2,), skills=("add.carry",))


def test_append_keeps_the_instruction_and_lists_every_principle() -> None:
    out = append_principles("Solve the problem.\n", [P1, P2])
    assert out.text == ("Solve the problem.\n\nPrinciples learned from earlier mistakes:\n"
                        "- When the ones add up to 10 or more, carry 1 into the tens\n"
                        "- When the sign is -, subtract")
    assert (out.variant, out.principles) == ("append", 2)
    assert append_principles("Solve.", []).text == "Solve."


def test_rewrite_turns_principles_into_checks_grouped_by_skill() -> None:
    out = rewrite_instruction("Solve the problem.", [P1, P2, P3])
    lines = out.text.split("\n")
    assert lines[0].startswith("Solve the problem. Before you write the answer")
    assert lines[1] == ("add.carry problems: (1) If the ones add up to 10 or more: carry 1 into the tens "
                        "(2) If adding tens: add the carry last")
    assert lines[2] == "sub.borrow problems: (1) If the sign is -: subtract"
    assert rewrite_instruction("Solve.", []).text == "Solve."


def test_select_examples_allocates_by_errors_explained() -> None:
    attempts = student_errors({"add.forgot_carry": 3, "sub.added": 1})
    pset = PrincipleSet(source="t", attempts=4, wrong=4, format_errors=0, explained=4,
                        principles=(P1, P2, P3))
    picks = select_examples(pset, attempts, 50)
    # Shares 30/10/10 by errors explained (3, 1, 1); P1 spreads 10 each over 0,1,2; P3 adds 10 to 2.
    assert [(p.question, n) for p, n in picks] == [
        (attempts[0].problem.question, 10), (attempts[1].problem.question, 10),
        (attempts[2].problem.question, 20), (attempts[3].problem.question, 10)]
    assert select_examples(pset, attempts, 0) == []


# --------------------------------------------------------------------------------------------------
# The discriminating engine


def test_similar_problems_expose_every_bug_their_model_exposes() -> None:
    like = DOMAIN.make("sub.no_borrow", (47, 42))  # tens equal: exposes sub.leading_zero (05)
    assert "sub.leading_zero" in signature(like)
    got = BugExposingSampler(DOMAIN).similar(like, 30, random.Random(0))
    assert all(signature(p) >= signature(like) for p in got)
    assert all(p.question[0] == p.question[3] for p in got)  # the leading-zero bug needs equal tens
    with pytest.raises(RuntimeError, match="exposing"):
        BugExposingSampler(DOMAIN, max_draws=1).similar(like, 30, random.Random(0))


# --------------------------------------------------------------------------------------------------
# The policy

BUGS_CFG = TPDConfig(variant="bugs", replay_share=0.2, min_count=2)
CONTEXT = GenerationContext(run_id="run", round=1, teacher="tpd", seed=0)


def test_bugs_variant_targets_active_bugs_by_count_and_replays_every_skill() -> None:
    errors = student_errors({"add.forgot_carry": 6, "mul.forgot_carry": 3, "sub.added": 1})
    policy = TPDPolicy(DOMAIN, 100, "rationale", BUGS_CFG)
    plan = policy.plan(feedback(errors))
    assert plan.total == 100
    targeted = [i for i in plan.items if i.like is not None]
    replay = [i for i in plan.items if i.like is None]
    assert {i.skill_id for i in replay} == set(LEAVES) and sum(i.count for i in replay) == 20
    # 80 targeted examples split 6:3:1 between the two active bugs and the one error of sub.added, a
    # bug with too few errors to be an active principle: its error is unexplained, so problems like it.
    assert [(i.skill_id, i.count) for i in targeted] == [("add.carry", 48), ("mul.by_digit", 24), (None, 8)]
    assert targeted[2].like == errors[-1].problem
    examples = DiscriminatingEngine(DOMAIN).generate(plan, CONTEXT)
    assert len(examples) == 100 and {e.provenance.generator.engine for e in examples} == {"discriminating"}
    for e in examples[:48]:
        assert BUGS_BY_ID["add.forgot_carry"].apply(e.problem.question) != e.problem.answer
    for e in examples[48:72]:
        assert BUGS_BY_ID["mul.forgot_carry"].apply(e.problem.question) != e.problem.answer
    assert {DOMAIN.classify(e.problem.question) for e in examples[72:80]} == {"sub.no_borrow"}
    ignoring = TPDPolicy(DOMAIN, 100, "rationale", BUGS_CFG.model_copy(update={"unexplained": "ignore"}))
    assert [(i.skill_id, i.count) for i in ignoring.plan(feedback(errors)).items if i.like is not None] == [
        ("add.carry", 53), ("mul.by_digit", 27)]
    # mul.forgot_carry only shows when the ones product carries: a plain sample often does not.
    plain = DOMAIN.sample("mul.by_digit", 200, random.Random(0))
    assert any(BUGS_BY_ID["mul.forgot_carry"].apply(p.question) == p.answer for p in plain)
    views = dict(policy.views())
    assert list(views) == ["diagnosis.json", "principles.json", "slips.json"]
    # The errors carry no worked steps: every one is located as ``no_steps``, none invented.
    assert views["slips.json"].wrong == 10 and views["slips.json"].by_kind["no_steps"] == 10
    assert "add.forgot_carry" in policy.render() and "mul.forgot_carry" in plan.reasoning
    assert "first wrong step of 10" in policy.render()


def test_examples_variant_picks_only_errors_the_active_principles_explain() -> None:
    errors = student_errors({"add.forgot_carry": 4, "sub.added": 1})
    cfg = BUGS_CFG.model_copy(update={"variant": "examples", "unexplained": "ignore"})
    plan = TPDPolicy(DOMAIN, 50, "rationale", cfg).plan(feedback(errors))
    likes = [(i.like.question, i.count) for i in plan.items if i.like is not None]
    assert likes == [(a.problem.question, 10) for a in errors[:4]]
    assert plan.total == 50
    # Unexplained errors (here the lone sub.added one) get their share too, unless ignored.
    plan = TPDPolicy(DOMAIN, 50, "rationale", BUGS_CFG.model_copy(update={"variant": "examples"})).plan(
        feedback(errors))
    likes = [(i.like.question, i.count) for i in plan.items if i.like is not None]
    assert likes == [(a.problem.question, 8) for a in errors]


def test_nothing_to_target_means_uniform() -> None:
    cfg = BUGS_CFG.model_copy(update={"unexplained": "ignore"})
    plan = TPDPolicy(DOMAIN, 90, "rationale", cfg).plan(feedback(student_errors({"sub.added": 1})))
    assert [(i.skill_id, i.count, i.like) for i in plan.items] == [(s, 10, None) for s in LEAVES]
    assert "nothing to target" in plan.reasoning
    assert TPDPolicy(DOMAIN, 90, "rationale", BUGS_CFG).plan(feedback([])).total == 90


def test_principles_retire_when_errors_stop_and_a_restored_policy_plans_the_same(tmp_path: Path) -> None:
    rounds = [student_errors({"add.forgot_carry": 4, "sub.added": 2}, seed=0),
              student_errors({"add.forgot_carry": 1}, seed=1),  # below min_count but still active
              student_errors({"sub.added": 3}, seed=2)]  # add.forgot_carry stopped: retired
    policy = TPDPolicy(DOMAIN, 60, "rationale", BUGS_CFG)
    plans = []
    for k, errors in enumerate(rounds):
        plans.append(policy.plan(feedback(errors, round=k)))
        for name, record in policy.views():
            write_json(tmp_path / f"r{k + 1}" / name, record)
        assert policy.plan(feedback(errors, round=k)) == plans[-1]  # planning a round again is idempotent
    active = [[t.bug_id for t in policy.histories[k].active] for k in range(3)]
    assert active == [["add.forgot_carry", "sub.added"], ["add.forgot_carry"], ["sub.added"]]
    assert [t.bug_id for t in policy.histories[1].retired] == ["sub.added"]
    assert [t.bug_id for t in policy.histories[2].retired] == ["add.forgot_carry"]
    assert {i.skill_id for i in plans[1].items if i.like is not None} == {"add.carry"}
    assert "retired add.forgot_carry" in plans[2].reasoning
    # A resumed run: a fresh policy restored from the previous round's folder plans round 2 identically.
    fresh = TPDPolicy(DOMAIN, 60, "rationale", BUGS_CFG)
    fresh.restore(tmp_path / "r2")
    assert fresh.plan(feedback(rounds[2], round=2)) == plans[2]
    cold = TPDPolicy(DOMAIN, 60, "rationale", BUGS_CFG)  # without the history round 1 looks different
    assert cold.plan(feedback(rounds[1], round=1)) != plans[1]


class Brackets:
    """A chat template: ``[role] content`` lines, then ``[assistant] `` for the reply."""

    def render(self, messages: Sequence[tuple[str, str]]) -> str:
        return "".join(f"[{role}] {content}\n" for role, content in messages) + "[assistant] "


def test_a_chat_student_gets_chat_examples_of_the_bugs_diagnosed_on_the_task() -> None:
    from tutorkd.environments.chat import ChatDomain

    chat = ChatDomain(DOMAIN, Brackets(), format_examples=1)
    cfg = load_config(TeacherConfig, REPO / "agents" / "tpd.yaml").model_copy(update={"per_round": 40})
    with pytest.raises(ValueError, match="bug library"):  # the chat wrapper alone is not arithmetic
        build_teacher(cfg, chat)
    teacher = build_teacher(cfg, chat, task=DOMAIN)
    plan = teacher.plan(feedback(student_errors({"add.forgot_carry": 5})))
    examples = teacher.generate(plan, CONTEXT)
    assert len(examples) == 40
    carried = [e for e in examples if e.provenance.skill_id == "add.carry"]
    assert len(carried) >= 30  # 80 % targeted at the one active bug, the rest replayed over the skills
    for e in carried:
        assert BUGS_BY_ID["add.forgot_carry"].apply(e.problem.question) != e.problem.answer
        # rendered for the chat student: its instruction and reply format, not the task's raw prompt
        assert e.prompt == chat.prompt(e.problem) and e.prompt.endswith("[assistant] ")
        assert e.completion == chat.completion(e.problem, "rationale")


def test_specs_and_config_checks() -> None:
    for name in ("tpd", "tpd-examples"):
        cfg = load_config(TeacherConfig, REPO / "agents" / f"{name}.yaml")
        teacher = build_teacher(cfg, DOMAIN)
        teacher.plan(feedback(student_errors({"add.forgot_carry": 3})))
        assert [n for n, _ in teacher.views()] == ["diagnosis.json", "principles.json", "slips.json"]
    with pytest.raises(ValidationError, match="engine: discriminating"):
        TeacherConfig(name="t", policy="tpd")
    with pytest.raises(ValidationError, match="retire_below 3 exceeds min_count 2"):
        TPDConfig(retire_below=3)


def test_steps_targets_an_unexplained_fact_slip_at_its_step_and_the_rest_like_the_error() -> None:
    # 37*8: the student's 7*8=44 is a fact slip at step 0; 34-18 with 12-8 is a setup error.
    slipped = DOMAIN.make("mul.by_digit", (37, 8))
    setup = DOMAIN.make("sub.borrow", (34, 18))
    errors = [attempt(slipped, "354", strip=True).model_copy(update={"output": "R:7*8=44 3*8+4=35 A:354"}),
              attempt(setup, "24", strip=True).model_copy(update={"output": "R:12-8=4 3-1=2 A:24"})]
    cfg = BUGS_CFG.model_copy(update={"unexplained": "steps"})
    plan = TPDPolicy(DOMAIN, 100, "rationale", cfg).plan(feedback(errors))
    targeted = [i for i in plan.items if i.step is not None or i.like is not None]
    assert [(i.skill_id, i.step, i.like, i.count) for i in targeted] == [
        ("mul.by_digit", "7*8", None, 40), (None, None, errors[1].problem, 40)]
    assert "1 of them at the step their fact slip got wrong" in plan.reasoning
    examples = DiscriminatingEngine(DOMAIN).generate(plan, CONTEXT)
    assert len(examples) == 100 and len({e.problem.question for e in examples}) == 100
    # Every mul.by_digit problem with a 7*8 step: ones digit 7 (7*8=56) or tens digit 7 (7*8+c):
    # 9 + 10 - 1 (77*8). The item's other 22 examples practise its skill without the step, and say so.
    first = examples[:40]  # the step item's, in plan order
    at_step = [e for e in first if e.provenance.generator.step == "7*8"]
    assert {e.provenance.skill_id for e in first} == {"mul.by_digit"} and len(at_step) == 18
    assert all(e.provenance.generator.step is None for e in examples[40:])
    assert all(has_step(e.problem, "7*8") for e in at_step)
    assert {e.problem.question for e in at_step} == {f"{a}*8=" for a in range(10, 100) if "7" in str(a)}
    # ``like`` keeps every unexplained error as problems like it, whatever its step.
    like = TPDPolicy(DOMAIN, 100, "rationale", BUGS_CFG).plan(feedback(errors))
    assert all(i.step is None for i in like.items)
    assert [i.like for i in like.items if i.like is not None] == [e.problem for e in errors]
