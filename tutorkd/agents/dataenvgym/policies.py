"""DataEnvGym's skill-list and skill-tree teacher policies, as deterministic heuristics.

Skill-list: each weak skill gets an equal share of the round's examples (DataEnvGym generates a fixed
number of data specs per weak skill category). Skill-tree: a per-skill allocation that alternates
*explore* (start targeting a skill not yet targeted) and *exploit* (shift allocation by the change in
validation accuracy each targeted skill showed since the last round: DataEnvGym's reward). In the
arithmetic domain the leaves are fixed, so exploring targets a not-yet-targeted leaf of a branch
instead of proposing new subskills. A round's examples are split over the targeted skills in
proportion to their allocation.

Both policies need skill labels: open-ended feedback raises a ``ValueError`` naming the fix. The
skill-tree policy at the ``skill_list`` level treats the listed skills as one branch (``all``), since
the environment hides the tree. Its state is a ``SkillTreeState`` record that the loop saves with
each round (``skill_tree_state.json``) and hands back through ``restore`` before the next plan, so a
resumed run plans exactly as an uninterrupted one.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from tutorkd.agents.baselines.policies import Style, even_split, round_total, styled_items
from tutorkd.config import SkillPolicyConfig
from tutorkd.io import read_json
from tutorkd.schema import Feedback, Plan, Record

log = logging.getLogger(__name__)

STATE_FILE = "skill_tree_state.json"


def split_by_weight(total: int, weights: Sequence[float]) -> list[int]:
    """Split ``total`` in proportion to ``weights`` (largest remainder; ties to the earlier entry)."""
    whole = sum(weights)
    if not weights or whole <= 0 or min(weights) < 0:
        raise ValueError(f"cannot split {total} examples by weights {list(weights)}; need a positive one")
    exact = [total * w / whole for w in weights]
    counts = [int(x) for x in exact]
    by_remainder = sorted(range(len(weights)), key=lambda i: (counts[i] - exact[i], i))
    for i in by_remainder[: total - sum(counts)]:
        counts[i] += 1
    return counts


def skill_accuracy(feedback: Feedback, policy: str) -> dict[str, float]:
    """The feedback's per-skill validation accuracy; ``ValueError`` for open-ended feedback."""
    if feedback.skill_accuracy is None:
        raise ValueError(
            f"the {policy} policy needs skill labels, but {feedback.level.value} feedback shows none; "
            "use an environment at level skill_list or skill_tree (or the open-ended teacher)"
        )
    return feedback.skill_accuracy


def branches(feedback: Feedback, policy: str) -> dict[str, list[str]]:
    """Branch id to its leaves: the tree's top-level branches, or one branch ``all`` without a tree."""
    acc = skill_accuracy(feedback, policy)
    tree = feedback.tree
    if tree is None:
        return {"all": list(acc)}
    return {b: tree.leaves_under(b) for b in tree.children(None)}


class SkillListPolicy:
    """DataEnvGym's skill-list policy: an equal share of the round for every weak skill.

    A skill is weak when its validation accuracy is below ``weak_below``; with no weak skill the round
    is spread over all skills, and the plan's reasoning says so.
    """

    def __init__(self, per_round: int, style: Style, config: SkillPolicyConfig) -> None:
        self.per_round, self.style, self.config = per_round, style, config

    def weak(self, feedback: Feedback) -> list[str]:
        """The weak skills, in the feedback's order."""
        acc = skill_accuracy(feedback, "skill_list")
        return [s for s, a in acc.items() if a < self.config.weak_below]

    def plan(self, feedback: Feedback) -> Plan:
        """Split ``min(per_round, budget_left)`` evenly over the weak skills."""
        weak = self.weak(feedback)
        targets = weak or list(skill_accuracy(feedback, "skill_list"))
        total = round_total(feedback, self.per_round)
        counts = even_split(total, len(targets))
        why = (f"{len(weak)} skills below {self.config.weak_below}" if weak
               else f"no skill below {self.config.weak_below}, so all {len(targets)} skills")
        return Plan(items=styled_items([(s, None) for s in targets], counts, self.style),
                    reasoning=f"Skill-list: {total} examples split evenly over {why}.")


class TreeAction(Record):
    """One skill-tree action (DataEnvGym's ``Explore``/``Exploit``, over fixed leaves)."""

    kind: Literal["explore", "exploit"]
    amounts: dict[str, int]
    """Explore: newly targeted skill to its starting units. Exploit: targeted skill to its change."""
    reasoning: str = ""
    source: Literal["heuristic", "llm", "fallback"] = "heuristic"
    """Who chose it: the heuristic, an LLM, or the heuristic after an invalid LLM action."""


class SkillTreeState(Record):
    """The skill-tree policy's state after one action; saved per round as ``skill_tree_state.json``."""

    student_round: int
    """Round of the feedback the action answered."""
    allocation: dict[str, int]
    """Targeted skill to its allocation units; the round's examples are split in these proportions."""
    accuracy: dict[str, float]
    """Validation accuracy of every skill in that feedback: the baseline of the next exploit's gains."""
    action: TreeAction


@dataclass(frozen=True)
class TreeContext:
    """What choosing an action looks at: feedback accuracies, branches, and the previous state."""

    accuracy: dict[str, float]
    branches: dict[str, list[str]]
    before: SkillTreeState | None

    @property
    def allocation(self) -> dict[str, int]:
        """The allocation before the action (empty at the first round)."""
        return dict(self.before.allocation) if self.before else {}

    def gains(self) -> dict[str, float]:
        """Change of validation accuracy of each targeted skill since the previous action."""
        if self.before is None:
            return {}
        return {s: self.accuracy[s] - self.before.accuracy[s] for s in self.allocation}


class SkillTreePolicy:
    """DataEnvGym's skill-tree policy with the alternating explore/exploit rule of its released examples.

    Explore targets, in every branch, the weakest not-yet-targeted skill below ``weak_below`` with
    ``explore_amount`` units (at the first round with nothing weak: the weakest skill overall). Exploit
    moves each targeted weak skill's units by up to ``exploit_step`` in proportion to its accuracy gain
    (the largest gain gets the full step), takes ``exploit_step`` from skills no longer weak, and keeps
    every allocation within ``[1, max_allocation]``. Explore follows exploit and vice versa; an explore
    with no candidate becomes an exploit.
    """

    def __init__(self, per_round: int, style: Style, config: SkillPolicyConfig) -> None:
        self.per_round, self.style, self.config = per_round, style, config
        self.state: SkillTreeState | None = None

    def context(self, feedback: Feedback) -> TreeContext:
        """The context an action for ``feedback`` is chosen in."""
        return TreeContext(accuracy=dict(skill_accuracy(feedback, "skill_tree")),
                           branches=branches(feedback, "skill_tree"), before=self.state)

    def explore(self, ctx: TreeContext) -> TreeAction | None:
        """Target the weakest untargeted weak skill of each branch; ``None`` if there is none."""
        acc, targeted = ctx.accuracy, ctx.allocation
        new = {}
        for leaves in ctx.branches.values():
            open_ = [s for s in leaves if s not in targeted and acc[s] < self.config.weak_below]
            if open_:
                new[min(open_, key=lambda s: acc[s])] = self.config.explore_amount
        if not new and not targeted:
            new[min(acc, key=lambda s: acc[s])] = self.config.explore_amount
        if not new:
            return None
        return TreeAction(kind="explore", amounts=new, reasoning=f"explore: start targeting {sorted(new)}")

    def exploit(self, ctx: TreeContext) -> TreeAction:
        """Shift each targeted skill's units by its observed accuracy gain."""
        gains, step, weak_below = ctx.gains(), self.config.exploit_step, self.config.weak_below
        top = max((abs(g) for s, g in gains.items() if ctx.accuracy[s] < weak_below), default=0.0)
        deltas = {}
        for s, units in ctx.allocation.items():
            if ctx.accuracy[s] >= weak_below:
                delta = -step
            else:
                delta = round(step * gains[s] / top) if top > 0 else 0
            deltas[s] = min(max(units + delta, 1), self.config.max_allocation) - units
        return TreeAction(kind="exploit", amounts=deltas,
                          reasoning="exploit: units moved by accuracy gain " +
                          ", ".join(f"{s} {gains[s]:+.2f}" for s in sorted(gains)))

    def heuristic(self, ctx: TreeContext) -> TreeAction:
        """The alternating rule: explore first and after an exploit, exploit after an explore."""
        if ctx.before is not None and ctx.before.action.kind == "explore":
            return self.exploit(ctx)
        return self.explore(ctx) or self.exploit(ctx)

    def check(self, action: TreeAction, ctx: TreeContext) -> str | None:
        """Why ``action`` cannot be applied in ``ctx`` (``None`` if it can): ``empty``,
        ``unknown_skill``, ``already_targeted``, ``not_targeted`` or ``over_budget``."""
        if not action.amounts:
            return "empty"
        if not set(action.amounts) <= set(ctx.accuracy):
            return "unknown_skill"
        targeted = ctx.allocation
        if action.kind == "explore":
            if set(action.amounts) & set(targeted):
                return "already_targeted"
            after = action.amounts
        else:
            if not set(action.amounts) <= set(targeted):
                return "not_targeted"
            after = {s: targeted[s] + d for s, d in action.amounts.items()}
        if any(not 1 <= units <= self.config.max_allocation for units in after.values()):
            return "over_budget"
        return None

    def commit(self, feedback: Feedback, ctx: TreeContext, action: TreeAction) -> Plan:
        """Apply a checked ``action``, keep the new state, and plan the round from its allocation."""
        reason = self.check(action, ctx)
        if reason is not None:
            raise ValueError(f"skill-tree action {action!r} is invalid ({reason})")
        allocation = ctx.allocation
        for s, amount in action.amounts.items():
            allocation[s] = allocation.get(s, 0) + amount
        self.state = SkillTreeState(student_round=feedback.round, allocation=allocation,
                                    accuracy=ctx.accuracy, action=action)
        total = round_total(feedback, self.per_round)
        skills = list(allocation)
        counts = split_by_weight(total, [allocation[s] for s in skills])
        items = styled_items([(s, None) for s in skills], counts, self.style)
        units = ", ".join(f"{s}={allocation[s]}" for s in skills)
        return Plan(items=items, reasoning=f"Skill-tree ({action.source} {action.kind}): {action.reasoning}. "
                    f"{total} examples split by allocation {units}.")

    def plan(self, feedback: Feedback) -> Plan:
        """Choose the heuristic action, apply it and plan; advances the state by one action."""
        ctx = self.context(feedback)
        return self.commit(feedback, ctx, self.heuristic(ctx))

    def views(self) -> list[tuple[str, Record]]:
        """The state after the last plan, for the loop to save with the round."""
        return [(STATE_FILE, self.state)] if self.state is not None else []

    def restore(self, folder: Path) -> None:
        """Load the state saved in ``folder`` (an earlier round's directory); none there: start afresh."""
        path = Path(folder) / STATE_FILE
        self.state = read_json(path, SkillTreeState) if path.exists() else None
