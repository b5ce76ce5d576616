"""The fact-balanced engine (``engine: facts``): each skill's examples practise its facts evenly.

A tiny student's remaining errors on a skill it is learning are mostly single wrong facts inside the
right procedure: 85 % of the ``add.carry`` / ``sub.borrow`` errors left after 750 examples write the
gold steps with a wrong result (``9+8=16``; ``benchmarks/results/error_anatomy_epyc750.json``). Plain
draws cover a skill's facts unevenly: among the 88 ``add.carry`` examples of a round each of the 81 tens
facts (``a+b+1``) is expected about once, and about a third of them not at all. This engine makes the
examples a plan asks for from problems chosen so that each skill's facts (the left-hand sides of its
rationale's steps: ``7+8``, ``3+6+1``) are practised as evenly as the round's count allows: it draws
``pool`` candidates per example and takes, one at a time, the candidate whose facts have been practised
least so far in the plan (ties broken by draw order); the procedural engine then makes the examples and
stamps their provenance (engine ``facts``, the seed that regenerates them).

Measured (``benchmarks/teaching_efficiency.py``, the same plans with plain and balanced draws): weak
skills 0.21-0.22 at 500 examples against 0.15-0.18. Needs a domain whose problems carry worked steps
(``rationale``) and plain skill items (no ``like``, no ``step``).
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Callable, Container

from tutorkd.agents.baselines.procedural import ProceduralEngine, _AnyOf, derive_seed
from tutorkd.protocols import Domain, GenerationContext
from tutorkd.schema import Example, Plan, Problem


def plain_skill_counts(plan: Plan, engine: str) -> dict[str, int]:
    """The examples ``plan`` asks for, per skill, in plan order; ``ValueError`` naming ``engine`` for an
    item ``like`` a problem or with a ``step`` (these engines make plain skill items).

    Why per skill, not per item: one queue serves every item of a skill (a ``mixed`` style plan splits a
    skill over two items), so its candidates are drawn and ranked once, for all of them."""
    if any(item.skill_id is None or item.step is not None for item in plan.items):
        raise ValueError(f"{engine} makes plain skill items only (no like, no step)")
    counts: dict[str, int] = {}
    for item in plan.items:
        counts[item.skill_id] = counts.get(item.skill_id, 0) + item.count
    return counts


def draw_candidates(domain: Domain, counts: dict[str, int], per_example: Callable[[str], int],
                    rng: random.Random, exclude: Container[str]) -> dict[str, list[Problem]]:
    """Each skill's distinct candidates, skill by skill in ``counts``' order from ``rng``: ``per_example``
    draws per example asked for, with repeats dropped (``Domain.sample`` draws with replacement)."""
    return {skill: list({p.question: p for p in domain.sample(skill, count * per_example(skill), rng,
                                                              exclude)}.values())
            for skill, count in counts.items()}


class QueuedSampler:
    """Implements ``tutorkd.protocols.Sampler`` for one plan: each skill's problems come from its queue
    in order (skipping excluded ones), then, once it is empty, from the domain."""

    def __init__(self, domain: Domain, queues: dict[str, list[Problem]]) -> None:
        self.domain, self.queues = domain, queues

    def sample(self, skill_id: str, n: int, rng: random.Random,
               exclude: Container[str] = frozenset()) -> list[Problem]:
        """The next ``n`` problems of ``skill_id``'s queue not in ``exclude``, drawn afresh past its end."""
        out: list[Problem] = []
        queue = self.queues.get(skill_id, [])
        while queue and len(out) < n:
            problem = queue.pop(0)
            if problem.question not in exclude:
                out.append(problem)
        if len(out) < n:
            out += self.domain.sample(skill_id, n - len(out), rng, exclude)
        return out

    def similar(self, problem: Problem, n: int, rng: random.Random,
                exclude: Container[str] = frozenset()) -> list[Problem]:
        """Not offered: the queues hold skill items only."""
        raise ValueError("a queued engine makes skill items only, not items 'like' a problem")


def facts(problem: Problem) -> list[str]:
    """The left-hand sides of the problem's rationale steps (``"7+8=15 3+6+1=10"`` -> ``7+8``, ``3+6+1``)."""
    return [step.partition("=")[0] for step in (problem.rationale or "").split()]


def greedy(candidates: list[Problem], count: int, worth: Callable[[list[str], Counter[str]], float],
           ) -> list[Problem]:
    """``count`` of the distinct ``candidates``, one at a time the one whose facts are ``worth`` most given
    how often each fact was chosen so far, ties to the earlier drawn; then the rest, in draw order."""
    chosen_count: Counter[str] = Counter()
    left, chosen = list(candidates), []
    while left and len(chosen) < count:
        best = max(range(len(left)), key=lambda i: (worth(facts(left[i]), chosen_count), -i))
        problem = left.pop(best)
        chosen_count.update(facts(problem))
        chosen.append(problem)
    return chosen + left


def balanced(candidates: list[Problem], count: int) -> list[Problem]:
    """``greedy``, each pick the candidate whose facts were practised least so far (the sum of their
    counts)."""
    return greedy(candidates, count, lambda fs, chosen: -sum(chosen[f] for f in fs))


class FactsEngine:
    """Implements ``tutorkd.protocols.Engine`` (module docstring): ``pool`` candidates drawn per example
    asked for, each skill's queue ordered by ``choose`` (by default ``balanced``), and the procedural
    engine making the examples from those queues. Subclasses change ``choose`` (and ``name``, the engine
    named in the examples' provenance and the seed's label)."""

    name = "facts"
    description = "the fact-balanced engine"

    def __init__(self, domain: Domain, exclude: Container[str] = frozenset(), pool: int = 8) -> None:
        self.domain, self.exclude, self.pool = domain, exclude, pool

    def choose(self, drawn: dict[str, list[Problem]], counts: dict[str, int]) -> dict[str, list[Problem]]:
        """Each skill's candidates in the order its examples should take them: ``balanced`` per skill."""
        return {skill: balanced(drawn[skill], count) for skill, count in counts.items()}

    def generate(self, plan: Plan, context: GenerationContext) -> list[Example]:
        """Draw each skill's candidates, queue them by ``choose``, make the examples from the queues."""
        counts = plain_skill_counts(plan, self.description)
        rng = random.Random(derive_seed(self.name, context.seed, context.round))
        exclude = _AnyOf(self.exclude, context.avoid)
        drawn = draw_candidates(self.domain, counts, lambda _: self.pool, rng, exclude)
        sampler = QueuedSampler(self.domain, self.choose(drawn, counts))
        return ProceduralEngine(self.domain, self.exclude, sampler, self.name).generate(plan, context)
