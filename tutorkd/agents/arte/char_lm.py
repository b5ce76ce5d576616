"""The tiny teacher LM: a character-level Llama pretrained here to write arithmetic training examples.

Prompt: a skill tag, ``#<node>:`` (a branch such as ``#add:`` or a leaf such as ``#add.carry:``).
Completion: a question and its solution, ``47+38=R:7+8=15 4+3+1=8 A:85`` or ``47+38=A:85``.

Its pretraining (``tutorkd.agents.arte.char_lm_pretrain``) is varied in style on purpose, so that aligning
the teacher to a student has something to move: rationale or answer only, small or large operands,
and, for a branch tag, any of the branch's leaves.

The teacher is a proposer, not an authority: ``parse`` recomputes every gold answer and rationale with
the domain's solver (the teacher's own arithmetic is only recorded, as ``teacher_correct``), so a
teacher can never teach a wrong answer; an output that is not a question of the tag's skill is counted
and dropped. On GPUs the same role is played by any Hugging Face causal LM folder with this format.
"""

from __future__ import annotations

import re
from pathlib import Path

from tutorkd.environments.arithmetic import ArithmeticDomain
from tutorkd.schema import Problem, Record

MAX_TOKENS = 64
"""Generation budget of one example (the longest is about 45 characters)."""


def tag(node: str) -> str:
    """The prompt of skill-tree node ``node``."""
    return f"#{node}:"


def operands(question: str) -> tuple[int, ...]:
    """The numbers of an arithmetic question, in order."""
    return tuple(int(x) for x in re.findall(r"\d+", question))


def spots(question: str) -> list[float]:
    """Where each multi-digit operand sits in its range, 0 (lowest) to 1 (highest); single-digit
    operands (the multiplier of ``mul.by_digit``) are left out."""
    return [(x - 10) / 89 if x < 100 else (x - 100) / 899 for x in operands(question) if x >= 10]


def magnitude(question: str) -> float:
    """The mean of ``spots``: how large the question's numbers are for its skill."""
    where = spots(question)
    return sum(where) / len(where)


class Draft(Record):
    """One teacher output, parsed: the verified problem and style, or why it cannot be used."""

    node: str
    """The skill-tree node the teacher was prompted with."""
    text: str
    """What the teacher wrote after the tag."""
    problem: Problem | None = None
    """The question with its gold answer and rationale recomputed by the domain; ``None`` if unusable."""
    style: str | None = None
    """``rationale`` or ``direct``: the teacher's choice, read from its solution."""
    completion: str | None = None
    """The verified training completion in the teacher's style (``domain.completion``)."""
    teacher_correct: bool = False
    """Whether the teacher's own solution was exactly the verified one."""
    reject: str | None = None
    """``malformed`` (no question of any skill, or no ``R:``/``A:`` solution) or ``off_skill`` (a question
    of a skill outside the tag's node); ``None`` when usable."""


def parse(domain: ArithmeticDomain, node: str, text: str) -> Draft:
    """Read one teacher output: question up to the first ``=``, then its solution; recompute the gold."""
    head, eq, solution = text.partition("=")
    question = head + eq
    try:
        leaf = domain.classify(question)
    except ValueError:
        return Draft(node=node, text=text, reject="malformed")
    if leaf not in domain.tree.leaves_under(node):
        return Draft(node=node, text=text, reject="off_skill")
    style = "rationale" if solution.startswith("R:") else "direct" if solution.startswith("A:") else None
    if style is None:
        return Draft(node=node, text=text, reject="malformed")
    try:
        problem = domain.make(leaf, operands(question))
    except ValueError:
        # Why: ``classify`` ignores whitespace but the operands are read digit group by digit group, so
        # ``78+7 7=`` classifies as a sum of two numbers yet has three: malformed, not a crash.
        return Draft(node=node, text=text, reject="malformed")
    completion = domain.completion(problem, style)
    return Draft(
        node=node,
        text=text,
        problem=problem,
        style=style,
        completion=completion,
        teacher_correct=solution == completion,
    )


class CharTeacherLM:
    """A pretrained (or aligned) teacher folder that samples examples for skill tags (implements
    ``tutorkd.agents.arte.char_lm_engine.Writer``)."""

    def __init__(
        self,
        model_dir: str | Path,
        domain: ArithmeticDomain,
        temperature: float = 1.0,
        name: str | None = None,
    ) -> None:
        from tutorkd.llm.hf_backend import TransformersBackend

        self.model_dir, self.domain, self.temperature = Path(model_dir), domain, temperature
        self.name = name or f"teacher-lm:{self.model_dir.name}"
        """Model id recorded in each example's provenance."""
        self.backend = TransformersBackend(self.model_dir, batch_size=256)

    def sample(self, prompts: list[str], seed: int) -> list[str]:
        """One sampled continuation per prompt; each chunk of 256 gets its own seed (the backend seeds
        every batch alike, and identical prompts would otherwise repeat identical samples)."""
        from tutorkd.agents.baselines.procedural import derive_seed
        from tutorkd.protocols import SamplingConfig

        out: list[str] = []
        for start in range(0, len(prompts), 256):
            params = SamplingConfig(
                max_tokens=MAX_TOKENS, temperature=self.temperature, seed=derive_seed(seed, start) % 2**31
            )
            out += [c.text for c in self.backend.generate(prompts[start : start + 256], params)]
        return out

    def examples(self, node: str, n: int, seed: int) -> list[Draft]:
        """``n`` sampled whole examples for ``node``, parsed (unusable ones included, with the reason)."""
        return [parse(self.domain, node, t) for t in self.sample([tag(node)] * n, seed)]

    def close(self) -> None:
        """Release the model."""
        self.backend.close()
