"""The small contracts tutorkd is built on, each exactly what its caller calls.

- ``Backend`` (text generation, one LoRA adapter per request batch) serves a ``Student``.
- A ``Domain`` is a problem space: skills, a ``Sampler`` of problems, prompts, an exact checker.
- The loop (``tutorkd.loop``) drives a ``TeachingEnvironment`` and a ``Teacher``; ``Environment`` is
  DataEnvGym's ``reset``/``step`` face of the same environment, for users who drive their own loop.
- A teacher is a ``Policy`` (feedback to plan) and an ``Engine`` (plan to examples); an engine draws
  problems through a ``Sampler``, which is how a teacher changes what gets drawn (STAT's pool, TPD's
  bug-exposing draws) without wrapping the domain.

Concrete classes implement these structurally; nothing inherits implementation from anything.
"""

from __future__ import annotations

import random
from collections.abc import Container, Sequence
from pathlib import Path
from typing import Protocol

from tutorkd.schema import (
    Attempt,
    EnvState,
    Example,
    Feedback,
    Plan,
    Problem,
    Record,
    RoundEval,
    SkillTree,
    StructureLevel,
    StudentVersion,
    Trained,
)


class SamplingConfig(Record):
    """Decoding settings for one ``Backend.generate`` call."""

    max_tokens: int = 48
    temperature: float = 0.0
    seed: int = 0
    logprobs: bool = False
    """Return per-token logprobs of the sampled tokens (for student confidence)."""
    stop: tuple[str, ...] = ()
    json_schema: str | None = None
    """JSON schema (as a string) that structured decoding must follow; outputs are still re-validated."""
    regex: str | None = None


class Completion(Record):
    """One generated continuation."""

    text: str
    token_logprobs: tuple[float, ...] = ()
    """Logprob of each generated token, when ``SamplingConfig.logprobs`` was set."""
    prompt_tokens: int = 0
    completion_tokens: int = 0
    failure: str | None = None
    """Why the request failed after its retries (``None``: it was answered); the text is then empty and must
    never become data. Kinds: ``http_<status>`` (``http_500``, ``http_429``), ``timeout``, ``connection``,
    ``empty`` (a 200 response with no choices or no text) and ``malformed_body`` (a 200 response whose body
    is not the expected JSON, e.g. truncated). Only a backend built to count failures sets it
    (``OpenAIBackend(on_failure="count")``, a teacher's); the others raise."""


class Backend(Protocol):
    """Generates text from a base model, optionally through one LoRA adapter per request batch."""

    def generate(
        self, prompts: Sequence[str], params: SamplingConfig, version: StudentVersion | None = None
    ) -> list[Completion]:
        """Complete each prompt; ``version`` selects the adapter (``None`` or base: no adapter)."""
        ...

    def close(self) -> None:
        """Release the engine."""
        ...


class Phases(Protocol):
    """A serving engine that can hand the GPU to training and take it back (vLLM sleep mode)."""

    def sleep(self) -> None:
        """Release the GPU memory the engine holds."""
        ...

    def wake_up(self) -> None:
        """Take it back; the engine serves again."""
        ...


class Student(Protocol):
    """A trainable model that answers problems, versioned by round."""

    @property
    def version(self) -> StudentVersion:
        """The version that ``answer`` uses."""
        ...

    def answer(
        self, problems: Sequence[Problem], explanations: Sequence[str | None] | None = None
    ) -> list[Attempt]:
        """Answer each problem, with the teacher's explanation in context where one is given."""
        ...

    def train(self, examples: Sequence[Example], round: int, init: StudentVersion | None) -> Trained:
        """Fit version ``r{round}`` on ``examples``, starting from ``init``'s adapter (``None``: a fresh
        adapter on the base), make it the current version, and return it with its training stats."""
        ...

    def use(self, version: StudentVersion) -> None:
        """Make ``version`` current (used when a run resumes)."""
        ...


class Sampler(Protocol):
    """Where an engine's problems come from: the domain itself, or a teacher's narrower source."""

    def sample(
        self, skill_id: str, n: int, rng: random.Random, exclude: Container[str] = frozenset()
    ) -> list[Problem]:
        """Draw ``n`` problems of one leaf skill, none whose question is in ``exclude``.

        Raises ``RuntimeError`` when ``exclude`` leaves too little of the skill to draw from."""
        ...

    def similar(
        self, problem: Problem, n: int, rng: random.Random, exclude: Container[str] = frozenset()
    ) -> list[Problem]:
        """Draw ``n`` problems with the same structure as ``problem`` (different numbers)."""
        ...


class Domain(Sampler, Protocol):
    """A problem space with a skill tree, a sampler of problems and an exact verifier."""

    name: str

    @property
    def tree(self) -> SkillTree:
        """The domain's skills."""
        ...

    @property
    def alphabet(self) -> str:
        """Every character a prompt or completion of this domain can contain (for char tokenizers)."""
        ...

    def check(self, problem: Problem, output: str) -> tuple[str | None, bool]:
        """Parse a student output and verify it: (parsed answer or ``None``, correct)."""
        ...

    def prompt(self, problem: Problem, explanation: str | None = None) -> str:
        """The student's prompt; an explanation is placed where the student's own reasoning starts.

        The same function renders prompts for evaluation before and after training, so the format
        never changes between student versions (DataEnvGym evaluated the base few-shot and LoRA
        students zero-shot).
        """
        ...

    def completion(self, problem: Problem, style: str) -> str:
        """The training target for ``problem`` in ``style`` (``rationale`` or ``direct``)."""
        ...

    def close(self) -> None:
        """Release what the domain holds (a dataset domain's answer-checking workers)."""
        ...


class TeachingEnvironment(Protocol):
    """What the loop calls on an environment, step by step, so it can checkpoint between the steps."""

    @property
    def state(self) -> EnvState:
        """Rounds trained, budget used, current student version, data files so far."""
        ...

    def evaluate(self) -> RoundEval:
        """The current student on the validation and test sets."""
        ...

    def feedback(self, evaluation: RoundEval) -> Feedback:
        """What the teacher may see of ``evaluation`` at the environment's structure level."""
        ...

    def admit(self, examples: Sequence[Example]) -> list[Example]:
        """The examples the environment accepts for training (held-out questions out, budget cut)."""
        ...

    def train(self, examples: Sequence[Example], data_file: str) -> Trained:
        """Train on admitted ``examples`` (already saved as ``data_file``) and advance a round."""
        ...

    def restore(self, state: EnvState) -> None:
        """Continue from a saved ``state`` (a resumed run)."""
        ...


class Environment(Protocol):
    """DataEnvGym's contract: evaluate, then train on the teacher's data and re-evaluate."""

    level: StructureLevel

    def reset(self) -> Feedback:
        """Evaluate the current student and describe it to the teacher."""
        ...

    def step(self, examples: Sequence[Example]) -> Feedback:
        """Train the student on ``examples`` (within budget), re-evaluate, describe."""
        ...


class Policy(Protocol):
    """The planning half of a teacher: feedback in, plan out."""

    def plan(self, feedback: Feedback) -> Plan:
        """Decide what data to make this round."""
        ...


class Engine(Protocol):
    """The generating half of a teacher: plan in, examples out."""

    def generate(self, plan: Plan, context: GenerationContext) -> list[Example]:
        """Make the examples the plan asks for, each with provenance."""
        ...


class Teacher(Protocol):
    """What the loop calls on a teacher each round: restore, plan, views, generate."""

    name: str

    def restore(self, folder: Path) -> None:
        """Reload the state a stateful policy saved in ``folder`` (the previous round's directory)."""
        ...

    def plan(self, feedback: Feedback) -> Plan:
        """Decide what data to make from the student's feedback."""
        ...

    def generate(self, plan: Plan, context: GenerationContext) -> list[Example]:
        """Make the examples ``plan`` asks for, each with provenance."""
        ...

    def views(self) -> list[tuple[str, Record]]:
        """Records behind the last plan or generation (file name, record), saved in the round's folder."""
        ...


class GenerationContext(Record):
    """Everything an engine needs to stamp provenance and seed itself deterministically."""

    run_id: str
    round: int
    teacher: str
    seed: int
    avoid: frozenset[str] = frozenset()
    """Questions trained on in earlier rounds: generating them again would only be rejected as
    duplicates and waste the round's budget."""
