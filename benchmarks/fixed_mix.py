"""A hand-set allocation, as a teacher plug-in: the ceiling an allocation-only teacher can reach.

``FixedMixPolicy`` splits every round over fixed skill weights, whatever the feedback says. It models
no student; its weights are chosen knowing, from earlier benchmarks, which skills this student learns
within the budget (``add.carry`` and ``sub.borrow``; ``mul.by_digit`` and ``multi.*`` stay near 0 after
3000 examples under every teacher) and which siblings the targeted data makes it misapply. It answers
issue 17's question "can any split of procedurally drawn examples reach uniform's weak-skill accuracy at
0.25x of its data without forgetting?" in the real harness (``teaching_efficiency.py --teachers mix-...``).
"""

from __future__ import annotations

from tutorkd.agents.baselines.policies import round_total, styled_items
from tutorkd.agents.dataenvgym.policies import split_by_weight
from tutorkd.agents.teacher import BuildInputs
from tutorkd.schema import Feedback, Plan

MIXES: dict[str, dict[str, float]] = {
    # Targets only: every example to the two skills this student learns.
    "mix-targets": {"add.carry": 0.5, "sub.borrow": 0.5},
    # Targets with 40 % contrast from their no-carry / no-borrow siblings.
    "mix-contrast40": {"add.carry": 0.3, "sub.borrow": 0.3, "add.no_carry": 0.2, "sub.no_borrow": 0.2},
    # Subtraction contrast heavier (sub.no_borrow is the sibling that slips), add.no_carry's lighter.
    "mix-contrast35": {"add.carry": 0.35, "sub.borrow": 0.3, "add.no_carry": 0.1, "sub.no_borrow": 0.25},
    # As mix-contrast35, with the no-carry share moved to sub.no_borrow (add.no_carry held without it).
    "mix-sub30": {"add.carry": 0.35, "sub.borrow": 0.3, "add.no_carry": 0.05, "sub.no_borrow": 0.3},
    # As mix-contrast35, half its no-carry share moved to replaying cmp.same_lead, which no example
    # practised and which fell 5-7 points under the facts-balanced mix-contrast35.
    "mix-replay": {"add.carry": 0.35, "sub.borrow": 0.3, "add.no_carry": 0.05, "sub.no_borrow": 0.25,
                   "cmp.same_lead": 0.05},
}
"""Named allocations (skill: weight), run as teachers ``mix-targets`` etc. by ``teaching_efficiency.py``."""

SCHEDULES: dict[str, list[dict[str, float]]] = {
    # One target a round, then both: each round's optimizer steps all pull one way (the same examples
    # as mix-targets over 3 rounds, in another order).
    "seq-targets": [{"add.carry": 1.0}, {"sub.borrow": 1.0}, {"add.carry": 0.5, "sub.borrow": 0.5}],
}
"""Allocations that change by round (round k uses entry k-1, the last one after that)."""


class FixedMixPolicy:
    """Implements ``tutorkd.protocols.Policy``: each round's examples split over ``weights``."""

    def __init__(self, inputs: BuildInputs, weights: dict[str, float] | list[dict[str, float]]) -> None:
        self.schedule = [dict(w) for w in weights] if isinstance(weights, list) else [dict(weights)]
        unknown = sorted({s for w in self.schedule for s in w} - set(inputs.leaves()))
        if unknown:
            raise ValueError(f"mix weights name skills the domain lacks: {unknown}")
        self.per_round, self.style = inputs.cfg.per_round, inputs.cfg.style

    def plan(self, feedback: Feedback) -> Plan:
        """``min(per_round, budget_left)`` examples in proportion to this round's weights."""
        total = round_total(feedback, self.per_round)
        # Why feedback.round as the index: it counts the rounds trained so far (0 while planning round 1).
        weights = self.schedule[min(feedback.round, len(self.schedule) - 1)]
        skills = list(weights)
        counts = split_by_weight(total, [weights[s] for s in skills]) if total else [0] * len(skills)
        return Plan(items=styled_items([(s, None) for s in skills], counts, self.style),
                    reasoning=f"Fixed mix: {total} examples, " + ", ".join(
                        f"{s} {n}" for s, n in zip(skills, counts, strict=True)) + ".")


def mix_teacher(name: str) -> dict:
    """The teacher spec (a dict for ``TeacherConfig``) of the named mix."""
    weights = MIXES[name] if name in MIXES else SCHEDULES[name]
    return {"name": name, "policy": {"import": "fixed_mix:FixedMixPolicy", "weights": weights},
            "per_round": 1000, "style": "rationale", "engine": "procedural"}
