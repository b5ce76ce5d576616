"""Step focus for the learning-progress teacher: a target's examples practise the steps it got wrong.

A tiny student's errors on a skill it is learning are mostly single wrong steps inside the right
procedure (``7+8=14``, ``15-8`` never written): the skill is a set of facts, some known, some not
(measured on the base student: 43 of the 98 step computations of ``add.carry`` seen on validation were
never right, the others mostly were). Drawing a target's examples uniformly spends most of them on steps
the student already gets right. With ``focus: steps`` the policy reads, for each wrong validation
answer, the first step of its worked answer that differs from the gold one and asks for problems that
contain the gold step there (``PlanItem.step``), in proportion to how often each step was missed.

Reads the rationale steps only (``tutorkd.agents.tpd.slips.steps``): a domain whose rationales have no
computed steps yields no step, and its targets keep plain draws of their skill.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence

from tutorkd.agents.dataenvgym.policies import split_by_weight
from tutorkd.agents.tpd.slips import first_wrong_step, steps
from tutorkd.schema import Attempt


def missed_step(attempt: Attempt) -> str | None:
    """The gold computation at the first step where ``attempt``'s worked answer goes wrong (``7+8``),
    whether it wrote a wrong result there or computed something else; ``None`` for a right answer, a
    problem without a gold rationale, or an answer whose steps all match (its slip is elsewhere)."""
    rationale = attempt.problem.rationale
    if attempt.correct or rationale is None:
        return None
    gold = steps(rationale)
    i = first_wrong_step(gold, steps(attempt.output))
    return None if i is None else gold[i][0]


def missed_steps(errors: Iterable[Attempt], skills: Sequence[str]) -> dict[str, Counter[str]]:
    """For each of ``skills``, how often each gold step was the first one its wrong answers missed.
    An error counts for the first of its skill labels that is among ``skills``."""
    wanted = set(skills)
    out: dict[str, Counter[str]] = {s: Counter() for s in skills}
    for attempt in errors:
        skill = next((s for s in attempt.problem.skill_ids if s in wanted), None)
        step = missed_step(attempt)
        if skill is not None and step is not None:
            out[skill][step] += 1
    return out


def focus_split(count: int, missed: Counter[str], share: float) -> list[tuple[str | None, int]]:
    """``count`` examples of one skill as (step, n) pairs: ``share`` of them over the ``missed`` steps
    in proportion to their counts (most missed first; ties by the step's text, so plans are
    reproducible), the rest (``None``) plain draws of the skill. Zero counts are dropped."""
    focused = round(count * share) if missed else 0
    order = sorted(missed, key=lambda s: (-missed[s], s))
    parts: list[tuple[str | None, int]] = []
    if focused:
        parts += zip(order, split_by_weight(focused, [missed[s] for s in order]), strict=True)
    parts.append((None, count - focused))
    return [(step, n) for step, n in parts if n]
