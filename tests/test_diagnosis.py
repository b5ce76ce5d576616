"""The bug library and the procedural diagnosis built on it (principle discovery, TPD)."""

from __future__ import annotations

import random

import pytest

from tutorkd.agents.tpd.bugs import BUGS, BUGS_BY_ID, Bug
from tutorkd.agents.tpd.diagnosis import (
    Diagnosis,
    PrincipleTracker,
    diagnose,
    discriminating_problems,
    render_diagnosis,
)
from tutorkd.environments.arithmetic import ArithmeticDomain
from tutorkd.schema import Attempt, Problem

DOMAIN = ArithmeticDomain()
LEAVES = DOMAIN.tree.leaves()

# (bug, question, the buggy answer), each worked by hand in the comment.
LITERAL = [
    ("add.forgot_carry", "47+38=", "75"),  # 7+8=15 -> 5; 4+3=7, the 1 forgotten
    ("add.forgot_carry", "99+99=", "188"),  # 9+9=18 -> 8; 9+9=18 without the carry
    ("add.carry_written", "47+38=", "715"),  # tens 4+3=7, ones 7+8=15, written side by side
    ("add.phantom_carry", "42+35=", "87"),  # 2+5=7; 4+3+1=8 with a carry that does not exist
    ("sub.smaller_from_larger", "85-38=", "53"),  # |5-8|=3 in the ones; 8-3=5 in the tens
    ("sub.borrow_no_decrement", "85-38=", "57"),  # 15-8=7; 8-3=5, the 8 not reduced to 7
    ("sub.zero_when_smaller", "85-38=", "50"),  # 5<8 -> 0; 8-3=5
    ("sub.added", "85-38=", "123"),  # 85+38
    ("sub.added", "57-23=", "80"),  # 57+23
    ("sub.leading_zero", "45-42=", "03"),  # 5-2=3; 4-4=0 kept in front
    ("sub.leading_zero", "52-47=", "05"),  # 12-7=5; 4-4=0 kept in front
    ("sub.leading_zero", "85-38=", "47"),  # tens result 4 is not zero: the gold answer
    ("mul.forgot_carry", "47*8=", "326"),  # 7*8=56 -> 6; 4*8=32 without the 5
    ("mul.forgot_carry", "21*3=", "63"),  # 1*3=3, nothing to carry: the gold answer
    ("mul.carry_before_multiply", "47*8=", "726"),  # 7*8=56 -> 6; (4+5)*8=72
    ("mul.ones_only", "47*8=", "56"),  # 7*8 only
    ("mul.added", "47*8=", "55"),  # 47+8
    ("cmp.reversed", "473?538=", ">"),  # 473 < 538, sign flipped
    ("cmp.ones_digit", "312?298=", "<"),  # ones 2<8 (gold >)
    ("cmp.ones_digit", "312?292=", None),  # ones 2=2: the buggy comparison is undefined
    ("cmp.tens_digit", "392?418=", ">"),  # tens 9>1 (gold <)
    ("multi.first_op_only", "47+38-25=", "85"),  # 47+38, then stopped
    ("multi.swapped_op", "47+38-25=", "110"),  # 85+25
    ("multi.swapped_op", "47+38+25=", "60"),  # 85-25
    ("multi.swapped_op", "10+11+30=", None),  # 21-30 is negative
    ("multi.forgot_carry", "47+38-25=", "50"),  # 47+38 -> 75 (no carry), 75-25
    ("multi.forgot_carry", "47+38+25=", "100"),  # 75+25
    ("any.digits_reversed", "47+38=", "58"),  # gold 85 reversed
    ("any.digits_reversed", "47+38-25=", "06"),  # gold 60 reversed
    # Off the bug's skills: None.
    ("add.forgot_carry", "42+35=", None),  # add.no_carry
    ("sub.smaller_from_larger", "87-35=", None),  # sub.no_borrow
    ("cmp.tens_digit", "312?345=", None),  # cmp.same_lead
    ("any.digits_reversed", "473?538=", None),  # comparisons have no digits to reverse
]


def _attempt(problem: Problem, answer: str | None, strip: bool = False) -> Attempt:
    if strip:
        problem = problem.model_copy(update={"skill_ids": ()})
    return Attempt(
        problem=problem,
        output="R:" if answer is None else f"A:{answer}",
        parsed_answer=answer,
        correct=answer == problem.answer,
    )


def _buggy_attempts(bug: Bug, rng: random.Random, per_skill: int) -> list[Attempt]:
    """A student with exactly this bug: the bug's answer where it applies, the gold one elsewhere."""
    out = []
    for skill in LEAVES:
        for p in DOMAIN.sample(skill, per_skill, rng):
            buggy = bug.apply(p.question)
            out.append(_attempt(p, p.answer if buggy is None else buggy))
    return out


def test_library_size_ids_and_principles():
    assert len(BUGS) >= 12
    assert len(BUGS_BY_ID) == len(BUGS)
    assert {b.id.split(".")[0] for b in BUGS} >= {"add", "sub", "mul", "cmp", "multi"}
    for bug in BUGS:
        assert bug.principle.startswith("When "), bug.id
        assert set(bug.skills) <= set(LEAVES), bug.id
        if not bug.generic:
            assert {s.split(".")[0] for s in bug.skills} == {bug.id.split(".")[0]}, bug.id


@pytest.mark.parametrize(("bug_id", "question", "expected"), LITERAL)
def test_literal_buggy_answers(bug_id: str, question: str, expected: str | None):
    assert BUGS_BY_ID[bug_id].apply(question) == expected


def test_every_bug_is_covered_by_the_literal_table():
    assert {row[0] for row in LITERAL} == set(BUGS_BY_ID)


@pytest.mark.parametrize("bug", BUGS, ids=lambda b: b.id)
def test_bug_is_never_a_no_op_and_stays_on_its_skills(bug: Bug):
    rng = random.Random(0)
    for skill in LEAVES:
        answers = [(bug.apply(p.question), p.answer) for p in DOMAIN.sample(skill, 200, rng)]
        if skill in bug.skills:
            assert any(b is not None and b != gold for b, gold in answers), (bug.id, skill)
        else:
            assert all(b is None for b, _ in answers), (bug.id, skill)


@pytest.mark.parametrize("bug", BUGS, ids=lambda b: b.id)
def test_single_bug_student_is_attributed_to_its_bug(bug: Bug):
    attempts = _buggy_attempts(bug, random.Random(1), per_skill=30)
    d = diagnose(attempts, DOMAIN)
    assert d.wrong > 0 and d.format_errors == 0
    assert d.coverage == 1.0
    assert all(bug.id in e.matches for e in d.errors)
    # With correct attempts in the batch, every other bug is contradicted or explains fewer errors.
    assert {e.bug_id for e in d.errors} == {bug.id}
    assert [p.bug_id for p in d.principles] == [bug.id]
    assert d.principles[0].share == 1.0 and d.principles[0].count == d.wrong
    assert set(d.principles[0].skills) <= set(bug.skills)


def test_student_with_a_bug_per_branch():
    # Three bugs on different skills: each skill's errors go to that skill's bug.
    rng = random.Random(9)
    chosen = {
        "add.carry": "add.forgot_carry",
        "sub.borrow": "sub.zero_when_smaller",
        "mul.by_digit": "mul.ones_only",
    }
    attempts = []
    for skill in LEAVES:
        for p in DOMAIN.sample(skill, 25, rng):
            buggy = BUGS_BY_ID[chosen[skill]].apply(p.question) if skill in chosen else None
            attempts.append(_attempt(p, p.answer if buggy is None else buggy))
    d = diagnose(attempts, DOMAIN)
    assert d.coverage == 1.0
    assert {e.skill_id: e.bug_id for e in d.errors} == chosen
    assert {p.bug_id: p.skills for p in d.principles} == {b: (s,) for s, b in chosen.items()}
    assert sum(p.share for p in d.principles) == pytest.approx(1.0)


def test_random_errors_mostly_unexplained_and_format_errors_separate():
    rng = random.Random(2)
    bug = BUGS_BY_ID["sub.borrow_no_decrement"]
    attempts = _buggy_attempts(bug, rng, per_skill=20)
    buggy_wrong = sum(not a.correct for a in attempts)
    noise = []
    for skill in ("add.carry", "mul.by_digit", "multi.add_add", "sub.no_borrow"):
        for p in DOMAIN.sample(skill, 25, rng):
            wrong = str(int(p.answer) + rng.choice([-1, 1]) * rng.randint(1, 9) * 7)
            noise.append(_attempt(p, wrong))
    formats = [_attempt(p, None) for p in DOMAIN.sample("add.carry", 7, rng)]
    d = diagnose(attempts + noise + formats, DOMAIN)
    assert d.format_errors == 7
    assert d.wrong == buggy_wrong + len(noise)
    assert d.principles[0].bug_id == bug.id and d.principles[0].count == buggy_wrong
    noise_ids = {a.problem.id for a in noise}
    noise_explained = sum(1 for e in d.errors if e.problem_id in noise_ids and e.matches)
    assert noise_explained <= 0.1 * len(noise)
    assert d.explained == buggy_wrong + noise_explained
    assert d.coverage == pytest.approx(d.explained / d.wrong)


def test_stripped_labels_give_the_same_diagnosis():
    attempts = _buggy_attempts(BUGS_BY_ID["mul.forgot_carry"], random.Random(3), per_skill=10)
    stripped = [_attempt(a.problem, a.parsed_answer, strip=True) for a in attempts]
    assert diagnose(stripped, DOMAIN) == diagnose(attempts, DOMAIN)


def test_comparison_tie_needs_correct_attempts():
    attempts = _buggy_attempts(BUGS_BY_ID["cmp.ones_digit"], random.Random(4), per_skill=30)
    errors_only = [a for a in attempts if not a.correct]
    # From errors alone every wrong comparison is also a reversed sign: the tie goes to library order.
    tied = diagnose(errors_only, DOMAIN)
    assert {e.bug_id for e in tied.errors} == {"cmp.reversed"}
    assert all("cmp.ones_digit" in e.matches for e in tied.errors)
    # Correct answers contradict cmp.reversed, which would have got them wrong.
    assert {e.bug_id for e in diagnose(attempts, DOMAIN).errors} == {"cmp.ones_digit"}


def test_method_bug_beats_a_generic_slip():
    # The generic bug comes first in the library and matches too, yet the method bug gets the error.
    p = DOMAIN.make("add.carry", (47, 38))
    generic = Bug("any.always_75", ("add.carry",), "When copying, copy.", lambda s, o: "75", generic=True)
    bugs = (generic, BUGS_BY_ID["add.forgot_carry"])
    d = diagnose([_attempt(p, "75")], DOMAIN, bugs=bugs)
    assert d.errors[0].matches == ("any.always_75", "add.forgot_carry")
    assert d.errors[0].bug_id == "add.forgot_carry"


@pytest.mark.parametrize("bug", BUGS, ids=lambda b: b.id)
def test_discriminating_problems_discriminate(bug: Bug):
    rng = random.Random(5)
    for skill in bug.skills:
        exclude = {p.question for p in DOMAIN.sample(skill, 20, rng)}
        problems = discriminating_problems(bug, skill, 8, rng, DOMAIN, exclude)
        assert len({p.question for p in problems}) == 8
        for p in problems:
            assert p.skill_ids == (skill,) and p.question not in exclude
            buggy = bug.apply(p.question)
            assert buggy is not None and buggy != p.answer


def test_discriminating_problems_fail_loud():
    rng = random.Random(6)
    with pytest.raises(ValueError, match="does not apply"):
        discriminating_problems(BUGS_BY_ID["add.forgot_carry"], "add.no_carry", 3, rng, DOMAIN)
    harmless = Bug("add.harmless", ("add.carry",), "When adding, add.", lambda s, o: str(o[0] + o[1]))
    with pytest.raises(ValueError, match="never discriminates"):
        discriminating_problems(harmless, "add.carry", 1, rng, DOMAIN)


def _diagnosis(counts: dict[str, int], rng: random.Random) -> Diagnosis:
    """A diagnosis with ``count`` errors of each bug, all on problems where the bug discriminates."""
    attempts = []
    for bug_id, count in counts.items():
        bug = BUGS_BY_ID[bug_id]
        for p in discriminating_problems(bug, bug.skills[0], count, rng, DOMAIN) if count else []:
            attempts.append(_attempt(p, bug.apply(p.question)))
    return diagnose(attempts, DOMAIN)


def test_principle_tracker_activates_keeps_and_retires():
    rng = random.Random(7)
    tracker = PrincipleTracker(min_count=2, retire_below=1)
    a, b = "add.forgot_carry", "sub.smaller_from_larger"
    h1 = tracker.update(None, _diagnosis({a: 3, b: 1}, rng), round=1)
    assert [t.bug_id for t in h1.active] == [a] and h1.activated == (a,) and h1.retired == ()
    assert h1.active[0].count == 3 and h1.active[0].since == 1
    # a falls to 1 error: below min_count but not below retire_below, so it stays (hysteresis).
    h2 = tracker.update(h1, _diagnosis({a: 1, b: 2}, rng), round=2)
    assert {t.bug_id: (t.since, t.count) for t in h2.active} == {a: (1, 1), b: (2, 2)}
    assert h2.activated == (b,)
    h3 = tracker.update(h2, _diagnosis({a: 0, b: 4}, rng), round=3)
    assert [t.bug_id for t in h3.active] == [b]
    assert [(t.bug_id, t.retired, t.since, t.count) for t in h3.retired] == [(a, 3, 1, 0)]
    # A retired principle whose errors come back is activated again, from the new round.
    h4 = tracker.update(h3, _diagnosis({a: 2, b: 0}, rng), round=4)
    assert [(t.bug_id, t.since) for t in h4.active] == [(a, 4)]
    assert h4.retired[0].bug_id == b and h4.coverage == 1.0 and h4.wrong == 2
    with pytest.raises(ValueError, match="does not follow"):
        tracker.update(h4, _diagnosis({a: 2}, rng), round=4)
    with pytest.raises(ValueError, match="retire_below"):
        PrincipleTracker(min_count=1, retire_below=2)


def test_render_diagnosis_table():
    rng = random.Random(8)  # an add.carry problem answered 1: no bug writes a 1-digit sum
    p = DOMAIN.sample("add.carry", 1, rng)[0]
    d = diagnose([_attempt(p, "1"), _attempt(DOMAIN.make("mul.by_digit", (47, 8)), "326")], DOMAIN)
    text = render_diagnosis(d)
    assert text.splitlines()[0].startswith("1/2 wrong answers explained (50%)")
    assert "mul.forgot_carry" in text and BUGS_BY_ID["mul.forgot_carry"].principle in text
    assert "(unexplained)" in text
