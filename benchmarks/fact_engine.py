"""Fact-balanced draws, as an engine plug-in: an ablation for issue 17.

``benchmarks/error_anatomy.py`` found that what 750 examples leave undone is single-digit facts: 85 % of
``mix-contrast35``'s remaining ``add.carry`` / ``sub.borrow`` errors write the gold steps with a wrong
result (``9+8=16``). Plain draws cover those facts unevenly: among the 88 ``add.carry`` examples of a
round, each of the 81 tens facts (``a+b+1``) is expected about once, and about a third of them not at
all. ``FactBalancedEngine`` makes the examples a plan asks for from problems chosen so that each skill's
facts (the left-hand sides of its rationale's steps: ``7+8``, ``3+6+1``) are practised as evenly as
the round's count allows: it draws ``pool`` candidates per example and takes, one at a time, the
candidate whose facts have been practised least so far in the plan (ties broken by draw order). The
question it answers: does even fact coverage teach more per example than plain draws of the same plan?
"""

from __future__ import annotations

import random
from collections import Counter

from fixed_mix import mix_teacher
from quiz_engine import QueuedSampler

from tutorkd.agents.baselines.procedural import ProceduralEngine, _AnyOf, derive_seed
from tutorkd.agents.teacher import BuildInputs
from tutorkd.protocols import GenerationContext
from tutorkd.schema import Example, Plan, Problem

BALANCED: dict[str, str] = {"mix-contrast35-facts": "mix-contrast35"}
"""Teachers ``teaching_efficiency.py`` runs with this engine: name to the mix whose plans it keeps."""


def facts(problem: Problem) -> list[str]:
    """The left-hand sides of the problem's rationale steps (``"7+8=15 3+6+1=10"`` -> ``7+8``, ``3+6+1``)."""
    return [step.partition("=")[0] for step in (problem.rationale or "").split()]


def balanced(candidates: list[Problem], count: int) -> list[Problem]:
    """``count`` of the distinct ``candidates``, each the one whose facts were practised least so far
    (the sum of their counts), ties to the earlier drawn; then the rest, in draw order."""
    seen: Counter[str] = Counter()
    left, chosen = list(candidates), []
    while left and len(chosen) < count:
        best = min(range(len(left)), key=lambda i: sum(seen[f] for f in facts(left[i])))
        problem = left.pop(best)
        seen.update(facts(problem))
        chosen.append(problem)
    return chosen + left


class FactBalancedEngine:
    """Implements ``tutorkd.protocols.Engine``: each skill's examples are drawn so its facts are
    practised evenly (module docstring). ``pool``: candidates drawn per example asked for."""

    name = "facts"

    def __init__(self, inputs: BuildInputs, pool: int = 8) -> None:
        self.domain, self.exclude, self.pool = inputs.domain, inputs.exclude, pool

    def generate(self, plan: Plan, context: GenerationContext) -> list[Example]:
        """Queue each skill's balanced choice, then let the procedural engine make (and stamp the
        provenance of) the examples from those queues."""
        if any(item.skill_id is None or item.step is not None for item in plan.items):
            raise ValueError("the fact-balanced engine makes plain skill items only (no like, no step)")
        rng = random.Random(derive_seed("facts", context.seed, context.round))
        exclude = _AnyOf(self.exclude, context.avoid)
        counts: Counter[str] = Counter()
        for item in plan.items:
            counts[item.skill_id] += item.count
        queues = {}
        for skill, count in counts.items():
            drawn = self.domain.sample(skill, count * self.pool, rng, exclude)
            queues[skill] = balanced(list({p.question: p for p in drawn}.values()), count)
        engine = ProceduralEngine(self.domain, self.exclude, QueuedSampler(self.domain, queues), self.name)
        return engine.generate(plan, context)


def facts_teacher(name: str) -> dict:
    """The teacher spec (a dict for ``TeacherConfig``) of the named ``BALANCED`` teacher."""
    engine = {"import": "fact_engine:FactBalancedEngine"}
    return mix_teacher(BALANCED[name]) | {"name": name, "engine": engine}
