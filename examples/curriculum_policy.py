"""A teacher policy plug-in: each round, spend most of the examples on the student's weakest skills.

Run it from the repository root, where ``examples/curriculum.yaml`` names this class by import path
(``policy: {import: examples.curriculum_policy:CurriculumPolicy, focus: 3}``)::

    tutorkd teach --teacher examples/curriculum.yaml --rounds 2 --backend transformers

tutorkd imports the class and checks it against ``tutorkd.protocols.Policy`` when the config loads
(from elsewhere, put the repository root on ``PYTHONPATH``), then builds it as
``CurriculumPolicy(inputs, **options)``, ``inputs`` being the ``tutorkd.agents.teacher.BuildInputs``
the built-in policies get and the options the spec's other keys. Because the class defines ``views``,
its record is saved each round as ``rounds/r{k}/curriculum.json``; it defines no ``restore``, as its
plans depend on the round's feedback alone.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from tutorkd.agents.baselines.policies import even_split, round_total, styled_items
from tutorkd.schema import Feedback, Plan, Record

if TYPE_CHECKING:
    from tutorkd.agents.teacher import BuildInputs


class CurriculumView(Record):
    """What the curriculum chose in one round."""

    weakest_first: tuple[str, ...]
    """The leaf skills, by validation accuracy, lowest first (ties in tree order)."""
    focus: tuple[str, ...]
    """The skills that got the targeted share of the round."""
    counts: dict[str, int]
    """Examples asked for per skill."""


class CurriculumPolicy:
    """Give the ``focus`` weakest skills the round's examples, but for a ``replay_share`` spread evenly
    over every skill (so the strong ones are not forgotten).

    Needs per-skill accuracy (``skill_list`` or ``skill_tree`` feedback); open-ended feedback shows no
    skills, and then the whole round is spread evenly.
    """

    def __init__(self, inputs: BuildInputs, focus: int = 3, replay_share: float = 0.2) -> None:
        if focus < 1 or not 0.0 <= replay_share <= 1.0:
            raise ValueError(f"focus {focus} must be at least 1 and replay_share {replay_share} in [0, 1]")
        self.skills = inputs.leaves()
        self.per_round, self.style = inputs.cfg.per_round, inputs.cfg.style
        self.focus, self.replay_share = focus, replay_share
        self.last: CurriculumView | None = None

    def plan(self, feedback: Feedback) -> Plan:
        """Ask for ``min(per_round, budget_left)`` examples, weakest skills first."""
        total = round_total(feedback, self.per_round)
        accuracy = feedback.skill_accuracy
        if accuracy is None:
            order, focus, replay = list(self.skills), [], total
        else:
            order = sorted(self.skills, key=lambda s: accuracy[s])  # stable: ties keep tree order
            focus, replay = order[: self.focus], round(total * self.replay_share)
        counts = dict(zip(self.skills, even_split(replay, len(self.skills)), strict=True))
        if focus:
            for skill, extra in zip(focus, even_split(total - replay, len(focus)), strict=True):
                counts[skill] += extra
        self.last = CurriculumView(weakest_first=tuple(order), focus=tuple(focus), counts=counts)
        items = styled_items([(s, None) for s in self.skills], [counts[s] for s in self.skills], self.style)
        return Plan(items=items, reasoning=f"Curriculum: {total - replay} of {total} examples on the weakest "
                    f"skills {', '.join(focus) or '(none shown)'}, {replay} spread over all.")

    def views(self) -> list[tuple[str, Record]]:
        """The last plan's choice, saved as ``curriculum.json`` in the round's folder."""
        return [] if self.last is None else [("curriculum.json", self.last)]
