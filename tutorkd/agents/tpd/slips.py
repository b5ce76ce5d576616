"""Step-level diagnosis: the first step of a student's worked answer that goes wrong, and how.

The bug library (``tutorkd.agents.tpd.bugs``) explains a wrong answer only when a whole wrong procedure
reproduces it. A small neural student mostly makes *slips* inside the right procedure instead
(``4+7=10``, ``7*8=44``), which no buggy procedure reproduces. Comparing the student's rationale
with the gold one step by step names the first step that differs and the kind of mistake:

- ``fact``: the step is the right computation with a wrong result (``7*8=44`` where ``7*8=56``);
- ``setup``: the step computes something else, or is missing (``12-8`` where ``14-8`` is due): the
  procedure went wrong, which is the bug library's territory;
- ``assembly``: every step is right and the final answer is not (the digits were copied out wrong);
- ``no_steps``: the output has no step the comparison can read.

Only numeric skills have computed steps; comparisons are left to the bug library. Like
``diagnose``, this reads validation attempts only, never test ones.
"""

from __future__ import annotations

import re
from collections import Counter, defaultdict
from collections.abc import Sequence
from typing import Literal

from tutorkd.agents.tpd.bugs import NUMERIC_SKILLS
from tutorkd.environments.arithmetic import ArithmeticDomain
from tutorkd.schema import Attempt, Record

SlipKind = Literal["fact", "setup", "assembly", "no_steps"]
KINDS: tuple[SlipKind, ...] = ("fact", "setup", "assembly", "no_steps")
_STEP = re.compile(r"^(\d+(?:[-+*]\d+)+)=(\d+)$")


def steps(rationale: str) -> list[tuple[str, str]]:
    """The ``(expression, result)`` steps of a rationale, in order: ``"4+7=11 7+7+1=15"`` gives
    ``[("4+7", "11"), ("7+7+1", "15")]``. A student output's ``R:`` prefix and ``A:...`` tail are
    dropped; tokens that are not a step end the list (what follows them cannot be aligned)."""
    text = rationale.split("A:", 1)[0].removeprefix("R:")
    out = []
    for token in text.split():
        match = _STEP.match(token)
        if match is None:
            break
        out.append((match.group(1), match.group(2)))
    return out


class Slip(Record):
    """The first wrong step of one wrong numeric answer."""

    problem_id: str
    question: str
    skill_id: str
    kind: SlipKind
    step: int | None
    """Index of the first wrong step (``None`` for ``assembly`` and ``no_steps``)."""
    expected: str | None
    """The gold step there, ``7*8=56``."""
    wrote: str | None
    """What the student wrote there, ``7*8=44`` (``None`` if the step is missing)."""

    @property
    def expression(self) -> str | None:
        """The computation of the wrong step, ``7*8`` (``None`` for ``assembly`` and ``no_steps``)."""
        return self.expected.split("=")[0] if self.expected is not None else None


class SlipFact(Record):
    """One computation the student got wrong, with how often and what it wrote."""

    skill_id: str
    expression: str
    """``7*8``: the left side of the gold step."""
    right: str
    count: int
    wrote: tuple[str, ...]
    """The wrong results written, most frequent first."""

    @property
    def principle(self) -> str:
        """``When a step computes 7*8, the result is 56 (not 44).``"""
        wrong = "/".join(self.wrote)
        return f"When a step computes {self.expression}, the result is {self.right} (not {wrong})."


class SlipSummary(Record):
    """A batch of attempts' wrong numeric answers, each located at its first wrong step."""

    wrong: int
    """Wrong numeric answers with a parseable answer (format errors and comparisons excluded)."""
    by_kind: dict[SlipKind, int]
    facts: tuple[SlipFact, ...]
    """Wrong facts, most frequent first."""
    slips: tuple[Slip, ...]

    def share(self, kind: SlipKind) -> float:
        """Share of ``wrong`` whose first wrong step is of ``kind`` (0.0 when nothing is wrong)."""
        return self.by_kind[kind] / self.wrong if self.wrong else 0.0


def first_slip(attempt: Attempt, domain: ArithmeticDomain) -> Slip | None:
    """Where ``attempt`` first goes wrong; ``None`` if it is right, unparseable or a comparison."""
    problem = attempt.problem
    skill_id = domain.classify(problem.question)
    if attempt.correct or attempt.parsed_answer is None or skill_id not in NUMERIC_SKILLS:
        return None
    if problem.rationale is None:
        raise ValueError(f"problem {problem.id} has no gold rationale to compare steps with")
    gold, wrote = steps(problem.rationale), steps(attempt.output)

    def slip(kind: SlipKind, step: int | None = None) -> Slip:
        expected = "=".join(gold[step]) if step is not None else None
        written = "=".join(wrote[step]) if step is not None and step < len(wrote) else None
        return Slip(problem_id=problem.id, question=problem.question, skill_id=skill_id, kind=kind,
                    step=step, expected=expected, wrote=written)

    if not wrote:
        return slip("no_steps")
    i = first_wrong_step(gold, wrote)
    if i is None:
        return slip("assembly")
    return slip("setup" if i >= len(wrote) or wrote[i][0] != gold[i][0] else "fact", i)


def first_wrong_step(gold: Sequence[tuple[str, str]], wrote: Sequence[tuple[str, str]]) -> int | None:
    """Index of the first gold ``(expression, result)`` step that ``wrote`` misses (another computation,
    another result, or no step there); ``None`` when every gold step is written as it should be."""
    return next((i for i, step in enumerate(gold) if i >= len(wrote) or wrote[i] != step), None)


def locate_slips(attempts: Sequence[Attempt], domain: ArithmeticDomain) -> SlipSummary:
    """The first wrong step of every wrong numeric answer in ``attempts``, counted by kind and fact."""
    found = [s for s in (first_slip(a, domain) for a in attempts) if s is not None]
    kinds = Counter(s.kind for s in found)
    written: dict[tuple[str, str, str], Counter[str]] = defaultdict(Counter)
    for s in found:
        if s.kind == "fact":
            right, wrong = s.expected.split("=")[1], s.wrote.split("=")[1]
            written[s.skill_id, s.expression, right][wrong] += 1
    facts = [
        SlipFact(skill_id=skill, expression=expression, right=right, count=sum(c.values()),
                 wrote=tuple(w for w, _ in c.most_common()))
        for (skill, expression, right), c in written.items()
    ]
    return SlipSummary(
        wrong=len(found),
        by_kind={k: kinds[k] for k in KINDS},
        facts=tuple(sorted(facts, key=lambda f: -f.count)),
        slips=tuple(found),
    )


def render_slips(summary: SlipSummary, top: int = 10) -> str:
    """Plain text: the share of each kind of first wrong step, then the most frequent wrong facts."""
    shares = ", ".join(f"{k} {summary.by_kind[k]} ({summary.share(k):.0%})" for k in KINDS)
    lines = [f"first wrong step of {summary.wrong} wrong numeric answers: {shares}"]
    lines += [f"  {f.skill_id:<14} {f.count:>3}x  {f.principle}" for f in summary.facts[:top]]
    return "\n".join(lines)
