"""Chat students: the chat format of a domain, its answer parser, and what the verifier makes of it.

A plain renderer stands in for a tokenizer's chat template here; the real template of SmolLM2 is used
in ``test_smollm2.py``.
"""

from __future__ import annotations

import random
from collections.abc import Sequence

import pytest
from feedbacks import training_examples

from tutorkd.environments.arithmetic import ArithmeticDomain
from tutorkd.environments.chat import ChatDomain, parse_chat_answer, phrase_arithmetic
from tutorkd.environments.heldout import HeldOut
from tutorkd.verify import verify


class Brackets:
    """A chat template: ``[role] content`` lines, then ``[assistant] `` for the reply."""

    def render(self, messages: Sequence[tuple[str, str]]) -> str:
        return "".join(f"[{role}] {content}\n" for role, content in messages) + "[assistant] "


@pytest.fixture(scope="module")
def heldout() -> HeldOut:
    return HeldOut.build(ArithmeticDomain(), 5, 5, 1234)


@pytest.fixture(scope="module")
def chat(heldout: HeldOut) -> ChatDomain:
    return ChatDomain(ArithmeticDomain(), Brackets(), format_examples=2, exclude=heldout.reserved)


@pytest.mark.parametrize(("output", "answer"), [
    ("Answer: 132", "132"),
    ("79 + 55 = 132.", "132"),                     # a sentence: its last number
    ("7+5=12 3+1=4\nAnswer: 412", "412"),          # worked steps: the marked answer, not a step
    ("answer: **<**", "<"),                        # case, markdown bold
    ("The answer: $1,234$.", "1,234"),
    ("Answer:", ""),                               # an empty answer is an answer (wrong), not a format error
    ("I cannot solve this.", None),
    ("", None),
])
def test_the_parser_reads_what_a_chat_model_writes(output: str, answer: str | None) -> None:
    assert parse_chat_answer(output) == answer


def test_arithmetic_questions_read_as_people_write_them() -> None:
    assert phrase_arithmetic("59+63=") == "What is 59 + 63?"
    assert phrase_arithmetic("52+41-51=") == "What is 52 + 41 - 51?"
    assert phrase_arithmetic("18*5=") == "What is 18 * 5?"
    assert "141 and 365: < or >?" in phrase_arithmetic("141?365=")
    with pytest.raises(ValueError, match="not an arithmetic question"):
        phrase_arithmetic("What is love?")


def test_the_prompt_is_the_same_chat_for_every_version_with_format_examples_outside_the_eval_sets(
        chat: ChatDomain, heldout: HeldOut) -> None:
    problem = ArithmeticDomain().sample("add.carry", 1, random.Random(0))[0]
    prompt = chat.prompt(problem)
    assert prompt.startswith("[system] Solve the problem.")
    assert prompt.endswith(f"[user] {phrase_arithmetic(problem.question)}\n[assistant] ")
    assert prompt.count("[assistant] Answer: ") == 2  # the format examples, answered in the taught format
    assert all(e.question not in heldout.reserved for e in chat.examples)
    again = ChatDomain(ArithmeticDomain(), Brackets(), format_examples=2, exclude=heldout.reserved)
    assert again.prompt(problem) == prompt
    assert chat.prompt(problem, "8+5=13") == prompt + "8+5=13\n"  # the explanation opens the reply


def test_answers_are_verified_by_the_wrapped_domain(chat: ChatDomain) -> None:
    add = ArithmeticDomain().make("add.carry", (59, 63))
    assert chat.check(add, "59 + 63 = 122") == ("122", True)
    assert chat.check(add, "9+3=12 5+6+1=12\nAnswer: 122") == ("122", True)
    assert chat.check(add, "Answer: 121") == ("121", False)
    assert chat.check(add, "I do not know") == (None, False)
    compare = ArithmeticDomain().make("cmp.lead", (141, 365))
    assert chat.check(compare, "Answer: <") == ("<", True)
    assert chat.check(compare, "Answer: >") == (">", False)


def test_procedural_examples_in_the_chat_format_pass_verification(chat: ChatDomain, heldout: HeldOut) -> None:
    rng = random.Random(1)
    problems = [p for leaf in chat.tree.leaves() for p in chat.sample(leaf, 3, rng, heldout.reserved)]
    examples = training_examples(chat, problems, "rationale")
    assert examples[0].completion.endswith(f"\nAnswer: {problems[0].answer}")
    result = verify(examples, chat, heldout.questions)
    assert len(result.kept) == len(examples), result.counts
    wrong = examples[0].model_copy(update={"completion": examples[0].completion + "1"})
    assert verify([wrong], chat, heldout.questions).counts["wrong_answer"] == 1


def test_in_context_changes_the_instruction_and_adds_worked_demonstrations_only_to_the_copy(
        chat: ChatDomain) -> None:
    problem = ArithmeticDomain().make("add.carry", (59, 63))
    demo = ArithmeticDomain().make("sub.borrow", (52, 17))
    plain = chat.prompt(problem)
    variant = chat.in_context("Solve it. Principles: carry the ten.", [demo])
    prompt = variant.prompt(problem)
    assert prompt.startswith("[system] Solve it. Principles: carry the ten.\n")
    assert f"[user] What is 52 - 17?\n[assistant] {demo.rationale}\nAnswer: 35\n" in prompt
    assert prompt.endswith(f"[user] {phrase_arithmetic(problem.question)}\n[assistant] ")
    # The demonstration comes after the format examples.
    assert prompt.index("What is 52 - 17?") > prompt.rindex("[assistant] Answer: ")
    assert chat.prompt(problem) == plain  # the original is untouched
    assert variant.check(problem, "Answer: 122") == ("122", True)
    assert chat.in_context().prompt(problem) == plain
