"""The teaching environment at its three structure levels, with a deterministic fake student."""

from __future__ import annotations

import logging
import random
from collections.abc import Sequence

import pytest

from tutorkd.config import ArithmeticEnvConfig
from tutorkd.environments.arithmetic import ArithmeticDomain
from tutorkd.environments.env import TeachingEnv
from tutorkd.environments.heldout import HeldOut
from tutorkd.io import write_jsonl
from tutorkd.schema import (
    Attempt,
    EnvState,
    Example,
    GeneratorParams,
    Problem,
    Provenance,
    StructureLevel,
    StudentVersion,
    Trained,
    TrainStats,
)

DOMAIN = ArithmeticDomain()
BASE = StudentVersion(name="base", round=0)


class FakeStudent:
    """Right on ``known`` skills, wrong elsewhere, no answer at all on ``garbled`` skills; training on
    examples makes their skills known. Records every ``train`` call."""

    def __init__(self, known: set[str], garbled: set[str] = frozenset()) -> None:
        self.known = set(known)
        self.garbled = set(garbled)
        self.version = BASE
        self.calls: list[tuple[int, int, StudentVersion | None]] = []
        self.answer_calls = 0

    def answer(self, problems: Sequence[Problem], explanations=None) -> list[Attempt]:
        self.answer_calls += 1
        attempts = []
        for p in problems:
            skill = p.skill_ids[0]
            if skill in self.garbled:
                output = "R:1+1=2"
            elif skill in self.known:
                output = DOMAIN.completion(p, "rationale")
            else:
                output = "A:99999"  # never a gold answer (2-digit operands)
            parsed, correct = DOMAIN.check(p, output)
            attempts.append(Attempt(problem=p, output=output, parsed_answer=parsed, correct=correct))
        return attempts

    def train(self, examples: Sequence[Example], round: int, init: StudentVersion | None) -> Trained:
        self.calls.append((round, len(examples), init))
        self.known |= {ex.problem.skill_ids[0] for ex in examples}
        self.garbled -= self.known
        self.version = StudentVersion(
            name=f"r{round}", round=round, adapter_path=f"/a/r{round}", lora_int_id=round
        )
        stats = TrainStats(examples=len(examples), steps=1, seconds=0.0, first_loss=1.0, last_loss=0.5,
                           losses=(1.0, 0.5))
        return Trained(version=self.version, stats=stats)

    def use(self, version: StudentVersion) -> None:
        self.version = version


HELDOUT = HeldOut.build(DOMAIN, test_per_skill=12, val_per_skill=10, seed=3)


@pytest.fixture
def heldout() -> HeldOut:
    return HELDOUT


def make(heldout, tmp_path, level="skill_tree", known=("add.no_carry",), garbled=(), **cfg) -> TeachingEnv:
    config = ArithmeticEnvConfig(level=level, test_per_skill=12, val_per_skill=10, **cfg)
    return TeachingEnv(DOMAIN, FakeStudent(set(known), set(garbled)), config, heldout, tmp_path)


def examples(skill: str, n: int, seed: int = 0) -> list[Example]:
    gen = GeneratorParams(engine="procedural", seed=seed, style="rationale")
    prov = Provenance(run_id="t", round=1, teacher="t", skill_id=skill, generator=gen)
    problems = DOMAIN.sample(skill, n, random.Random(seed), exclude=HELDOUT.questions)
    return [
        Example(
            id=f"{skill}:{seed}:{i}",
            problem=p,
            prompt=DOMAIN.prompt(p),
            completion=DOMAIN.completion(p, "rationale"),
            provenance=prov,
        )
        for i, p in enumerate(problems)
    ]


def test_evaluate_scores_every_skill_with_branch_aggregates(heldout, tmp_path):
    env = make(
        heldout, tmp_path, level="open_ended", known=("add.no_carry", "add.carry"), garbled=("cmp.lead",)
    )
    ev = env.evaluate()
    assert env.student.answer_calls == 2  # one batched call per split
    assert (ev.val.n, ev.test.n) == (90, 108) and ev.val.split == "val" and ev.test.student == "base"
    val = {s.skill_id: s for s in ev.val.per_skill}
    assert val["add.carry"].accuracy == 1.0 and val["sub.borrow"].accuracy == 0.0
    assert (val["cmp.lead"].format_errors, val["sub.borrow"].format_errors) == (10, 0)
    nodes = {s.skill_id: s for s in ev.test.per_node}
    assert set(nodes) == {"add", "sub", "mul", "cmp", "multi"}
    assert (nodes["add"].n, nodes["add"].correct, nodes["cmp"].format_errors) == (24, 24, 12)
    assert ev.val.correct == 20 and len(ev.val_attempts) == 90


def test_open_ended_feedback_hides_labels_and_accuracies(heldout, tmp_path):
    env = make(heldout, tmp_path, level="open_ended", max_errors_shown=16)
    fb = env.reset()
    assert fb.level is StructureLevel.OPEN_ENDED
    assert fb.skill_accuracy is None and fb.node_accuracy is None and fb.tree is None
    assert len(fb.errors) == 16 and not any(a.correct for a in fb.errors)
    for a in fb.errors:
        assert a.problem.skill_ids == () and "." not in a.problem.id  # the id embedded the skill
    shown = {DOMAIN.classify(a.problem.question) for a in fb.errors}
    assert len(shown) == 8  # spread over the error list, not its first 16 entries
    assert fb == env.reset()  # deterministic choice


def test_skill_list_and_skill_tree_feedback(heldout, tmp_path):
    fb = make(heldout, tmp_path, level="skill_list").reset()
    assert fb.tree is None and fb.node_accuracy is None
    assert fb.skill_accuracy["add.no_carry"] == 1.0 and fb.skill_accuracy["mul.by_digit"] == 0.0
    assert all(a.problem.skill_ids for a in fb.errors)
    env = make(heldout, tmp_path, level="skill_tree", known=("add.carry", "sub.borrow", "cmp.lead"))
    ev = env.evaluate()
    fb = env.feedback(ev)
    assert fb.tree == DOMAIN.tree and len(fb.skill_accuracy) == 9
    for node, acc in fb.node_accuracy.items():
        leaves = [s for s in ev.val.per_skill if s.skill_id in DOMAIN.tree.leaves_under(node)]
        assert acc == pytest.approx(sum(s.correct for s in leaves) / sum(s.n for s in leaves))
    assert fb.node_accuracy["add"] == 0.5 and fb.node_accuracy["mul"] == 0.0
    assert (fb.budget_used, fb.budget_total, fb.round, fb.done) == (0, 3000, 0, False)


def test_step_trains_and_budget_is_cumulative(heldout, tmp_path, caplog):
    env = make(heldout, tmp_path, budget=50, rounds=5)
    fb = env.step(examples("sub.borrow", 30))
    assert fb.skill_accuracy["sub.borrow"] == 1.0 and (fb.round, fb.budget_used) == (1, 30)
    with caplog.at_level(logging.INFO):
        fb = env.step(examples("mul.by_digit", 30, seed=1))
    assert "20 of 30" in caplog.text
    assert (fb.budget_used, fb.done) == (50, True)
    first_version = env.student.calls[1][2]
    assert first_version.name == "r1"  # continue mode starts from the last adapter
    assert env.student.calls == [(1, 30, None), (2, 20, first_version)]
    assert env.admit(examples("cmp.lead", 5)) == []
    with pytest.raises(ValueError, match="admit"):
        env.train(examples("cmp.lead", 5), str(tmp_path / "x.jsonl"))
    assert [p.rsplit("/", 1)[-1] for p in env.state.data_files] == ["round1.jsonl", "round2.jsonl"]


def test_admit_drops_heldout_questions(heldout, tmp_path):
    env = make(heldout, tmp_path)
    leaked = examples("add.carry", 1)[0].model_copy(
        update={"problem": heldout.test["add.carry"][0], "id": "leak"}
    )
    batch = examples("add.carry", 3) + [leaked]
    assert env.admit(batch) == batch[:3]


def test_retrain_mode_reads_earlier_data_files(heldout, tmp_path):
    env = make(heldout, tmp_path, train_mode="retrain", rounds=2)
    first, second = examples("sub.borrow", 7), examples("mul.by_digit", 4, seed=1)
    write_jsonl(tmp_path / "d1.jsonl", first)
    env.train(first, str(tmp_path / "d1.jsonl"))
    write_jsonl(tmp_path / "d2.jsonl", second)
    env.train(second, str(tmp_path / "d2.jsonl"))
    assert env.student.calls == [(1, 7, None), (2, 11, None)]
    assert env.state.budget_used == 11 and env.state.round == 2
    assert env.reset().done  # the last round is done although budget is left


def test_restore_resumes_state_and_student(heldout, tmp_path):
    env = make(heldout, tmp_path)
    env.step(examples("sub.borrow", 5))
    saved = env.state
    env.step(examples("mul.by_digit", 5))
    other = make(heldout, tmp_path)
    other.restore(saved)
    assert other.state == saved and other.student.version.name == "r1"
    other.step(examples("cmp.lead", 3))
    assert other.student.calls[-1][2].name == "r1" and other.state.round == 2
    other.restore(EnvState(round=0, budget_used=0, student=BASE))
    assert other.student.version == BASE


def test_misreported_student_scores_fail_loud(heldout, tmp_path):
    env = make(heldout, tmp_path)
    honest = env.student.answer

    def lying(problems, explanations=None):
        return [a.model_copy(update={"correct": True}) for a in honest(problems)]

    env.student.answer = lying
    with pytest.raises(RuntimeError, match="unlike the domain"):
        env.evaluate()
