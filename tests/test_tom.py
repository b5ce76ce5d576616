"""The theory-of-mind teacher: explanations, strategies, mental models, the policy, the LLM parts."""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest
from feedbacks import feedback

from tutorkd.agents.teacher import build_teacher
from tutorkd.agents.tom.calibration import auc, calibration
from tutorkd.agents.tom.interventions import (
    STRATEGIES,
    ItemSignals,
    budget_curve,
    corrupt,
    curve_area,
    error_steps,
    explain,
    first_wrong_step,
    flip_demonstrations,
    strategy_scores,
)
from tutorkd.agents.tom.mental_models import (
    LogisticStudentModel,
    SimulatedStudent,
    TransformersScorer,
    simulation_demos,
)
from tutorkd.agents.tom.teacher import LLMExplainer, ToMPolicy, personalized_demos
from tutorkd.config import TeacherConfig, ToMConfig
from tutorkd.protocols import Completion, GenerationContext, SamplingConfig
from tutorkd.schema import Attempt, Problem, StudentVersion
from tutorkd.verify import verify

EASY, HOPELESS = "add.no_carry", "mul.by_digit"


class RuleStudent:
    """Right alone on ``EASY``; elsewhere right only with the full rationale, never on ``HOPELESS``.

    Wrong answers show reasoning whose second step is wrong, so its error pattern is step 1.
    """

    version = StudentVersion(name="base", round=0)

    def __init__(self, domain) -> None:
        self.domain = domain

    def answer(self, problems: Sequence[Problem],
               explanations: Sequence[str | None] | None = None) -> list[Attempt]:
        out = []
        for p, e in zip(problems, explanations or [None] * len(problems), strict=True):
            skill = p.skill_ids[0]
            right = skill == EASY or (skill != HOPELESS and e == p.rationale)
            output = f"A:{p.answer}" if right else f"R:{p.rationale.split()[0]} 9=9 A:?"
            parsed, correct = self.domain.check(p, output)
            out.append(Attempt(problem=p, output=output, parsed_answer=parsed, correct=correct,
                               explanation=e))
        return out


def _problem(domain, skill: str, seed: int = 0) -> Problem:
    return domain.sample(skill, 1, random.Random(seed))[0]


def test_explanation_styles_and_wrong_explanations(domain) -> None:
    p = domain.make("add.carry", (47, 38))  # 7+8=15 4+3+1=8
    assert explain(p, "full") == "7+8=15 4+3+1=8"
    assert explain(p, "first") == "7+8=15"
    assert explain(p, "error_step", 0) == "7+8=15" and explain(p, "error_step", 5) == "7+8=15 4+3+1=8"
    rng = random.Random(0)
    for skill in domain.tree.leaves():
        for q in domain.sample(skill, 20, rng):
            wrong = corrupt(q, rng)
            assert wrong != q.rationale and set(wrong) <= set(domain.alphabet)
            assert wrong.split()[:-1] == q.rationale.split()[:-1]  # only the final step is changed


def test_error_pattern_from_reasoning(domain) -> None:
    p = domain.make("add.carry", (47, 38))
    assert first_wrong_step(p, "R:7+8=15 4+3=7 A:75") == 1
    assert first_wrong_step(p, "R:7+8=14 4+3=7 A:74") == 0
    assert first_wrong_step(p, "R:7+8=15 A:15") == 1  # stopped early
    assert first_wrong_step(p, "R:7+8=15 4+3+1=8 A:58") == 1  # steps right, answer wrong: last step
    assert first_wrong_step(p, "A:75") is None
    assert first_wrong_step(p, "4+3=7 A:75", explanation="7+8=15") == 1  # continuing a partial explanation
    assert first_wrong_step(p, "A:85", explanation="7+8=15") == 1
    wrong = [Attempt(problem=p, output=o, parsed_answer="0", correct=False)
             for o in ("R:7+8=15 4+3=7 A:75", "R:7+8=15 4+3=7 A:75", "R:7+8=14 A:4")]
    assert error_steps(wrong) == {"add.carry": 1}
    q = domain.make("sub.borrow", (85, 38))  # 15-8=7 7-3=4
    after_first = Attempt(problem=q, output="8-3=5 A:57", parsed_answer="57", correct=False,
                          explanation="15-8=7")
    after_full = after_first.model_copy(update={"explanation": q.rationale, "output": "A:57"})
    assert error_steps([after_first]) == {"sub.borrow": 1} and error_steps([after_full]) == {}


def test_flip_demonstrations_keep_only_explanations_that_turned_the_student_right(domain) -> None:
    problems = [_problem(domain, "add.carry", s) for s in range(4)]
    student = RuleStudent(domain)
    pre = student.answer(problems)
    post = student.answer(problems, [p.rationale if i % 2 else explain(p, "first")
                                     for i, p in enumerate(problems)])
    kept = flip_demonstrations(pre, post, k=5)
    assert [a.problem for a in kept] == [problems[1], problems[3]]
    assert personalized_demos(pre, post, 1) == [(problems[1], problems[1].rationale)]


def test_budget_curves_run_from_alone_to_all_explained_and_oracle_is_best() -> None:
    rng = np.random.default_rng(0)
    pre, post = rng.random(200) < 0.5, rng.random(200) < 0.8
    signals = ItemSignals(pre_pred=tuple(rng.random(200)), post_pred=tuple(rng.random(200)),
                          teacher_confidence=(1.0,) * 200, true_pre=tuple(pre * 0.9),
                          true_post=tuple(post * 0.9), pre_correct=tuple(pre), post_correct=tuple(post))
    curves = {s: budget_curve(strategy_scores(s, signals), pre, post) for s in STRATEGIES + ("misaligned",)}
    for name, curve in curves.items():
        assert curve[0] == pytest.approx(pre.mean()) and curve[-1] == pytest.approx(post.mean())
        assert all(o >= c - 1e-12 for o, c in zip(curves["oracle"], curve, strict=True)), name
    # Random is linear in expectation; a constant teacher confidence is random order.
    assert curves["random"][2] == pytest.approx(pre.mean() + 0.4 * (post.mean() - pre.mean()), abs=0.02)
    assert curves["teacher_confidence"] == pytest.approx(curves["random"], abs=0.02)
    assert curves["true_utility"] == pytest.approx(curves["oracle"])  # here P(gold) is 0.9 * correct
    assert curve_area((0.0, 1.0), (0.2, 0.6)) == pytest.approx(0.4)
    with pytest.raises(ValueError, match="needs post_pred"):
        strategy_scores("expected_utility", ItemSignals(pre_pred=(0.1,)))


def test_auc_brier_and_reliability() -> None:
    assert auc([0.1, 0.2, 0.8, 0.9], [False, False, True, True]) == 1.0
    assert auc([0.9, 0.8, 0.2, 0.1], [False, False, True, True]) == 0.0
    assert auc([0.5, 0.5, 0.5], [True, False, True]) == 0.5
    assert auc([0.3, 0.4], [True, True]) is None
    cal = calibration([0.05, 0.15, 0.95, 1.0], [False, False, True, True], bins=10)
    assert cal.brier == pytest.approx((0.05**2 + 0.15**2 + 0.05**2) / 4)
    assert sum(b.n for b in cal.bins) == 4 and cal.bins[-1].n == 2 and cal.bins[-1].observed == 1.0


def _quiz(domain, student, n: int, seed: int) -> list[Attempt]:
    rng = random.Random(seed)
    problems = [p for s in domain.tree.leaves() for p in domain.sample(s, n, rng)]
    return student.answer(problems) + student.answer(problems, [p.rationale for p in problems])


def test_learned_model_tracks_mastery_and_intervention_effect(domain) -> None:
    student = RuleStudent(domain)
    model = LogisticStudentModel(domain.tree.leaves()).fit(_quiz(domain, student, 15, seed=1))
    probe = [_problem(domain, s, 99) for s in (EASY, "sub.borrow", HOPELESS)]
    easy, helped, hopeless = model.predict(probe, [p.rationale for p in probe])
    assert easy.pre > 0.85 and helped.pre < 0.15 and helped.post > 0.85 and hopeless.post < 0.15
    assert helped.utility > 0.7 > max(easy.utility, hopeless.utility)
    assert model.error_steps["sub.borrow"] == 1
    # The first step alone never helps this student, and the model has seen explanations of both kinds.
    attempts = _quiz(domain, student, 15, seed=2)
    firsts = [a.problem for a in attempts if a.explanation is None]
    model.fit(attempts + student.answer(firsts, [explain(p, "first") for p in firsts]))
    (style, text), = model.personalized([probe[1]], ("first", "full"))
    assert style == "full" and text == probe[1].rationale
    held = _quiz(domain, student, 5, seed=3)
    pred = model.p_correct([a.problem for a in held], [a.explanation for a in held])
    cal = calibration(pred, [a.correct for a in held])
    assert cal.auc > 0.95 and cal.brier < 0.05


def test_the_difficulty_term_ranks_the_items_of_one_skill(domain) -> None:
    rng = random.Random(4)
    problems = domain.sample("multi.add_add", 120, rng)
    middle = float(np.median([len(p.rationale) for p in problems]))
    # a student that fails exactly the items with longer worked solutions (more digits to carry)
    attempts = [Attempt(problem=p, output="", parsed_answer=None, correct=len(p.rationale) < middle)
                for p in problems]
    plain = LogisticStudentModel(domain.tree.leaves()).fit(attempts)
    itemwise = LogisticStudentModel(domain.tree.leaves(), difficulty=True).fit(attempts)
    probe = sorted(domain.sample("multi.add_add", 40, random.Random(5)), key=lambda p: len(p.rationale))
    flat = plain.p_correct(probe, [None] * len(probe))
    ranked = itemwise.p_correct(probe, [None] * len(probe))
    assert np.ptp(flat) < 1e-9  # without the term every item of the skill is alike
    assert ranked[0] > 0.5 > ranked[-1] and itemwise.state().weights["difficulty"] < -1.0
    assert calibration(ranked, [len(p.rationale) < middle for p in probe]).auc > 0.9


class FakeScorer:
    """Every answer token gets probability 0.9 after a post prompt, 0.2 after a pre prompt."""

    def __init__(self) -> None:
        self.prompts: list[str] = []

    def score(self, prompts: Sequence[str], continuations: Sequence[str]) -> list[tuple[float, ...]]:
        self.prompts += prompts
        return [(np.log(0.9 if p.endswith("So the answer is ") else 0.2),) * len(c)
                for p, c in zip(prompts, continuations, strict=True)]


def test_simulation_prompts_show_the_students_answers(domain) -> None:
    student = RuleStudent(domain)
    attempts = _quiz(domain, student, 4, seed=4)
    pre_demos, post_demos = simulation_demos(attempts, attempts, 4, random.Random(0))
    assert sum(d.prediction == d.gold for d in pre_demos) == 2  # balanced right/wrong
    assert all(d.explanation is None for d in pre_demos) and all(d.explanation for d in post_demos)
    assert {d.prediction for d in pre_demos} & {"?"}  # the student's wrong answers, not the gold
    scorer = FakeScorer()
    sim = SimulatedStudent(scorer, pre_demos, post_demos)
    p = _problem(domain, "add.carry")
    (belief,) = sim.predict([p], [p.rationale])
    assert belief.pre == pytest.approx(0.2) and belief.post == pytest.approx(0.9)
    assert scorer.prompts[0].startswith("Simulate an AI model's answer for the given question.\n\nQ: ")
    assert scorer.prompts[0].endswith(f"Q: {p.question}\nCorrect Answer: {p.answer}\nAI Predicted Answer: ")
    assert scorer.prompts[1].endswith(f"AI Predicted Answer: {p.rationale} So the answer is ")
    with pytest.raises(ValueError, match="need 3"):
        simulation_demos(attempts[:3], attempts, 6, random.Random(0))


@pytest.fixture(scope="module")
def tiny_llm(tmp_path_factory) -> Path:
    from tiny_llm import build_tiny_llm

    return build_tiny_llm(tmp_path_factory.mktemp("tiny-llm"))


def test_transformers_scorer_matches_generation_logprobs(tiny_llm: Path, domain) -> None:
    from tutorkd.llm.hf_backend import TransformersBackend

    prompts = ["Q: 47+38=\nA:", "Simulate an AI model's answer.\n\nQ: 9?"]
    generated = TransformersBackend(tiny_llm).generate(prompts, SamplingConfig(max_tokens=6, logprobs=True))
    scorer = TransformersScorer(tiny_llm, batch_size=2)
    for g, scored in zip(generated, scorer.score(prompts, [g.text for g in generated]), strict=True):
        assert len(scored) == len(g.text) and np.allclose(scored, g.token_logprobs[: len(g.text)], atol=1e-4)
    # The simulation on the tiny LM: probabilities are the mean of the forced answer tokens' probabilities.
    attempts = _quiz(domain, RuleStudent(domain), 2, seed=5)
    sim = SimulatedStudent(scorer, *simulation_demos(attempts, attempts, 2, random.Random(0)))
    p = _problem(domain, "add.carry")
    (belief,) = sim.predict([p], [p.rationale])
    pre = np.mean(np.exp(scorer.score([sim.prompt(p, None)], [p.answer])[0]))
    assert belief.pre == pytest.approx(pre) and 0 < belief.post < 1


def test_llm_explainer_extracts_explanations_and_counts_malformed(domain, tiny_llm: Path) -> None:
    p, q = domain.make("add.carry", (47, 38)), domain.make("add.carry", (29, 13))
    texts, seen = [" 7+8=15 4+3+1=8 So the answer is 85.", " hello", "\n"], []

    class Scripted:
        def generate(self, prompts: Sequence[str], params: SamplingConfig) -> list[Completion]:
            seen.extend(prompts)
            return [Completion(text=t) for t in texts]

    explainer = LLMExplainer(Scripted(), [(q, q.rationale)], domain.alphabet)
    assert explainer.explain([p, p, p]) == ["7+8=15 4+3+1=8", None, None] and explainer.malformed == 2
    assert seen[0] == f"Q: 29+13=\nA: {q.rationale} So the answer is 42\n\nQ: 47+38=\nA:"
    from tutorkd.llm.hf_backend import TransformersBackend

    garbage = LLMExplainer(TransformersBackend(tiny_llm), [(q, q.rationale)], domain.alphabet,
                           SamplingConfig(max_tokens=8))
    out = garbage.explain([p, q])
    assert garbage.malformed == sum(e is None for e in out)
    assert all(set(e) <= set(domain.alphabet) for e in out if e is not None)


def test_tom_teacher_explains_where_utility_is_highest(domain) -> None:
    cfg = TeacherConfig(name="tom", policy="tom", engine="items", per_round=30,
                        tom=ToMConfig(quiz_per_skill=10, check_per_skill=4, replay_share=0.0,
                                      max_skill_share=1.0))
    with pytest.raises(ValueError, match="pass student="):
        build_teacher(cfg, domain)
    student = RuleStudent(domain)
    teacher = build_teacher(cfg, domain, exclude=frozenset({"10+10="}), student=student)
    fb = feedback(domain, {EASY: 1.0, HOPELESS: 0.0})
    plan = teacher.plan(fb)
    skills = {i.like.skill_ids[0] for i in plan.items}
    assert plan.total == 30 and not skills & {EASY, HOPELESS}
    (name, view), = [v for v in teacher.views() if v[0] == "calibration.json"]
    assert view.pre.auc > 0.95 and view.post.auc > 0.95 and view.mean_utility > 0.7
    assert view.skills[EASY].predicted > 0.8 and view.skills[EASY].observed == 1.0
    # Seeded by round: another policy plans the same; the next round draws anew.
    again = ToMPolicy(domain, 30, cfg.tom, student=RuleStudent(domain), exclude=frozenset({"10+10="}))
    assert again.plan(fb) == plan and again.plan(fb.model_copy(update={"round": 1})) != plan
    context = GenerationContext(run_id="run", round=1, teacher="tom", seed=0,
                                avoid=frozenset({plan.items[0].like.question}))
    examples = teacher.generate(plan, context)
    result = verify(examples, domain, frozenset())
    assert len(examples) == 29 and len(result.kept) == 29
    assert [e.problem for e in examples] == [i.like for i in plan.items[1:]]
    assert all(e.completion.startswith("R:") for e in examples)


def test_tom_teacher_caps_each_skill_and_replays_every_skill(domain) -> None:
    cfg = ToMConfig(quiz_per_skill=10, check_per_skill=4, replay_share=0.3, max_skill_share=0.25)
    policy = ToMPolicy(domain, 40, cfg, student=RuleStudent(domain), exclude=frozenset())
    plan = policy.plan(feedback(domain, {EASY: 1.0, HOPELESS: 0.0}))
    skills = [i.like.skill_ids[0] for i in plan.items]
    by_utility, replay = Counter(skills[:28]), Counter(skills[28:])
    # 28 chosen by utility (cap ceil(0.25 * 28) = 7 per skill), then 12 round-robin over all 9 skills.
    assert plan.total == 40 and len(set(i.like.question for i in plan.items)) == 40
    assert max(by_utility.values()) <= 7 and not set(by_utility) & {EASY, HOPELESS}
    assert set(replay) == set(domain.tree.leaves()) and max(replay.values()) - min(replay.values()) <= 1


@pytest.mark.vllm
def test_real_student_uses_explanations_and_is_misled_by_wrong_ones(vllm_backend, tiny_base, tiny_cfg, domain,
                                                                    tmp_path) -> None:
    from tutorkd.students.student import LoRAStudent

    student = LoRAStudent(domain, vllm_backend, tiny_base, tiny_cfg, tmp_path)
    rng = random.Random(0)
    problems = [p for s in domain.tree.leaves() for p in domain.sample(s, 6, rng)]
    alone, full, wrong = (np.mean([a.correct for a in student.answer(problems, e)]) for e in (
        None, [p.rationale for p in problems], [corrupt(p, rng) for p in problems]))
    assert full > alone + 0.1 and wrong < alone - 0.1
    policy = ToMPolicy(domain, 20, ToMConfig(quiz_per_skill=3, check_per_skill=2), student=student,
                       exclude=frozenset())
    plan = policy.plan(feedback(domain, {}))
    (_, view), = policy.views()
    assert plan.total == 20 and view.quizzed == 9 * 5 * 4 and view.pre.n == 9 * 2
