"""Procedural error diagnosis: explain a student's wrong answers with known buggy procedures.

This is the principle-discovery step (TPD) for the arithmetic domain. A wrong answer is *explained*
by a bug of ``tutorkd.agents.tpd.bugs`` when the bug reproduces it exactly; each bug carries a principle
("When ..., do/avoid ..."), so the diagnosis turns validation errors into principles linked to the
errors they explain. Diagnose validation attempts only, never test ones.

Attribution rule, when several bugs reproduce the same wrong answer (all of them are kept in
``DiagnosedError.matches``; the error is counted for exactly one, ``DiagnosedError.bug_id``):

1. The bug that fits the student best on the problem's own skill: the lowest
   ``contradicted - matched`` over the batch's attempts of that skill, where a bug is contradicted by
   an attempt on which it predicts a wrong answer that the student did not write (a correct answer,
   or a different wrong one). One bug that explains many errors beats several that each explain a
   few (parsimony), and a bug whose other predictions failed is not believed. Contradictions need
   correct attempts: pass all validation attempts, not only the errors, whenever they are available.
2. Then a bug of a method (``Bug.generic`` false) beats a generic answer-copying slip. Method bugs
   apply only to their own skills, so every candidate is a bug of the problem's own skill.
3. Then library order (``BUGS`` lists the more specific bugs first within a branch).

Comparisons have only two answers, so from errors alone every comparison bug explains every wrong
comparison it applies to and the tie goes to library order (``cmp.reversed``); with correct attempts
in the batch, rule 1 separates them.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Container, Sequence
from dataclasses import dataclass

from tutorkd.agents.tpd.bugs import BUGS, Bug, operands
from tutorkd.environments.arithmetic import ArithmeticDomain
from tutorkd.protocols import Domain
from tutorkd.schema import Attempt, Problem, Record


class DiagnosedError(Record):
    """One wrong answer (with a parseable answer) and the bugs that reproduce it."""

    problem_id: str
    question: str
    skill_id: str
    """Classified from the question, so skill labels are not needed."""
    answer: str
    """What the student wrote."""
    gold: str
    matches: tuple[str, ...]
    """Ids of every bug whose procedure gives exactly ``answer``, in library order."""
    bug_id: str | None
    """The bug the error is attributed to (see the module's attribution rule); ``None`` if unexplained."""


class BugEvidence(Record):
    """How one bug fared against a batch of attempts."""

    bug_id: str
    matched: int
    """Wrong answers it reproduces, ties included."""
    attributed: int
    """Wrong answers attributed to it after tie-breaking."""
    contradicted: int
    """Attempts on which it predicts a wrong answer that the student did not write."""
    examples: tuple[str, ...]
    """Problem ids of the first matched errors (at most ``max_examples``)."""


class Principle(Record):
    """A corrective principle, with the errors it explains."""

    bug_id: str
    text: str
    """``When <situation>, <do/avoid ...>``."""
    skills: tuple[str, ...]
    """Leaf skills of the errors it explains, in the bug's skill order."""
    count: int
    """Errors attributed to its bug."""
    share: float
    """``count`` over all wrong answers (format errors excluded)."""
    problem_ids: tuple[str, ...]
    """Every error it explains."""


class Diagnosis(Record):
    """A batch of attempts diagnosed against the bug library."""

    attempts: int
    wrong: int
    """Attempts with a parseable but wrong answer."""
    format_errors: int
    """Attempts with no parseable answer: counted here, never explained."""
    explained: int
    """Wrong answers that at least one bug reproduces."""
    bugs: tuple[BugEvidence, ...]
    """Bugs that matched at least one error, most attributed first."""
    principles: tuple[Principle, ...]
    """Principles of the bugs with attributed errors, largest count first."""
    errors: tuple[DiagnosedError, ...]

    @property
    def coverage(self) -> float:
        """Share of the wrong answers the library explains (0.0 when nothing is wrong)."""
        return self.explained / self.wrong if self.wrong else 0.0


def diagnose(
    attempts: Sequence[Attempt],
    domain: ArithmeticDomain,
    bugs: Sequence[Bug] = BUGS,
    max_examples: int = 5,
) -> Diagnosis:
    """Explain every wrong answer in ``attempts`` with the bugs that reproduce it.

    Skills come from ``domain.classify`` on the question, so labelled and label-stripped attempts
    give the same diagnosis. Correct attempts only count as contradictions (see the module's rule).
    """
    if len({b.id for b in bugs}) != len(bugs):
        raise ValueError("bug ids must be unique")
    matched: dict[str, list[str]] = {b.id: [] for b in bugs}
    contradicted: Counter[str] = Counter()
    # (bug id, skill id) to contradictions minus matches on that skill: rule 1 of the module doc.
    misfit: Counter[tuple[str, str]] = Counter()
    pending: list[tuple[Attempt, str, str, tuple[str, ...]]] = []
    format_errors = 0
    for attempt in attempts:
        if attempt.parsed_answer is None:
            format_errors += 1
            continue
        question = attempt.problem.question
        skill_id, ops = domain.classify(question), operands(question)
        matches: list[str] = []
        for bug in bugs:
            predicted = bug.answer(skill_id, ops)
            if predicted is None or predicted == attempt.problem.answer:
                continue
            if not attempt.correct and predicted == attempt.parsed_answer:
                matches.append(bug.id)
                matched[bug.id].append(attempt.problem.id)
                misfit[bug.id, skill_id] -= 1
            else:
                contradicted[bug.id] += 1
                misfit[bug.id, skill_id] += 1
        if not attempt.correct:
            pending.append((attempt, skill_id, attempt.parsed_answer, tuple(matches)))

    order = {b.id: (b.generic, i) for i, b in enumerate(bugs)}

    def rank(bug_id: str, skill_id: str) -> tuple[int, bool, int]:
        return (misfit[bug_id, skill_id], *order[bug_id])

    errors = tuple(
        DiagnosedError(
            problem_id=a.problem.id,
            question=a.problem.question,
            skill_id=skill_id,
            answer=answer,
            gold=a.problem.answer,
            matches=matches,
            bug_id=min(matches, key=lambda b: rank(b, skill_id)) if matches else None,
        )
        for a, skill_id, answer, matches in pending
    )
    attributed: dict[str, list[DiagnosedError]] = {b.id: [] for b in bugs}
    for e in errors:
        if e.bug_id is not None:
            attributed[e.bug_id].append(e)

    evidence = [
        BugEvidence(
            bug_id=b.id,
            matched=len(matched[b.id]),
            attributed=len(attributed[b.id]),
            contradicted=contradicted[b.id],
            examples=tuple(matched[b.id][:max_examples]),
        )
        for b in bugs
        if matched[b.id]
    ]
    principles = [
        Principle(
            bug_id=b.id,
            text=b.principle,
            skills=tuple(s for s in b.skills if any(e.skill_id == s for e in attributed[b.id])),
            count=len(attributed[b.id]),
            share=len(attributed[b.id]) / len(errors),
            problem_ids=tuple(e.problem_id for e in attributed[b.id]),
        )
        for b in bugs
        if attributed[b.id]
    ]
    return Diagnosis(
        attempts=len(attempts),
        wrong=len(errors),
        format_errors=format_errors,
        explained=sum(1 for e in errors if e.matches),
        # ``sorted`` is stable: equal counts stay in library order.
        bugs=tuple(sorted(evidence, key=lambda ev: (-ev.attributed, -ev.matched))),
        principles=tuple(sorted(principles, key=lambda p: -p.count)),
        errors=errors,
    )


def discriminating_problems(
    bug: Bug,
    skill_id: str,
    n: int,
    rng: random.Random,
    domain: Domain,
    exclude: Container[str] = frozenset(),
) -> list[Problem]:
    """``n`` distinct problems of ``skill_id`` on which ``bug`` and the right procedure disagree.

    Rejection sampling over ``domain.sample``: training on these separates the bug from the correct
    method. ``ValueError`` if the bug does not apply to the skill or never disagrees with the gold
    answer in the draws; ``RuntimeError`` if fewer than ``n`` distinct ones are found.
    """
    if skill_id not in bug.skills:
        raise ValueError(f"bug {bug.id} does not apply to {skill_id}; its skills are {bug.skills}")
    found: dict[str, Problem] = {}
    max_draws = 200 * n + 2000
    for _ in range(max_draws):
        if len(found) == n:
            break
        problem = domain.sample(skill_id, 1, rng, exclude)[0]
        predicted = bug.answer(skill_id, operands(problem.question))
        if predicted is not None and predicted != problem.answer:
            found.setdefault(problem.question, problem)
    if not found:
        raise ValueError(f"bug {bug.id} never discriminates on {skill_id} in {max_draws} draws")
    if len(found) < n:
        raise RuntimeError(
            f"found only {len(found)}/{n} distinct {skill_id} problems that discriminate {bug.id} "
            f"in {max_draws} draws"
        )
    return list(found.values())


class TrackedPrinciple(Record):
    """A principle across rounds: when it became active, its latest count, when it retired."""

    bug_id: str
    text: str
    skills: tuple[str, ...]
    since: int
    """Round in which it (last) became active."""
    count: int
    """Errors its bug explained in the latest diagnosis."""
    retired: int | None = None
    """Round in which its errors stopped; ``None`` while active."""


class PrincipleHistory(Record):
    """The active principles after one round's diagnosis, for the run report."""

    round: int
    active: tuple[TrackedPrinciple, ...]
    """Largest count first."""
    activated: tuple[str, ...]
    """Bug ids that became active this round."""
    retired: tuple[TrackedPrinciple, ...]
    """Principles retired this round (their ``retired`` is this round)."""
    wrong: int
    coverage: float


@dataclass(frozen=True)
class PrincipleTracker:
    """Keep a set of active principles across rounds, with hysteresis.

    A principle becomes active when its bug explains at least ``min_count`` errors in a round, and an
    active one is retired when its count falls below ``retire_below`` (by default, when its errors
    stopped). In between it stays active, so one quiet round does not make it flicker.
    """

    min_count: int = 2
    retire_below: int = 1

    def __post_init__(self) -> None:
        if not 1 <= self.retire_below <= self.min_count:
            raise ValueError(
                f"need 1 <= retire_below <= min_count, got {self.retire_below} and {self.min_count}"
            )

    def update(self, previous: PrincipleHistory | None, diagnosis: Diagnosis, round: int) -> PrincipleHistory:
        """The history after ``round``'s diagnosis, given the previous round's (``None`` at first)."""
        if previous is not None and round <= previous.round:
            raise ValueError(f"round {round} does not follow round {previous.round}")
        found = {p.bug_id: p for p in diagnosis.principles}
        active: list[TrackedPrinciple] = []
        retired: list[TrackedPrinciple] = []
        for old in previous.active if previous is not None else ():
            count = found[old.bug_id].count if old.bug_id in found else 0
            if count >= self.retire_below:
                active.append(old.model_copy(update={"count": count}))
            else:
                retired.append(old.model_copy(update={"count": count, "retired": round}))
        kept = {t.bug_id for t in active} | {t.bug_id for t in retired}
        activated = [p for p in diagnosis.principles if p.bug_id not in kept and p.count >= self.min_count]
        active += [
            TrackedPrinciple(bug_id=p.bug_id, text=p.text, skills=p.skills, since=round, count=p.count)
            for p in activated
        ]
        return PrincipleHistory(
            round=round,
            active=tuple(sorted(active, key=lambda t: -t.count)),
            activated=tuple(p.bug_id for p in activated),
            retired=tuple(retired),
            wrong=diagnosis.wrong,
            coverage=diagnosis.coverage,
        )


def render_diagnosis(d: Diagnosis) -> str:
    """A plain-text table of the principles (bug, count, share, principle) for the CLI and reports."""
    lines = [
        f"{d.explained}/{d.wrong} wrong answers explained ({d.coverage:.0%}); "
        f"{d.format_errors} format errors not diagnosed; {d.attempts} attempts.",
        f"{'bug':<26} {'count':>5} {'share':>6}  principle",
    ]
    lines += [f"{p.bug_id:<26} {p.count:>5} {p.share:>6.0%}  {p.text}" for p in d.principles]
    unexplained = d.wrong - d.explained
    if unexplained:
        lines.append(f"{'(unexplained)':<26} {unexplained:>5} {unexplained / d.wrong:>6.0%}")
    return "\n".join(lines)
