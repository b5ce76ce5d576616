"""A language model that answers in validated JSON: the client every LLM-driven teacher part uses.

LLM skill-list/tree policies, STAT's LLM labeller and solver, TPD's principle generator, PerSyn's LLM
writer and LLM skill discovery all prompt a model through ``StructuredLLM``: its engine starts on the
first call, its token usage is counted (a teacher view), and ``ask`` returns each answer validated as a
pydantic model, or the kind of error, never raising on malformed output.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Generic, Literal, TypeVar

from pydantic import BaseModel, ValidationError

from tutorkd.config import TeacherLLMConfig
from tutorkd.protocols import Backend, Completion, SamplingConfig
from tutorkd.schema import Record, TeacherUsage

M = TypeVar("M", bound=BaseModel)


@dataclass(frozen=True)
class Reply(Generic[M]):
    """One validated LLM answer: ``value`` when it parsed, else the ``error`` kind."""

    value: M | None
    error: Literal["invalid_json", "schema"] | None
    text: str


class StructuredLLM:
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
    def from_config(cls, cfg: TeacherLLMConfig) -> StructuredLLM:
        """The teacher LLM ``cfg`` describes (its engine starts on the first call)."""
        from tutorkd.llm.factory import teacher_backend

        def factory() -> Backend:
            return teacher_backend(cfg)

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
