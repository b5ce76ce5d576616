"""A domain as a chat model reads and writes it: prompts through the tokenizer's chat template.

``ChatDomain`` wraps any ``Domain`` (its skills, sampling and answer verification stay the wrapped
domain's) and changes only the text the student sees and writes:

- the prompt is a chat (system instruction, ``format_examples`` fixed question/answer pairs, the
  question phrased for people) rendered by the tokenizer's template up to the assistant's turn; a
  teacher's explanation opens the assistant's turn, where the student's own reasoning would start;
- the completion a student is taught is ``<rationale>\\nAnswer: <answer>`` (``rationale`` style) or
  ``Answer: <answer>`` (``direct``); the trainer appends the end-of-turn token;
- ``check`` reads the text after the last ``Answer:``, or else the last answer-like token (a number,
  ``<`` or ``>``) of what the model wrote ("79 + 55 = 132" reads as 132), and hands it to the wrapped
  domain's verifier in that domain's own answer format. Output with neither is a format error
  (``None``), counted apart from wrong answers.

The same prompt renders every student version, before and after training; the format examples are
drawn once, from outside the evaluation partition, and are identical for every version.
``in_context`` gives the same domain with another instruction or demonstrations after the format
examples (TPD's in-context variants); it is a new domain, the original is unchanged.
"""

from __future__ import annotations

import copy
import random
import re
from collections.abc import Callable, Container, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Literal, Protocol

from tutorkd.protocols import Domain
from tutorkd.schema import Problem, SkillTree

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

SYSTEM = "Solve the problem. End your reply with a last line of the form 'Answer: <answer>'."
"""The system instruction of every student prompt."""
MARK = "Answer:"
_MARKED = re.compile(r"answer\s*:\s*(.*)", re.IGNORECASE)
_ANSWER_LIKE = re.compile(r"-?\d[\d,]*(?:\.\d+)?|[<>]")
_ARITHMETIC = re.compile(r"^([\d+\-*]+)=$")
_COMPARE = re.compile(r"^(\d+)\?(\d+)=$")


def phrase_arithmetic(question: str) -> str:
    """An arithmetic question as people write it: ``59+63=`` -> ``What is 59 + 63?``; ``141?365=`` ->
    a comparison asking for ``<`` or ``>``."""
    compare = _COMPARE.match(question)
    if compare is not None:
        a, b = compare.groups()
        return f"Which sign goes between {a} and {b}: < or >? Answer with the sign only."
    plain = _ARITHMETIC.match(question)
    if plain is None:
        raise ValueError(f"not an arithmetic question: {question!r}")
    return "What is " + re.sub(r"(?<=\d)([+\-*])(?=\d)", r" \1 ", plain.group(1)) + "?"


def as_is(question: str) -> str:
    """Dataset questions are already written for people."""
    return question


PHRASINGS: dict[str, Callable[[str], str]] = {"arithmetic": phrase_arithmetic}
"""A domain's name to how its questions read in a chat; domains not named here keep their text."""


def parse_chat_answer(output: str) -> str | None:
    """The answer a chat model gave: the rest of the line after the last ``Answer:`` (without
    surrounding ``*``, ``$`` and a final period; ``""`` if nothing follows it), else the last number or
    ``<``/``>`` in ``output``; ``None`` when there is neither."""
    marked = _MARKED.findall(output)
    if marked:
        # Why "" for an empty answer line: the model did answer, with nothing (a wrong answer, not a
        # format error), and the verifier reads a completion without its answer this way.
        return marked[-1].strip().rstrip(".").strip("*$ ").rstrip(".").strip()
    tokens = _ANSWER_LIKE.findall(output)
    return tokens[-1].rstrip(".,") if tokens else None


class ChatRenderer(Protocol):
    """Renders chat messages as a model's prompt text."""

    def render(self, messages: Sequence[tuple[str, str]]) -> str:
        """``(role, content)`` messages as the prompt, ending where the assistant speaks."""
        ...


class ChatTemplate:
    """A tokenizer's chat template, rendered as text up to the assistant turn (``chat_template`` makes
    one from a model folder)."""

    def __init__(self, tokenizer: PreTrainedTokenizerBase) -> None:
        self.tokenizer = tokenizer

    def render(self, messages: Sequence[tuple[str, str]]) -> str:
        """``(role, content)`` messages as the model's prompt, ending where the assistant speaks."""
        return self.tokenizer.apply_chat_template(
            [{"role": role, "content": content} for role, content in messages],
            tokenize=False, add_generation_prompt=True,
        )


def chat_template(model_dir: str | Path,
                  prompt_format: Literal["auto", "chat", "plain"] = "chat") -> ChatTemplate | None:
    """The chat template of the model in ``model_dir`` that ``prompt_format`` asks for: ``plain`` none,
    ``chat`` its template (``ValueError`` without one), ``auto`` its template when it has one. The one
    place students (``tutorkd.assembly``) and teacher LLMs (``tutorkd.llm.structured``) decide it."""
    if prompt_format == "plain":
        return None
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    if tokenizer.chat_template:
        return ChatTemplate(tokenizer)
    if prompt_format == "auto":
        return None
    raise ValueError(f"the tokenizer in {model_dir} has no chat template; use prompt_format: plain")


class ChatDomain:
    """``inner`` for a chat model (see the module docstring). Implements ``tutorkd.protocols.Domain``."""

    def __init__(self, inner: Domain, template: ChatRenderer, format_examples: int = 1,
                 exclude: Container[str] = frozenset(), seed: int = 0) -> None:
        self.inner = inner
        self.template = template
        self.system = SYSTEM
        self.name = inner.name
        self.phrase = PHRASINGS.get(inner.name, as_is)
        leaves = inner.tree.leaves()
        rng = random.Random(seed)
        # Why drawn outside ``exclude``: a format example must not show an evaluation question's answer.
        self.examples = tuple(inner.sample(leaves[i % len(leaves)], 1, rng, exclude)[0]
                              for i in range(format_examples))
        shots: list[tuple[str, str]] = []
        for example in self.examples:
            shots += [("user", self.phrase(example.question)),
                      ("assistant", self.completion(example, "direct"))]
        self._shots = tuple(shots)
        samples = [inner.sample(leaf, 1, random.Random(seed), exclude)[0] for leaf in leaves]
        self._alphabet = "".join(sorted(set(inner.alphabet).union(
            *(self.prompt(p) + self.completion(p, "rationale") for p in samples))))

    @property
    def tree(self) -> SkillTree:
        """The wrapped domain's skills."""
        return self.inner.tree

    @property
    def alphabet(self) -> str:
        """The wrapped domain's characters and those of the chat around them (the template, the
        instruction, the phrasing): what a well-formed example may contain."""
        return self._alphabet

    def sample(self, skill_id: str, n: int, rng: random.Random,
               exclude: Container[str] = frozenset()) -> list[Problem]:
        """The wrapped domain's problems."""
        return self.inner.sample(skill_id, n, rng, exclude)

    def similar(self, problem: Problem, n: int, rng: random.Random,
                exclude: Container[str] = frozenset()) -> list[Problem]:
        """The wrapped domain's similar problems."""
        return self.inner.similar(problem, n, rng, exclude)

    def prompt(self, problem: Problem, explanation: str | None = None) -> str:
        """The chat up to the assistant's turn, which an explanation (if any) opens."""
        question = ("user", self.phrase(problem.question))
        text = self.template.render((("system", self.system), *self._shots, question))
        return text if explanation is None else f"{text}{explanation}\n"

    def in_context(self, system: str | None = None, demos: Sequence[Problem] = (),
                   style: str = "rationale") -> ChatDomain:
        """This domain with ``system`` as the instruction (default: this one's) and ``demos`` as worked
        question/answer turns (in ``style``) after the format examples; the same checks and samples."""
        out = copy.copy(self)
        if system is not None:
            out.system = system
        turns = [turn for p in demos
                 for turn in (("user", self.phrase(p.question)), ("assistant", self.completion(p, style)))]
        out._shots = (*self._shots, *turns)
        return out

    def completion(self, problem: Problem, style: str) -> str:
        """``<rationale>\\nAnswer: <answer>`` or ``Answer: <answer>`` (also for a problem without a
        rationale, whatever the style)."""
        if style not in ("rationale", "direct"):
            raise ValueError(f"unknown completion style {style!r}; use rationale or direct")
        if style == "direct" or problem.rationale is None:
            return f"{MARK} {problem.answer}"
        return f"{problem.rationale}\n{MARK} {problem.answer}"

    def check(self, problem: Problem, output: str) -> tuple[str | None, bool]:
        """Read the chat answer and verify it with the wrapped domain, in that domain's own answer
        format; ``(None, False)`` for a format error."""
        answer = parse_chat_answer(output)
        if answer is None:
            return None, False
        native = self.inner.completion(problem.model_copy(update={"answer": answer}), "direct")
        return self.inner.check(problem, native)

    def close(self) -> None:
        """Release the wrapped domain's workers."""
        self.inner.close()
