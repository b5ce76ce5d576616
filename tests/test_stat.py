"""STAT on the arithmetic domain: the missing-skill profile, STAT-Sel's pool, STAT-Syn's filters."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import pytest
from feedbacks import feedback

from tutorkd.agents.stat.profile import EnvironmentLabels, SkillProfile, build_profile
from tutorkd.agents.stat.teacher import (
    PoolEngine,
    ProceduralSolver,
    SkillPool,
    Solution,
    StatPolicy,
    SynthesisEngine,
    SynthesisStats,
    agreeing,
)
from tutorkd.agents.teacher import build_teacher
from tutorkd.config import TeacherConfig, load_config
from tutorkd.environments.arithmetic import ArithmeticDomain
from tutorkd.environments.heldout import HeldOut
from tutorkd.io import read_json, write_json
from tutorkd.loop import LoopState, TeachingLoop, round_dir
from tutorkd.protocols import GenerationContext
from tutorkd.schema import EnvState, Plan, PlanItem, Problem, StructureLevel, StudentVersion
from tutorkd.verify import verify

REPO = Path(__file__).resolve().parents[1]
DOMAIN = ArithmeticDomain()
LEAVES = DOMAIN.tree.leaves()
HELDOUT = HeldOut.build(DOMAIN, test_per_skill=60, val_per_skill=20, seed=1)
EXCLUDE = HELDOUT.reserved
"""What ``build_loop`` gives teachers to exclude: the whole evaluation half of the problem space."""
CONTEXT = GenerationContext(run_id="run", round=1, teacher="t", seed=3)
WEAK = {"add.carry": 0.2, "sub.borrow": 0.5, "mul.by_digit": 0.0}
"""Validation accuracy of the synthetic student on its weak skills (20 problems each; others perfect)."""


def test_the_profile_counts_each_skill_the_student_failed_in() -> None:
    fb = feedback(DOMAIN, WEAK, round=2)
    profile = build_profile(fb, EnvironmentLabels())
    assert profile.counts == {"mul.by_digit": 20, "add.carry": 16, "sub.borrow": 10}
    assert list(profile.counts) == ["mul.by_digit", "add.carry", "sub.borrow"]  # most frequent first
    assert (profile.difficult, profile.invalid, profile.student_round) == (46, 0, 2)
    assert {q.question for q in profile.questions} == {a.problem.question for a in fb.errors}


def test_environment_labels_refuse_open_ended_feedback_and_name_the_fix() -> None:
    fb = feedback(DOMAIN, WEAK, level=StructureLevel.OPEN_ENDED)
    with pytest.raises(ValueError, match="skill_list or skill_tree.*stat.labeler: llm"):
        StatPolicy(EnvironmentLabels(), LEAVES, 100, "rationale").plan(fb)


@pytest.mark.parametrize(("k", "per_round", "expected"), [
    (2, 1000, {"mul.by_digit": 40, "add.carry": 32, "sub.borrow": 20}),  # k per occurrence fits the round
    (50, 460, {"mul.by_digit": 200, "add.carry": 160, "sub.borrow": 100}),  # too many: scaled to the round
    (None, 92, {"mul.by_digit": 40, "add.carry": 32, "sub.borrow": 20}),  # k unset: fill the round
])
def test_stat_asks_per_missing_skill_in_proportion_to_the_profile(
    k: int | None, per_round: int, expected: dict[str, int]
) -> None:
    policy = StatPolicy(EnvironmentLabels(), LEAVES, per_round, "rationale", k)
    plan = policy.plan(feedback(DOMAIN, WEAK))
    assert {i.skill_id: i.count for i in plan.items} == expected
    ((name, profile),) = policy.views()
    assert name == "skill_profile.json" and isinstance(profile, SkillProfile)


def test_stat_replays_every_skill_and_gives_the_rest_by_the_profile() -> None:
    # 100 examples, share 0.18: 18 replayed (2 per leaf), 82 split 20:16:10 -> 36 / 28 / 18 (rounded).
    policy = StatPolicy(EnvironmentLabels(), LEAVES, 100, "rationale", replay_share=0.18)
    plan = policy.plan(feedback(DOMAIN, WEAK))
    counts = {i.skill_id: i.count for i in plan.items}
    assert plan.total == 100 and set(counts) == set(LEAVES)
    assert (counts["mul.by_digit"], counts["add.carry"], counts["sub.borrow"]) == (2 + 36, 2 + 28, 2 + 18)
    assert all(counts[s] == 2 for s in LEAVES if s not in WEAK)
    assert "18 replayed evenly over 9 skills" in plan.reasoning
    with pytest.raises(ValueError, match="replay_share 1.5"):
        StatPolicy(EnvironmentLabels(), LEAVES, 100, "rationale", replay_share=1.5)


def test_stat_with_no_errors_falls_back_to_uniform_and_respects_the_budget() -> None:
    plan = StatPolicy(EnvironmentLabels(), LEAVES, 90, "rationale").plan(feedback(DOMAIN, {}))
    assert [i.count for i in plan.items] == [10] * 9 and "no labelled difficult question" in plan.reasoning
    capped = StatPolicy(EnvironmentLabels(), LEAVES, 90, "rationale")
    assert capped.plan(feedback(DOMAIN, WEAK, used=990, total=1000)).total == 10


def test_learnability_weights_the_profile_by_measured_progress_and_resumes(tmp_path: Path) -> None:
    learn = StatPolicy(EnvironmentLabels(), LEAVES, 92, "rationale", learnability=(0.5, 2.0))
    first = {i.skill_id: i.count for i in learn.plan(feedback(DOMAIN, WEAK)).items}
    # Nothing measured yet: the profile as published (20:16:10 of 92)
    assert first == {"mul.by_digit": 40, "add.carry": 32, "sub.borrow": 20}
    ((_, _), (name, state)) = learn.views()
    write_json(tmp_path / name, state)
    # add.carry gained 0.4 on its 32 examples, mul.by_digit nothing on 40, sub.borrow 0.1 on 20
    later = {"add.carry": 0.6, "sub.borrow": 0.6, "mul.by_digit": 0.0}
    second = {i.skill_id: i.count for i in learn.plan(feedback(DOMAIN, later, round=1)).items}
    plain = {i.skill_id: i.count for i in StatPolicy(EnvironmentLabels(), LEAVES, 92, "rationale").plan(
        feedback(DOMAIN, later, round=1)).items}
    assert learn.state is not None
    assert learn.state.gain["add.carry"] == pytest.approx(0.4 / 32)
    # over the median positive gain (add.carry's, the upper of two), clipped to [0.5, 2]
    assert learn.state.factors == {"mul.by_digit": 0.5, "add.carry": 1.0, "sub.borrow": 0.5}
    assert second["mul.by_digit"] < plain["mul.by_digit"] and second["add.carry"] > plain["add.carry"]
    resumed = StatPolicy(EnvironmentLabels(), LEAVES, 92, "rationale", learnability=(0.5, 2.0))
    resumed.restore(tmp_path)
    assert {i.skill_id: i.count for i in resumed.plan(feedback(DOMAIN, later, round=1)).items} == second
    with pytest.raises(ValueError, match="skill_list or skill_tree.*learnability: null"):
        learn.factors(feedback(DOMAIN, WEAK, level=StructureLevel.OPEN_ENDED), ["add.carry"], (0.5, 2.0))


def test_the_pool_is_seeded_distinct_and_excludes_held_out_questions() -> None:
    pool = SkillPool(DOMAIN, per_skill=300, seed=0, exclude=EXCLUDE)
    again = SkillPool(DOMAIN, per_skill=300, seed=0, exclude=EXCLUDE)
    assert pool.problems("add.carry") == again.problems("add.carry")
    assert pool.problems("add.carry") != SkillPool(DOMAIN, 300, 1, EXCLUDE).problems("add.carry")
    for skill in LEAVES:
        problems = pool.problems(skill)
        assert len({p.question for p in problems}) == len(problems) == 300
        assert all(p.skill_ids == (skill,) and p.question not in EXCLUDE for p in problems)
    # mul.by_digit has 720 questions: asking for more clamps the pool to its training half.
    big = SkillPool(DOMAIN, per_skill=1000, seed=0, exclude=EXCLUDE)
    training = [f"{a}*{d}=" for a in range(10, 100) for d in range(2, 10) if f"{a}*{d}=" not in EXCLUDE]
    assert big.sizes()["mul.by_digit"] == len(training) < 400


def test_stat_sel_draws_distinct_pool_problems_and_runs_dry_gracefully() -> None:
    pool = SkillPool(DOMAIN, per_skill=50, seed=0, exclude=EXCLUDE)
    plan = Plan(items=(PlanItem(count=30, skill_id="add.carry"), PlanItem(count=70, skill_id="sub.borrow")))
    avoid = frozenset(p.question for p in pool.problems("add.carry")[:25])
    examples = PoolEngine(DOMAIN, pool).generate(plan, CONTEXT.model_copy(update={"avoid": avoid}))
    by_skill = Counter(ex.provenance.skill_id for ex in examples)
    assert by_skill == {"add.carry": 25, "sub.borrow": 50}  # 25 left after avoid; the pool holds 50
    pool_questions = pool.questions()
    assert all(ex.problem.question in pool_questions and ex.problem.question not in avoid for ex in examples)
    assert {ex.provenance.generator.engine for ex in examples} == {"stat_pool"}
    result = verify(examples, DOMAIN, HELDOUT.questions)
    assert len(result.kept) == len(examples)


def test_the_consistency_filter_keeps_a_strict_majority_of_at_least_min_agree() -> None:
    def sols(*answers: str | None) -> list[Solution]:
        return [Solution(text=f"A:{a}", answer=a) for a in answers]

    assert agreeing(sols("5", "5", "7"), 2) == ("5", sols("5", "5"))
    assert agreeing(sols("5", "6", "7"), 2) == (None, [])
    assert agreeing(sols("5", "5", "7", "7"), 2) == (None, [])  # a tie is not agreement
    assert agreeing(sols(None, None, "5"), 2) == (None, [])  # unparseable answers never vote
    assert agreeing(sols("5", "5", "5"), 3)[0] == "5"


def test_stat_syn_with_the_procedural_solver_keeps_every_new_problem() -> None:
    pool = SkillPool(DOMAIN, per_skill=200, seed=0, exclude=EXCLUDE)
    engine = SynthesisEngine(DOMAIN, pool, ProceduralSolver(DOMAIN), EXCLUDE)
    plan = Plan(items=(PlanItem(count=20, skill_id="add.carry"),
                       PlanItem(count=10, skill_id="mul.by_digit", style="direct")))
    examples = engine.generate(plan, CONTEXT)
    assert engine.last_stats.model_dump() == {"proposed": 30, "inconsistent": 0, "unverified": 0, "kept": 30}
    for ex in examples:
        ref = ex.provenance.generator.source_problem_id
        assert ref in {p.id for p in pool.problems(ex.provenance.skill_id)}  # a reference of its skill
        assert ex.problem.question not in HELDOUT.questions and ex.problem.id != ref
        assert ex.provenance.generator.engine == "stat_synthesis"
    assert len(verify(examples, DOMAIN, HELDOUT.questions).kept) == 30
    assert examples == engine.generate(plan, CONTEXT)  # deterministic


def test_stat_syn_fills_a_small_skill_whose_pool_holds_its_whole_training_half() -> None:
    pool = SkillPool(DOMAIN, per_skill=1000, seed=0, exclude=EXCLUDE)
    engine = SynthesisEngine(DOMAIN, pool, ProceduralSolver(DOMAIN), EXCLUDE)
    examples = engine.generate(Plan(items=(PlanItem(count=30, skill_id="mul.by_digit"),)), CONTEXT)
    assert len(examples) == 30 and not any(ex.problem.question in EXCLUDE for ex in examples)


class NoisySolver:
    """Three solutions per problem whose answers depend on the problem: agree right, 2-of-3 right,
    all different, or two agreeing on a wrong answer (by the question's hash mod 4)."""

    name = "noisy"

    def __init__(self, domain: ArithmeticDomain) -> None:
        self.domain = domain

    @staticmethod
    def kind(p: Problem) -> int:
        return sum(map(ord, p.question)) % 4

    def solve(self, problems: Sequence[Problem], style: str, n: int, seed: int) -> list[list[Solution]]:
        out = []
        for p in problems:
            right, wrong = self.domain.completion(p, style), self.domain.completion(p, style) + "9"
            other = self.domain.completion(p, style) + "8"
            patterns = [[right] * 3, [right, wrong, right], [right, wrong, other], [wrong, right, wrong]]
            texts = patterns[self.kind(p)]
            out.append([Solution(text=t, answer=self.domain.check(p, t)[0]) for t in texts[:n]])
        return out


def test_stat_syn_drops_inconsistent_and_unverified_problems() -> None:
    pool = SkillPool(DOMAIN, per_skill=200, seed=0, exclude=EXCLUDE)
    engine = SynthesisEngine(DOMAIN, pool, NoisySolver(DOMAIN), EXCLUDE)
    proposer = SynthesisEngine(DOMAIN, pool, ProceduralSolver(DOMAIN), EXCLUDE)
    plan = Plan(items=(PlanItem(count=40, skill_id="add.carry"), PlanItem(count=40, skill_id="sub.borrow")))
    proposed = proposer.generate(plan, CONTEXT)
    kinds = Counter(NoisySolver.kind(ex.problem) for ex in proposed)
    assert all(kinds[k] for k in range(4))  # every noise pattern occurs
    kept = engine.generate(plan, CONTEXT)
    assert engine.last_stats.model_dump() == {
        "proposed": 80, "inconsistent": kinds[2], "unverified": kinds[3], "kept": kinds[0] + kinds[1]}
    assert {ex.id for ex in kept} == {ex.id for ex in proposed if NoisySolver.kind(ex.problem) < 2}
    assert len(verify(kept, DOMAIN, HELDOUT.questions).kept) == len(kept)  # only agreeing, right solutions


@pytest.mark.parametrize("spec", ["stat-sel.yaml", "stat-syn.yaml"])
def test_the_stat_specs_build_teachers_whose_plan_node_saves_the_profile(tmp_path: Path, spec: str) -> None:
    cfg = load_config(TeacherConfig, REPO / "agents" / spec).model_copy(update={"per_round": 60})
    cfg = cfg.model_copy(update={"stat": cfg.stat.model_copy(update={"pool_per_skill": 100})})
    teacher = build_teacher(cfg, DOMAIN, exclude=EXCLUDE)
    fb = feedback(DOMAIN, WEAK)
    write_json(round_dir(tmp_path, 0) / "feedback.json", fb)
    loop = TeachingLoop(run_dir=tmp_path, run_id="run", seed=0, env=None, teacher=teacher, domain=DOMAIN,
                        heldout=HELDOUT)
    loop._plan(LoopState(round=0))
    profile = read_json(round_dir(tmp_path, 1) / "skill_profile.json", SkillProfile)
    assert profile == build_profile(fb, EnvironmentLabels())
    plan = read_json(round_dir(tmp_path, 1) / "plan.json", Plan)
    examples = teacher.generate(plan, CONTEXT)
    by_skill = Counter(ex.provenance.skill_id for ex in examples)
    # 12 of 60 replayed over the 9 leaves (the first three get 2), 48 by the profile 20:16:10.
    assert by_skill == {"mul.by_digit": 21 + 1, "add.carry": 17 + 2, "sub.borrow": 10 + 1, "add.no_carry": 2,
                        "sub.no_borrow": 2, "cmp.lead": 1, "cmp.same_lead": 1, "multi.add_sub": 1,
                        "multi.add_add": 1}
    assert len(verify(examples, DOMAIN, HELDOUT.questions).kept) == 60
    base = EnvState(round=0, budget_used=0, student=StudentVersion(name="base", round=0))
    loop._generate(LoopState(round=0, env=base))
    saved = round_dir(tmp_path, 1) / "synthesis.json"
    if spec == "stat-syn.yaml":  # the filter counts of the round, saved beside its data
        assert read_json(saved, SynthesisStats) == SynthesisStats(proposed=60, inconsistent=0, unverified=0,
                                                                  kept=60)
    else:
        assert not saved.exists()


def test_stat_with_open_ended_feedback_fails_at_plan_time(tmp_path: Path) -> None:
    teacher = build_teacher(TeacherConfig(name="s", policy="stat", engine="stat_pool"), DOMAIN)
    with pytest.raises(ValueError, match="open-ended feedback strips them"):
        teacher.plan(feedback(DOMAIN, WEAK, level=StructureLevel.OPEN_ENDED))


def test_min_agree_above_the_solutions_is_a_config_error() -> None:
    with pytest.raises(ValueError, match="min_agree 4 exceeds"):
        TeacherConfig(name="s", policy="stat", engine="stat_synthesis", stat={"min_agree": 4})
