"""Eval suites: score a student version against the base on held-out sets, with intervals.

A suite (``evals/*.yaml``, ``EvalConfig``) answers four questions about one student version:

- how accurate is it, per skill, per branch and overall (Wilson or bootstrap intervals), and how many
  of its misses are format errors (no parseable answer) rather than wrong answers;
- **transfer**: did it improve on skills the teacher never trained it on;
- **forgetting**: did it lose skills the base student was already strong at (chosen on validation,
  so that the test numbers measuring the drop are not the ones that selected the skills);
- **contamination**: does any training data of the run overlap the eval sets (``contamination``).

Both the base and the evaluated version answer the same problems through the same ``Student.answer``
call, so the prompt format cannot differ between them (DataEnvGym evaluated its base few-shot and its
trained students zero-shot).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Literal

from pydantic import Field

from tutorkd.config import Config
from tutorkd.environments.heldout import HeldOut
from tutorkd.evals.contamination import ContaminationReport, check_overlap, eval_questions
from tutorkd.evals.stats import Interval, bootstrap_ci, wilson
from tutorkd.protocols import Student
from tutorkd.schema import Attempt, Example, Problem, Record, SkillTree, StudentVersion

Split = Literal["val", "test"]


class EvalConfig(Config):
    """An eval suite spec: which held-out splits, which intervals, how to pick transfer and strong skills."""

    name: str
    description: str = ""
    splits: tuple[Split, ...] = ("test",)
    """Held-out splits to score (``test`` is never shown to teachers; ``val`` is their feedback)."""
    max_per_skill: int | None = Field(None, ge=1)
    """Score only the first ``max_per_skill`` problems of each skill (the sets are fixed, so the
    subset is too); ``None`` scores them all."""
    interval: Literal["wilson", "bootstrap"] = "wilson"
    level: float = Field(0.95, gt=0.0, lt=1.0)
    """Coverage of every interval."""
    bootstrap_resamples: int = Field(2000, ge=100)
    seed: int = 0
    """Seed of the bootstrap resampling."""
    transfer_skills: tuple[str, ...] | None = None
    """Leaf skills to report as transfer; ``None`` uses every leaf the run never trained on."""
    strong_threshold: float = Field(0.8, ge=0.0, le=1.0)
    """A skill is initially strong (watched for forgetting) when the base's validation accuracy on it
    is at least this."""


class Score(Record):
    """How one student version did on a set of problems."""

    n: int
    correct: int
    wrong: int
    """Answers that parsed but were wrong."""
    format_errors: int
    """Outputs with no parseable answer (``parsed_answer is None``)."""
    accuracy: Interval


class Result(Record):
    """The evaluated version and the base on the same problems: a skill, a branch or a group."""

    name: str
    """Skill or branch id, or ``overall``, ``transfer``, ``forgetting``."""
    skills: tuple[str, ...]
    """Leaf skills pooled into this result."""
    student: Score
    base: Score

    @property
    def delta(self) -> float:
        """Accuracy change from the base to the evaluated version."""
        return self.student.accuracy.estimate - self.base.accuracy.estimate


class SplitResult(Record):
    """All results on one held-out split."""

    split: str
    overall: Result
    per_skill: tuple[Result, ...]
    per_node: tuple[Result, ...]
    transfer: Result
    forgetting: Result


class SuiteReport(Record):
    """What ``tutorkd eval`` reports for one student version (also written as JSON)."""

    suite: str
    run_dir: str | None
    student: StudentVersion
    base: StudentVersion
    interval: str
    trained_per_skill: dict[str, int]
    """Training examples per leaf skill over the run up to this version."""
    transfer_skills: tuple[str, ...]
    strong_skills: tuple[str, ...]
    splits: tuple[SplitResult, ...]
    contamination: ContaminationReport


def score(attempts: Sequence[Attempt], cfg: EvalConfig) -> Score:
    """Counts and an accuracy interval of the kind ``cfg.interval`` names."""
    correct = sum(a.correct for a in attempts)
    errors = sum(a.parsed_answer is None for a in attempts)
    if cfg.interval == "wilson" or not attempts:
        accuracy = wilson(correct, len(attempts), cfg.level)
    else:
        accuracy = bootstrap_ci(
            [float(a.correct) for a in attempts], "mean", cfg.bootstrap_resamples, cfg.level, cfg.seed
        )
    return Score(
        n=len(attempts),
        correct=correct,
        wrong=len(attempts) - correct - errors,
        format_errors=errors,
        accuracy=accuracy,
    )


def _result(
    name: str, skills: Sequence[str], student: Sequence[Attempt], base: Sequence[Attempt], cfg: EvalConfig
) -> Result:
    keep = set(skills)

    def pick(attempts: Sequence[Attempt]) -> list[Attempt]:
        return [a for a in attempts if keep & set(a.problem.skill_ids)]

    return Result(
        name=name, skills=tuple(skills), student=score(pick(student), cfg), base=score(pick(base), cfg)
    )


def _answer(student: Student, version: StudentVersion, problems: list[Problem]) -> list[Attempt]:
    student.use(version)
    attempts = student.answer(problems)
    if [a.problem for a in attempts] != problems:
        raise RuntimeError(
            f"student {version.name} returned attempts that do not match the {len(problems)} problems"
        )
    return attempts


def _problems(heldout: HeldOut, split: str, cfg: EvalConfig) -> list[Problem]:
    sets = heldout.val if split == "val" else heldout.test
    return [p for problems in sets.values() for p in problems[: cfg.max_per_skill]]


def run_suite(
    cfg: EvalConfig,
    student: Student,
    version: StudentVersion,
    tree: SkillTree,
    heldout: HeldOut,
    training: Sequence[Example] = (),
    run_dir: str | None = None,
) -> SuiteReport:
    """Evaluate ``version`` and the base on the suite's splits; ``training`` is the data the run trained
    on up to ``version`` (for transfer skills and the contamination check).

    The student is left serving ``version``.
    """
    base = StudentVersion(name="base", round=0)
    leaves = tree.leaves()
    unknown = set(cfg.transfer_skills or ()) - set(leaves)
    if unknown:
        raise ValueError(f"transfer_skills {sorted(unknown)} are not leaf skills; leaves are {leaves}")
    trained = Counter(s for e in training for s in e.problem.skill_ids)
    transfer = (
        cfg.transfer_skills if cfg.transfer_skills is not None else tuple(s for s in leaves if not trained[s])
    )
    attempts: dict[tuple[str, str], list[Attempt]] = {}
    for split in dict.fromkeys(("val", *cfg.splits)):
        problems = _problems(heldout, split, cfg)
        attempts[split, "base"] = _answer(student, base, problems)
        if split in cfg.splits:
            attempts[split, "student"] = _answer(student, version, problems)
    base_val = {
        s: score([a for a in attempts["val", "base"] if s in a.problem.skill_ids], cfg) for s in leaves
    }
    strong = tuple(
        s for s in leaves if base_val[s].n and base_val[s].accuracy.estimate >= cfg.strong_threshold
    )
    splits = []
    for split in cfg.splits:
        mine, theirs = attempts[split, "student"], attempts[split, "base"]
        branches = [n.id for n in tree.nodes if n.id not in leaves]
        splits.append(
            SplitResult(
                split=split,
                overall=_result("overall", leaves, mine, theirs, cfg),
                per_skill=tuple(_result(s, [s], mine, theirs, cfg) for s in leaves),
                per_node=tuple(_result(b, tree.leaves_under(b), mine, theirs, cfg) for b in branches),
                transfer=_result("transfer", transfer, mine, theirs, cfg),
                forgetting=_result("forgetting", strong, mine, theirs, cfg),
            )
        )
    return SuiteReport(
        suite=cfg.name,
        run_dir=run_dir,
        student=version,
        base=base,
        interval=f"{cfg.interval} {cfg.level:.0%}",
        trained_per_skill={s: trained[s] for s in leaves},
        transfer_skills=tuple(transfer),
        strong_skills=strong,
        splits=tuple(splits),
        contamination=check_overlap([e.problem.question for e in training], eval_questions(heldout)),
    )


def result_rows(split: SplitResult) -> tuple[list[str], list[list[str]]]:
    """Header and rows for one split: every skill, branch and group, base vs student with intervals."""
    header = ["skill", "n", "base", "student", "change", "wrong", "format err"]

    def row(r: Result, label: str | None = None) -> list[str]:
        s, b = r.student, r.base
        return [
            label or r.name,
            str(s.n),
            f"{b.accuracy.estimate:.3f}",
            f"{s.accuracy.estimate:.3f} [{s.accuracy.low:.3f}, {s.accuracy.high:.3f}]",
            f"{r.delta:+.3f}",
            str(s.wrong),
            str(s.format_errors),
        ]

    rows = [row(r) for r in split.per_skill] + [row(r, f"{r.name} (branch)") for r in split.per_node]
    rows.append(row(split.transfer, f"transfer: {', '.join(split.transfer.skills) or 'none'}"))
    rows.append(row(split.forgetting, f"initially strong: {', '.join(split.forgetting.skills) or 'none'}"))
    rows.append(row(split.overall))
    return header, rows
