"""Fixed validation and test sets per skill, and the contamination check against them."""

from __future__ import annotations

import logging
import random
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
        """Draw ``test_per_skill`` then ``val_per_skill`` distinct problems for every leaf skill.

        Sizes are clamped to a third (test) and a sixth (val) of a small skill's problem space, so
        that at least half of it stays available for training data; the sizes used are logged.
        """
        val: dict[str, tuple[Problem, ...]] = {}
        test: dict[str, tuple[Problem, ...]] = {}
        for skill in domain.tree.leaves():
            space = domain.space_size(skill)
            n_test, n_val = min(test_per_skill, space // 3), min(val_per_skill, space // 6)
            if (n_test, n_val) != (test_per_skill, val_per_skill):
                log.info("held-out %s: space %d, clamped to test %d, val %d", skill, space, n_test, n_val)
            rng = random.Random(f"heldout:{seed}:{skill}")
            seen: set[str] = set()
            test[skill] = _draw_distinct(domain, skill, n_test, rng, seen)
            val[skill] = _draw_distinct(domain, skill, n_val, rng, seen)
        return cls(seed=seed, val=val, test=test)

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
    domain: SizedDomain, skill: str, n: int, rng: random.Random, seen: set[str]
) -> tuple[Problem, ...]:
    """``n`` problems with questions not in ``seen`` and distinct from each other; adds them to ``seen``."""
    out: list[Problem] = []
    while len(out) < n:
        # Why: ``sample`` draws with replacement, so a batch may repeat itself; keep the first of each.
        for problem in domain.sample(skill, n - len(out), rng, exclude=seen):
            if problem.question not in seen:
                seen.add(problem.question)
                out.append(problem)
    return tuple(out)
