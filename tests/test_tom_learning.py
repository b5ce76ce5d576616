"""The ToM teacher's learning-utility model: gains measured from earlier rounds, the prior, the item
utility, and a policy that moves its data to the skill training is teaching (and resumes as unbroken)."""

from __future__ import annotations

import zlib
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest
from feedbacks import feedback

from tutorkd.agents.gains import progress_factors, updated_gains
from tutorkd.agents.tom.learning import learning_utility, skill_gain
from tutorkd.agents.tom.teacher import VIEW_FILE, ToMPolicy
from tutorkd.config import ToMConfig
from tutorkd.io import write_json
from tutorkd.schema import Attempt, Problem, StudentVersion


def test_gains_are_measured_per_example_and_smoothed() -> None:
    gain = updated_gains({}, {"a": 0.2, "b": 0.2}, {"a": 0.5, "b": 0.1}, {"a": 30, "b": 3},
                         smoothing=0.5, min_examples=5)
    assert gain == {"a": pytest.approx(0.01)}  # b had too few examples to be measured
    gain = updated_gains(gain, {"a": 0.5}, {"a": 0.5}, {"a": 10}, smoothing=0.5, min_examples=5)
    assert gain["a"] == pytest.approx(0.005)  # half the old estimate, half the new 0


def test_progress_factors_are_relative_to_the_median_and_clipped() -> None:
    gain = {"a": 0.01, "b": 0.002, "c": -0.01, "d": 0.04}
    assert progress_factors(gain, ["a", "b", "c", "d", "new"], (0.5, 2.0)) == {
        "a": 1.0, "b": 0.5, "c": 0.5, "d": 2.0, "new": 1.0}
    assert progress_factors({"c": -0.01}, ["c", "new"], (0.5, 2.0)) == {"c": 1.0, "new": 1.0}


def test_the_prior_favours_partly_known_skills_and_items_the_student_gets_wrong() -> None:
    per_skill = skill_gain(["known", "partly", "unknown", "measured"],
                           {"known": 1.0, "partly": 0.5, "unknown": 0.0, "measured": 0.3},
                           {"measured": -0.01})
    assert per_skill == {"known": 0.0, "partly": 1.0, "unknown": 0.0, "measured": 0.0}
    scaled = skill_gain(["partly", "measured"], {"partly": 0.5, "measured": 0.3}, {"measured": 0.02})
    assert scaled == {"partly": pytest.approx(0.02), "measured": pytest.approx(0.02)}
    utility = learning_utility(np.array([0.9, 0.1, 0.1]), ["partly", "partly", "measured"], scaled)
    assert utility == pytest.approx([0.002, 0.018, 0.018])
    with pytest.raises(ValueError, match="2 predictions for 1 items"):
        learning_utility(np.array([0.1, 0.2]), ["partly"], scaled)


class SkillStudent:
    """Right alone on a fixed share of each skill's questions (chosen by a hash of the question), and
    always right with the full rationale."""

    version = StudentVersion(name="base", round=0)

    def __init__(self, domain, accuracy: dict[str, float]) -> None:
        self.domain, self.accuracy = domain, accuracy

    def answer(self, problems: Sequence[Problem],
               explanations: Sequence[str | None] | None = None) -> list[Attempt]:
        out = []
        for p, e in zip(problems, explanations or [None] * len(problems), strict=True):
            knows = zlib.crc32(p.question.encode()) % 100 < 100 * self.accuracy.get(p.skill_ids[0], 0.0)
            right = knows or e == p.rationale
            output = f"A:{p.answer}" if right else "A:?"
            parsed, correct = self.domain.check(p, output)
            out.append(Attempt(problem=p, output=output, parsed_answer=parsed, correct=correct,
                               explanation=e))
        return out


def _counts(plan) -> Counter[str]:
    return Counter(i.like.skill_ids[0] for i in plan.items)


def test_learning_utility_moves_the_data_to_the_skill_training_teaches(domain, tmp_path: Path) -> None:
    start = {s: 1.0 for s in domain.tree.leaves()} | {"add.carry": 0.5, "sub.borrow": 0.5}
    cfg = ToMConfig(quiz_per_skill=40, check_per_skill=40, replay_share=0.0, max_skill_share=1.0,
                    utility="learning", candidates=8, min_examples=1)
    student = SkillStudent(domain, dict(start))
    policy = ToMPolicy(domain, 40, cfg, student=student)
    first = _counts(policy.plan(feedback(domain, {})))
    # The prior: the partly known skills, nothing to the mastered ones
    assert set(first) == {"add.carry", "sub.borrow"} and policy.last is not None and policy.last.gain == {}
    # Training taught add.carry (0.5 -> 0.9) and sub.borrow nothing
    student.accuracy["add.carry"] = 0.9
    second = _counts(policy.plan(feedback(domain, {}, round=1)))
    gain = policy.last.gain
    assert gain["add.carry"] > 0.005 and gain["add.carry"] > 3 * max(gain["sub.borrow"], 0.0)
    assert second["add.carry"] > 0.8 * sum(second.values())
    # Immediate utility (the paper's) sees no difference between the two: the rationale flips both
    immediate = ToMPolicy(domain, 40, cfg.model_copy(update={"utility": "immediate"}), student=student)
    both = _counts(immediate.plan(feedback(domain, {}, round=1)))
    assert both["sub.borrow"] > 0.3 * sum(both.values())
    # Resumed from the saved view of round 0, a new policy plans round 1 as the unbroken one did
    student.accuracy["add.carry"] = 0.5
    unbroken = ToMPolicy(domain, 40, cfg, student=student)
    unbroken.plan(feedback(domain, {}))
    (name, view), = unbroken.views()
    write_json(tmp_path / name, view)
    student.accuracy["add.carry"] = 0.9
    resumed = ToMPolicy(domain, 40, cfg, student=student)
    resumed.restore(tmp_path)
    assert resumed.plan(feedback(domain, {}, round=1)) == unbroken.plan(feedback(domain, {}, round=1))
    fresh = ToMPolicy(domain, 40, cfg, student=student)
    fresh.restore(tmp_path / "none")  # nothing saved there: starts afresh
    assert name == VIEW_FILE and fresh.last is None
