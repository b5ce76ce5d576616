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

``FactTracingEngine`` adds a fact-level student model: it quizzes the student on the candidates, reads
each fact's error rate off the steps the student wrote, and gives weak facts practice first (each further
example of a fact worth less, so coverage stays broad). Measured in
``benchmarks/results/teaching_efficiency_epyc750_facts.json`` (``teaching_efficiency.py --teachers
mix-contrast35-facts mix-contrast35-traced``): even coverage teaches more per example than plain draws
(weak skills 0.21-0.22 at 500 examples against 0.15-0.18), weakest facts first far less (0.12-0.14 at 750
against 0.19-0.24), as step focus and quizzed misses did before it.
"""

from __future__ import annotations

import random
from collections import Counter

from fixed_mix import mix_teacher
from quiz_engine import QueuedSampler

from tutorkd.agents.baselines.procedural import ProceduralEngine, _AnyOf, derive_seed
from tutorkd.agents.teacher import BuildInputs
from tutorkd.protocols import GenerationContext
from tutorkd.schema import Attempt, Example, Plan, Problem

BALANCED: dict[str, tuple[str, str]] = {
    "mix-contrast35-facts": ("mix-contrast35", "FactBalancedEngine"),
    "mix-contrast35-traced": ("mix-contrast35", "FactTracingEngine"),
}
"""Teachers ``teaching_efficiency.py`` runs with these engines: name to (the mix whose plans it keeps, the
engine class of this module)."""


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


def weighted(candidates: list[Problem], count: int, weight: dict[str, float]) -> list[Problem]:
    """``count`` of the distinct ``candidates``, each the one whose facts are worth most now: the sum over
    its facts of ``weight`` (1 for a fact not in it) over 1 + the times the fact was chosen already (so a
    weak fact draws practice first, and each further example of it is worth less), ties to the earlier
    drawn; then the rest, in draw order."""
    chosen_count: Counter[str] = Counter()
    left, chosen = list(candidates), []
    while left and len(chosen) < count:
        best = max(range(len(left)), key=lambda i: (sum(weight.get(f, 1.0) / (1 + chosen_count[f])
                                                        for f in facts(left[i])), -i))
        problem = left.pop(best)
        chosen_count.update(facts(problem))
        chosen.append(problem)
    return chosen + left


def fact_weights(attempts: list[Attempt]) -> dict[str, float]:
    """Each fact's estimated error rate, (wrong + 1) / (seen + 2), from quizzed answers: a fact is seen
    where the student wrote its step (the gold left-hand side at the gold position) and wrong where that
    step's result differs; answers without a rationale, and steps written differently, say nothing."""
    seen: Counter[str] = Counter()
    wrong: Counter[str] = Counter()
    for attempt in attempts:
        output = attempt.output
        if not output.startswith("R:") or " A:" not in output:
            continue
        written = [s.partition("=") for s in output[2:output.index(" A:")].split()]
        for i, step in enumerate((attempt.problem.rationale or "").split()):
            lhs, _, result = step.partition("=")
            if i < len(written) and written[i][0] == lhs:
                seen[lhs] += 1
                wrong[lhs] += written[i][2] != result
    return {f: (wrong[f] + 1) / (seen[f] + 2) for f in seen}


class FactTracingEngine:
    """Implements ``tutorkd.protocols.Engine``: a fact-level student model. It quizzes the student on
    ``pool`` candidates per example asked for (one batched call for the plan), estimates each fact's
    error rate from the steps the student wrote, and takes each skill's examples by ``weighted``: weak
    facts first, every fact's further practice worth less. Its examples' provenance names the engine
    ``traced``: their seed regenerates them only with the same student version answering."""

    name = "traced"

    def __init__(self, inputs: BuildInputs, pool: int = 8) -> None:
        self.domain, self.exclude, self.student = inputs.domain, inputs.exclude, inputs.need_student()
        self.pool = pool

    def generate(self, plan: Plan, context: GenerationContext) -> list[Example]:
        """Quiz every skill's candidates at once, queue each skill's weighted choice, then let the
        procedural engine make (and stamp the provenance of) the examples from those queues."""
        if any(item.skill_id is None or item.step is not None for item in plan.items):
            raise ValueError("the fact-tracing engine makes plain skill items only (no like, no step)")
        rng = random.Random(derive_seed("traced", context.seed, context.round))
        exclude = _AnyOf(self.exclude, context.avoid)
        counts: Counter[str] = Counter()
        for item in plan.items:
            counts[item.skill_id] += item.count
        drawn = {skill: list({p.question: p for p in self.domain.sample(skill, n * self.pool, rng, exclude)}
                             .values()) for skill, n in counts.items()}
        weight = fact_weights(self.student.answer([p for ps in drawn.values() for p in ps]))
        weakest = sorted(weight.items(), key=lambda kv: -kv[1])[:5]
        print(f"  traced: {len(weight)} facts seen, weakest " + ", ".join(f"{f} {w:.2f}" for f, w in weakest),
              flush=True)
        queues = {skill: weighted(drawn[skill], count, weight) for skill, count in counts.items()}
        engine = ProceduralEngine(self.domain, self.exclude, QueuedSampler(self.domain, queues), self.name)
        return engine.generate(plan, context)


def facts_teacher(name: str) -> dict:
    """The teacher spec (a dict for ``TeacherConfig``) of the named ``BALANCED`` teacher."""
    mix, engine = BALANCED[name]
    return mix_teacher(mix) | {"name": name, "engine": {"import": f"fact_engine:{engine}"}}
