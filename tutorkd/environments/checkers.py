"""How a dataset domain reads a student's answer and judges it: the ``AnswerChecker`` protocol and the
built-in checkers, chosen by name from ``CHECKERS`` (``checker:`` of a dataset environment).

Every checker reads the answer line first: the text after the first ``####`` of the output up to the
end of that line, stripped (``parse_answer``); no ``####`` is a format error (``None``). Then:

- ``exact``: the answer line equals the gold answer (both stripped).
- ``numeric``: both are decimal numbers and equal as numbers: ``1,000`` equals ``1000`` and ``0.5``
  equals ``.50``; an answer that is not a number is wrong.
- ``math``: math-verify finds them equivalent (``tutorkd.environments.mathcheck``; GSM8K and MATH).
- ``regex:PATTERN``: the answer is the first group of PATTERN's first match in the answer line,
  compared exactly with the gold; no match is a format error. Why the answer line and not the whole
  output: the rationale comes first and may match too (a multiple-choice letter it discusses), and the
  verifier needs the answer to end the completion (``tutorkd.verify``).
"""

from __future__ import annotations

import importlib.util
import re
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Protocol

from tutorkd.config import ConfigError
from tutorkd.environments.mathcheck import MathChecker

ANSWER_MARK = "####"
_THOUSANDS = re.compile(r"(?<=\d),(?=\d{3}(?!\d))")


def parse_answer(output: str) -> str | None:
    """The text after the first ``####`` up to the end of its line, stripped; ``None`` without one."""
    _, mark, rest = output.partition(ANSWER_MARK)
    return rest.split("\n", 1)[0].strip() if mark else None


class AnswerChecker(Protocol):
    """Reads the answer in a student's output and decides whether it equals the gold one."""

    def parse(self, output: str) -> str | None:
        """The answer ``output`` gives (``""`` for an empty answer line), or ``None`` for none at all."""
        ...

    def equivalent(self, gold: str, predicted: str) -> bool:
        """Whether the parsed answer ``predicted`` is the gold answer."""
        ...

    def close(self) -> None:
        """Release what the checker holds (math-verify's worker processes)."""
        ...


class ExactAnswers:
    """``exact``: the answer line, stripped, equals the gold answer, stripped."""

    def parse(self, output: str) -> str | None:
        """The answer line (``parse_answer``)."""
        return parse_answer(output)

    def equivalent(self, gold: str, predicted: str) -> bool:
        """String equality after stripping."""
        return gold.strip() == predicted.strip()

    def close(self) -> None:
        """Nothing to release."""


def number(text: str) -> Decimal | None:
    """``text`` as a finite decimal number (thousands separators and a trailing period allowed), or
    ``None`` when it is not one."""
    cleaned = _THOUSANDS.sub("", text.strip()).rstrip(".")
    try:
        value = Decimal(cleaned)
    except InvalidOperation:
        return None
    return value if value.is_finite() else None


class NumericAnswers:
    """``numeric``: gold and answer are equal decimal numbers (``1,000 == 1000``, ``0.5 == .50``)."""

    def parse(self, output: str) -> str | None:
        """The answer line (``parse_answer``)."""
        return parse_answer(output)

    def equivalent(self, gold: str, predicted: str) -> bool:
        """Both parse as numbers (``number``) and are equal."""
        a, b = number(gold), number(predicted)
        return a is not None and b is not None and a == b

    def close(self) -> None:
        """Nothing to release."""


class MathAnswers:
    """``math``: math-verify decides (``MathChecker``: worker processes, each comparison time-bounded)."""

    def __init__(self, verifier: MathChecker) -> None:
        self.verifier = verifier

    def parse(self, output: str) -> str | None:
        """The answer line (``parse_answer``)."""
        return parse_answer(output)

    def equivalent(self, gold: str, predicted: str) -> bool:
        """math-verify's verdict (a comparison past the timeout counts as not equivalent)."""
        return self.verifier.equivalent(gold, predicted)

    def close(self) -> None:
        """Stop math-verify's worker processes."""
        self.verifier.close()


class RegexAnswers:
    """``regex:PATTERN``: the first group of the first match in the answer line, compared exactly."""

    def __init__(self, pattern: str) -> None:
        self.pattern = re.compile(pattern)
        if self.pattern.groups < 1:
            raise ValueError(f"regex checker pattern {pattern!r} has no group; put the answer in (...)")

    def parse(self, output: str) -> str | None:
        """The first group of the pattern's first match in the answer line, stripped; an empty answer
        line is ``""`` (the verifier strips the answer off a completion and expects nothing left)."""
        line = parse_answer(output)
        if not line:
            return line
        match = self.pattern.search(line)
        return None if match is None or match.group(1) is None else match.group(1).strip()

    def equivalent(self, gold: str, predicted: str) -> bool:
        """String equality after stripping."""
        return gold.strip() == predicted.strip()

    def close(self) -> None:
        """Nothing to release."""


@dataclass(frozen=True)
class CheckerArgs:
    """What a checker may be built with: the text after ``name:`` and math-verify's settings."""

    argument: str = ""
    workers: int = 1
    timeout_s: float = 5.0


def _math(args: CheckerArgs) -> AnswerChecker:
    if importlib.util.find_spec("math_verify") is None:
        raise ConfigError("environment: checker math compares answers with math-verify, which is not "
                          "installed; pip install 'tutorkd[real]' (or choose checker exact or numeric)")
    return MathAnswers(MathChecker(workers=args.workers, timeout_s=args.timeout_s))


CHECKERS: dict[str, Callable[[CheckerArgs], AnswerChecker]] = {
    "exact": lambda args: ExactAnswers(),
    "numeric": lambda args: NumericAnswers(),
    "math": _math,
    "regex": lambda args: RegexAnswers(args.argument),
}
"""Checker name (the part of ``checker:`` before any ``:``) to the function that builds it; the names
``tutorkd.config`` accepts (``CHECKER_NAMES``) are exactly these."""


def build_checker(spec: str, workers: int = 1, timeout_s: float = 5.0) -> AnswerChecker:
    """The checker ``spec`` names (``exact``, ``numeric``, ``math`` or ``regex:PATTERN``); ``workers`` and
    ``timeout_s`` are math-verify's."""
    name, _, argument = spec.partition(":")
    return CHECKERS[name](CheckerArgs(argument, workers, timeout_s))
