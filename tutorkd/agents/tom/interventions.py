"""Teacher interventions (Saha et al. 2023): explanations, where to spend them, and what they buy.

An intervention puts a teacher explanation where the student's own reasoning starts (the prompt
becomes ``question + "R:" + explanation + " "``); the student then continues. This module holds the
parts that need no model:

- explanation styles of the procedural teacher: the full rationale, its first step only (the paper's
  GSM8k protocol inserts only the first sentence), or the rationale up to and including the step this
  student's error pattern points to; and deliberately wrong explanations (a corrupted final step) for
  the misaligned-teacher check;
- the paper's intervention strategies as item scores (intervene on the highest first, ties broken at
  random), and the accuracy of a student at each budget B (``int(B * N)`` items explained);
- the ToM prompt's demonstration filter (keep items whose explanation flipped the student to right).

Scores follow the paper's code (``get_intervention_samples``); ``oracle`` here is budget-capped: it
explains first the items an explanation turns from wrong to right, so it is the best curve possible.
"""

from __future__ import annotations

import random
import re
from collections import Counter
from collections.abc import Sequence
from typing import Literal

import numpy as np

from tutorkd.schema import Attempt, Problem, Record

Style = Literal["full", "first", "error_step"]
"""How much of the rationale an explanation gives (see ``explain``)."""
STYLES: tuple[Style, ...] = ("full", "first", "error_step")

Strategy = Literal["random", "teacher_confidence", "expected_correctness", "expected_post",
                   "expected_utility", "true_utility", "oracle", "misaligned"]
STRATEGIES: tuple[Strategy, ...] = ("random", "teacher_confidence", "expected_correctness", "expected_post",
                                    "expected_utility", "true_utility", "oracle")
"""The honest strategies; ``misaligned`` (lowest expected utility first) goes with wrong explanations."""
PEEKING = frozenset({"true_utility", "oracle"})
"""Upper bounds: they rank items by the real student's behaviour, which a teacher cannot see."""
BUDGETS = (0.0, 0.2, 0.4, 0.6, 0.8, 1.0)

_RESULT = re.compile(r"(\d+)$")


def rationale_steps(problem: Problem) -> list[str]:
    """The gold rationale's steps (space separated); ``ValueError`` when the problem has none."""
    if not problem.rationale:
        raise ValueError(f"problem {problem.id} has no rationale to explain with")
    return problem.rationale.split(" ")


def explain(problem: Problem, style: Style, error_step: int = 0) -> str:
    """The explanation of ``problem`` in ``style``.

    ``full``: every step. ``first``: step 0. ``error_step``: steps 0 to ``error_step`` (clamped to the
    last), i.e. the reasoning up to and including the step the student tends to get wrong.
    """
    steps = rationale_steps(problem)
    if style == "full":
        return " ".join(steps)
    if style == "first":
        return steps[0]
    if style == "error_step":
        return " ".join(steps[: min(max(error_step, 0), len(steps) - 1) + 1])
    raise ValueError(f"unknown explanation style {style!r}; use one of {STYLES}")


def corrupt(problem: Problem, rng: random.Random) -> str:
    """A deliberately wrong explanation: the full rationale with its final step's result changed.

    A comparison step (``7<9``) has its sign flipped; an arithmetic step (``4+3+1=8``) gets a result
    1 to 3 away from the true one (never negative). The text stays in the domain's alphabet.
    """
    steps = rationale_steps(problem)
    last = steps[-1]
    if "<" in last or ">" in last:
        steps[-1] = last.translate(str.maketrans("<>", "><"))
        return " ".join(steps)
    match = _RESULT.search(last)
    if match is None:
        raise ValueError(f"cannot corrupt step {last!r} of {problem.id}: it ends in no number and no sign")
    value = int(match.group(1))
    wrong = [v for v in (value + d for d in (-3, -2, -1, 1, 2, 3)) if v >= 0]
    steps[-1] = last[: match.start()] + str(rng.choice(wrong))
    return " ".join(steps)


def first_wrong_step(problem: Problem, output: str, explanation: str | None = None) -> int | None:
    """Index of the first step where the student's reasoning departs from the gold rationale.

    The reasoning is the explanation it was given (if any) followed by the steps it wrote itself: after
    ``R:`` when unexplained, from the start of its continuation when explained. ``None`` when an
    unexplained output has no ``R:`` (a direct answer shows no error pattern). Steps that all match but
    stop early point at the first missing step; all steps right (the error is in the answer) points at
    the last step.
    """
    if explanation is None:
        start = output.find("R:")
        if start < 0:
            return None
        output = output[start + 2:]
    end = output.find("A:")
    said = (explanation or "").split() + output[: end if end >= 0 else len(output)].split()
    gold = rationale_steps(problem)
    for i, step in enumerate(gold):
        if i >= len(said) or said[i] != step:
            return i
    return len(gold) - 1


def error_steps(attempts: Sequence[Attempt]) -> dict[str, int]:
    """Skill id to the step its wrong answers most often go wrong at (skills with none: absent).

    Uses wrong answers given alone or after a partial explanation (their continuation shows where the
    student goes wrong); ties go to the earliest step.
    """
    by_skill: dict[str, Counter[int]] = {}
    for a in attempts:
        if a.correct or not a.problem.skill_ids or a.explanation == a.problem.rationale:
            continue
        step = first_wrong_step(a.problem, a.output, a.explanation)
        if step is not None:
            by_skill.setdefault(a.problem.skill_ids[0], Counter())[step] += 1
    return {s: min(c, key=lambda k: (-c[k], k)) for s, c in by_skill.items()}


def flip_demonstrations(pre: Sequence[Attempt], post: Sequence[Attempt], k: int) -> list[Attempt]:
    """The ToM prompt's filter: the first ``k`` explained attempts that turned the student to right.

    ``pre[i]`` and ``post[i]`` are the same problem without and with an explanation; an item is kept
    when the explained answer is gold and differs from the unexplained one (the paper's
    ``pred_post == gold and pred_pre != pred_post``). Returns the explained attempts (they carry the
    explanation), possibly fewer than ``k``.
    """
    kept = []
    for a, b in zip(pre, post, strict=True):
        if a.problem.id != b.problem.id or b.explanation is None:
            raise ValueError(f"pre/post must pair a problem unexplained and explained: {a.problem.id}")
        if b.correct and a.parsed_answer != b.parsed_answer:
            kept.append(b)
            if len(kept) == k:
                break
    return kept


# --------------------------------------------------------------------------------------------------
# Strategies and budget curves


class ItemSignals(Record):
    """Per-item numbers a strategy may rank by; ``None`` where a teacher does not have them."""

    pre_pred: tuple[float, ...] | None = None
    """Mental model's P(correct) without an explanation."""
    post_pred: tuple[float, ...] | None = None
    """Mental model's P(correct) with the explanation."""
    teacher_confidence: tuple[float, ...] | None = None
    """The teacher's own P(gold) (a procedural teacher is always certain: all 1)."""
    true_pre: tuple[float, ...] | None = None
    """The real student's P(gold) without an explanation (peeking)."""
    true_post: tuple[float, ...] | None = None
    pre_correct: tuple[bool, ...] | None = None
    """Whether the real student is right without / with the explanation (peeking)."""
    post_correct: tuple[bool, ...] | None = None


def _need(values: tuple | None, name: str, strategy: str) -> np.ndarray:
    if values is None:
        raise ValueError(f"strategy {strategy!r} needs {name}, which these signals lack")
    return np.asarray(values, dtype=float)


def strategy_scores(strategy: Strategy, s: ItemSignals) -> np.ndarray:
    """Item scores of ``strategy``: the highest are explained first."""
    if strategy == "random":
        n = next(len(v) for v in s.model_dump().values() if v is not None)
        return np.zeros(n)
    if strategy == "teacher_confidence":
        return _need(s.teacher_confidence, "teacher_confidence", strategy)
    if strategy == "expected_correctness":  # least likely to be right on its own first
        return -_need(s.pre_pred, "pre_pred", strategy)
    if strategy == "expected_post":
        return _need(s.post_pred, "post_pred", strategy)
    if strategy in ("expected_utility", "misaligned"):
        utility = _need(s.post_pred, "post_pred", strategy) - _need(s.pre_pred, "pre_pred", strategy)
        return utility if strategy == "expected_utility" else -utility
    if strategy == "true_utility":
        return _need(s.true_post, "true_post", strategy) - _need(s.true_pre, "true_pre", strategy)
    if strategy == "oracle":
        return _need(s.post_correct, "post_correct", strategy) - _need(s.pre_correct, "pre_correct", strategy)
    raise ValueError(f"unknown strategy {strategy!r}; use one of {STRATEGIES} or 'misaligned'")


def order(scores: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Item indices by descending score, ties in random order."""
    return np.lexsort((rng.random(len(scores)), -np.asarray(scores, dtype=float)))


def explained_count(budget: float, n: int) -> int:
    """Items explained at budget ``budget``: ``int(B * N)`` as in the paper (robust to float error)."""
    if not 0.0 <= budget <= 1.0:
        raise ValueError(f"budget must be in [0, 1], got {budget}")
    return int(budget * n + 1e-9)


def budget_curve(
    scores: np.ndarray,
    pre_correct: Sequence[bool],
    post_correct: Sequence[bool],
    budgets: Sequence[float] = BUDGETS,
    draws: int = 64,
    seed: int = 0,
) -> list[float]:
    """Student accuracy at each budget when the top-scored items get the explanation.

    Explained items count as ``post_correct``, the rest as ``pre_correct``. Ties (all of them for
    ``random``) are broken at random; the curve is the mean over ``draws`` tie-breakings.
    """
    pre = np.asarray(pre_correct, dtype=float)
    gain = np.asarray(post_correct, dtype=float) - pre
    if not len(pre) == len(gain) == len(scores):
        raise ValueError(f"{len(scores)} scores for {len(pre)} pre and {len(gain)} post outcomes")
    rng = np.random.default_rng(seed)
    curves = np.zeros((draws, len(budgets)))
    for d in range(draws):
        cum = np.concatenate([[0.0], np.cumsum(gain[order(scores, rng)])])
        curves[d] = [(pre.sum() + cum[explained_count(b, len(pre))]) / len(pre) for b in budgets]
    return curves.mean(axis=0).tolist()


def curve_area(budgets: Sequence[float], accuracies: Sequence[float]) -> float:
    """Area under an accuracy-versus-budget curve (trapezoids), divided by the budget range."""
    b, a = np.asarray(budgets, dtype=float), np.asarray(accuracies, dtype=float)
    return float(np.sum((b[1:] - b[:-1]) * (a[1:] + a[:-1]) / 2) / (b[-1] - b[0]))
