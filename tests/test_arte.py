"""The tiny teacher LM, ARTE (student preferences, real DPO of the teacher) and PerSyn routing."""

from __future__ import annotations

import math
import os
import random
from pathlib import Path

import pytest

from tutorkd.agents.arte.char_lm import CharTeacherLM, Draft, parse, spots, tag
from tutorkd.agents.arte.char_lm_engine import CharTeacherEngine, distribution, leaf_plan
from tutorkd.agents.arte.char_lm_pretrain import pretrain_example, pretrain_teacher
from tutorkd.agents.arte.dpo import align_teacher
from tutorkd.agents.arte.teacher import PreferencePair, preference_pairs, run_arte
from tutorkd.agents.persyn.teacher import ProceduralWriter, RoutedEngine, calibrate
from tutorkd.config import AlignConfig, ArteConfig, TeacherLMConfig
from tutorkd.environments.arithmetic import ArithmeticDomain
from tutorkd.environments.heldout import HeldOut
from tutorkd.protocols import GenerationContext
from tutorkd.schema import Plan, PlanItem
from tutorkd.verify import verify

DOMAIN = ArithmeticDomain()
HELDOUT = HeldOut.build(DOMAIN, test_per_skill=60, val_per_skill=20, seed=1)
CONTEXT = GenerationContext(run_id="t", round=1, teacher="arte", seed=0)
TEACHER_CFG = TeacherLMConfig(hidden_size=64, layers=2, heads=2, pretrain_steps=200, pretrain_batch=32)
"""A teacher small enough for tests (about 15 s to pretrain, then cached)."""


def teacher_cfg() -> TeacherLMConfig:
    """``TEACHER_CFG`` cached in the stable test cache."""
    root = Path(os.environ.get("TUTORKD_CACHE", Path.home() / ".cache" / "tutorkd")).expanduser()
    return TEACHER_CFG.model_copy(update={"cache_dir": str(root / "test-teachers")})


@pytest.fixture(scope="module")
def teacher() -> CharTeacherLM:
    """The tiny test teacher, pretrained once from its config."""
    lm = CharTeacherLM(pretrain_teacher(teacher_cfg(), DOMAIN, HELDOUT.reserved), DOMAIN)
    yield lm
    lm.close()


def test_the_pretraining_stream_varies_style_size_and_skill_and_avoids_the_eval_partition() -> None:
    rng = random.Random(0)
    cfg = TeacherLMConfig()
    pairs = [pretrain_example(DOMAIN, cfg, HELDOUT.reserved, rng) for _ in range(600)]
    drafts = [parse(DOMAIN, prompt[1:-1], completion) for prompt, completion in pairs]
    assert all(d.reject is None and d.teacher_correct for d in drafts)
    assert not any(d.problem.question in HELDOUT.reserved for d in drafts)
    styles = {d.style for d in drafts}
    assert styles == {"rationale", "direct"}
    branches = sum("." not in d.node for d in drafts) / len(drafts)
    assert 0.5 < branches < 0.7  # branch_share 0.6
    small = sum(all(s < 0.5 for s in spots(d.problem.question)) for d in drafts) / len(drafts)
    large = sum(all(s >= 0.5 for s in spots(d.problem.question)) for d in drafts) / len(drafts)
    assert (
        small > 0.3 and large > 0.25
    )  # 0.3 each asked for (add.no_carry has no large pair), plus lucky "any"
    assert len({d.problem.skill_ids[0] for d in drafts}) == 9


def test_parse_recomputes_the_gold_and_counts_what_it_cannot_use() -> None:
    wrong = parse(DOMAIN, "add", "47+38=R:7+8=14 4+3+1=8 A:84")
    assert wrong.reject is None and not wrong.teacher_correct
    assert wrong.completion == "R:7+8=15 4+3+1=8 A:85"  # the teacher's arithmetic is never taught
    assert parse(DOMAIN, "add.carry", "47+38=A:85").teacher_correct
    assert parse(DOMAIN, "sub", "47+38=A:85").reject == "off_skill"
    assert parse(DOMAIN, "add.no_carry", "47+38=A:85").reject == "off_skill"
    assert parse(DOMAIN, "add", "47+3=A:50").reject == "malformed"
    assert parse(DOMAIN, "add", "47+38=85").reject == "malformed"
    assert parse(DOMAIN, "add", "").reject == "malformed"
    # A space splits an operand: it classifies as a two-number sum but has three numbers.
    assert parse(DOMAIN, "add", "78+7 7=A:155").reject == "malformed"


def test_the_teacher_lm_writes_verified_examples_of_the_asked_skill(teacher: CharTeacherLM) -> None:
    engine = CharTeacherEngine(teacher, HELDOUT.reserved)
    plan = Plan(items=(PlanItem(count=12, skill_id="add"), PlanItem(count=6, skill_id="cmp.lead")))
    examples = engine.generate(plan, CONTEXT)
    stats = engine.last_stats
    assert stats.kept == len(examples) > 0
    assert (
        stats.sampled
        == stats.kept
        + stats.malformed
        + stats.off_skill
        + stats.eval_partition
        + stats.duplicate
        + stats.surplus
    )
    assert {e.provenance.skill_id for e in examples} <= {"add.carry", "add.no_carry", "cmp.lead"}
    assert not any(e.problem.question in HELDOUT.reserved for e in examples)
    gen = examples[0].provenance.generator
    assert gen.engine == "teacher_lm" and gen.model == teacher.name and gen.temperature == 1.0
    result = verify(examples, DOMAIN, HELDOUT.questions)
    assert len(result.kept) == len(examples)  # correct by construction: answers are recomputed
    assert distribution(examples, DOMAIN.tree.leaves()).n == len(examples)


def test_leaf_plan_splits_branches_evenly() -> None:
    plan = leaf_plan(
        Plan(items=(PlanItem(count=5, skill_id="add"), PlanItem(count=3, skill_id="mul"))), DOMAIN.tree
    )
    assert [(i.skill_id, i.count) for i in plan.items] == [
        ("add.no_carry", 3),
        ("add.carry", 2),
        ("mul.by_digit", 3),
    ]


def test_probe_gain_favours_an_example_of_the_probed_skill(tiny_base: Path) -> None:
    from tutorkd.agents.arte.learning_signal import StudentSignals

    signals = StudentSignals(tiny_base)
    probe = [(p.question, DOMAIN.completion(p, "rationale")) for p in HELDOUT.val["add.carry"][:8]]
    same = [
        (p.question, DOMAIN.completion(p, "rationale"))
        for p in DOMAIN.sample("add.carry", 4, random.Random(1))
    ]
    other = [
        (p.question, DOMAIN.completion(p, "rationale"))
        for p in DOMAIN.sample("cmp.lead", 4, random.Random(1))
    ]
    # Why 0.001, not the library's default 0.005: the claim is first-order (a step on an example of the
    # probed skill lowers its loss), and on one build host's tiny base 0.005 overshot: add.carry steps
    # raised the probe loss on 3 of 4 draws of 16, while at 0.001 they lowered it on every draw.
    gains = signals.probe_gain(same + other, probe, lr=0.001)
    assert sum(gains[:4]) > sum(gains[4:])
    before = signals.probe_loss(probe)
    assert signals.probe_loss(probe) == before  # every step was undone
    learn = signals.learnability(same)
    assert all(-10 < v < 0 for v in learn)


def test_preference_pairs_take_top_against_bottom_and_best_against_worst_solution() -> None:
    from tutorkd.agents.arte.teacher import ScoredQuestion, ScoredSolution

    def q(question: str, scores: list[float]) -> ScoredQuestion:
        sols = tuple(
            ScoredSolution(completion=f"{style}{question}", style=style, samples=1, score=s)
            for style, s in zip(("R:", "A:"), scores, strict=False)
        )
        return ScoredQuestion(
            task="add",
            question=question,
            skill_id="add.carry",
            solutions=sols,
            unusable=0,
            score=sum(scores) / len(scores),
        )

    scored = [q("1", [0.9, 0.1]), q("2", [0.4, 0.4]), q("3", [0.0, -0.2]), q("4", [0.2, 0.4])]
    pairs = preference_pairs(scored, ArteConfig(questions=4, question_pairs=3), seed=0)
    questions = [p for p in pairs if p.level == "question"]
    assert questions and all(p.chosen == "1R:1" and p.rejected == "3A:3" for p in questions)
    rationale = {p.prompt: (p.chosen, p.rejected) for p in pairs if p.level == "rationale"}
    assert rationale == {"#add:1": ("R:1", "A:1"), "#add:3": ("R:3", "A:3"), "#add:4": ("A:4", "R:4")}


def test_a_real_dpo_run_moves_the_teacher_towards_the_chosen(teacher: CharTeacherLM, tmp_path: Path) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    rng = random.Random(0)
    problems = [p for s in ("add.carry", "add.no_carry") for p in DOMAIN.sample(s, 8, rng, HELDOUT.reserved)]
    pairs = [
        PreferencePair(
            level="rationale",
            task="add",
            prompt=tag("add") + p.question,
            chosen=DOMAIN.completion(p, "rationale"),
            rejected=DOMAIN.completion(p, "direct"),
            margin=1.0,
        )
        for p in problems
    ]
    stats = align_teacher(
        teacher.model_dir,
        pairs,
        AlignConfig(epochs=2, batch_size=8, learning_rate=1e-4),
        tmp_path / "aligned",
        seed=0,
    )
    assert stats.steps == 4 and len(stats.loss) == len(stats.margins) == 4
    assert all(math.isfinite(v) for v in stats.loss + stats.margins)
    assert stats.loss[0] == pytest.approx(math.log(2), abs=1e-3)  # policy == reference at the first step

    def logp(folder: Path, prompt: str, completion: str) -> float:
        tok = AutoTokenizer.from_pretrained(folder)
        model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).eval()
        ids = tok([prompt + completion + tok.eos_token], return_tensors="pt")["input_ids"]
        start = len(tok(prompt)["input_ids"])
        with torch.no_grad():
            lp = torch.log_softmax(model(ids).logits[0, :-1], -1)
        return float(lp[torch.arange(start - 1, ids.shape[1] - 1), ids[0, start:]].sum())

    moved = [
        (logp(tmp_path / "aligned", p.prompt, p.chosen) - logp(teacher.model_dir, p.prompt, p.chosen))
        - (logp(tmp_path / "aligned", p.prompt, p.rejected) - logp(teacher.model_dir, p.prompt, p.rejected))
        for p in pairs[:4]
    ]
    assert sum(moved) > 0


def test_arte_end_to_end_on_a_small_draft(teacher: CharTeacherLM, tiny_base: Path, tmp_path: Path) -> None:
    from tutorkd.agents.arte.learning_signal import ProbeGain, StudentSignals

    cfg = ArteConfig(questions=6, rationales=3, probe_per_task=4, align=AlignConfig(epochs=1, batch_size=4))
    signals = StudentSignals(tiny_base)
    preference = ProbeGain(signals, DOMAIN, cfg.probe_lr)
    run = run_arte(
        teacher, signals, preference, HELDOUT, ["add"], cfg, HELDOUT.reserved, 0, tmp_path / "aligned"
    )
    assert run.drafts[0].questions == len(run.scored) <= 6
    assert run.probe_per_task == {"add": 4}
    assert run.pairs and run.align.steps >= 1 and len(run.align.margins) == run.align.steps
    aligned = CharTeacherLM(run.aligned_dir, DOMAIN, name="aligned")
    assert aligned.examples("add", 4, seed=1)  # the aligned teacher still writes
    aligned.close()


class _FakeSignals:
    """Learnability = minus the length of the completion (shorter completions are 'easier')."""

    def learnability(self, pairs: list[tuple[str, str]]) -> list[float]:
        return [-float(len(c)) for _, c in pairs]


class _Broken:
    name, temperature, domain = "broken", 1.0, DOMAIN

    def examples(self, node: str, n: int, seed: int) -> list[Draft]:
        return [parse(DOMAIN, node, "garbage") for _ in range(n)]


def test_persyn_routes_each_task_to_the_teacher_with_the_best_quality_and_learnability() -> None:
    writers = {
        "procedural": ProceduralWriter(DOMAIN, HELDOUT.reserved),
        "broken": _Broken(),
        "direct": ProceduralWriter(DOMAIN, HELDOUT.reserved, style="direct"),
    }
    routes = calibrate(
        writers, _FakeSignals(), ["add", "mul"], per_task=6, alpha=0.4, exclude=HELDOUT.reserved, seed=0
    )
    for route in routes:
        # equal quality (both correct), so the shorter, more 'learnable' direct completions win
        assert route.teacher == "direct"
        assert route.scores["broken"].usable == 0 and route.scores["broken"].score == 0
        assert route.scores["direct"].wins == 1.0
    routes = calibrate(
        writers, _FakeSignals(), ["add"], per_task=6, alpha=0.0, exclude=HELDOUT.reserved, seed=0
    )
    assert routes[0].scores["procedural"].score == routes[0].scores["direct"].score == 1.0
    engines = {n: CharTeacherEngine(w, HELDOUT.reserved, name=n) for n, w in writers.items()}
    engine = RoutedEngine({"add": "procedural", "mul": "direct"}, engines)
    examples = engine.generate(
        Plan(items=(PlanItem(count=4, skill_id="add"), PlanItem(count=3, skill_id="mul"))), CONTEXT
    )
    assert [e.provenance.generator.engine for e in examples] == ["procedural"] * 4 + ["direct"] * 3
    assert len({e.id for e in examples}) == 7 and engine.last_stats.kept == 7


def test_a_teacher_llm_writes_through_the_same_parser_and_its_garbage_is_counted(tmp_path: Path) -> None:
    from tiny_llm import build_tiny_llm

    from tutorkd.agents.persyn.teacher import LLMWriter
    from tutorkd.llm.hf_backend import TransformersBackend
    from tutorkd.llm.structured import StructuredLLM
    from tutorkd.protocols import SamplingConfig

    folder = build_tiny_llm(tmp_path / "llm")
    llm = StructuredLLM(lambda: TransformersBackend(folder), SamplingConfig(max_tokens=16), structured=False)
    writer = LLMWriter(llm, DOMAIN, model="tiny", temperature=1.0)
    prompt = writer.prompt("add", random.Random(0))
    assert "Add two 2-digit numbers." in prompt and prompt.count("\n") == 3  # instruction + two shots
    drafts = writer.examples("add", 3, seed=0)
    assert len(drafts) == 3 and all(d.reject is not None for d in drafts)  # a random model writes garbage
    assert llm.usage.calls == 3
    engine = CharTeacherEngine(writer, HELDOUT.reserved, name="llm")
    assert engine.generate(Plan(items=(PlanItem(count=1, skill_id="add"),)), CONTEXT) == []
    assert engine.last_stats.malformed + engine.last_stats.off_skill == engine.last_stats.sampled > 0


def test_icl_accuracy_scores_each_candidate_as_a_one_shot_demonstration(tiny_base: Path) -> None:
    from tutorkd.agents.arte.learning_signal import ICLAccuracy
    from tutorkd.llm.hf_backend import TransformersBackend
    from tutorkd.protocols import Completion

    class Echo:
        """A backend that answers every prompt with the gold answer of the question the demo names."""

        def __init__(self) -> None:
            self.prompts: list[str] = []

        def generate(self, prompts, params, version=None):  # noqa: ANN001, ANN202
            self.prompts += prompts
            return [Completion(text="A:85" if p.startswith("47+38=") else "A:0") for p in prompts]

    probe = [DOMAIN.make("add.carry", (47, 38)), DOMAIN.make("add.carry", (38, 47))]
    echo = Echo()
    scores = ICLAccuracy(echo, DOMAIN, separator=" ").scores([("47+38=", "A:85"), ("12+13=", "A:25")], probe)
    assert scores == [1.0, 0.0]  # 47+38 and 38+47 both sum to 85
    assert echo.prompts[0] == "47+38=A:85 47+38=" and len(echo.prompts) == 4
    real = ICLAccuracy(TransformersBackend(tiny_base), DOMAIN, separator=" ", max_tokens=8)
    assert all(0.0 <= s <= 1.0 for s in real.scores([("47+38=", "A:85")], probe))
