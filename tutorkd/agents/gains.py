"""Learning progress shared by the teachers that model it: per skill, the accuracy a student gained per
example it trained on, measured from round to round and smoothed, and the factor it puts on a plan.

Used by the learning-progress teacher (``tutorkd.agents.progress``), STAT's learnability ablation
(``tutorkd.agents.stat``) and the ToM teacher's learning-utility model (``tutorkd.agents.tom.learning``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping


def updated_gains(earlier: Mapping[str, float], before: Mapping[str, float], after: Mapping[str, float],
                  trained: Mapping[str, int], *, smoothing: float, min_examples: int) -> dict[str, float]:
    """The gain-per-example estimates after one round: ``before``/``after`` are the accuracies per skill
    around the round's training, ``trained`` its examples per skill. A skill with at least
    ``min_examples`` has its new gain blended (weight ``smoothing``) into its ``earlier`` estimate; the
    others keep theirs (or none)."""
    out = dict(earlier)
    for skill, n in trained.items():
        if n < min_examples or skill not in before or skill not in after:
            continue
        new = (after[skill] - before[skill]) / n
        old = out.get(skill)
        out[skill] = new if old is None else (1 - smoothing) * old + smoothing * new
    return out


def progress_factors(gain: Mapping[str, float], skills: Iterable[str],
                     bounds: tuple[float, float]) -> dict[str, float]:
    """Per skill, its measured gain over the median positive gain among ``skills``, clipped to
    ``bounds``; 1 for a skill not measured yet, and for all while none has a positive gain."""
    skills = list(skills)
    lo, hi = bounds
    measured = sorted(gain[s] for s in skills if s in gain and gain[s] > 0)
    typical = measured[len(measured) // 2] if measured else None
    return {s: 1.0 if typical is None or s not in gain else min(max(gain[s] / typical, lo), hi)
            for s in skills}
