"""Statistics for judging teachers: Wilson and bootstrap intervals, a paired bootstrap test, curve area.

Everything here is pure and deterministic (bootstraps take a seed), so reports are reproducible.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

from tutorkd.schema import Record

Statistic = Callable[[Sequence[float]], float]


class Interval(Record):
    """A point estimate with a two-sided confidence interval ``[low, high]``."""

    estimate: float
    low: float
    high: float
    level: float = 0.95
    """Nominal coverage of the interval."""


class PairedTest(Record):
    """Paired bootstrap test of ``mean(a - b) = 0`` over matched pairs (e.g. two teachers on one seed)."""

    n: int
    """Number of pairs."""
    mean_diff: float
    """Mean of ``a - b``; positive means ``a`` is higher."""
    interval: Interval
    """Percentile bootstrap interval of the mean difference."""
    p_value: float
    """Two-sided bootstrap p-value. With fewer than about 6 pairs the bootstrap sees too few distinct
    resamples and this is anti-conservative (identical differences give ~0): read ``p_sign_flip``."""
    p_sign_flip: float
    """Two-sided exact sign-flip (randomization) p-value: valid at any ``n``, but never below
    ``2 / 2**n`` (3 pairs: 0.25), which is the honest answer for 3 seeds."""


def _z(level: float) -> float:
    """Two-sided standard-normal quantile for coverage ``level`` (0.95 gives 1.96)."""
    from statistics import NormalDist

    return NormalDist().inv_cdf(0.5 + level / 2)


def wilson(correct: int, n: int, level: float = 0.95) -> Interval:
    """Wilson score interval of a binomial proportion ``correct / n``.

    Unlike the normal approximation it stays inside ``[0, 1]`` and is sensible at 0 or ``n`` successes,
    which per-skill accuracies of a tiny student often are. ``n == 0`` gives the vacuous ``[0, 1]``.
    """
    if not 0 <= correct <= n:
        raise ValueError(f"need 0 <= correct <= n, got correct={correct}, n={n}")
    if n == 0:
        return Interval(estimate=0.0, low=0.0, high=1.0, level=level)
    z = _z(level)
    p = correct / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    # Why the clamps: floating error can put an endpoint a hair outside [0, 1] or past the estimate.
    return Interval(
        estimate=p, low=max(0.0, min(p, centre - half)), high=min(1.0, max(p, centre + half)), level=level
    )


def _resample_indices(n: int, resamples: int, seed: int):
    import numpy as np

    return np.random.default_rng(seed).integers(0, n, size=(resamples, n))


def _percentiles(samples, level: float) -> tuple[float, float]:
    import numpy as np

    lo, hi = np.quantile(samples, [(1 - level) / 2, (1 + level) / 2])
    return float(lo), float(hi)


def bootstrap_ci(
    values: Sequence[float],
    statistic: str = "median",
    resamples: int = 2000,
    level: float = 0.95,
    seed: int = 0,
) -> Interval:
    """Percentile bootstrap interval of the ``median`` or ``mean`` of ``values``.

    One value gives a zero-width interval at that value; an empty sequence is an error.
    """
    import numpy as np

    if not values:
        raise ValueError("bootstrap_ci needs at least one value")
    if statistic not in ("median", "mean"):
        raise ValueError(f"statistic must be 'median' or 'mean', got {statistic!r}")
    x = np.asarray(values, dtype=float)
    reduce = np.median if statistic == "median" else np.mean
    estimate = float(reduce(x))
    if len(x) == 1:
        return Interval(estimate=estimate, low=estimate, high=estimate, level=level)
    samples = reduce(x[_resample_indices(len(x), resamples, seed)], axis=1)
    low, high = _percentiles(samples, level)
    return Interval(estimate=estimate, low=min(low, estimate), high=max(high, estimate), level=level)


def paired_bootstrap(
    a: Sequence[float], b: Sequence[float], resamples: int = 10_000, level: float = 0.95, seed: int = 0
) -> PairedTest:
    """Paired bootstrap test on the differences ``a[i] - b[i]``.

    Pairs are resampled with replacement. The interval is the percentile interval of the resampled
    mean difference; the p-value comes from the resampled differences re-centred on zero (the null),
    as the share whose absolute mean is at least the observed one, with the ``+1`` correction so it
    is never exactly zero.
    """
    import numpy as np

    if len(a) != len(b):
        raise ValueError(f"paired test needs equal lengths, got {len(a)} and {len(b)}")
    if not a:
        raise ValueError("paired test needs at least one pair")
    d = np.asarray(a, dtype=float) - np.asarray(b, dtype=float)
    observed = float(d.mean())
    idx = _resample_indices(len(d), resamples, seed)
    means = d[idx].mean(axis=1)
    low, high = _percentiles(means, level)
    null = (d - observed)[idx].mean(axis=1)
    # Why the tolerance: re-centred means that equal the observed one up to rounding count as "as extreme".
    extreme = int(np.sum(np.abs(null) >= abs(observed) - 1e-12))
    p = (extreme + 1) / (resamples + 1)
    return PairedTest(
        n=len(d),
        mean_diff=observed,
        interval=Interval(estimate=observed, low=low, high=high, level=level),
        p_value=min(1.0, p),
        p_sign_flip=sign_flip_p(d.tolist(), seed=seed),
    )


def sign_flip_p(diffs: Sequence[float], resamples: int = 10_000, seed: int = 0) -> float:
    """Two-sided randomization p-value of ``mean(diffs) = 0``: flip each difference's sign at random.

    Exact (all ``2**n`` sign patterns) up to 14 pairs, Monte Carlo with ``+1`` correction beyond.
    """
    import itertools

    import numpy as np

    d = np.asarray(diffs, dtype=float)
    observed = abs(d.mean()) - 1e-12
    if len(d) <= 14:
        signs = np.array(list(itertools.product((1.0, -1.0), repeat=len(d))))
        return float(np.mean(np.abs((signs * d).mean(axis=1)) >= observed))
    signs = np.random.default_rng(seed).choice((1.0, -1.0), size=(resamples, len(d)))
    return float((np.sum(np.abs((signs * d).mean(axis=1)) >= observed) + 1) / (resamples + 1))


def learning_curve_auc(accuracies: Sequence[float]) -> float:
    """Area under the accuracy-by-round curve (trapezoids), divided by the rounds it spans.

    The result is in accuracy units: the curve's average height, so runs of different lengths compare
    on one scale and a teacher that gets there sooner scores higher than one that only ends as high.
    A single point (no training) is its own value.
    """
    if not accuracies:
        raise ValueError("learning_curve_auc needs at least one point")
    if len(accuracies) == 1:
        return float(accuracies[0])
    area = sum((x + y) / 2 for x, y in zip(accuracies, accuracies[1:], strict=False))
    return area / (len(accuracies) - 1)
