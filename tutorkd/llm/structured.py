"""A language model that answers in validated JSON: the client every LLM-driven teacher part uses.

LLM skill-list/tree policies, STAT's LLM labeller and solver, TPD's principle generator, PerSyn's LLM
writer and LLM skill discovery all prompt a model through ``StructuredLLM``: its engine starts on the
first call, its token usage is counted (a teacher view), and ``ask`` returns each answer validated as a
pydantic model, or the kind of error, never raising on malformed output. A request the backend reports
as failed (``Completion.failure``: an HTTP error, a timeout, an empty or truncated body after the
client's retries) is never parsed: it is counted in ``failures`` and comes back from ``ask`` as the error
``request_failed:<kind>``, so teachers count it and fall back exactly as for malformed output.

A local chat model (``prompt_format`` ``chat``, or ``auto`` with a tokenizer that has a chat template)
gets each prompt as one user message rendered by its chat template: instruction-tuned models such as
SmolLM2-135M-Instruct answer raw text as a continuation, not as a reply.
"""

from __future__ import annotations

import functools
import json
import logging
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Generic, TypeVar

from pydantic import BaseModel, ValidationError

from tutorkd.config import TeacherLLMConfig
from tutorkd.protocols import Backend, Completion, SamplingConfig
from tutorkd.schema import Record, TeacherUsage

if TYPE_CHECKING:
    from tutorkd.environments.chat import ChatRenderer

log = logging.getLogger(__name__)

M = TypeVar("M", bound=BaseModel)


@dataclass(frozen=True)
class Reply(Generic[M]):
    """One validated LLM answer: ``value`` when it parsed, else the ``error`` kind: ``invalid_json``,
    ``schema``, or ``request_failed:<kind>`` (``Completion.failure``: no answer came back)."""

    value: M | None
    error: str | None
    text: str


class StructuredLLM:
    """A teacher's language model: built on first use, counting its tokens, answering in validated JSON.

    With ``structured`` the backend decodes under the JSON schema (``SamplingConfig.json_schema``);
    otherwise (``TransformersBackend``) it generates freely and the span from the first ``{`` to the
    last ``}`` is validated. ``chat`` returns the chat template that prompts are rendered with (``None``:
    they are sent as they are); it is called once, when the backend starts on first use.
    """

    def __init__(self, factory: Callable[[], Backend], params: SamplingConfig, structured: bool,
                 chat: Callable[[], ChatRenderer | None] = lambda: None) -> None:
        self._factory, self._chat = factory, chat
        self._backend: Backend | None = None
        self.template: ChatRenderer | None = None
        """The chat template prompts are rendered with, once started (``None``: raw prompts)."""
        self.params, self.structured = params, structured
        self.usage = TeacherUsage()
        """Tokens and calls since the last ``views``."""
        self.failures: Counter[str] = Counter()
        """Requests that failed after the backend's retries, by ``Completion.failure`` kind, since the
        LLM was made."""

    @classmethod
    def from_config(cls, cfg: TeacherLLMConfig) -> StructuredLLM:
        """The teacher LLM ``cfg`` describes (its engine starts on the first call)."""
        from tutorkd.llm.factory import teacher_backend

        @functools.cache
        def model_dir() -> Path | None:
            if cfg.backend == "openai":
                return None
            from tutorkd.students.models import prepare_model

            return prepare_model(cfg.model)

        def factory() -> Backend:
            return teacher_backend(cfg, model_dir())

        def chat() -> ChatRenderer | None:
            from tutorkd.environments.chat import chat_template

            folder = model_dir()
            return None if folder is None else chat_template(folder, cfg.prompt_format)

        params = SamplingConfig(max_tokens=cfg.max_tokens, temperature=cfg.temperature, seed=cfg.seed)
        return cls(factory, params, structured=cfg.backend != "transformers", chat=chat)

    def start(self) -> Backend:
        """The backend, started (and the chat template loaded) on the first call."""
        if self._backend is None:
            self.template = self._chat()
            self._backend = self._factory()
        return self._backend

    def render(self, prompt: str) -> str:
        """``prompt`` as the model reads it: one user message through the chat template, or as is."""
        self.start()
        return prompt if self.template is None else self.template.render([("user", prompt)])

    def generate(self, prompts: Sequence[str], params: SamplingConfig, *,
                 rendered: bool = False) -> list[Completion]:
        """Completions, counted in ``usage``; each prompt goes through ``render`` unless ``rendered``
        (already the model's own text, e.g. a chat domain's prompt). A failed request (``failure`` set)
        comes back with empty text, counted in ``failures``."""
        backend = self.start()
        sent = list(prompts) if rendered else [self.render(p) for p in prompts]
        out = backend.generate(sent, params)
        for completion in out:
            if completion.failure is not None:
                self.failures[completion.failure] += 1
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
            if completion.failure is not None:
                # Why before parsing: a failed request is no answer, whatever its text would parse to. Why
                # info: the backend already warned about the failure itself.
                error = f"request_failed:{completion.failure}"
                log.info("teacher LLM request failed (%s): an invalid reply, not parsed", completion.failure)
                replies.append(Reply(None, error, completion.text))
                continue
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

