"""Fixed validation and test sets per skill, and the contamination check against them."""

from __future__ import annotations

import hashlib
import logging
import random
import re
from collections.abc import Container, Sequence
from functools import cached_property
from typing import Protocol

from tutorkd.schema import Example, Problem, Record, SkillTree

log = logging.getLogger(__name__)


class SizedDomain(Protocol):
    """What ``HeldOut.build`` needs from a domain: its leaves, a sampler and each skill's space size."""

    @property
    def tree(self) -> SkillTree:
        """The domain's skills."""
        ...

    def sample(
        self, skill_id: str, n: int, rng: random.Random, exclude: Container[str] = frozenset()
    ) -> list[Problem]:
        """Draw ``n`` problems of one skill, none whose question is in ``exclude``."""
        ...

    def space_size(self, skill_id: str) -> int:
        """Exact number of distinct questions of the skill."""
        ...


def normalize(question: str) -> str:
    """The form questions are compared in: all whitespace removed."""
    return "".join(question.split())


_EXPR = re.compile(r"^\d+(?:[+\-*]\d+)*=$")
_TERM = re.compile(r"([+\-*]?)(\d+)")


def canonical(question: str) -> str:
    """``question`` without whitespace, commutative operands sorted (see the module docstring)."""
    q = normalize(question)
    if not _EXPR.match(q):
        return q
    terms = _TERM.findall(q[:-1])
    ops = {op for op, _ in terms[1:]}
    if ops == {"*"}:
        return "*".join(sorted((n for _, n in terms), key=int)) + "="
    if ops <= {"+", "-"}:
        added = sorted((n for op, n in terms if op != "-"), key=int)
        subtracted = sorted((n for op, n in terms if op == "-"), key=int)
        return "+".join(added) + "".join("-" + n for n in subtracted) + "="
    return q


RESERVED_SHARE = 0.5
"""Share of every skill's problem space reserved for evaluation (see ``Reserved``)."""


class Reserved:
    """The evaluation partition of the problem space: a fixed hash split of questions by ``seed``.

    Held-out sets of any size are drawn only from it, and training data (the base student's
    pretraining stream, every teacher's generated data) only from its complement. So no training
    example can ever coincide with an evaluation problem, whatever eval sizes a later run picks, and
    one cached base student serves every environment config with the same ``split_seed``.
    """

    def __init__(self, seed: int, share: float = RESERVED_SHARE) -> None:
        self.seed, self.share = seed, share
        self._threshold = int(share * 2**64)

    @property
    def key(self) -> str:
        """Identifies the partition (used in cache keys)."""
        return f"reserved-v2:{self.seed}:{self.share}"

    def __contains__(self, question: object) -> bool:
        # Why canonical: ``38+47=`` and ``47+38=`` are the same problem to a student; hashing the
        # canonical form puts both on the same side, so near-duplicates cannot cross the partition.
        digest = hashlib.blake2b(f"{self.seed}:{canonical(str(question))}".encode(), digest_size=8).digest()
        return int.from_bytes(digest, "big") < self._threshold


class _OutsideOrSeen:
    """Excludes every question that is not reserved, plus the ones already drawn."""

    def __init__(self, reserved: Reserved, seen: set[str]) -> None:
        self.reserved, self.seen = reserved, seen

    def __contains__(self, question: object) -> bool:
        return question in self.seen or question not in self.reserved


class HeldOut(Record):
    """Per-skill validation (teacher-visible) and test (never shown) problems, disjoint and distinct.

    Built deterministically from a seed, so every run and teacher is scored on the same problems. Each
    skill draws from its own seeded stream, so adding a skill does not change the others' sets.
    """

    seed: int
    val: dict[str, tuple[Problem, ...]]
    test: dict[str, tuple[Problem, ...]]

    @classmethod
    def build(cls, domain: SizedDomain, test_per_skill: int, val_per_skill: int, seed: int) -> HeldOut:
        """Draw ``test_per_skill`` then ``val_per_skill`` distinct problems for every leaf skill, from
        the evaluation partition ``Reserved(seed)`` only.

        Sizes are clamped to a third (test) and a sixth (val) of a small skill's problem space (which
        fits in its reserved half); the sizes used are logged.
        """
        val: dict[str, tuple[Problem, ...]] = {}
        test: dict[str, tuple[Problem, ...]] = {}
        reserved = Reserved(seed)
        for skill in domain.tree.leaves():
            space = domain.space_size(skill)
            n_test, n_val = min(test_per_skill, space // 3), min(val_per_skill, space // 6)
            if (n_test, n_val) != (test_per_skill, val_per_skill):
                log.info("held-out %s: space %d, clamped to test %d, val %d", skill, space, n_test, n_val)
            rng = random.Random(f"heldout:{seed}:{skill}")
            seen: set[str] = set()
            test[skill] = _draw_distinct(domain, skill, n_test, rng, seen, reserved)
            val[skill] = _draw_distinct(domain, skill, n_val, rng, seen, reserved)
        return cls(seed=seed, val=val, test=test)

    @cached_property
    def reserved(self) -> Reserved:
        """The evaluation partition these sets were drawn from: keep all training data outside it."""
        return Reserved(self.seed)

    @cached_property
    def questions(self) -> frozenset[str]:
        """Every held-out question (val and test), normalized: exclude these from training data."""
        return frozenset(
            normalize(p.question)
            for split in (self.val, self.test)
            for problems in split.values()
            for p in problems
        )

    def val_problems(self) -> list[Problem]:
        """All validation problems, skill by skill in tree order."""
        return [p for problems in self.val.values() for p in problems]

    def test_problems(self) -> list[Problem]:
        """All test problems, skill by skill in tree order."""
        return [p for problems in self.test.values() for p in problems]

    def sizes(self) -> dict[str, tuple[int, int]]:
        """Skill id to (test size, val size) actually used."""
        return {skill: (len(self.test[skill]), len(self.val[skill])) for skill in self.test}

    def overlapping(self, examples: Sequence[Example]) -> list[Example]:
        """The examples whose question is a held-out question (the contamination check)."""
        return [ex for ex in examples if normalize(ex.problem.question) in self.questions]


def _draw_distinct(
    domain: SizedDomain, skill: str, n: int, rng: random.Random, seen: set[str], reserved: Reserved
) -> tuple[Problem, ...]:
    """``n`` reserved problems with questions not in ``seen`` and distinct from each other; adds them
    to ``seen``."""
    out: list[Problem] = []
    while len(out) < n:
        # Why: ``sample`` draws with replacement, so a batch may repeat itself; keep the first of each.
        for problem in domain.sample(skill, n - len(out), rng, exclude=_OutsideOrSeen(reserved, seen)):
            if problem.question not in seen:
                seen.add(problem.question)
                out.append(problem)
    return tuple(out)
