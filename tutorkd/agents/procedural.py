"""The procedural engine: turns a plan into examples by sampling the domain's own generator.

Every example is correct by construction and the whole batch is a pure function of the plan and the
(seed, round) pair, so a resumed run regenerates exactly the data it lost.
"""

from __future__ import annotations

import hashlib
import logging
import random
from collections.abc import Container

from tutorkd.protocols import Domain, GenerationContext
from tutorkd.schema import Example, GeneratorParams, Plan, PlanItem, Problem, Provenance

logger = logging.getLogger(__name__)


def derive_seed(*parts: object) -> int:
    """A 63-bit seed from ``parts``, stable across processes (unlike ``hash``, which is salted)."""
    digest = hashlib.sha256("/".join(str(p) for p in parts).encode()).digest()
    return int.from_bytes(digest[:8], "big") >> 1


class _AnyOf:
    """Membership in any of several containers, so ``exclude`` can grow without copying a large set."""

    def __init__(self, *containers: Container[str]) -> None:
        self.containers = containers

    def __contains__(self, item: object) -> bool:
        return any(item in c for c in self.containers)


class ProceduralEngine:
    """Generate examples from the domain: ``sample`` for a skill, ``similar`` for a ``like`` problem.

    ``exclude`` holds questions that must never become training data (the held-out validation and
    test sets). The context's ``avoid`` (questions of earlier rounds) and the questions already drawn
    for this plan are excluded too, so every problem is new, even when two errors share a structure.
    When a skill's space is exhausted the item gets fewer examples, with a warning.
    """

    name = "procedural"

    def __init__(self, domain: Domain, exclude: Container[str] = frozenset()) -> None:
        self.domain = domain
        self.exclude = exclude

    def generate(self, plan: Plan, context: GenerationContext) -> list[Example]:
        """Make the examples ``plan`` asks for, with ids ``{run_id}/r{round}/{index:06d}``."""
        round_seed = derive_seed(context.seed, context.round)
        drawn: set[str] = set()
        exclude = _AnyOf(self.exclude, context.avoid, drawn)
        leaves = set(self.domain.tree.leaves())
        examples: list[Example] = []
        for item_index, item in enumerate(plan.items):
            # One rng per item: an item's data depends only on (seed, round, its position), and its
            # seed in the provenance is enough to regenerate it.
            item_seed = derive_seed(round_seed, item_index)
            rng = random.Random(item_seed)
            for made in range(item.count):
                # Why one at a time: domains may sample with replacement, and excluding each question
                # as it is drawn keeps every problem of the plan distinct.
                try:
                    problem = self._draw(item, rng, exclude)
                except RuntimeError as exc:  # Domain.sample's signal that the exclusions exhaust a skill
                    logger.warning(
                        "plan item %d: made %d of %d examples: %s", item_index, made, item.count, exc
                    )
                    break
                drawn.add(problem.question)
                examples.append(self._example(problem, item, item_seed, len(examples), context, leaves))
        return examples

    def _draw(self, item: PlanItem, rng: random.Random, exclude: Container[str]) -> Problem:
        if item.like is not None:
            (problem,) = self.domain.similar(item.like, 1, rng, exclude)
        elif item.skill_id is not None:
            (problem,) = self.domain.sample(item.skill_id, 1, rng, exclude)
        else:
            raise ValueError(f"plan item {item!r} names neither a skill_id nor a like problem; set one")
        return problem

    def _example(
        self,
        problem: Problem,
        item: PlanItem,
        seed: int,
        index: int,
        context: GenerationContext,
        leaves: set[str],
    ) -> Example:
        skill = [s for s in problem.skill_ids if s in leaves]
        if not skill:
            raise ValueError(f"domain {self.domain.name!r} made problem {problem.id!r} with no leaf skill")
        generator = GeneratorParams(
            engine=self.name,
            seed=seed,
            style=item.style,
            source_problem_id=item.like.id if item.like is not None else None,
        )
        return Example(
            id=f"{context.run_id}/r{context.round}/{index:06d}",
            problem=problem,
            prompt=self.domain.prompt(problem),
            completion=self.domain.completion(problem, item.style),
            provenance=Provenance(
                run_id=context.run_id,
                round=context.round,
                teacher=context.teacher,
                skill_id=skill[0],
                generator=generator,
            ),
        )
