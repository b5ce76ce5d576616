"""Calibration of a mental model against the real student: AUC, Brier score, reliability bins."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from tutorkd.schema import Record


class ReliabilityBin(Record):
    """Items whose predicted P(correct) falls in ``[lo, hi)`` (the last bin includes 1)."""

    lo: float
    hi: float
    n: int
    mean_predicted: float | None
    observed: float | None
    """Share actually right (``None`` for an empty bin)."""


class Calibration(Record):
    """How well predicted P(correct) matches the real student's outcomes."""

    n: int
    base_rate: float
    """Share of items the student got right."""
    auc: float | None
    """Ranking quality (``None`` when every outcome is the same)."""
    brier: float
    bins: tuple[ReliabilityBin, ...]


def auc(scores: Sequence[float], labels: Sequence[bool]) -> float | None:
    """Area under the ROC curve (Mann-Whitney, ties counted half); ``None`` without both classes."""
    s, y = np.asarray(scores, dtype=float), np.asarray(labels, dtype=bool)
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    if n_pos == 0 or n_neg == 0:
        return None
    sorter = np.argsort(s, kind="mergesort")
    ranks = np.empty(len(s))
    ranks[sorter] = np.arange(1, len(s) + 1)
    for value in np.unique(s):  # average ranks within ties
        tied = s == value
        ranks[tied] = ranks[tied].mean()
    return float((ranks[y].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def calibration(predicted: Sequence[float], outcomes: Sequence[bool], bins: int = 10) -> Calibration:
    """AUC, Brier score and ``bins`` equal-width reliability bins of predictions against outcomes."""
    p, y = np.asarray(predicted, dtype=float), np.asarray(outcomes, dtype=float)
    if len(p) != len(y) or len(p) == 0:
        raise ValueError(f"calibration needs as many predictions as outcomes, at least one; "
                         f"got {len(p)}, {len(y)}")
    index = np.minimum((p * bins).astype(int), bins - 1)
    table = []
    for b in range(bins):
        inside = index == b
        n = int(inside.sum())
        table.append(ReliabilityBin(lo=b / bins, hi=(b + 1) / bins, n=n,
                                    mean_predicted=float(p[inside].mean()) if n else None,
                                    observed=float(y[inside].mean()) if n else None))
    return Calibration(n=len(p), base_rate=float(y.mean()), auc=auc(p, y.astype(bool)),
                       brier=float(np.mean((p - y) ** 2)), bins=tuple(table))
