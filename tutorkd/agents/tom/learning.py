"""The ToM teacher's learning-utility mental model: what *training* on an explained item teaches.

The expected utility of Saha et al. (``Belief.utility``: P(right with the explanation in context) -
P(right alone)) says whether an explanation flips the answer *now*. As training data that picks items
which teach no more than random ones (``benchmarks/results/intervention.json``, multi-turn): an
explanation that flips an answer in context is not the same as one the student learns from. This
model predicts the second from what the student's earlier rounds of training did:

- per skill, the **gain per example**: the mental model's P(right alone) on the skill's quiz after a
  round, minus before it, divided by the examples of that skill the round trained on (only skills with
  at least ``min_examples``), blended into the earlier estimate with weight ``smoothing``;
- a skill not measured yet gets the zone-of-proximal-development prior ``4 p (1 - p)`` (a skill partly
  known is learnable now, one at 0 % not yet) scaled to the best measured gain (1 before any);
- an item's **learning utility**: ``(1 - P(right alone)) * gain(skill)``: an item it already gets right
  teaches little, an item of a skill it is not learning teaches little.

The gains are measured by ``tutorkd.agents.gains.updated_gains`` (shared with the learning-progress
teacher); the policy keeps them in its saved view, so a resumed run plans as an unbroken one.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np


def skill_gain(skills: Sequence[str], pre: Mapping[str, float],
               gain: Mapping[str, float]) -> dict[str, float]:
    """Each skill's expected gain per example: measured (negative clipped to 0), else the scaled prior."""
    scale = max([g for g in gain.values() if g > 0], default=1.0)
    return {s: max(gain[s], 0.0) if s in gain else scale * 4 * pre[s] * (1 - pre[s]) for s in skills}


def learning_utility(item_pre: np.ndarray, item_skills: Sequence[str],
                     per_skill: Mapping[str, float]) -> np.ndarray:
    """Per item, ``(1 - P(right alone)) * gain(skill)`` (``per_skill`` from ``skill_gain``)."""
    if len(item_pre) != len(item_skills):
        raise ValueError(f"{len(item_pre)} predictions for {len(item_skills)} items")
    return np.array([(1.0 - p) * per_skill[s] for p, s in zip(item_pre, item_skills, strict=True)])
