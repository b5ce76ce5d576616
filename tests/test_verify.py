"""The verification filter: each kind of bad example is counted under its reason and never kept."""

from __future__ import annotations

import logging
import random
import re

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tutorkd.environments.arithmetic import ArithmeticDomain
from tutorkd.schema import Example, GeneratorParams, Problem, Provenance
from tutorkd.verify import REASONS, verify

DOMAIN = ArithmeticDomain()
ADD = DOMAIN.make("add.carry", (47, 38))  # 47+38= -> R:7+8=15 4+3+1=8 A:85
CMP = DOMAIN.make("cmp.same_lead", (473, 491))  # 473?491= -> R:4=4 7<9 A:<
HELDOUT = frozenset({"12+34="})
SEEN = frozenset({"85-38="})


def example(
    problem: Problem, completion: str, prompt: str | None = None, index: int = 0, style: str | None = None
) -> Example:
    """An example as the procedural engine would stamp it; the style defaults to the completion's."""
    if style is None:
        style = "rationale" if completion.startswith("R:") else "direct"
    return Example(
        id=f"t/r1/{index:06d}",
        problem=problem,
        prompt=problem.question if prompt is None else prompt,
        completion=completion,
        provenance=Provenance(
            run_id="t",
            round=1,
            teacher="test",
            skill_id=problem.skill_ids[0],
            generator=GeneratorParams(engine="procedural", seed=0, style=style),
        ),
    )


def test_the_text_format_is_what_these_tables_assume() -> None:
    assert DOMAIN.completion(ADD, "rationale") == "R:7+8=15 4+3+1=8 A:85"
    assert DOMAIN.completion(CMP, "direct") == "A:<"


GOOD = [
    example(ADD, "R:7+8=15 4+3+1=8 A:85"),
    example(ADD, "A:85"),
    example(CMP, "R:4=4 7<9 A:<"),
]

BAD = [
    # (example, reason)
    (example(ADD, "R:7+8=15 4+3=7 A:75"), "wrong_answer"),
    (example(ADD, "A:86"), "wrong_answer"),
    (example(ADD, "A:085"), "wrong_answer"),
    (example(CMP, "A:>"), "wrong_answer"),
    (example(ADD, "R:7+8=15 4+3+1=8"), "malformed"),  # no answer
    (example(ADD, "A:"), "malformed"),  # empty answer
    (example(ADD, "A: 85"), "malformed"),  # empty answer, then text
    (example(ADD, "A:85 A:85"), "malformed"),  # text after the answer
    (example(ADD, "A:85\n"), "malformed"),
    (example(ADD, "a:85"), "malformed"),
    (example(ADD, "A:85", prompt="47+38"), "malformed"),  # prompt is not the domain's
    (example(ADD, "A:85", prompt="47+38=R:7+8=15 "), "malformed"),
    (example(ADD.model_copy(update={"answer": "85x"}), "A:85x"), "malformed"),  # outside the alphabet
    (example(ADD, "A:85", style="fancy"), "malformed"),  # a style the domain cannot render
    (example(ADD, "R:7+8=15 4+3=8 A:85"), "wrong_rationale"),  # the carry is missing
    (example(ADD, "R:A:85"), "wrong_rationale"),
    (example(ADD, "A:85", style="rationale"), "wrong_rationale"),  # not the style its provenance says
    (example(DOMAIN.make("add.no_carry", (12, 34)), "A:46"), "eval_overlap"),
    (example(DOMAIN.make("sub.borrow", (85, 38)), "A:47"), "duplicate"),  # trained on in an earlier round
]


@pytest.mark.parametrize(("bad", "reason"), BAD, ids=[f"{r}:{e.prompt}->{e.completion!r}" for e, r in BAD])
def test_each_bad_example_is_rejected_under_its_reason(bad: Example, reason: str) -> None:
    result = verify([*GOOD, bad], DOMAIN, HELDOUT, SEEN)
    assert [e.id for e in result.kept] == [e.id for e in GOOD]
    assert result.counts == {r: int(r == reason) for r in REASONS}
    (rejected,) = result.rejected
    assert rejected.completion == bad.completion
    verification = rejected.provenance.verification
    assert verification is not None and not verification.passed and verification.reason == reason


def test_a_whole_table_is_counted_and_kept_examples_are_stamped_ok() -> None:
    result = verify([bad for bad, _ in BAD] + GOOD, DOMAIN, HELDOUT, SEEN)
    expected = {r: sum(1 for _, reason in BAD if reason == r) for r in REASONS}
    assert result.counts == expected
    assert len(result.rejected) == len(BAD)
    assert [e.completion for e in result.kept] == [e.completion for e in GOOD]
    for kept in result.kept:
        assert kept.provenance.verification is not None
        assert (kept.provenance.verification.passed, kept.provenance.verification.reason) == (True, "ok")


def test_duplicates_within_a_batch_keep_only_the_first() -> None:
    batch = [example(ADD, "A:85", index=i) for i in range(3)] + [
        example(ADD, "R:7+8=15 4+3+1=8 A:85", index=3)
    ]
    result = verify(batch, DOMAIN, HELDOUT)
    # Same question in another style is a different training text, so it is kept.
    assert [e.id for e in result.kept] == ["t/r1/000000", "t/r1/000003"]
    assert result.counts["duplicate"] == 2


def test_a_rejected_example_does_not_mark_its_question_as_seen() -> None:
    result = verify([example(ADD, "A:86"), example(ADD, "A:85", index=1)], DOMAIN, HELDOUT)
    assert [e.id for e in result.kept] == ["t/r1/000001"]
    assert result.counts["wrong_answer"] == 1 and result.counts["duplicate"] == 0


def test_every_rejection_reason_is_logged(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.DEBUG, logger="tutorkd.verify"):
        verify([bad for bad, _ in BAD] + GOOD, DOMAIN, HELDOUT, SEEN)
    summaries = [r.getMessage() for r in caplog.records if r.levelno == logging.INFO]
    for reason in REASONS:
        assert any(m.endswith(f"examples as {reason}") for m in summaries), summaries
    debug = [r for r in caplog.records if r.levelno == logging.DEBUG]
    assert len(debug) == len(BAD)


SKILLS = DOMAIN.tree.leaves()
ALPHABET = DOMAIN.alphabet + "xé\n\t\x00"


@st.composite
def garbled(draw: st.DrawFn) -> Example:
    """A real problem with a completion that is right, mutated, or random text."""
    rng_seed = draw(st.integers(0, 2**32))
    skill = draw(st.sampled_from(SKILLS))
    problem = DOMAIN.sample(skill, 1, random.Random(rng_seed))[0]
    right = DOMAIN.completion(problem, draw(st.sampled_from(["rationale", "direct"])))
    kind = draw(st.sampled_from(["right", "mutated", "random"]))
    completion = right
    if kind == "mutated":
        chars = list(right)
        for _ in range(draw(st.integers(1, 3))):
            pos = draw(st.integers(0, len(chars)))
            op = draw(st.sampled_from(["insert", "delete", "replace"]))
            char = draw(st.sampled_from(ALPHABET))
            if op == "insert":
                chars.insert(pos, char)
            elif chars and pos < len(chars):
                chars[pos : pos + 1] = [] if op == "delete" else [char]
        completion = "".join(chars)
    elif kind == "random":
        completion = draw(st.text(alphabet=ALPHABET, max_size=40))
    garble_prompt = draw(st.integers(0, 4)) == 0
    prompt = draw(st.text(alphabet=ALPHABET, max_size=12)) if garble_prompt else problem.question
    return example(problem, completion, prompt=prompt, index=draw(st.integers(0, 10**6)))


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(garbled(), min_size=1, max_size=4))
def test_garbled_examples_never_raise_and_kept_ones_recheck_correct(batch: list[Example]) -> None:
    result = verify(batch, DOMAIN, HELDOUT)
    assert len(result.kept) + len(result.rejected) == len(batch)
    assert sum(result.counts.values()) == len(result.rejected)
    for kept in result.kept:
        problem = kept.problem
        # Re-derive the gold from the question itself, independently of the problem's stored answer.
        skill = DOMAIN.classify(problem.question)
        gold = DOMAIN.make(skill, tuple(int(x) for x in re.findall(r"\d+", problem.question))).answer
        assert DOMAIN.check(problem.model_copy(update={"answer": gold}), kept.completion) == (gold, True)
        assert kept.prompt == problem.question
        assert kept.completion.endswith(f"A:{gold}")
