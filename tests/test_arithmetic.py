"""The arithmetic domain (generator, rationales, classifier, verifier) and its held-out sets."""

from __future__ import annotations

import random
import re

import pytest

from tutorkd.environments.arithmetic import DEFAULT_PRETRAIN_MIX, SPACE_SIZES, ArithmeticDomain, count_space
from tutorkd.environments.heldout import HeldOut
from tutorkd.schema import Example, GeneratorParams, Provenance

DOMAIN = ArithmeticDomain()
LEAVES = DOMAIN.tree.leaves()
STEP = re.compile(r"^(\d+)([+\-*])(\d+)(?:([+])(\d+))?=(\d+)$")


def _eval_step(step: str) -> None:
    """Assert that one arithmetic step like ``4+3+1=8`` or ``4*8+5=37`` is true."""
    m = STEP.match(step)
    assert m, step
    a, op, b, op2, c, r = m.groups()
    value = {"+": int(a) + int(b), "-": int(a) - int(b), "*": int(a) * int(b)}[op]
    if op2:
        value += int(c)
    assert value == int(r), step


def _gold(question: str) -> str:
    """Recompute the answer from the question text alone."""
    body = question.removesuffix("=")
    if "?" in body:
        a, b = (int(x) for x in body.split("?"))
        return "<" if a < b else ">"
    return str(eval(body))  # noqa: S307 - digits and + - * only, produced by the generator under test


def test_tree_has_five_branches_and_nine_leaves():
    assert DOMAIN.tree.children(None) == ["add", "sub", "mul", "cmp", "multi"]
    assert len(LEAVES) == 9
    assert all(DOMAIN.tree.leaves_under(leaf.split(".")[0]).count(leaf) == 1 for leaf in LEAVES)
    assert set(DEFAULT_PRETRAIN_MIX) == set(LEAVES)
    assert sum(DOMAIN.default_pretrain_mix.values()) == pytest.approx(1.0)


def test_examples_from_the_format_spec():
    def problem(skill, *ops):
        p = DOMAIN.make(skill, ops)
        return p.question, DOMAIN.completion(p, "rationale")

    assert problem("add.no_carry", 42, 35) == ("42+35=", "R:2+5=7 4+3=7 A:77")
    assert problem("add.carry", 47, 38) == ("47+38=", "R:7+8=15 4+3+1=8 A:85")
    assert problem("add.carry", 87, 58) == ("87+58=", "R:7+8=15 8+5+1=14 A:145")
    assert problem("sub.no_borrow", 85, 32) == ("85-32=", "R:5-2=3 8-3=5 A:53")
    assert problem("sub.no_borrow", 45, 42) == ("45-42=", "R:5-2=3 4-4=0 A:3")
    assert problem("sub.borrow", 85, 38) == ("85-38=", "R:15-8=7 7-3=4 A:47")
    assert problem("mul.by_digit", 47, 8) == ("47*8=", "R:7*8=56 4*8+5=37 A:376")
    assert problem("mul.by_digit", 21, 3) == ("21*3=", "R:1*3=3 2*3=6 A:63")
    assert problem("cmp.lead", 473, 538) == ("473?538=", "R:4<5 A:<")
    assert problem("cmp.same_lead", 473, 498) == ("473?498=", "R:4=4 7<9 A:<")
    assert problem("cmp.same_lead", 475, 473) == ("475?473=", "R:4=4 7=7 5>3 A:>")
    assert problem("multi.add_sub", 47, 38, 25) == ("47+38-25=", "R:47+38=85 85-25=60 A:60")
    assert problem("multi.add_add", 12, 34, 25) == ("12+34+25=", "R:12+34=46 46+25=71 A:71")
    with pytest.raises(ValueError, match="not a add.no_carry"):
        DOMAIN.make("add.no_carry", (47, 38))


@pytest.mark.parametrize("skill", LEAVES)
def test_rationales_and_answers_are_right(skill):
    rng = random.Random(7)
    for p in DOMAIN.sample(skill, 400, rng):
        assert p.answer == _gold(p.question), p
        assert p.skill_ids == (skill,) and p.id == f"arith:{skill}:{p.question}"
        steps = p.rationale.split(" ")
        if skill.startswith("cmp"):
            a, b = p.question.removesuffix("=").split("?")
            expected = [f"{x}{'<' if x < y else '>' if x > y else '='}{y}" for x, y in zip(a, b, strict=True)]
            assert steps == expected[: len(steps)] and steps[-1][1] == p.answer
            assert (len(steps) == 1) == (skill == "cmp.lead")
            continue
        for step in steps:
            _eval_step(step)
        results = [int(s.split("=")[1]) for s in steps]
        if skill.startswith("multi"):
            assert results[-1] == int(p.answer)
        else:  # column steps: the tens result in full, then the ones digit
            assert int(f"{results[1]}{results[0] % 10}") == int(p.answer)
        text = DOMAIN.prompt(p) + DOMAIN.completion(p, "rationale")
        assert len(text) < 60 and set(text) <= set(DOMAIN.alphabet)


@pytest.mark.parametrize(
    ("skill", "rule"),
    [
        ("add.no_carry", lambda a, b: a % 10 + b % 10 < 10 and a + b < 100),
        ("add.carry", lambda a, b: a % 10 + b % 10 >= 10),
        ("sub.no_borrow", lambda a, b: a % 10 >= b % 10 and a >= b),
        ("sub.borrow", lambda a, b: a % 10 < b % 10 and a > b),
    ],
)
def test_carry_and_borrow_patterns(skill, rule):
    for p in DOMAIN.sample(skill, 300, random.Random(1)):
        a, b = (int(x) for x in re.findall(r"\d+", p.question))
        assert rule(a, b) and 10 <= a <= 99 and 10 <= b <= 99, p.question


def test_sampling_is_deterministic_per_seed():
    for skill in LEAVES:
        first = DOMAIN.sample(skill, 20, random.Random(3))
        assert first == DOMAIN.sample(skill, 20, random.Random(3))
        assert first != DOMAIN.sample(skill, 20, random.Random(4))


def test_sample_respects_exclude_and_fails_loud():
    excluded = {p.question for p in DOMAIN.sample("mul.by_digit", 600, random.Random(0))}
    drawn = DOMAIN.sample("mul.by_digit", 200, random.Random(1), exclude=excluded)
    assert not {p.question for p in drawn} & excluded
    everything = {f"{a}*{d}=" for a in range(10, 100) for d in range(2, 10)}
    with pytest.raises(RuntimeError, match="exhausted"):
        DOMAIN.sample("mul.by_digit", 1, random.Random(0), exclude=everything)
    with pytest.raises(ValueError, match="unknown arithmetic skill 'add'"):
        DOMAIN.sample("add", 1, random.Random(0))


def test_classify_every_skill_and_similar_keeps_it():
    rng = random.Random(5)
    for skill in LEAVES:
        for p in DOMAIN.sample(skill, 50, rng):
            assert DOMAIN.classify(p.question) == skill
        unlabelled = p.model_copy(update={"skill_ids": (), "id": "x"})
        similar = DOMAIN.similar(unlabelled, 30, rng, exclude={p.question})
        assert all(s.skill_ids == (skill,) and s.question != p.question for s in similar)
        assert len({s.question for s in similar}) > 1
    assert DOMAIN.classify(" 47 + 38 =") == "add.carry"
    for bad in ["047+38=", "47+38", "4+38=", "12?34=", "100+1=", "45-54=", "", "47/8="]:
        with pytest.raises(ValueError, match="not a problem"):
            DOMAIN.classify(bad)


def test_check_parse_rules():
    p = DOMAIN.make("add.carry", (47, 38))
    assert DOMAIN.check(p, "R:7+8=15 4+3+1=8 A:85") == ("85", True)
    assert DOMAIN.check(p, "A:85") == ("85", True)
    assert DOMAIN.check(p, "A:84") == ("84", False)
    assert DOMAIN.check(p, "A:85 A:84") == ("85", True)
    assert DOMAIN.check(p, "A:850") == ("850", False)
    assert DOMAIN.check(p, "A: 85") == ("", False)  # an empty answer is wrong, not a format error
    assert DOMAIN.check(p, "R:7+8=15 4+3+1=8 85") == (None, False)
    assert DOMAIN.check(p, "") == (None, False)
    cmp = DOMAIN.make("cmp.lead", (473, 538))
    assert DOMAIN.check(cmp, "R:4<5 A:<") == ("<", True)
    assert DOMAIN.check(cmp, "R:4<5 A:>") == (">", False)


def test_prompt_and_completion_styles():
    p = DOMAIN.make("add.carry", (47, 38))
    assert DOMAIN.prompt(p) == "47+38="
    assert DOMAIN.prompt(p, "7+8=15") == "47+38=R:7+8=15 "
    assert DOMAIN.completion(p, "direct") == "A:85"
    with pytest.raises(ValueError, match="unknown completion style"):
        DOMAIN.completion(p, "cot")


def test_space_sizes_are_exact():
    assert DOMAIN.space_size("add.no_carry") == 55 * 36  # ones pairs summing < 10 x tens pairs < 10
    assert DOMAIN.space_size("add.carry") == 45 * 81
    assert DOMAIN.space_size("sub.borrow") == 45 * 36
    assert DOMAIN.space_size("mul.by_digit") == 90 * 8
    assert DOMAIN.space_size("cmp.same_lead") == 9 * (100 * 100 - 100)
    assert DOMAIN.space_size("multi.add_add") == 90**3
    assert (
        sum(DOMAIN.space_size(s) for s in ["add.no_carry", "add.carry"])
        + sum(1 for a in range(10, 100) for b in range(10, 100) if a % 10 + b % 10 < 10 and a + b >= 100)
        == 90 * 90
    )


def test_the_space_size_table_is_what_enumeration_counts():
    leaves = list(DOMAIN.tree.leaves())
    assert sorted(SPACE_SIZES) == sorted(leaves)
    assert {s: count_space(s) for s in leaves} == SPACE_SIZES


# --------------------------------------------------------------------------------------------------
# Held-out sets


@pytest.fixture(scope="module")
def heldout() -> HeldOut:
    return HeldOut.build(DOMAIN, test_per_skill=500, val_per_skill=100, seed=11)


def _example(problem) -> Example:
    gen = GeneratorParams(engine="procedural", seed=0, style="direct")
    prov = Provenance(run_id="t", round=1, teacher="t", skill_id=None, generator=gen)
    return Example(id=problem.id, problem=problem, prompt=problem.question, completion="A:1", provenance=prov)


def test_heldout_is_deterministic_distinct_disjoint_and_clamped(heldout):
    assert heldout == HeldOut.build(DOMAIN, test_per_skill=500, val_per_skill=100, seed=11)
    other = HeldOut.build(DOMAIN, test_per_skill=500, val_per_skill=100, seed=12)
    assert other.test["add.carry"] != heldout.test["add.carry"]
    assert list(heldout.test) == LEAVES
    for skill in LEAVES:
        test = [p.question for p in heldout.test[skill]]
        val = [p.question for p in heldout.val[skill]]
        assert len(set(test)) == len(test) and len(set(val)) == len(val)
        assert not set(test) & set(val)
        assert all(DOMAIN.classify(q) == skill for q in test + val)
    assert heldout.sizes()["mul.by_digit"] == (240, 100)  # 720 questions: test clamped to a third
    assert heldout.sizes()["add.carry"] == (500, 100)
    small = HeldOut.build(DOMAIN, test_per_skill=500, val_per_skill=500, seed=11)
    assert small.sizes()["mul.by_digit"] == (240, 120)
    assert len(heldout.questions) == sum(t + v for t, v in heldout.sizes().values())


def test_overlap_check_and_exclusion(heldout):
    leaked = heldout.val["sub.borrow"][0]
    fresh = DOMAIN.sample("mul.by_digit", 300, random.Random(2), exclude=heldout.questions)
    assert not {p.question for p in fresh} & heldout.questions
    examples = [_example(p) for p in fresh[:5]] + [_example(leaked)]
    assert heldout.overlapping(examples) == [examples[-1]]
    spaced = leaked.model_copy(update={"question": " " + leaked.question.replace("-", " - ")})
    assert heldout.overlapping([_example(spaced)]) != []
