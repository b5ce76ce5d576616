"""Step-level diagnosis (``tutorkd.agents.tpd.slips``): each wrong worked answer at its first wrong step."""

from __future__ import annotations

import pytest

from tutorkd.agents.tpd.slips import first_slip, locate_slips, render_slips, steps
from tutorkd.environments.arithmetic import ArithmeticDomain
from tutorkd.schema import Attempt

DOMAIN = ArithmeticDomain()


def attempt(skill: str, operands: tuple[int, ...], output: str) -> Attempt:
    """The student's ``output`` on the problem; correctness as the domain's checker says."""
    problem = DOMAIN.make(skill, operands)
    parsed, correct = DOMAIN.check(problem, output)
    return Attempt(problem=problem, output=output, parsed_answer=parsed, correct=correct)


def test_steps_read_a_rationale_and_stop_at_the_first_token_that_is_not_a_step() -> None:
    assert steps("4+7=11 7+7+1=15") == [("4+7", "11"), ("7+7+1", "15")]
    assert steps("R:7*8=56 3*8+5=29 A:296") == [("7*8", "56"), ("3*8+5", "29")]
    assert steps("R:10+18=20 30") == [("10+18", "20")]
    assert steps("A:12") == []


# (skill, operands, student output, kind, step, expected, wrote); the gold rationale is in each comment.
CASES = [
    # 74+77: 4+7=11 7+7+1=15 -> 151
    ("add.carry", (74, 77), "R:4+7=10 7+7+1=15 A:150", "fact", 0, "4+7=11", "4+7=10"),
    # 37*8: 7*8=56 3*8+5=29 -> 296; the second step is wrong after a right first one
    ("mul.by_digit", (37, 8), "R:7*8=56 3*8+5=28 A:286", "fact", 1, "3*8+5=29", "3*8+5=28"),
    # 34-18: 14-8=6 2-1=1 -> 16; the student did not borrow from 34's 4
    ("sub.borrow", (34, 18), "R:12-8=4 3-1=2 A:24", "setup", 0, "14-8=6", "12-8=4"),
    # 98+47-73: 98+47=145 145-73=72; the second step is missing
    ("multi.add_sub", (98, 47, 73), "R:98+47=145 A:145", "setup", 1, "145-73=72", None),
    # 72-13: 12-3=9 6-1=5 -> 59; right steps, digits copied out reversed
    ("sub.borrow", (72, 13), "R:12-3=9 6-1=5 A:95", "assembly", None, None, None),
    ("sub.borrow", (72, 13), "A:58", "no_steps", None, None, None),
]


@pytest.mark.parametrize("case", CASES, ids=[f"{c[0]}-{c[3]}" for c in CASES])
def test_the_first_wrong_step_is_located_and_classified(case: tuple) -> None:
    skill, ops, output, kind, step, expected, wrote = case
    slip = first_slip(attempt(skill, ops, output), DOMAIN)
    assert slip is not None
    got = (slip.kind, slip.step, slip.expected, slip.wrote, slip.skill_id)
    assert got == (kind, step, expected, wrote, skill)


def test_right_answers_format_errors_and_comparisons_have_no_slip() -> None:
    assert first_slip(attempt("add.carry", (74, 77), "R:4+7=11 7+7+1=15 A:151"), DOMAIN) is None
    assert first_slip(attempt("add.carry", (74, 77), "R:4+7=10 7+7"), DOMAIN) is None  # no answer
    wrong_cmp = attempt("cmp.lead", (722, 880), "R:7>8 A:>")
    assert not wrong_cmp.correct
    assert first_slip(wrong_cmp, DOMAIN) is None


def test_a_summary_counts_kinds_and_groups_wrong_facts() -> None:
    attempts = [
        attempt("add.carry", (74, 77), "R:4+7=10 7+7+1=15 A:150"),
        attempt("add.carry", (24, 57), "R:4+7=10 2+5+1=8 A:80"),
        attempt("add.carry", (34, 47), "R:4+7=12 3+4+1=8 A:82"),
        attempt("mul.by_digit", (37, 8), "R:7*8=56 3*8+5=28 A:286"),
        attempt("sub.borrow", (34, 18), "R:12-8=4 3-1=2 A:24"),
        attempt("add.carry", (74, 77), "R:4+7=11 7+7+1=15 A:151"),  # right: not counted
    ]
    summary = locate_slips(attempts, DOMAIN)
    assert summary.wrong == 5
    assert summary.by_kind == {"fact": 4, "setup": 1, "assembly": 0, "no_steps": 0}
    assert summary.share("fact") == pytest.approx(0.8)
    top = summary.facts[0]
    got = (top.skill_id, top.expression, top.right, top.count, top.wrote)
    assert got == ("add.carry", "4+7", "11", 3, ("10", "12"))
    assert top.principle == "When a step computes 4+7, the result is 11 (not 10/12)."
    text = render_slips(summary)
    assert "fact 4 (80%)" in text and "4+7" in text and "3*8+5" in text
    assert locate_slips([], DOMAIN).share("fact") == 0.0
