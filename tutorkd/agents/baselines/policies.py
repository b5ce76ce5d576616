"""The baseline teacher policies: uniform over skills, and DataEnvGym's open-ended error-driven one.

Neither models its student; they are the references a student-modelling teacher must beat. Both are
deterministic: the same feedback always gives the same plan.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

from tutorkd.schema import Feedback, Plan, PlanItem, Problem

Style = Literal["rationale", "direct", "mixed"]
"""Completion style a policy asks for; ``mixed`` alternates ``rationale`` and ``direct`` per example."""


def even_split(total: int, n: int) -> list[int]:
    """Split ``total`` into ``n`` counts differing by at most one; the first ones get the remainder."""
    if n < 1:
        raise ValueError(f"cannot split {total} examples over {n} targets; need at least one")
    base, rem = divmod(total, n)
    return [base + (i < rem) for i in range(n)]


def round_total(feedback: Feedback, per_round: int) -> int:
    """Examples to ask for this round: ``per_round``, capped by the budget left (none once done)."""
    return 0 if feedback.done else max(0, min(per_round, feedback.budget_left))


def styled_items(
    targets: Sequence[tuple[str | None, Problem | None]],
    counts: Sequence[int],
    style: Style,
    steps: Sequence[str | None] | None = None,
) -> tuple[PlanItem, ...]:
    """One ``PlanItem`` per (skill, like) target and count, in a concrete style; zero counts dropped.
    ``steps``, when given, is each target's ``PlanItem.step``.

    ``mixed`` alternates over a running example index across the whole plan, so exactly half (rounded
    up) of the plan is ``rationale`` even when every target asks for one example. A target whose
    examples straddle both styles becomes two items.
    """
    items: list[PlanItem] = []
    offset = 0
    steps = [None] * len(targets) if steps is None else steps
    for (skill_id, like), count, step in zip(targets, counts, steps, strict=True):
        if style == "mixed":
            # Even indices in [offset, offset + count) are rationale, odd ones direct.
            rationale = (count + 1 - offset % 2) // 2
            parts = (("rationale", rationale), ("direct", count - rationale))
        else:
            parts = ((style, count),)
        items += [PlanItem(count=c, skill_id=skill_id, like=like, step=step, style=s) for s, c in parts if c]
        offset += count
    return tuple(items)


class UniformPolicy:
    """Spread each round's examples evenly over the domain's leaf skills, whatever the feedback says.

    The skill list comes from the domain at construction, so the policy works at every structure
    level, including open-ended environments that show the teacher no skills.
    """

    def __init__(self, skills: Sequence[str], per_round: int, style: Style = "rationale") -> None:
        if not skills:
            raise ValueError("UniformPolicy needs at least one skill; pass the domain's tree.leaves()")
        self.skills = tuple(skills)
        self.per_round = per_round
        self.style = style

    def plan(self, feedback: Feedback) -> Plan:
        """Ask for ``min(per_round, budget_left)`` examples, split evenly over the skills."""
        total = round_total(feedback, self.per_round)
        counts = even_split(total, len(self.skills))
        items = styled_items([(s, None) for s in self.skills], counts, self.style)
        return Plan(
            items=items,
            reasoning=f"Uniform: {total} {self.style} examples spread evenly over {len(self.skills)} skills "
            f"({min(counts)}-{max(counts)} each).",
        )


class ErrorDrivenPolicy:
    """DataEnvGym's open-ended baseline: ask for problems like each error the student made.

    It reads only ``feedback.errors`` and never a skill label (open-ended feedback strips them), so it
    runs at every structure level. ``skills`` is used only when no errors are shown: then it falls back
    to uniform over the skills and says so in the plan's reasoning.
    """

    def __init__(self, skills: Sequence[str], per_round: int, style: Style = "rationale") -> None:
        self.fallback = UniformPolicy(skills, per_round, style)
        self.per_round = per_round
        self.style = style

    def plan(self, feedback: Feedback) -> Plan:
        """Ask for ``min(per_round, budget_left)`` examples resembling the errors, split evenly."""
        errors = feedback.errors
        if not errors:
            uniform = self.fallback.plan(feedback)
            return Plan(items=uniform.items, reasoning=f"No errors shown; falling back. {uniform.reasoning}")
        total = round_total(feedback, self.per_round)
        counts = even_split(total, len(errors))
        items = styled_items([(None, a.problem) for a in errors], counts, self.style)
        targeted = sum(1 for c in counts if c)
        return Plan(
            items=items,
            reasoning=f"Error-driven: {total} {self.style} examples resembling {targeted} of the "
            f"{len(errors)} errors shown ({min(counts)}-{max(counts)} each).",
        )
