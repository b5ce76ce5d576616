"""The embedded procedural arithmetic domain: 5 branches, 9 leaf skills, exact verifier.

Questions and completions (the fixed text format every module relies on):

- A question ends in ``=``: ``47+38=``, ``85-38=``, ``47*8=``, ``473?538=`` (compare), ``47+38-25=``.
- Completion style ``rationale`` is ``R:<rationale> A:<answer>``; style ``direct`` is ``A:<answer>``.
- With a teacher explanation the prompt is ``question + "R:" + explanation + " "``.
- The answer is a plain integer without leading zeros, or ``<`` / ``>`` for comparisons.

Rationale conventions (steps separated by one space, column by column, ones first):

- Addition: the ones step writes the full sum (``7+8=15``); its last digit is the answer's ones digit
  and a two-digit sum carries 1 into the tens step, written as ``+1`` (``4+3+1=8``). Without a carry
  there is no ``+0`` (``2+5=7 4+3=7``). The tens result, written in full, is the answer's leading part.
- Subtraction: with a borrow the ones step adds the borrowed ten (``15-8=7``) and the tens step uses
  the reduced tens digit (``7-3=4`` for ``85-38``). A zero tens result is still written (``4-4=0``),
  but the answer drops the leading zero (``45-42=`` gives ``5-2=3 4-4=0 A:3``).
- Multiplication by a digit: the ones step writes the full product (``7*8=56``) and its tens digit is
  carried into the tens step as ``+5`` (``4*8+5=37``); no ``+0`` when nothing is carried.
- Comparison: hundreds, tens, ones digits compared in turn until they differ (``4=4 7<9``).
- Two operations: left to right on whole numbers (``47+38=85 85-25=60``).

Sampling is uniform over a skill's problem space *with replacement*: ``sample`` may return the same
question twice; callers that need distinct problems deduplicate (as ``HeldOut.build`` does).
"""

from __future__ import annotations

import itertools
import random
import re
from collections.abc import Callable, Container
from dataclasses import dataclass

from tutorkd.schema import Problem, Skill, SkillTree

Operands = tuple[int, ...]

TWO_DIGIT = range(10, 100)
THREE_DIGIT = range(100, 1000)

DEFAULT_PRETRAIN_MIX: dict[str, float] = {
    "add.no_carry": 0.28,
    "sub.no_borrow": 0.28,
    "cmp.lead": 0.20,
    "cmp.same_lead": 0.08,
    "add.carry": 0.05,
    "multi.add_add": 0.05,
    "sub.borrow": 0.02,
    "multi.add_sub": 0.02,
    "mul.by_digit": 0.02,
}
"""Skewed skill mix for pretraining the tiny base student: strong on some skills, weak on others."""

STYLES = ("rationale", "direct")

_ANSWER = re.compile(r"A:(\S*)")


def _ones(x: int) -> int:
    return x % 10


def _tens(x: int) -> int:
    return x // 10


def _add_steps(a: int, b: int) -> tuple[str, int]:
    """Column addition of two 2-digit numbers: (rationale, sum)."""
    low = _ones(a) + _ones(b)
    carry = "+1" if low >= 10 else ""
    high = _tens(a) + _tens(b) + (low >= 10)
    return f"{_ones(a)}+{_ones(b)}={low} {_tens(a)}+{_tens(b)}{carry}={high}", a + b


def _sub_steps(a: int, b: int) -> tuple[str, int]:
    """Column subtraction of two 2-digit numbers, borrowing from the tens: (rationale, difference)."""
    borrow = _ones(a) < _ones(b)
    low_a = _ones(a) + 10 * borrow
    high_a = _tens(a) - borrow
    return f"{low_a}-{_ones(b)}={low_a - _ones(b)} {high_a}-{_tens(b)}={high_a - _tens(b)}", a - b


def _mul_steps(a: int, d: int) -> tuple[str, int]:
    """A 2-digit number times a digit, column by column: (rationale, product)."""
    low = _ones(a) * d
    carry = f"+{low // 10}" if low >= 10 else ""
    high = _tens(a) * d + low // 10
    return f"{_ones(a)}*{d}={low} {_tens(a)}*{d}{carry}={high}", a * d


def _cmp_steps(a: int, b: int) -> tuple[str, str]:
    """Digit-by-digit comparison until the digits differ: (rationale, ``<`` or ``>``)."""
    steps = []
    for da, db in zip(str(a), str(b), strict=True):
        sign = "<" if da < db else ">" if da > db else "="
        steps.append(f"{da}{sign}{db}")
        if sign != "=":
            return " ".join(steps), sign
    raise ValueError(f"cannot compare equal numbers {a} and {b}")


def _solve_two_ops(ops: Operands, second: str) -> tuple[str, str]:
    a, b, c = ops
    total = a + b + c if second == "+" else a + b - c
    return f"{a}+{b}={a + b} {a + b}{second}{c}={total}", str(total)


@dataclass(frozen=True)
class _SkillSpec:
    """How one leaf skill's problems are drawn, rendered and solved."""

    skill: Skill
    template: str
    """Question with ``{}`` for each operand, e.g. ``{}+{}=``."""
    ranges: tuple[range, ...]
    """Operands are drawn uniformly from these ranges, then rejected unless ``valid``."""
    valid: Callable[[Operands], bool]
    solve: Callable[[Operands], tuple[str, str]]
    """Operands to (rationale, answer)."""

    def contains(self, ops: Operands) -> bool:
        """Whether ``ops`` are a problem of this skill."""
        in_ranges = len(ops) == len(self.ranges) and all(
            x in r for x, r in zip(ops, self.ranges, strict=True)
        )
        return in_ranges and self.valid(ops)

    def pattern(self) -> re.Pattern[str]:
        """Regex that parses a question of this template back into its operands."""
        return re.compile("^" + re.escape(self.template).replace(r"\{\}", r"(\d+)") + "$")


def _numeric(steps: Callable[[int, int], tuple[str, int]]) -> Callable[[Operands], tuple[str, str]]:
    def solve(ops: Operands) -> tuple[str, str]:
        rationale, value = steps(*ops)
        return rationale, str(value)

    return solve


def _leaf(skill_id: str, description: str) -> Skill:
    return Skill(id=skill_id, description=description, parent=skill_id.split(".")[0])


_BRANCHES = (
    Skill(id="add", description="Add two 2-digit numbers."),
    Skill(id="sub", description="Subtract a 2-digit number from a larger one."),
    Skill(id="mul", description="Multiply a 2-digit number by a digit."),
    Skill(id="cmp", description="Compare two 3-digit numbers."),
    Skill(id="multi", description="Two operations on three 2-digit numbers, left to right."),
)

_SPECS = (
    _SkillSpec(
        _leaf("add.no_carry", "Addition with no carry in either column (sum below 100)."),
        "{}+{}=",
        (TWO_DIGIT, TWO_DIGIT),
        lambda o: _ones(o[0]) + _ones(o[1]) < 10 and o[0] + o[1] < 100,
        _numeric(_add_steps),
    ),
    _SkillSpec(
        _leaf("add.carry", "Addition with a carry out of the ones column."),
        "{}+{}=",
        (TWO_DIGIT, TWO_DIGIT),
        lambda o: _ones(o[0]) + _ones(o[1]) >= 10,
        _numeric(_add_steps),
    ),
    _SkillSpec(
        _leaf("sub.no_borrow", "Subtraction with no borrow (non-negative result)."),
        "{}-{}=",
        (TWO_DIGIT, TWO_DIGIT),
        lambda o: _ones(o[0]) >= _ones(o[1]) and o[0] >= o[1],
        _numeric(_sub_steps),
    ),
    _SkillSpec(
        _leaf("sub.borrow", "Subtraction with a borrow from the tens (non-negative result)."),
        "{}-{}=",
        (TWO_DIGIT, TWO_DIGIT),
        lambda o: _ones(o[0]) < _ones(o[1]) and o[0] >= o[1],
        _numeric(_sub_steps),
    ),
    _SkillSpec(
        _leaf("mul.by_digit", "A 2-digit number times a digit from 2 to 9."),
        "{}*{}=",
        (TWO_DIGIT, range(2, 10)),
        lambda o: True,
        _numeric(_mul_steps),
    ),
    _SkillSpec(
        _leaf("cmp.lead", "Compare 3-digit numbers whose hundreds digits differ."),
        "{}?{}=",
        (THREE_DIGIT, THREE_DIGIT),
        lambda o: o[0] // 100 != o[1] // 100,
        lambda o: _cmp_steps(*o),
    ),
    _SkillSpec(
        _leaf("cmp.same_lead", "Compare different 3-digit numbers with the same hundreds digit."),
        "{}?{}=",
        (THREE_DIGIT, THREE_DIGIT),
        lambda o: o[0] // 100 == o[1] // 100 and o[0] != o[1],
        lambda o: _cmp_steps(*o),
    ),
    _SkillSpec(
        _leaf("multi.add_sub", "a+b-c with a non-negative result."),
        "{}+{}-{}=",
        (TWO_DIGIT, TWO_DIGIT, TWO_DIGIT),
        lambda o: o[0] + o[1] >= o[2],
        lambda o: _solve_two_ops(o, "-"),
    ),
    _SkillSpec(
        _leaf("multi.add_add", "a+b+c."),
        "{}+{}+{}=",
        (TWO_DIGIT, TWO_DIGIT, TWO_DIGIT),
        lambda o: True,
        lambda o: _solve_two_ops(o, "+"),
    ),
)


class ArithmeticDomain:
    """Procedural arithmetic with a skill tree, an exact verifier and the fixed text format.

    Implements ``tutorkd.protocols.Domain``. Every problem carries exactly one leaf skill id and its
    rationale; ids are deterministic from the question (``arith:<skill>:<question>``).
    """

    name = "arithmetic"

    def __init__(self) -> None:
        self._specs = {spec.skill.id: spec for spec in _SPECS}
        self._patterns = [(spec, spec.pattern()) for spec in _SPECS]
        self._tree = SkillTree(nodes=_BRANCHES + tuple(spec.skill for spec in _SPECS))

    @property
    def tree(self) -> SkillTree:
        """Five branches (``add``, ``sub``, ``mul``, ``cmp``, ``multi``) over nine leaves."""
        return self._tree

    @property
    def alphabet(self) -> str:
        """Every character a prompt or completion can contain."""
        return "0123456789+-*?=<> :RA"

    @property
    def default_pretrain_mix(self) -> dict[str, float]:
        """A fresh copy of ``DEFAULT_PRETRAIN_MIX`` (leaf skill id to sampling weight)."""
        return dict(DEFAULT_PRETRAIN_MIX)

    def close(self) -> None:
        """Nothing to release: the domain is pure computation."""

    def _spec(self, skill_id: str) -> _SkillSpec:
        if skill_id not in self._specs:
            raise ValueError(f"unknown arithmetic skill {skill_id!r}; leaf skills are {sorted(self._specs)}")
        return self._specs[skill_id]

    def make(self, skill_id: str, operands: Operands) -> Problem:
        """The problem of ``skill_id`` with these operands; ``ValueError`` if they are outside the skill."""
        spec = self._spec(skill_id)
        if not spec.contains(operands):
            raise ValueError(f"operands {operands} are not a {skill_id} problem")
        question = spec.template.format(*operands)
        rationale, answer = spec.solve(operands)
        return Problem(
            id=f"arith:{skill_id}:{question}",
            question=question,
            answer=answer,
            skill_ids=(skill_id,),
            rationale=rationale,
        )

    def sample(
        self, skill_id: str, n: int, rng: random.Random, exclude: Container[str] = frozenset()
    ) -> list[Problem]:
        """Draw ``n`` problems uniformly (with replacement) from one skill, none with a question in
        ``exclude``. Raises ``RuntimeError`` if ``exclude`` leaves too little of the space to sample."""
        spec = self._spec(skill_id)
        out: list[Problem] = []
        tries = 0
        max_tries = 1000 * n + 100_000
        while len(out) < n:
            tries += 1
            if tries > max_tries:
                raise RuntimeError(
                    f"drew {tries} candidates for {skill_id} but found only {len(out)}/{n} outside "
                    "the excluded questions; the skill's space is nearly exhausted"
                )
            ops = tuple(rng.choice(r) for r in spec.ranges)
            if not spec.valid(ops) or spec.template.format(*ops) in exclude:
                continue
            out.append(self.make(skill_id, ops))
        return out

    def classify(self, question: str) -> str:
        """The leaf skill of a question (whitespace ignored), from its text alone; ``ValueError`` if none."""
        question = "".join(question.split())
        for spec, pattern in self._patterns:
            match = pattern.match(question)
            if match is None:
                continue
            ops = tuple(int(g) for g in match.groups())
            # Why: ``spec.template.format`` re-renders the operands, rejecting leading zeros.
            if spec.contains(ops) and spec.template.format(*ops) == question:
                return spec.skill.id
        raise ValueError(f"question {question!r} is not a problem of any arithmetic skill")

    def similar(
        self, problem: Problem, n: int, rng: random.Random, exclude: Container[str] = frozenset()
    ) -> list[Problem]:
        """``n`` new problems of the skill that ``problem.question`` belongs to (labels not needed)."""
        return self.sample(self.classify(problem.question), n, rng, exclude)

    def check(self, problem: Problem, output: str) -> tuple[str | None, bool]:
        """Parse the text after the first ``A:`` up to whitespace; no ``A:`` is a format error."""
        match = _ANSWER.search(output)
        if match is None:
            return None, False
        parsed = match.group(1)
        return parsed, parsed == problem.answer

    def prompt(self, problem: Problem, explanation: str | None = None) -> str:
        """The question, followed by ``R:<explanation> `` when a teacher explanation is given."""
        if explanation is None:
            return problem.question
        return f"{problem.question}R:{explanation} "

    def completion(self, problem: Problem, style: str) -> str:
        """``R:<rationale> A:<answer>`` or ``A:<answer>``."""
        if style == "rationale":
            if problem.rationale is None:
                raise ValueError(f"problem {problem.id} has no rationale for style 'rationale'")
            return f"R:{problem.rationale} A:{problem.answer}"
        if style == "direct":
            return f"A:{problem.answer}"
        raise ValueError(f"unknown completion style {style!r}; use one of {STYLES}")

    def space_size(self, skill_id: str) -> int:
        """Exact number of distinct questions of ``skill_id`` (``SPACE_SIZES``)."""
        self._spec(skill_id)  # Why: an unknown skill fails with the domain's own message
        return SPACE_SIZES[skill_id]


_SHARED = ArithmeticDomain()
"""The domain holds no state but its skill table, so code that reasons about arithmetic questions
without a run (TPD's bug library) uses the functions below instead of a domain of its own."""


def classify(question: str) -> str:
    """The leaf skill of an arithmetic question (``ArithmeticDomain.classify``)."""
    return _SHARED.classify(question)


def make_problem(skill_id: str, operands: Operands) -> Problem:
    """The problem of ``skill_id`` with these operands (``ArithmeticDomain.make``)."""
    return _SHARED.make(skill_id, operands)


SPACE_SIZES: dict[str, int] = {
    "add.no_carry": 1980, "add.carry": 3645, "sub.no_borrow": 2475, "sub.borrow": 1620, "mul.by_digit": 720,
    "cmp.lead": 720000, "cmp.same_lead": 89100, "multi.add_sub": 643680, "multi.add_add": 729000,
}
"""Each skill's number of distinct questions, as ``count_space`` enumerates them (a test keeps the two
equal). Why a table: the enumeration takes 0.6 s, paid by every process that builds held-out sets."""


def count_space(skill_id: str) -> int:
    """Enumerate ``skill_id``'s operand space and count the valid questions."""
    spec = next(s for s in _SPECS if s.skill.id == skill_id)
    return sum(1 for ops in itertools.product(*spec.ranges) if spec.valid(ops))
