"""The procedural engine: turns a plan into examples by sampling the domain's own generator, or a
teacher's ``Sampler`` over it (STAT's pool, TPD's bug-exposing draws).

Every example is correct by construction and the whole batch is a pure function of the plan and the
(seed, round) pair, so a resumed run regenerates exactly the data it lost.
"""

from __future__ import annotations

import hashlib
import logging
import random
from collections.abc import Container

from tutorkd.protocols import Domain, GenerationContext, Sampler
from tutorkd.schema import Example, GeneratorParams, Plan, PlanItem, Problem, Provenance

logger = logging.getLogger(__name__)


def derive_seed(*parts: object) -> int:
    """A 63-bit seed from ``parts``, stable across processes (unlike ``hash``, which is salted)."""
    digest = hashlib.sha256("/".join(str(p) for p in parts).encode()).digest()
    return int.from_bytes(digest[:8], "big") >> 1


class StepExhausted(RuntimeError):
    """No new problem of a ``PlanItem.step`` item is left to draw (the item falls back to no step)."""


def has_step(problem: Problem, step: str) -> bool:
    """Whether a whitespace-separated step of ``problem``'s rationale starts by computing ``step``:
    written ``{step}=...``, or ``{step}`` followed by another operation (``7*8+5=61`` has ``7*8``);
    a problem without a rationale has no steps."""
    return any(token.startswith(step) and token[len(step):len(step) + 1] in ("=", "+", "-", "*")
               for token in (problem.rationale or "").split())


class _AnyOf:
    """Membership in any of several containers, so ``exclude`` can grow without copying a large set."""

    def __init__(self, *containers: Container[str]) -> None:
        self.containers = containers

    def __contains__(self, item: object) -> bool:
        return any(item in c for c in self.containers)


class ProceduralEngine:
    """Generate examples from a sampler: ``sample`` for a skill, ``similar`` for a ``like`` problem,
    either kept only when its rationale has the item's ``step``.

    The sampler (the domain itself unless given) decides which problems are drawn; the domain renders
    them (prompt, completion) and names their leaf skill.

    ``exclude`` holds questions that must never become training data (the held-out validation and
    test sets). The context's ``avoid`` (questions of earlier rounds) and the questions already drawn
    for this plan are excluded too, so every problem is new, even when two errors share a structure.
    When a skill's space is exhausted the item gets fewer examples, with a warning.
    """

    max_step_draws = 5_000
    """Candidates drawn per example of a ``step`` item before its step counts as exhausted: a step in
    1 of 720 problems of its skill (``3*8+5``) is then missed with probability 0.1 %."""

    def __init__(
        self, domain: Domain, exclude: Container[str] = frozenset(), sampler: Sampler | None = None,
        name: str = "procedural",
    ) -> None:
        self.domain = domain
        self.exclude = exclude
        self.sampler: Sampler = domain if sampler is None else sampler
        # Why a name of its own: an engine that picks the problems by other means than the seed (a quiz
        # of the student) says so in every example's provenance.
        self.name = name

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
            current = item
            for made in range(item.count):
                # Why one at a time: domains may sample with replacement, and excluding each question
                # as it is drawn keeps every problem of the plan distinct.
                try:
                    try:
                        problem = self._draw(current, rng, exclude)
                    except StepExhausted as exc:
                        # Why fall back: a step's problems are few (``7*8`` is a step of 18 of the 720
                        # mul problems); the item's other examples still practise its skill, and their
                        # provenance has no step.
                        logger.warning("plan item %d: %s; its other %d examples are made without the step",
                                       item_index, exc, item.count - made)
                        current = item.model_copy(update={"step": None})
                        problem = self._draw(current, rng, exclude)
                except RuntimeError as exc:  # Sampler.sample's signal that the exclusions exhaust a skill
                    logger.warning(
                        "plan item %d: made %d of %d examples: %s", item_index, made, item.count, exc
                    )
                    break
                drawn.add(problem.question)
                examples.append(self._example(problem, current, item_seed, len(examples), context, leaves))
        return examples

    def _draw(self, item: PlanItem, rng: random.Random, exclude: Container[str]) -> Problem:
        if item.step is not None:
            return self._draw_with_step(item, rng, exclude)
        if item.like is not None:
            (problem,) = self.sampler.similar(item.like, 1, rng, exclude)
        elif item.skill_id is not None:
            (problem,) = self.sampler.sample(item.skill_id, 1, rng, exclude)
        else:
            raise ValueError(f"plan item {item!r} names neither a skill_id nor a like problem; set one")
        return problem

    def _draw_with_step(self, item: PlanItem, rng: random.Random, exclude: Container[str]) -> Problem:
        """Rejection sampling: the first drawn problem with ``item.step`` among its rationale's steps."""
        plain = item.model_copy(update={"step": None})
        for _ in range(self.max_step_draws):
            problem = self._draw(plain, rng, exclude)
            if has_step(problem, item.step):
                return problem
        raise StepExhausted(f"no new problem with the step {item.step!r} in {self.max_step_draws} draws")

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
            step=item.step,
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
