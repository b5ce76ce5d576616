"""LLM teacher policies: DataEnvGym's skill-list and skill-tree actions chosen by a language model.

The LLM answers with one JSON action whose ``allocation`` is an object keyed by skill id, e.g.
``{"action": "allocate", "allocation": {"add.carry": 12, "cmp.lead": 3}, "reasoning": "..."}``. It is
decoded under the action's JSON schema (vLLM structured outputs; the object's keys restricted to the
known skill ids, so a skill cannot be named twice) where the backend supports it, and always
re-validated with pydantic. An invalid action (unparseable JSON, schema failure, unknown or duplicate
skill, allocations over budget) is counted in ``invalid`` by reason, logged, and replaced by the
heuristic policy's action for that round (the stated fallback rule); it never crashes the run.
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

from pydantic import Field

from tutorkd.agents.baselines.policies import round_total, styled_items
from tutorkd.agents.dataenvgym.policies import (
    SkillListPolicy,
    SkillTreePolicy,
    TreeAction,
    TreeContext,
    skill_accuracy,
)
from tutorkd.io import read_json
from tutorkd.llm.structured import StructuredLLM
from tutorkd.schema import Feedback, Plan, Record

log = logging.getLogger(__name__)

LOG_FILE = "llm_policy.json"


class ActionLog(Record):
    """What an LLM policy did in one round; saved as ``llm_policy.json``."""

    student_round: int
    error: str | None
    """Why the LLM's action was invalid (``None``: it was used)."""
    output: str
    """The LLM's raw output (first 2000 characters)."""
    used: str
    """``llm``, or the fallback rule that replaced an invalid action."""
    invalid: dict[str, int]
    """Invalid actions by reason over the run so far (``restore`` reloads them when a run resumes)."""


class LLMAction(Record):
    """The JSON an LLM policy answers with (skill-list: ``action`` is ``allocate``)."""

    action: Literal["allocate", "explore", "exploit"]
    allocation: dict[str, int] = Field(max_length=64)
    """Skill id to amount (examples, or skill-tree units)."""
    reasoning: str = Field("", max_length=300)


def action_schema(kinds: Sequence[str], skills: Sequence[str], low: int, high: int) -> dict:
    """JSON schema of an ``LLMAction`` restricted to ``kinds``, known ``skills`` and ``[low, high]``.

    ``allocation`` is an object whose only possible keys are the known skills: a list of
    ``{skill, amount}`` items cannot forbid naming a skill twice (a 135M teacher did so in 19 of 20
    actions), an object keyed by skill can. No key is required: the model picks which skills to name.
    """
    amount = {"type": "integer", "minimum": low, "maximum": high}
    allocation = {"type": "object", "additionalProperties": False,
                  "properties": {skill: amount for skill in skills}}
    return {"type": "object", "additionalProperties": False,
            "required": ["action", "allocation", "reasoning"],
            "properties": {"action": {"type": "string", "enum": list(kinds)},
                           "allocation": allocation,
                           "reasoning": {"type": "string", "maxLength": 300}}}


def repeats_a_skill(text: str) -> bool:
    """Whether the ``allocation`` object of the action in ``text`` names a skill twice.

    ``text`` is an LLM's raw reply that already parsed as an ``LLMAction``; like ``StructuredLLM.ask``
    for free generation, the span from the first ``{`` to the last ``}`` is read. Why re-read it: JSON
    parsers (``json``, pydantic) keep the last of repeated keys, which would hide a duplicate skill
    written by a backend without structured outputs.
    """
    # Every object comes back as its list of (key, value) pairs, so no repeated key is collapsed.
    top = json.loads(text[text.find("{"): text.rfind("}") + 1], object_pairs_hook=list)
    allocation = [value for key, value in top if key == "allocation"][-1]  # the one pydantic kept
    skills = [skill for skill, _ in allocation]
    return len(set(skills)) != len(skills)


class _LLMPolicy:
    """Shared mechanics: one LLM call per plan, validation, counting, fallback, logging."""

    kinds: tuple[str, ...]

    def __init__(self, llm: StructuredLLM) -> None:
        self.llm = llm
        self.invalid: Counter[str] = Counter()
        self.log: ActionLog | None = None

    def _ask(self, prompt: str, schema: dict) -> tuple[LLMAction | None, str | None, str]:
        (reply,) = self.llm.ask([prompt], LLMAction, schema)
        action, error = reply.value, reply.error
        if action is not None:
            if action.action not in self.kinds:
                error = "schema"
            elif repeats_a_skill(reply.text):
                error = "duplicate_skill"
        return (action if error is None else None), error, reply.text

    def _record(self, feedback: Feedback, error: str | None, text: str, fallback: str) -> None:
        if error is not None:
            self.invalid[error] += 1
            log.warning("LLM policy: invalid action (%s), using %s: %r", error, fallback, text[:300])
        self.log = ActionLog(student_round=feedback.round, error=error, output=text[:2000],
                             used="llm" if error is None else fallback, invalid=dict(self.invalid))

    def views(self) -> list[tuple[str, Record]]:
        """``llm_policy.json`` (the round's action log)."""
        return [(LOG_FILE, self.log)] if self.log is not None else []

    def restore(self, folder: Path) -> None:
        """Reload the counts of invalid actions from the log saved in ``folder`` (none there: zero), so a
        resumed run counts them as an uninterrupted one does."""
        path = Path(folder) / LOG_FILE
        self.invalid = Counter(read_json(path, ActionLog).invalid if path.exists() else {})


class LLMSkillListPolicy(_LLMPolicy):
    """Skill-list with an LLM: it allocates the round's examples over skills; fallback: ``SkillListPolicy``.

    Invalid: unknown skill, duplicate skill, negative count, or counts summing over the round's total.
    """

    kinds = ("allocate",)

    def __init__(self, llm: StructuredLLM, heuristic: SkillListPolicy) -> None:
        super().__init__(llm)
        self.heuristic = heuristic

    def prompt(self, feedback: Feedback, total: int) -> str:
        """The skills with their validation accuracy, the round's budget and the answer format."""
        acc = skill_accuracy(feedback, "skill_list")
        lines = "\n".join(f"- {s}: accuracy {a:.2f}" for s, a in acc.items())
        return ("You are a teacher choosing training data for a student model. Validation accuracy per "
                f"skill:\n{lines}\nAllocate at most {total} new training examples over the skills the "
                'student is weak at. Answer with JSON: {"action": "allocate", "allocation": {<skill id>: '
                '<examples>, ...}, "reasoning": <one sentence>}\n')

    def plan(self, feedback: Feedback) -> Plan:
        """The LLM's allocation, or the heuristic's when it is invalid."""
        total = round_total(feedback, self.heuristic.per_round)
        skills = list(skill_accuracy(feedback, "skill_list"))
        schema = action_schema(self.kinds, skills, 0, total)
        action, error, text = self._ask(self.prompt(feedback, total), schema)
        if action is not None:
            counts = action.allocation
            if not set(counts) <= set(skills):
                error = "unknown_skill"
            elif min(counts.values(), default=0) < 0 or sum(counts.values()) > total:
                error = "over_budget"
            elif not any(counts.values()):
                error = "empty"
        self._record(feedback, error, text, "heuristic skill-list")
        if error is not None:
            return self.heuristic.plan(feedback)
        items = styled_items([(s, None) for s in counts], list(counts.values()), self.heuristic.style)
        return Plan(items=items, reasoning=f"Skill-list (LLM): {action.reasoning}")


class LLMSkillTreePolicy(_LLMPolicy):
    """Skill-tree with an LLM choosing explore/exploit; fallback: ``SkillTreePolicy``'s alternating rule.

    Invalid: besides the JSON checks, any action ``SkillTreePolicy.check`` rejects (unknown skill,
    exploring a targeted skill, exploiting an untargeted one, an allocation outside
    ``[1, max_allocation]``: over budget). State, views and ``restore`` are the heuristic's.
    """

    kinds = ("explore", "exploit")

    def __init__(self, llm: StructuredLLM, tree: SkillTreePolicy) -> None:
        super().__init__(llm)
        self.tree = tree

    def prompt(self, feedback: Feedback, ctx: TreeContext) -> str:
        """The tree with accuracies, allocations and gains, the two actions and the answer format."""
        gains, alloc = ctx.gains(), ctx.allocation
        lines = []
        for branch, leaves in ctx.branches.items():
            lines.append(f"{branch}:")
            for s in leaves:
                extra = f", units {alloc[s]}, gain {gains[s]:+.2f}" if s in alloc else ", not targeted"
                lines.append(f"  - {s}: accuracy {ctx.accuracy[s]:.2f}{extra}")
        cap, step = self.tree.config.max_allocation, self.tree.config.explore_amount
        return ("You are a teacher allocating training data over a skill tree. Validation accuracy:\n"
                + "\n".join(lines) + "\nChoose one action. explore: start targeting skills not yet "
                f"targeted, amount = their starting units (1 to {step}). exploit: change the units of "
                f"targeted skills by amount (each skill stays between 1 and {cap}). Answer with JSON: "
                '{"action": "explore" or "exploit", "allocation": {<skill id>: <units>, ...}, '
                '"reasoning": <one sentence>}\n')

    def plan(self, feedback: Feedback) -> Plan:
        """The LLM's action applied to the tree state, or the heuristic's when it is invalid."""
        ctx = self.tree.context(feedback)
        cap = self.tree.config.max_allocation
        schema = action_schema(self.kinds, list(ctx.accuracy), -cap, cap)
        action, error, text = self._ask(self.prompt(feedback, ctx), schema)
        chosen = None
        if action is not None:
            chosen = TreeAction(kind=action.action, amounts=action.allocation,
                                reasoning=action.reasoning, source="llm")
            error = self.tree.check(chosen, ctx)
        self._record(feedback, error, text, "heuristic alternating explore/exploit")
        if error is not None:
            chosen = self.tree.heuristic(ctx).model_copy(update={"source": "fallback"})
        return self.tree.commit(feedback, ctx, chosen)

    def views(self) -> list[tuple[str, Record]]:
        """``llm_policy.json`` and the tree state."""
        return super().views() + self.tree.views()

    def restore(self, folder: Path) -> None:
        """Restore the counts of invalid actions and the tree state saved in ``folder``."""
        super().restore(folder)
        self.tree.restore(folder)
