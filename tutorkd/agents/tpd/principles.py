"""Principles from a student's errors (TPD's error analysis) behind one interface, and their uses.

A ``PrincipleSource`` turns a batch of validation attempts into a ``PrincipleSet``: corrective
principles ("When <situation>, <do/avoid ...>"), each linked to the wrong attempts it explains (by
index into the batch) and the skills involved. Two sources implement it:

- ``ProceduralPrinciples``: the bug-library diagnosis of ``tutorkd.agents.tpd.diagnosis`` (arithmetic);
  each principle names the bug it corrects, so a teacher can target it with discriminating problems.
- ``LLMPrinciples``: a teacher LLM reads the wrong attempts with their gold answers and answers in
  JSON under structured outputs; every reply is re-validated (a principle without a word is invalid,
  ``no_content``), and an invalid one is counted and logged and gives an empty set, never an exception.

The paper's ways of exploiting principles, for students that are prompted: ``append_principles``
(variant a: the principles listed after the instruction) and ``rewrite_instruction`` (variant b: the
instruction rewritten as a checklist of the principles' situations). For every student:
``select_examples`` (variant c: the wrong attempts each principle explains, as demonstrations or as
models for new training problems). Diagnose validation attempts only, never test ones.
"""

from __future__ import annotations

import logging
from collections import Counter, defaultdict
from collections.abc import Sequence
from typing import Literal, Protocol

from pydantic import BaseModel, Field

from tutorkd.agents.baselines.policies import even_split
from tutorkd.agents.dataenvgym.policies import split_by_weight
from tutorkd.agents.tpd.diagnosis import Diagnosis, diagnose
from tutorkd.environments.arithmetic import ArithmeticDomain
from tutorkd.llm.structured import StructuredLLM
from tutorkd.schema import Attempt, Problem, Record

log = logging.getLogger(__name__)


class TeacherPrinciple(Record):
    """One corrective principle, linked to the errors it explains."""

    when: str
    """The situation, e.g. ``the ones digits add up to 10 or more``."""
    do: str
    """What to do or avoid in it."""
    explains: tuple[int, ...]
    """Indices (into the attempts the source was given) of the wrong attempts it explains."""
    skills: tuple[str, ...]
    """Leaf skills involved."""
    bug_id: str | None = None
    """The library bug it corrects (procedural source only)."""

    @property
    def text(self) -> str:
        """``When <when>, <do>``."""
        return f"When {self.when}, {self.do}"


class PrincipleSet(Record):
    """What one source concluded from one batch of attempts."""

    source: str
    """``procedural`` or ``llm``."""
    attempts: int
    wrong: int
    """Attempts with a parseable but wrong answer (the ones principles can explain)."""
    format_errors: int
    """Attempts with no parseable answer: never explained."""
    explained: int
    """Wrong attempts that at least one principle explains."""
    principles: tuple[TeacherPrinciple, ...]
    """Most errors explained first."""
    invalid: dict[str, int] = {}
    """Rejected LLM replies for this batch, by reason (``invalid_json``, ``schema``, ``bad_index``)."""

    @property
    def coverage(self) -> float:
        """Share of the wrong attempts explained (0.0 when nothing is wrong)."""
        return self.explained / self.wrong if self.wrong else 0.0


class PrincipleSource(Protocol):
    """Anything that turns attempts into principles."""

    name: str

    def principles(self, attempts: Sequence[Attempt]) -> PrincipleSet:
        """The principles behind the wrong answers among ``attempts``."""
        ...


def _wrong(attempts: Sequence[Attempt]) -> list[int]:
    """Indices of the attempts with a parseable but wrong answer."""
    return [i for i, a in enumerate(attempts) if a.parsed_answer is not None and not a.correct]


def from_diagnosis(diagnosis: Diagnosis, attempts: Sequence[Attempt]) -> PrincipleSet:
    """The ``PrincipleSet`` of a diagnosis of ``attempts`` (each principle split into when / do)."""
    wrong = _wrong(attempts)
    if len(wrong) != len(diagnosis.errors):
        raise ValueError(f"diagnosis has {len(diagnosis.errors)} errors but the attempts {len(wrong)}; "
                         "pass the attempts that were diagnosed")
    index = {e.problem_id: i for i, e in zip(wrong, diagnosis.errors, strict=True)}
    out = []
    for p in diagnosis.principles:
        when, do = p.text.removeprefix("When ").split(", ", 1)
        out.append(TeacherPrinciple(when=when, do=do, explains=tuple(index[pid] for pid in p.problem_ids),
                                    skills=p.skills, bug_id=p.bug_id))
    return PrincipleSet(source="procedural", attempts=diagnosis.attempts, wrong=diagnosis.wrong,
                        format_errors=diagnosis.format_errors, explained=diagnosis.explained,
                        principles=tuple(out))


class ProceduralPrinciples:
    """The bug-library diagnosis as a ``PrincipleSource`` (arithmetic; no labels needed)."""

    name = "procedural"

    def __init__(self, domain: ArithmeticDomain) -> None:
        self.domain = domain

    def principles(self, attempts: Sequence[Attempt]) -> PrincipleSet:
        """One principle per bug with attributed errors, largest count first."""
        return from_diagnosis(diagnose(attempts, self.domain), attempts)


# --------------------------------------------------------------------------------------------------
# The LLM source


class _Stated(BaseModel):
    when: str = Field(min_length=1, max_length=300)
    do: str = Field(min_length=1, max_length=300)
    explains: list[int] = Field(min_length=1)
    skills: list[str]


class _Reply(BaseModel):
    principles: list[_Stated]


def principles_schema(shown: int, skills: Sequence[str], max_principles: int, max_chars: int) -> dict:
    """JSON schema of the LLM's reply: ``explains`` indexes the ``shown`` errors, skills are known ids."""
    text = {"type": "string", "minLength": 1, "maxLength": max_chars}
    item = {"type": "object", "additionalProperties": False, "required": ["when", "do", "explains", "skills"],
            "properties": {"when": text, "do": text,
                           "explains": {"type": "array", "minItems": 1, "maxItems": shown,
                                        "items": {"type": "integer", "minimum": 0, "maximum": shown - 1}},
                           "skills": {"type": "array", "maxItems": len(skills),
                                      "items": {"type": "string", "enum": list(skills)}}}}
    return {"type": "object", "additionalProperties": False, "required": ["principles"],
            "properties": {"principles": {"type": "array", "maxItems": max_principles, "items": item}}}


class LLMPrinciples:
    """A teacher LLM's principles: the wrong attempts with gold answers in, validated JSON out.

    At most ``max_shown`` wrong attempts are shown (the first ones); ``invalid`` counts rejected
    replies over this source's lifetime by reason. A rejected reply gives a set with no principles.
    """

    name = "llm"

    def __init__(self, llm: StructuredLLM, skills: Sequence[str], max_shown: int = 32,
                 max_principles: int = 8, max_chars: int = 200) -> None:
        self.llm, self.skills = llm, tuple(skills)
        self.max_shown, self.max_principles, self.max_chars = max_shown, max_principles, max_chars
        self.invalid: Counter[str] = Counter()

    def prompt(self, attempts: Sequence[Attempt]) -> str:
        """The numbered wrong attempts (question, student's answer, gold answer) and the reply format."""
        rows = "\n".join(f"{k}. {a.problem.question} student wrote {a.parsed_answer}, correct is "
                         f"{a.problem.answer}" for k, a in enumerate(attempts))
        return ("You are a teacher. A student answered these arithmetic problems wrongly:\n" + rows +
                "\nFind the misconceptions behind the errors. State each as a principle: when <situation>, "
                "<what to do or avoid>. List the numbers of the errors each principle explains and the "
                f"skills involved (from {', '.join(self.skills)}). Answer with JSON: "
                '{"principles": [{"when": ..., "do": ..., "explains": [...], "skills": [...]}]}\n')

    def principles(self, attempts: Sequence[Attempt]) -> PrincipleSet:
        """Ask the LLM once about the first ``max_shown`` wrong attempts; validate; map indices back."""
        wrong = _wrong(attempts)
        shown = wrong[: self.max_shown]
        base = dict(source=self.name, attempts=len(attempts), wrong=len(wrong),
                    format_errors=sum(a.parsed_answer is None for a in attempts))
        if not shown:
            return PrincipleSet(**base, explained=0, principles=())
        schema = principles_schema(len(shown), self.skills, self.max_principles, self.max_chars)
        (reply,) = self.llm.ask([self.prompt([attempts[i] for i in shown])], _Reply, schema)
        error = reply.error
        if reply.value is not None:
            stated = reply.value.principles
            if any(not 0 <= k < len(shown) for p in stated for k in p.explains):
                error = "bad_index"
            elif any(s not in self.skills for p in stated for s in p.skills):
                error = "unknown_skill"
            elif len(stated) > self.max_principles:
                error = "schema"
            # Why checked: a 135M teacher fills the schema with punctuation ("When , , , ") that is
            # valid JSON but says nothing; counted as invalid instead of used as a principle.
            elif any(not any(c.isalpha() for c in p.when + " " + p.do) for p in stated):
                error = "no_content"
        if error is not None:
            self.invalid[error] += 1
            log.warning("LLM principles: invalid reply (%s), none this batch: %r", error, reply.text[:300])
            return PrincipleSet(**base, explained=0, principles=(), invalid={error: 1})
        out = [TeacherPrinciple(when=p.when, do=p.do, explains=tuple(sorted({shown[k] for k in p.explains})),
                                skills=tuple(dict.fromkeys(p.skills))) for p in stated]
        out.sort(key=lambda p: -len(p.explains))
        explained = len({i for p in out for i in p.explains})
        return PrincipleSet(**base, explained=explained, principles=tuple(out))


# --------------------------------------------------------------------------------------------------
# Exploiting principles


class Instruction(Record):
    """A prompted student's instruction refined with principles."""

    text: str
    variant: Literal["append", "rewrite"]
    """TPD variant (a) ``append`` or (b) ``rewrite``."""
    principles: int
    """Principles used."""


def append_principles(instruction: str, principles: Sequence[TeacherPrinciple]) -> Instruction:
    """Variant (a): the instruction unchanged, followed by the principles as a list."""
    text = instruction.rstrip()
    if principles:
        listed = "\n".join(f"- {p.text}" for p in principles)
        text += f"\n\nPrinciples learned from earlier mistakes:\n{listed}"
    return Instruction(text=text, variant="append", principles=len(principles))


def rewrite_instruction(instruction: str, principles: Sequence[TeacherPrinciple]) -> Instruction:
    """Variant (b): the instruction rewritten so that the principles become its checks, by skill.

    The instruction's task stays first; then, for each skill (in first-seen order; ``general`` for
    principles with none), the situations to look for and what to do in each, as numbered steps.
    """
    text = instruction.rstrip()
    by_skill: dict[str, list[TeacherPrinciple]] = defaultdict(list)
    for p in principles:
        by_skill[p.skills[0] if p.skills else "general"].append(p)
    if by_skill:
        text += " Before you write the answer, check the cases below that apply to the problem."
        for skill, ps in by_skill.items():
            steps = " ".join(f"({k}) If {p.when}: {p.do}" for k, p in enumerate(ps, 1))
            text += f"\n{skill} problems: {steps}"
    return Instruction(text=text, variant="rewrite", principles=len(principles))


def select_examples(
    principles: PrincipleSet, attempts: Sequence[Attempt], total: int
) -> list[tuple[Problem, int]]:
    """Variant (c): ``total`` uses of the wrong attempts the principles explain, as (problem, count).

    Each principle gets a share of ``total`` proportional to the errors it explains, spread evenly
    over those errors (an error two principles explain collects both shares). No principle: empty.
    """
    ps = [p for p in principles.principles if p.explains]
    if not ps or total <= 0:
        return []
    counts: Counter[int] = Counter()
    for p, share in zip(ps, split_by_weight(total, [len(p.explains) for p in ps]), strict=True):
        for i, n in zip(p.explains, even_split(share, len(p.explains)), strict=True):
            counts[i] += n
    return [(attempts[i].problem, n) for i, n in sorted(counts.items()) if n]
