"""Explanations under a length budget: which items to explain, and how much of the rationale to give.

Counting explained items (the paper's budget B) makes the longest explanation free: for the tiny student
the full rationale is never predicted worse than a part of it, so a mental model that picks a style per
item picks it everywhere and personalization cannot matter. What an explanation really costs is what
the student must be told, so here the budget is characters of explanation (the tiny student's tokens),
a share of what full rationales for every item would take.

- ``one_style``: an unpersonalized teacher. Every explanation in one style; items in descending order
  of the mental model's predicted gain (expected utility, as the paper ranks them), each explained if
  it still fits the budget.
- ``personalized``: the mental model chooses per item among the styles, or none. A multiple-choice
  knapsack over (item, style) with the predicted gain (P(correct | style) - P(correct | alone)) as value,
  solved by the standard greedy on each item's upper convex hull of (cost, gain): the budget goes to
  the steepest gain per character first, and an item is upgraded from a short hint to a longer
  explanation only while the extra gain per extra character beats what other items offer.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

NONE = -1
"""The style index of an item left unexplained."""


def _hull(gains: np.ndarray, costs: np.ndarray) -> list[int]:
    """Style indices on one item's upper convex hull from (0, 0), cheapest first; only gains > 0."""
    options = sorted((c, -g, s) for s, (g, c) in enumerate(zip(gains, costs, strict=True)) if g > 0)
    hull: list[tuple[float, float, int]] = [(0.0, 0.0, NONE)]
    for cost, neg_gain, style in options:
        gain = -neg_gain
        if gain <= hull[-1][1]:
            continue  # costs at least as much as a hull point and gains no more
        # Why pop: a point under the segment from its predecessor to this one is never worth stopping at.
        while len(hull) >= 2:
            (c0, g0, _), (c1, g1, _) = hull[-2], hull[-1]
            if (g1 - g0) * (cost - c0) <= (gain - g0) * (c1 - c0):
                hull.pop()
            else:
                break
        hull.append((cost, gain, style))
    return [s for _, _, s in hull]


def personalized(gains: np.ndarray, costs: np.ndarray, budget: float) -> np.ndarray:
    """Per item, the chosen style index (``NONE``: unexplained), spending at most ``budget``.

    ``gains`` and ``costs`` are (styles, items) arrays: the predicted gain of explaining item i in style s
    and its length. Greedy over hull increments by gain per unit cost; an increment that does not fit
    ends that item's upgrades (its later increments are flatter) while other items go on.
    """
    gains, costs = np.asarray(gains, dtype=float), np.asarray(costs, dtype=float)
    if gains.shape != costs.shape or gains.ndim != 2:
        raise ValueError(f"gains {gains.shape} and costs {costs.shape} must be equal (styles, items) arrays")
    if (costs <= 0).any():
        raise ValueError("every explanation must cost something (a positive length)")
    steps: list[tuple[float, int, int, int]] = []  # (-efficiency, item, hull position, style)
    for i in range(gains.shape[1]):
        hull = _hull(gains[:, i], costs[:, i])
        for k in range(1, len(hull)):
            prev, cur = hull[k - 1], hull[k]
            c0 = 0.0 if prev == NONE else costs[prev, i]
            g0 = 0.0 if prev == NONE else gains[prev, i]
            steps.append((-(gains[cur, i] - g0) / (costs[cur, i] - c0), i, k, cur))
    choice = np.full(gains.shape[1], NONE)
    spent, stuck = 0.0, set()
    for _, i, _, style in sorted(steps):
        if i in stuck:
            continue
        extra = costs[style, i] - (0.0 if choice[i] == NONE else costs[choice[i], i])
        if spent + extra > budget + 1e-9:
            stuck.add(i)
            continue
        spent += extra
        choice[i] = style
    return choice


def one_style(gains: np.ndarray, costs: np.ndarray, budget: float) -> np.ndarray:
    """Items explained (True) by an unpersonalized teacher: descending predicted gain, each if it fits."""
    gains, costs = np.asarray(gains, dtype=float), np.asarray(costs, dtype=float)
    chosen = np.zeros(len(gains), dtype=bool)
    spent = 0.0
    for i in np.lexsort((np.arange(len(gains)), -gains)):
        if spent + costs[i] <= budget + 1e-9:
            chosen[i] = True
            spent += costs[i]
    return chosen


def cost_curves(
    pred_gain: dict[str, np.ndarray],
    cost: dict[str, np.ndarray],
    pre_correct: Sequence[bool],
    post_correct: dict[str, Sequence[bool]],
    shares: Sequence[float],
) -> tuple[dict[str, list[float]], list[dict[str, int]]]:
    """Student accuracy at each budget (a share of the cost of full rationales for every item).

    Returns the curve of each single style and of ``personalized``, and per budget the personalized
    teacher's style counts (``none`` included), so a reader sees what it bought.
    """
    styles = list(pred_gain)
    if "full" not in cost:
        raise ValueError(f"the budget is a share of the full rationales' cost; styles {styles} lack 'full'")
    pre = np.asarray(pre_correct, dtype=float)
    post = {s: np.asarray(post_correct[s], dtype=float) for s in styles}
    whole = float(np.sum(cost["full"]))
    curves: dict[str, list[float]] = {s: [] for s in [*styles, "personalized"]}
    mixes: list[dict[str, int]] = []
    for share in shares:
        budget = share * whole
        for s in styles:
            explained = one_style(pred_gain[s], cost[s], budget)
            curves[s].append(float(np.where(explained, post[s], pre).mean()))
        choice = personalized(np.stack([pred_gain[s] for s in styles]), np.stack([cost[s] for s in styles]),
                              budget)
        outcome = np.array([pre[i] if c == NONE else post[styles[c]][i] for i, c in enumerate(choice)])
        curves["personalized"].append(float(outcome.mean()))
        mixes.append({name: int(np.sum(choice == k)) for k, name in [(NONE, "none"), *enumerate(styles)]})
    return curves, mixes
