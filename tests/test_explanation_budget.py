"""Explanations under a length budget: the convex-hull knapsack of the personalized teacher."""

from __future__ import annotations

import numpy as np
import pytest

from tutorkd.agents.tom.explanation_budget import NONE, _hull, cost_curves, one_style, personalized


def test_the_hull_drops_dominated_and_concave_options() -> None:
    # style 1 costs more than style 2 and gains less: dominated; the hull is none -> 0 -> 2.
    assert _hull(np.array([0.5, 0.6, 0.9]), np.array([1.0, 3.0, 2.0])) == [NONE, 0, 2]
    # style 0 sits under the segment from (0, 0) to style 1: never worth stopping at.
    assert _hull(np.array([0.1, 1.0]), np.array([1.0, 2.0])) == [NONE, 1]
    # nothing with a positive gain: explain nothing.
    assert _hull(np.array([0.0, -0.2]), np.array([1.0, 2.0])) == [NONE]


# Items 0 and 1: the first step (1 character) does it; items 2 and 3 need the full rationale (5 characters).
GAINS = np.array([[0.9, 0.9, 0.0, 0.0],      # first
                  [0.95, 0.95, 0.9, 0.9]])   # full
COSTS = np.array([[1.0] * 4, [5.0] * 4])
PRE = [False] * 4
POST = {"first": [True, True, False, False], "full": [True] * 4}


def test_personalized_buys_the_short_hint_where_it_suffices() -> None:
    assert personalized(GAINS, COSTS, budget=7).tolist() == [0, 0, 1, NONE]
    assert personalized(GAINS, COSTS, budget=100).tolist() == [1, 1, 1, 1]  # the most gain where all fit
    assert personalized(GAINS, COSTS, budget=0).tolist() == [NONE] * 4
    assert one_style(GAINS[1], COSTS[1], budget=7).tolist() == [True, False, False, False]


def test_personalized_beats_every_single_style_at_equal_length() -> None:
    curves, mixes = cost_curves({"first": GAINS[0], "full": GAINS[1]}, {"first": COSTS[0], "full": COSTS[1]},
                                PRE, POST, shares=(0.0, 0.35, 1.0))
    assert curves["personalized"] == [0.0, 0.75, 1.0]
    assert curves["full"] == [0.0, 0.25, 1.0] and curves["first"] == [0.0, 0.5, 0.5]
    assert mixes[1] == {"none": 1, "first": 2, "full": 1}


@pytest.mark.parametrize("seed", range(20))
def test_personalized_never_overspends_and_with_room_takes_each_items_best_style(seed: int) -> None:
    rng = np.random.default_rng(seed)
    gains = rng.uniform(-0.2, 1.0, size=(3, 30))
    costs = rng.integers(1, 40, size=(3, 30)).astype(float)
    for budget in (0.0, 50.0, 200.0, 1e9):
        choice = personalized(gains, costs, budget)
        paid = sum(costs[c, i] for i, c in enumerate(choice) if c != NONE)
        assert paid <= budget + 1e-9
        assert all(c == NONE or gains[c, i] > 0 for i, c in enumerate(choice))
    unlimited = personalized(gains, costs, 1e9)
    best = gains.max(axis=0)
    assert [gains[c, i] if c != NONE else 0.0 for i, c in enumerate(unlimited)] == pytest.approx(
        np.where(best > 0, best, 0.0).tolist())


def test_bad_inputs_fail_loud() -> None:
    with pytest.raises(ValueError, match="equal"):
        personalized(GAINS, COSTS[:, :3], 5)
    with pytest.raises(ValueError, match="positive length"):
        personalized(GAINS, COSTS * 0, 5)
    with pytest.raises(ValueError, match="lack 'full'"):
        cost_curves({"first": GAINS[0]}, {"first": COSTS[0]}, PRE, POST, shares=(0.5,))
