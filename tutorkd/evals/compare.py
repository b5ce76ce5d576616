"""Compare teachers across runs: accuracy over seeds with intervals, efficiency, paired tests.

Runs are grouped by teacher; within a teacher each run is one seed. Numbers over seeds are the median
with a percentile-bootstrap interval; teachers are compared with a paired bootstrap over the seeds
they share: runs with one seed share the training seed, so pairing removes that source of variance.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

from tutorkd.config import ConfigError
from tutorkd.evals.accounting import RunAccount
from tutorkd.evals.stats import Interval, PairedTest, bootstrap_ci, learning_curve_auc, paired_bootstrap
from tutorkd.schema import Record

MIN_PAIRS_FOR_BOOTSTRAP_P = 6
"""Below this many paired seeds a bootstrap p-value is not shown: too few distinct resamples make it
anti-conservative (two seeds with the same sign give ~0). The exact sign-flip p-value is always shown."""


class TeacherSummary(Record):
    """One teacher over its seeds."""

    teacher: str
    level: str
    seeds: tuple[int, ...]
    runs: tuple[str, ...]
    final: Interval
    """Final-round test accuracy: median over seeds and its bootstrap interval."""
    gain: Interval
    """Final minus base test accuracy."""
    auc: Interval
    """Area under the test learning curve, per round (``learning_curve_auc``)."""
    per_round: tuple[Interval, ...]
    """Test accuracy by round (round 0 = base), over the seeds that reached that round."""
    examples: tuple[float, float, float]
    """Mean per run of examples (generated, kept, trained)."""
    seconds: float
    """Mean wall time per run."""
    tokens: tuple[float, float] | None
    """Mean teacher LLM tokens (in, out) per run; ``None`` without an LLM teacher."""
    examples_per_point: float | None
    """Trained examples per percentage point of test accuracy gained (mean over mean); ``None`` when
    the mean gain is not positive."""
    seconds_per_point: float | None
    tokens_per_point: float | None
    """Teacher tokens (in + out) per point gained."""


class PairComparison(Record):
    """Teacher ``a`` minus teacher ``b`` on the seeds both ran."""

    a: str
    b: str
    seeds: tuple[int, ...]
    final: PairedTest
    auc: PairedTest


class Comparison(Record):
    """Everything ``tutorkd compare`` reports, also written as JSON."""

    heldout_key: str
    teachers: tuple[TeacherSummary, ...]
    pairs: tuple[PairComparison, ...]


def _per_point(cost: float, gain: float) -> float | None:
    return cost / (gain * 100) if gain > 0 else None


def _mean(xs: Sequence[float]) -> float:
    return sum(xs) / len(xs)


def summarize(teacher: str, runs: Sequence[RunAccount], seed: int = 0) -> TeacherSummary:
    """Median and interval over the runs (one per seed) of one teacher."""
    levels = {r.level for r in runs}
    if len(levels) > 1:
        raise ConfigError(
            f"teacher {teacher!r} has runs at several structure levels {sorted(levels)}; "
            "compare each level separately"
        )
    runs = sorted(runs, key=lambda r: r.seed)
    longest = max(len(r.rounds) for r in runs)
    per_round = tuple(
        bootstrap_ci([r.curve[k] for r in runs if len(r.curve) > k], seed=seed) for k in range(longest)
    )
    gains = [r.gain for r in runs]
    tokens = [r.tokens for r in runs if r.tokens is not None]
    mean_tokens = (_mean([t[0] for t in tokens]), _mean([t[1] for t in tokens])) if tokens else None
    mean_gain = _mean(gains)
    return TeacherSummary(
        teacher=teacher,
        level=levels.pop(),
        seeds=tuple(r.seed for r in runs),
        runs=tuple(r.run_dir for r in runs),
        final=bootstrap_ci([r.curve[-1] for r in runs], seed=seed),
        gain=bootstrap_ci(gains, seed=seed),
        auc=bootstrap_ci([learning_curve_auc(r.curve) for r in runs], seed=seed),
        per_round=per_round,
        examples=tuple(_mean([r.examples[i] for r in runs]) for i in range(3)),
        seconds=_mean([r.seconds for r in runs]),
        tokens=mean_tokens,
        examples_per_point=_per_point(_mean([r.examples[2] for r in runs]), mean_gain),
        seconds_per_point=_per_point(_mean([r.seconds for r in runs]), mean_gain),
        tokens_per_point=_per_point(sum(mean_tokens), mean_gain) if mean_tokens else None,
    )


def compare(runs: Sequence[RunAccount], seed: int = 0) -> Comparison:
    """Group ``runs`` by teacher, summarise each, and test every pair of teachers on shared seeds.

    Raises ``ConfigError`` when the runs were scored on different held-out sets, or when one teacher
    has two runs with the same seed (which one counts would be arbitrary).
    """
    if not runs:
        raise ConfigError("compare needs at least one run directory")
    keys = {r.heldout_key for r in runs}
    if len(keys) > 1:
        raise ConfigError(
            f"runs were scored on different held-out sets ({'; '.join(sorted(keys))}); "
            "compare only runs with the same environment sizes and split_seed"
        )
    by_teacher: dict[str, dict[int, RunAccount]] = {}
    for r in runs:
        seen = by_teacher.setdefault(r.teacher, {})
        if r.seed in seen:
            raise ConfigError(
                f"teacher {r.teacher!r} has two runs with seed {r.seed}: "
                f"{seen[r.seed].run_dir} and {r.run_dir}; pass one of them"
            )
        seen[r.seed] = r
    teachers = tuple(summarize(t, list(seeds.values()), seed) for t, seeds in sorted(by_teacher.items()))
    pairs = []
    for a, b in itertools.combinations(sorted(by_teacher), 2):
        shared = sorted(set(by_teacher[a]) & set(by_teacher[b]))
        if not shared:
            continue
        ra, rb = [by_teacher[a][s] for s in shared], [by_teacher[b][s] for s in shared]
        pairs.append(
            PairComparison(
                a=a,
                b=b,
                seeds=tuple(shared),
                final=paired_bootstrap([r.curve[-1] for r in ra], [r.curve[-1] for r in rb], seed=seed),
                auc=paired_bootstrap(
                    [learning_curve_auc(r.curve) for r in ra],
                    [learning_curve_auc(r.curve) for r in rb],
                    seed=seed,
                ),
            )
        )
    return Comparison(heldout_key=keys.pop(), teachers=teachers, pairs=tuple(pairs))


# --------------------------------------------------------------------------------------------------
# Tables as plain rows, rendered by the CLI (rich) and the HTML report alike


def _ci(x: Interval) -> str:
    return f"{x.estimate:.3f} [{x.low:.3f}, {x.high:.3f}]"


def _opt(x: float | None, fmt: str) -> str:
    return "no gain" if x is None else format(x, fmt)


def teacher_rows(cmp: Comparison) -> tuple[list[str], list[list[str]]]:
    """Header and one row per teacher: test accuracy, gain and curve area, each with its interval."""
    header = ["teacher", "level", "seeds", "final acc", "gain", "AUC"]
    rows = [
        [t.teacher, t.level, ",".join(map(str, t.seeds)), _ci(t.final), _ci(t.gain), _ci(t.auc)]
        for t in cmp.teachers
    ]
    return header, rows


def cost_rows(cmp: Comparison) -> tuple[list[str], list[list[str]]]:
    """Header and one row per teacher: mean costs per run, and costs per accuracy point gained."""
    header = ["teacher", "generated", "kept", "trained", "wall s", "tokens in/out"]
    header += ["examples/pt", "s/pt", "tokens/pt"]
    rows = []
    for t in cmp.teachers:
        tokens = "-" if t.tokens is None else f"{t.tokens[0]:.0f}/{t.tokens[1]:.0f}"
        per_point = [_opt(t.examples_per_point, ".1f"), _opt(t.seconds_per_point, ".2f")]
        per_point.append("-" if t.tokens is None else _opt(t.tokens_per_point, ".0f"))
        rows.append([t.teacher, *(f"{x:.0f}" for x in t.examples), f"{t.seconds:.1f}", tokens, *per_point])
    return header, rows


def round_rows(cmp: Comparison) -> tuple[list[str], list[list[str]]]:
    """Header and one row per teacher: median test accuracy [interval] at every round."""
    longest = max(len(t.per_round) for t in cmp.teachers)
    header = ["teacher"] + [f"r{k}" for k in range(longest)]
    rows = [
        [t.teacher] + [_ci(x) for x in t.per_round] + [""] * (longest - len(t.per_round))
        for t in cmp.teachers
    ]
    return header, rows


def _paired(t: PairedTest) -> list[str]:
    boot = f"{t.p_value:.3f}" if t.n >= MIN_PAIRS_FOR_BOOTSTRAP_P else f"- (n<{MIN_PAIRS_FOR_BOOTSTRAP_P})"
    diff = f"{t.mean_diff:+.3f} [{t.interval.low:+.3f}, {t.interval.high:+.3f}]"
    return [diff, boot, f"{t.p_sign_flip:.3f}"]


def pair_rows(cmp: Comparison) -> tuple[list[str], list[list[str]]]:
    """Header and one row per teacher pair: paired differences of final accuracy and of AUC.

    The bootstrap p-value is left out below ``MIN_PAIRS_FOR_BOOTSTRAP_P`` pairs (it is in the JSON).
    """
    header = ["a - b", "seeds", "final diff [CI]", "p boot", "p sign-flip", "AUC diff [CI]", "p boot"]
    header.append("p sign-flip")
    rows = [
        [f"{p.a} - {p.b}", ",".join(map(str, p.seeds)), *_paired(p.final), *_paired(p.auc)] for p in cmp.pairs
    ]
    return header, rows
