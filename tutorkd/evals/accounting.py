"""Teaching-efficiency accounting: what each round of a run cost and what it bought, read from disk.

The loop writes every number as it goes (``eval.json``, ``verify.json``, ``times.json``, and
``teacher_usage.json`` for teachers that call an LLM); this module only reads them back into typed
records, so comparisons and reports never depend on a live run.
"""

from __future__ import annotations

from pathlib import Path

from tutorkd.io import read_json
from tutorkd.loop import PhaseTimes, VerifyReport, round_dir
from tutorkd.schema import EvalReport, Record, RoundEval, StudentVersion, TeacherUsage

TEACHER_USAGE_FILE = "teacher_usage.json"
"""Per-round ``TeacherUsage`` written by teachers that call an LLM (absent for procedural teachers)."""


class RoundAccount(Record):
    """One round of a run: the student version it produced, its scores and the round's costs."""

    round: int
    student: StudentVersion
    val: EvalReport
    test: EvalReport
    generated: int = 0
    """Examples the teacher generated this round (0 for round 0, the base student)."""
    kept: int = 0
    """Examples that passed verification and deduplication."""
    trained: int = 0
    """Examples admitted under the budget and trained on."""
    rejected: dict[str, int] = {}
    """Verification rejections by reason."""
    times: PhaseTimes = PhaseTimes()
    usage: TeacherUsage | None = None
    """Teacher LLM tokens; ``None`` when the teacher used no LLM."""

    @property
    def seconds(self) -> float:
        """Wall time of all phases of this round."""
        t = self.times
        return t.plan + t.generate + t.verify + t.train + t.evaluate


class RunAccount(Record):
    """A whole run: who taught, with which seed, and every finished round in order."""

    run_dir: str
    teacher: str
    seed: int
    level: str
    """Structure level of the environment the teacher saw."""
    heldout_key: str
    """Identifies the held-out sets (sizes and split seed); runs are comparable only when it matches."""
    rounds: tuple[RoundAccount, ...]

    @property
    def curve(self) -> list[float]:
        """Held-out test accuracy by round, the base student first."""
        return [r.test.accuracy for r in self.rounds]

    @property
    def gain(self) -> float:
        """Final minus base test accuracy."""
        return self.curve[-1] - self.curve[0]

    @property
    def examples(self) -> tuple[int, int, int]:
        """Totals over the run: (generated, kept, trained)."""
        return (
            sum(r.generated for r in self.rounds),
            sum(r.kept for r in self.rounds),
            sum(r.trained for r in self.rounds),
        )

    @property
    def seconds(self) -> float:
        """Wall time of every phase of every round, the base evaluation included."""
        return sum(r.seconds for r in self.rounds)

    @property
    def tokens(self) -> tuple[int, int] | None:
        """Teacher LLM tokens (in, out) over the run; ``None`` when no round recorded any usage."""
        usages = [r.usage for r in self.rounds if r.usage is not None]
        if not usages:
            return None
        return sum(u.tokens_in for u in usages), sum(u.tokens_out for u in usages)


def load_round(run_dir: Path, k: int) -> RoundAccount:
    """Read round ``k`` of ``run_dir``; its ``eval.json`` must exist, the cost files are optional."""
    d = round_dir(run_dir, k)
    evaluation = read_json(d / "eval.json", RoundEval)
    verify = read_json(d / "verify.json", VerifyReport) if (d / "verify.json").exists() else None
    return RoundAccount(
        round=k,
        student=evaluation.student,
        val=evaluation.val,
        test=evaluation.test,
        generated=verify.generated if verify else 0,
        kept=verify.kept if verify else 0,
        trained=verify.admitted if verify else 0,
        rejected={why: n for why, n in verify.counts.items() if n} if verify else {},
        times=read_json(d / "times.json", PhaseTimes) if (d / "times.json").exists() else PhaseTimes(),
        usage=read_json(d / TEACHER_USAGE_FILE, TeacherUsage) if (d / TEACHER_USAGE_FILE).exists() else None,
    )


def load_run(run_dir: Path) -> RunAccount:
    """Every finished round of a run directory, with its config's teacher, seed and held-out sets.

    Raises ``ConfigError`` (a user error) for a folder that is not a run or has no evaluated round.
    """
    from tutorkd.config import ConfigError
    from tutorkd.rundir import load_run_config

    run_dir = Path(run_dir)
    cfg = load_run_config(run_dir, check_plugins=())
    rounds = []
    while (round_dir(run_dir, len(rounds)) / "eval.json").exists():
        rounds.append(load_round(run_dir, len(rounds)))
    if not rounds:
        raise ConfigError(f"{run_dir}: no evaluated round yet (rounds/r0/eval.json is missing)")
    env = cfg.environment
    return RunAccount(
        run_dir=str(run_dir),
        teacher=cfg.teacher.name,
        seed=cfg.seed,
        level=env.level.value,
        heldout_key=(
            f"{env.kind} test={env.test_per_skill} val={env.val_per_skill} split_seed={env.split_seed}"
        ),
        rounds=tuple(rounds),
    )
