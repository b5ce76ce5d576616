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
against 0.19-0.24), as step focus and quizzed misses did before it. ``mix-targets-facts``, every example to
the two learnable skills with facts balanced and no forgetting protection, bounds what these data levers buy
at 750 examples: 0.253-0.286 (``teaching_efficiency_epyc750_ceiling.json``), below uniform-3000's 0.319.
With uniform trained in the same 250-example rounds (its 3000 examples reach 0.219), ``mix-replay-facts``
reaches that at 750 examples with every strong skill within 5 points on 6 seeds of 6, the progress teachers'
plans with this engine on 2 of 3 (``progress-light-facts``) and 0 (``progress-facts``)
(``teaching_efficiency_epyc750_grain250.json``).
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Callable

from common import teacher_spec
from error_anatomy import student_rationale
from fixed_mix import MIXES, mix_teacher
from quiz_engine import QueuedSampler, draw_candidates, plain_skill_counts

from tutorkd.agents.baselines.procedural import ProceduralEngine, _AnyOf, derive_seed
from tutorkd.agents.teacher import BuildInputs
from tutorkd.protocols import GenerationContext
from tutorkd.schema import Attempt, Example, Plan, Problem

BALANCED: dict[str, tuple[str, str]] = {
    "mix-contrast35-facts": ("mix-contrast35", "FactBalancedEngine"),
    "mix-contrast35-traced": ("mix-contrast35", "FactTracingEngine"),
    # Why: the ceiling of the data levers at 750 examples, every example to the two skills this student
    # learns, facts balanced, no forgetting protection (the guard can only take examples away).
    "mix-targets-facts": ("mix-targets", "FactBalancedEngine"),
    # Why: student-modeling teachers (agents/progress*.yaml, whose plans measure the student) with the
    # engine that made the hand-set mix's examples teach most per example.
    "progress-facts": ("progress", "FactBalancedEngine"),
    "progress-light-facts": ("progress-light", "FactBalancedEngine"),
    "mix-replay-facts": ("mix-replay", "FactBalancedEngine"),
}
"""Teachers ``teaching_efficiency.py`` runs with these engines: name to (the mix of ``fixed_mix.MIXES`` or
the ``agents/*.yaml`` teacher whose plans it keeps, the engine class of this module)."""


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


def weighted(candidates: list[Problem], count: int, weight: dict[str, float]) -> list[Problem]:
    """``greedy``, each pick the candidate whose facts are worth most now: the sum over its facts of
    ``weight`` (1 for a fact not in it) over 1 + the times the fact was chosen already (so a weak fact
    draws practice first, and each further example of it is worth less)."""
    return greedy(candidates, count, lambda fs, chosen: sum(weight.get(f, 1.0) / (1 + chosen[f]) for f in fs))


class FactEngine:
    """What the two fact engines share (implements ``tutorkd.protocols.Engine`` with ``choose``): ``pool``
    candidates drawn per example asked for, each skill's queue ordered by ``choose``, and the procedural
    engine making (and stamping the provenance of) the examples from those queues."""

    name: str
    """The engine's name in its examples' provenance, and the seed's label."""
    description: str

    def __init__(self, inputs: BuildInputs, pool: int = 8) -> None:
        self.domain, self.exclude, self.pool = inputs.domain, inputs.exclude, pool

    def choose(self, drawn: dict[str, list[Problem]], counts: dict[str, int]) -> dict[str, list[Problem]]:
        """Each skill's candidates in the order its examples should take them."""
        raise NotImplementedError

    def generate(self, plan: Plan, context: GenerationContext) -> list[Example]:
        """Draw each skill's candidates, queue them by ``choose``, make the examples from the queues."""
        counts = plain_skill_counts(plan, self.description)
        rng = random.Random(derive_seed(self.name, context.seed, context.round))
        exclude = _AnyOf(self.exclude, context.avoid)
        drawn = draw_candidates(self.domain, counts, lambda _: self.pool, rng, exclude)
        sampler = QueuedSampler(self.domain, self.choose(drawn, counts))
        return ProceduralEngine(self.domain, self.exclude, sampler, self.name).generate(plan, context)


class FactBalancedEngine(FactEngine):
    """Each skill's examples drawn so its facts are practised evenly (module docstring)."""

    name = "facts"
    description = "the fact-balanced engine"

    def choose(self, drawn: dict[str, list[Problem]], counts: dict[str, int]) -> dict[str, list[Problem]]:
        """``balanced`` per skill."""
        return {skill: balanced(drawn[skill], count) for skill, count in counts.items()}


def fact_weights(attempts: list[Attempt]) -> dict[str, float]:
    """Each fact's estimated error rate, (wrong + 1) / (seen + 2), from quizzed answers: a fact is seen
    where the student wrote its step (the gold left-hand side at the gold position) and wrong where that
    step's result differs; answers without a rationale, and steps written differently, say nothing."""
    seen: Counter[str] = Counter()
    wrong: Counter[str] = Counter()
    for attempt in attempts:
        rationale = student_rationale(attempt.output)
        if rationale is None:
            continue
        written = [s.partition("=") for s in rationale.split()]
        for i, step in enumerate((attempt.problem.rationale or "").split()):
            lhs, _, result = step.partition("=")
            if i < len(written) and written[i][0] == lhs:
                seen[lhs] += 1
                wrong[lhs] += written[i][2] != result
    return {f: (wrong[f] + 1) / (seen[f] + 2) for f in seen}


class FactTracingEngine(FactEngine):
    """A fact-level student model. It quizzes the student on the candidates (one batched call for the
    plan), estimates each fact's error rate from the steps the student wrote, and takes each skill's
    examples by ``weighted``: weak facts first, every fact's further practice worth less. Its examples'
    provenance names the engine ``traced``: their seed regenerates them only with the same student
    version answering."""

    name = "traced"
    description = "the fact-tracing engine"

    def __init__(self, inputs: BuildInputs, pool: int = 8) -> None:
        super().__init__(inputs, pool)
        self.student = inputs.need_student()

    def choose(self, drawn: dict[str, list[Problem]], counts: dict[str, int]) -> dict[str, list[Problem]]:
        """Quiz every skill's candidates at once, then ``weighted`` per skill."""
        weight = fact_weights(self.student.answer([p for ps in drawn.values() for p in ps]))
        weakest = sorted(weight.items(), key=lambda kv: -kv[1])[:5]
        print(f"  traced: {len(weight)} facts seen, weakest " + ", ".join(f"{f} {w:.2f}" for f, w in weakest),
              flush=True)
        return {skill: weighted(drawn[skill], count, weight) for skill, count in counts.items()}


def facts_teacher(name: str) -> dict:
    """The teacher spec (a dict for ``TeacherConfig``) of the named ``BALANCED`` teacher."""
    base, engine = BALANCED[name]
    spec = mix_teacher(base) if base in MIXES else teacher_spec(base).model_dump()
    return spec | {"name": name, "engine": {"import": f"fact_engine:{engine}"}}
