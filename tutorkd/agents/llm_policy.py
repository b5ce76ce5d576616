"""LLM teacher policies: DataEnvGym's skill-list and skill-tree actions chosen by a language model.

The LLM answers with one JSON action, decoded under the action's JSON schema (vLLM structured
outputs; skill ids restricted to the known ones) where the backend supports it, and always
re-validated with pydantic. An invalid action (unparseable JSON, schema failure, unknown or duplicate
skill, allocations over budget) is counted in ``invalid`` by reason, logged, and replaced by the
heuristic policy's action for that round (the stated fallback rule); it never crashes the run.
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Generic, Literal, TypeVar

from pydantic import BaseModel, Field, ValidationError

from tutorkd.agents.dataenvgym import (
    SkillListPolicy,
    SkillTreePolicy,
    TreeAction,
    TreeContext,
    skill_accuracy,
)
from tutorkd.agents.policies import round_total, styled_items
from tutorkd.config import TeacherLLMConfig
from tutorkd.io import read_json
from tutorkd.protocols import Backend, Completion, SamplingConfig
from tutorkd.schema import Feedback, Plan, Record, TeacherUsage

log = logging.getLogger(__name__)

LOG_FILE = "llm_policy.json"

M = TypeVar("M", bound=BaseModel)


@dataclass(frozen=True)
class Reply(Generic[M]):
    """One validated LLM answer: ``value`` when it parsed, else the ``error`` kind."""

    value: M | None
    error: Literal["invalid_json", "schema"] | None
    text: str


class TeacherLLM:
    """A teacher's language model: built on first use, counting its tokens, answering in validated JSON.

    With ``structured`` the backend decodes under the JSON schema (``SamplingConfig.json_schema``);
    otherwise (``TransformersBackend``) it generates freely and the span from the first ``{`` to the
    last ``}`` is validated.
    """

    def __init__(self, factory: Callable[[], Backend], params: SamplingConfig, structured: bool) -> None:
        self._factory = factory
        self._backend: Backend | None = None
        self.params, self.structured = params, structured
        self.usage = TeacherUsage()
        """Tokens and calls since the last ``views``."""

    @classmethod
    def from_config(cls, cfg: TeacherLLMConfig) -> TeacherLLM:
        """The teacher LLM ``cfg`` describes (its engine starts on the first call)."""
        def factory() -> Backend:
            if cfg.backend == "openai":
                from tutorkd.llm.openai_backend import teacher_backend

                return teacher_backend(cfg)
            if cfg.backend == "vllm":
                from tutorkd.llm.vllm_backend import VLLMBackend

                return VLLMBackend(cfg.model, max_lora_rank=8, max_model_len=cfg.max_model_len, seed=cfg.seed)
            from tutorkd.llm.hf_backend import TransformersBackend

            return TransformersBackend(cfg.model)

        params = SamplingConfig(max_tokens=cfg.max_tokens, temperature=cfg.temperature, seed=cfg.seed)
        return cls(factory, params, structured=cfg.backend != "transformers")

    def generate(self, prompts: Sequence[str], params: SamplingConfig) -> list[Completion]:
        """Plain completions, counted in ``usage``."""
        if self._backend is None:
            self._backend = self._factory()
        out = self._backend.generate(prompts, params)
        self.usage = TeacherUsage(tokens_in=self.usage.tokens_in + sum(c.prompt_tokens for c in out),
                                  tokens_out=self.usage.tokens_out + sum(c.completion_tokens for c in out),
                                  calls=self.usage.calls + len(out))
        return out

    def ask(self, prompts: Sequence[str], model: type[M], schema: dict) -> list[Reply[M]]:
        """One JSON answer per prompt, validated as ``model``; failures come back as errors, not raised."""
        params = self.params
        if self.structured:
            params = params.model_copy(update={"json_schema": json.dumps(schema)})
        replies = []
        for completion in self.generate(prompts, params):
            text = completion.text
            if not self.structured:
                text = text[text.find("{"): text.rfind("}") + 1]
            try:
                replies.append(Reply(model.model_validate_json(text), None, completion.text))
            except ValidationError as exc:
                kind = "invalid_json" if any(e["type"] == "json_invalid" for e in exc.errors()) else "schema"
                replies.append(Reply(None, kind, completion.text))
        return replies

    def views(self) -> list[tuple[str, Record]]:
        """``teacher_usage.json`` with the usage since the last call (one round's planning), then reset."""
        usage, self.usage = self.usage, TeacherUsage()
        return [("teacher_usage.json", usage)]

    def close(self) -> None:
        """Release the backend, if it was started."""
        if self._backend is not None:
            self._backend.close()
            self._backend = None


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


class _Amount(Record):
    skill: str
    amount: int


class LLMAction(Record):
    """The JSON an LLM policy answers with (skill-list: ``action`` is ``allocate``)."""

    action: Literal["allocate", "explore", "exploit"]
    allocation: tuple[_Amount, ...] = Field(max_length=64)
    reasoning: str = Field("", max_length=300)


def action_schema(kinds: Sequence[str], skills: Sequence[str], low: int, high: int) -> dict:
    """JSON schema of an ``LLMAction`` restricted to ``kinds``, known ``skills`` and ``[low, high]``."""
    item = {"type": "object", "additionalProperties": False, "required": ["skill", "amount"],
            "properties": {"skill": {"type": "string", "enum": list(skills)},
                           "amount": {"type": "integer", "minimum": low, "maximum": high}}}
    return {"type": "object", "additionalProperties": False,
            "required": ["action", "allocation", "reasoning"],
            "properties": {"action": {"type": "string", "enum": list(kinds)},
                           "allocation": {"type": "array", "items": item, "maxItems": len(skills)},
                           "reasoning": {"type": "string", "maxLength": 300}}}


class _LLMPolicy:
    """Shared mechanics: one LLM call per plan, validation, counting, fallback, logging."""

    kinds: tuple[str, ...]

    def __init__(self, llm: TeacherLLM) -> None:
        self.llm = llm
        self.invalid: Counter[str] = Counter()
        self.log: ActionLog | None = None

    def _ask(self, prompt: str, schema: dict) -> tuple[LLMAction | None, str | None, str]:
        (reply,) = self.llm.ask([prompt], LLMAction, schema)
        action, error = reply.value, reply.error
        if action is not None:
            skills = [a.skill for a in action.allocation]
            if action.action not in self.kinds:
                error = "schema"
            elif len(set(skills)) != len(skills):
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

    def __init__(self, llm: TeacherLLM, heuristic: SkillListPolicy) -> None:
        super().__init__(llm)
        self.heuristic = heuristic

    def prompt(self, feedback: Feedback, total: int) -> str:
        """The skills with their validation accuracy, the round's budget and the answer format."""
        acc = skill_accuracy(feedback, "skill_list")
        lines = "\n".join(f"- {s}: accuracy {a:.2f}" for s, a in acc.items())
        return ("You are a teacher choosing training data for a student model. Validation accuracy per "
                f"skill:\n{lines}\nAllocate at most {total} new training examples over the skills the "
                'student is weak at. Answer with JSON: {"action": "allocate", "allocation": [{"skill": '
                '<skill id>, "amount": <examples>}], "reasoning": <one sentence>}\n')

    def plan(self, feedback: Feedback) -> Plan:
        """The LLM's allocation, or the heuristic's when it is invalid."""
        total = round_total(feedback, self.heuristic.per_round)
        skills = list(skill_accuracy(feedback, "skill_list"))
        schema = action_schema(self.kinds, skills, 0, total)
        action, error, text = self._ask(self.prompt(feedback, total), schema)
        if action is not None:
            counts = {a.skill: a.amount for a in action.allocation}
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

    def __init__(self, llm: TeacherLLM, tree: SkillTreePolicy) -> None:
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
                '{"action": "explore" or "exploit", "allocation": [{"skill": <skill id>, "amount": '
                '<units>}], "reasoning": <one sentence>}\n')

    def plan(self, feedback: Feedback) -> Plan:
        """The LLM's action applied to the tree state, or the heuristic's when it is invalid."""
        ctx = self.tree.context(feedback)
        cap = self.tree.config.max_allocation
        schema = action_schema(self.kinds, list(ctx.accuracy), -cap, cap)
        action, error, text = self._ask(self.prompt(feedback, ctx), schema)
        chosen = None
        if action is not None:
            chosen = TreeAction(kind=action.action, amounts={a.skill: a.amount for a in action.allocation},
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
