"""A library of buggy arithmetic procedures: the errors a principle-discovery teacher can name.

Each ``Bug`` is a known wrong procedure (forgetting a carry, subtracting the smaller digit from the
larger, dropping a partial product, ...) written as a pure function of the question's operands, with
the principle a learner who has it should practise: "When <situation>, <do/avoid ...>". A wrong
answer is *explained* by a bug when the bug reproduces it exactly (``tutorkd.agents.tpd.diagnosis``).

Conventions:

- ``Bug.skills`` are the leaf skills on which the bug can give a wrong answer; ``apply`` returns
  ``None`` for questions of any other skill, so a bug never claims errors outside its skills.
- On its skills ``apply`` returns what the buggy procedure writes, which may equal the gold answer on
  some problems (``mul.forgot_carry`` on ``21*3=``: nothing to carry). ``None`` there means the
  procedure is undefined: a negative result, or equal digits where a buggy comparison looks.
- Generic bugs (``generic=True``) are slips in copying the final answer rather than a wrong method;
  they apply across branches and are the explanation of last resort.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from tutorkd.environments.arithmetic import Operands, classify, make_problem

_NUMBER = re.compile(r"\d+")

NUMERIC_SKILLS = (
    "add.no_carry",
    "add.carry",
    "sub.no_borrow",
    "sub.borrow",
    "mul.by_digit",
    "multi.add_sub",
    "multi.add_add",
)
"""Leaf skills whose answer is a number (every skill but the two comparisons)."""

Procedure = Callable[[str, Operands], str | None]
"""A buggy procedure: (leaf skill id, operands) to the answer it writes, or ``None`` if undefined."""


@dataclass(frozen=True)
class Bug:
    """One known buggy procedure, the skills it affects and the principle that corrects it."""

    id: str
    """Dotted id, branch first, e.g. ``add.forgot_carry`` (``any.`` for generic copy slips)."""
    skills: tuple[str, ...]
    """Leaf skills on which the bug can give a wrong answer."""
    principle: str
    """``When <situation>, <do/avoid ...>``: what a learner with this bug should practise."""
    procedure: Procedure
    generic: bool = False
    """A slip in writing the answer rather than a wrong method; ranked last when errors are attributed."""

    def answer(self, skill_id: str, operands: Operands) -> str | None:
        """What the buggy procedure writes for these operands of ``skill_id``; ``None`` off its skills."""
        if skill_id not in self.skills:
            return None
        return self.procedure(skill_id, operands)

    def apply(self, question: str) -> str | None:
        """What the buggy procedure writes for ``question`` (e.g. ``47+38=`` gives ``75`` for a
        forgotten carry); ``None`` when the bug does not apply. ``ValueError`` for a non-question."""
        return self.answer(classify(question), operands(question))


def operands(question: str) -> Operands:
    """The numbers of a question in order: ``47+38-25=`` gives ``(47, 38, 25)``."""
    return tuple(int(x) for x in _NUMBER.findall(question))


def _nonneg(value: int) -> str | None:
    return str(value) if value >= 0 else None


def _sign(x: int, y: int) -> str | None:
    return "<" if x < y else ">" if x > y else None


def _added_without_carry(a: int, b: int) -> int:
    """Column addition that writes the ones digit of the ones sum and never carries."""
    return 10 * (a // 10 + b // 10) + (a % 10 + b % 10) % 10


# --------------------------------------------------------------------------------------------------
# Procedures, one per bug. ``s`` is the leaf skill id, ``o`` the operands.


def _add_forgot_carry(s: str, o: Operands) -> str | None:
    return str(_added_without_carry(*o))


def _add_carry_written(s: str, o: Operands) -> str | None:
    # Both column sums written side by side: 47+38 -> "7" then "15" -> 715.
    (a, b) = o
    return f"{a // 10 + b // 10}{a % 10 + b % 10}"


def _add_phantom_carry(s: str, o: Operands) -> str | None:
    (a, b) = o
    return str(a + b + 10)


def _sub_smaller_from_larger(s: str, o: Operands) -> str | None:
    (a, b) = o
    return str(10 * (a // 10 - b // 10) + abs(a % 10 - b % 10))


def _sub_borrow_no_decrement(s: str, o: Operands) -> str | None:
    (a, b) = o
    return str(10 * (a // 10 - b // 10) + (a % 10 + 10 - b % 10))


def _sub_zero_when_smaller(s: str, o: Operands) -> str | None:
    (a, b) = o
    return str(10 * (a // 10 - b // 10))


def _sub_added(s: str, o: Operands) -> str | None:
    return str(o[0] + o[1])


def _sub_leading_zero(s: str, o: Operands) -> str | None:
    # Both column results written, so a zero tens result stays in front: 45-42 -> 03.
    diff = o[0] - o[1]
    return f"{diff // 10}{diff % 10}"


def _mul_forgot_carry(s: str, o: Operands) -> str | None:
    (a, d) = o
    return str(10 * (a // 10) * d + (a % 10 * d) % 10)


def _mul_carry_before_multiply(s: str, o: Operands) -> str | None:
    # The carry is added to the tens digit, then the sum is multiplied: 47*8 -> (4+5)*8=72 -> 726.
    (a, d) = o
    carry = (a % 10 * d) // 10
    return str(10 * (a // 10 + carry) * d + (a % 10 * d) % 10)


def _mul_ones_only(s: str, o: Operands) -> str | None:
    return str(o[0] % 10 * o[1])


def _mul_added(s: str, o: Operands) -> str | None:
    return str(o[0] + o[1])


def _cmp_reversed(s: str, o: Operands) -> str | None:
    return _sign(o[1], o[0])


def _cmp_ones_digit(s: str, o: Operands) -> str | None:
    return _sign(o[0] % 10, o[1] % 10)


def _cmp_tens_digit(s: str, o: Operands) -> str | None:
    return _sign(o[0] // 10 % 10, o[1] // 10 % 10)


def _multi_first_op_only(s: str, o: Operands) -> str | None:
    return str(o[0] + o[1])


def _multi_swapped_op(s: str, o: Operands) -> str | None:
    # multi.add_sub done as a+b+c, multi.add_add as a+b-c.
    (a, b, c) = o
    return _nonneg(a + b + c if s == "multi.add_sub" else a + b - c)


def _multi_forgot_carry(s: str, o: Operands) -> str | None:
    (a, b, c) = o
    first = _added_without_carry(a, b)
    return _nonneg(first - c if s == "multi.add_sub" else first + c)


def _any_digits_reversed(s: str, o: Operands) -> str | None:
    return make_problem(s, o).answer[::-1]


BUGS: tuple[Bug, ...] = (
    Bug(
        "add.forgot_carry",
        ("add.carry",),
        "When the ones digits add up to 10 or more, write the ones digit and add 1 to the tens "
        "(47+38: 7+8=15, 4+3+1=8, so 85, not 75).",
        _add_forgot_carry,
    ),
    Bug(
        "add.carry_written",
        ("add.carry",),
        "When the ones digits add up to 10 or more, do not write the whole sum 15 in the answer; "
        "write its 5 and carry the 1 into the tens (47+38 is 85, not 715).",
        _add_carry_written,
    ),
    Bug(
        "add.phantom_carry",
        ("add.no_carry",),
        "When the ones digits add up to less than 10, nothing carries: add the tens digits alone "
        "(42+35: 2+5=7, 4+3=7, so 77, not 87).",
        _add_phantom_carry,
    ),
    Bug(
        "sub.smaller_from_larger",
        ("sub.borrow",),
        "When the top ones digit is smaller than the bottom one, borrow a ten (85-38: 15-8=7, "
        "7-3=4, so 47); never subtract the smaller digit from the larger (53).",
        _sub_smaller_from_larger,
    ),
    Bug(
        "sub.borrow_no_decrement",
        ("sub.borrow",),
        "When you borrow a ten for the ones column, take 1 from the top tens digit before "
        "subtracting the tens (85-38: 15-8=7, then 7-3=4, not 8-3=5).",
        _sub_borrow_no_decrement,
    ),
    Bug(
        "sub.zero_when_smaller",
        ("sub.borrow",),
        "When the top ones digit is smaller than the bottom one, do not write 0 for the ones; "
        "borrow a ten and subtract (85-38: 15-8=7, so 47, not 50).",
        _sub_zero_when_smaller,
    ),
    Bug(
        "sub.added",
        ("sub.no_borrow", "sub.borrow"),
        "When the sign is -, subtract the second number from the first; do not add them "
        "(85-38 is 47, not 123).",
        _sub_added,
    ),
    Bug(
        "sub.leading_zero",
        ("sub.no_borrow", "sub.borrow"),
        "When the tens column gives 0, drop it from the answer: 45-42 is 3, not 03.",
        _sub_leading_zero,
    ),
    Bug(
        "mul.forgot_carry",
        ("mul.by_digit",),
        "When the ones product is 10 or more, write its ones digit and add its tens digit to the "
        "tens product (47*8: 7*8=56, 4*8+5=37, so 376, not 326).",
        _mul_forgot_carry,
    ),
    Bug(
        "mul.carry_before_multiply",
        ("mul.by_digit",),
        "When multiplying with a carry, multiply the tens digit first and add the carry after "
        "(47*8: 4*8+5=37, not (4+5)*8=72).",
        _mul_carry_before_multiply,
    ),
    Bug(
        "mul.ones_only",
        ("mul.by_digit",),
        "When multiplying a 2-digit number by a digit, multiply the tens digit too: the ones "
        "product (47*8: 7*8=56) is only the first step of 376.",
        _mul_ones_only,
    ),
    Bug(
        "mul.added",
        ("mul.by_digit",),
        "When the sign is *, multiply; do not add (47*8 is 376, not 55).",
        _mul_added,
    ),
    Bug(
        "cmp.reversed",
        ("cmp.lead", "cmp.same_lead"),
        "When the first number is larger, write > (the open side faces the larger number): "
        "538?473 is >, 473?538 is <.",
        _cmp_reversed,
    ),
    Bug(
        "cmp.ones_digit",
        ("cmp.lead", "cmp.same_lead"),
        "When comparing numbers, start at the leftmost digit (hundreds, then tens); the ones decide "
        "only when all other digits are equal (312?298 is >, although 2<8).",
        _cmp_ones_digit,
    ),
    Bug(
        "cmp.tens_digit",
        ("cmp.lead",),
        "When the hundreds digits differ, they decide the comparison; do not look at the tens "
        "(392?418 is <, although 9>1).",
        _cmp_tens_digit,
    ),
    Bug(
        "multi.first_op_only",
        ("multi.add_sub", "multi.add_add"),
        "When a question has two operations, finish both: after a+b, apply the second sign to "
        "the third number (47+38-25: 85, then 85-25=60).",
        _multi_first_op_only,
    ),
    Bug(
        "multi.swapped_op",
        ("multi.add_sub", "multi.add_add"),
        "When doing the second operation, read its own sign: 47+38-25 subtracts 25 (60), "
        "47+38+25 adds it (110).",
        _multi_swapped_op,
    ),
    Bug(
        "multi.forgot_carry",
        ("multi.add_sub", "multi.add_add"),
        "When the ones digits of the first two numbers add up to 10 or more, carry 1 into the tens "
        "of their sum before the second operation (47+38=85, not 75).",
        _multi_forgot_carry,
    ),
    Bug(
        "any.digits_reversed",
        NUMERIC_SKILLS,
        "When writing the final answer, copy its digits in order, tens before ones "
        "(the 8 tens and 5 ones of 85 are written 85, not 58).",
        _any_digits_reversed,
        generic=True,
    ),
)
"""The bug library, most specific first within each branch; ids are unique."""

BUGS_BY_ID: dict[str, Bug] = {bug.id: bug for bug in BUGS}
