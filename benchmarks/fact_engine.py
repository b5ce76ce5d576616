"""Fact-level engines for issue 17's ablations: the fact-balanced engine's teachers, and fact tracing.

``benchmarks/error_anatomy.py`` found that what 750 examples leave undone is single-digit facts: 85 % of
``mix-contrast35``'s remaining ``add.carry`` / ``sub.borrow`` errors write the gold steps with a wrong
result (``9+8=16``). The fact-balanced engine (now built in as ``engine: facts``,
``tutorkd.agents.baselines.facts``; first this module's ``FactBalancedEngine`` plug-in, which made the
same examples) draws each skill's examples so that its facts are practised evenly. ``BALANCED`` names
the teachers that keep another teacher's or a fixed mix's plans with that engine.

``FactTracingEngine`` (a plug-in) adds a fact-level student model: it quizzes the student on the
candidates, reads each fact's error rate off the steps the student wrote, and gives weak facts practice
first (each further example of a fact worth less, so coverage stays broad). Measured in
``benchmarks/results/teaching_efficiency_epyc750_facts.json`` (``teaching_efficiency.py --teachers
mix-contrast35-facts mix-contrast35-traced``): even coverage teaches more per example than plain draws
(weak skills 0.21-0.22 at 500 examples against 0.15-0.18), weakest facts first far less (0.12-0.14 at 750
against 0.19-0.24), as step focus and quizzed misses did before it. ``mix-targets-facts``, every example to
the two learnable skills with facts balanced and no forgetting protection, bounds what these data levers buy
at 750 examples: 0.253-0.286 (``teaching_efficiency_epyc750_ceiling.json``), below uniform-3000's 0.319.
With uniform trained in the same 250-example rounds (its 3000 examples reach 0.219), ``mix-replay-facts``
reaches that at 750 examples with every strong skill within 5 points on 6 seeds of 6, the progress teachers'
plans with this engine on 2 of 3 (``progress-light-facts``) and 0 (``progress-facts``)
(``teaching_efficiency_epyc750_grain250.json``), ``progress-headroom-facts`` on 3 of 3
(``teaching_efficiency_epyc750_headroom.json``).
"""

from __future__ import annotations

from collections import Counter

from common import teacher_spec
from error_anatomy import student_rationale
from fixed_mix import MIXES, mix_teacher

from tutorkd.agents.baselines.facts import FactsEngine, greedy
from tutorkd.agents.teacher import BuildInputs
from tutorkd.schema import Attempt, Problem

BALANCED: dict[str, tuple[str, str]] = {
    "mix-contrast35-facts": ("mix-contrast35", "facts"),
    "mix-contrast35-traced": ("mix-contrast35", "FactTracingEngine"),
    # Why: the ceiling of the data levers at 750 examples, every example to the two skills this student
    # learns, facts balanced, no forgetting protection (the guard can only take examples away).
    "mix-targets-facts": ("mix-targets", "facts"),
    # Why: student-modeling teachers (agents/progress*.yaml, whose plans measure the student) with the
    # engine that made the hand-set mix's examples teach most per example.
    "progress-facts": ("progress", "facts"),
    "progress-light-facts": ("progress-light", "facts"),
    "mix-replay-facts": ("mix-replay", "facts"),
    # agents/progress-headroom.yaml before it had inertia, under the label of its first results
    # (teaching_efficiency_epyc750_headroom_abrupt.json); the spec names engine: facts itself.
    "progress-headroom-facts": ("progress-headroom-abrupt", "facts"),
}
"""Teachers ``teaching_efficiency.py`` runs with these engines: name to (the mix of ``fixed_mix.MIXES`` or
the ``agents/*.yaml`` teacher whose plans it keeps, the built-in engine ``facts`` or a plug-in class of
this module)."""


def weighted(candidates: list[Problem], count: int, weight: dict[str, float]) -> list[Problem]:
    """``greedy``, each pick the candidate whose facts are worth most now: the sum over its facts of
    ``weight`` (1 for a fact not in it) over 1 + the times the fact was chosen already (so a weak fact
    draws practice first, and each further example of it is worth less)."""
    return greedy(candidates, count, lambda fs, chosen: sum(weight.get(f, 1.0) / (1 + chosen[f]) for f in fs))


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


class FactTracingEngine(FactsEngine):
    """A fact-level student model. It quizzes the student on the candidates (one batched call for the
    plan), estimates each fact's error rate from the steps the student wrote, and takes each skill's
    examples by ``weighted``: weak facts first, every fact's further practice worth less. Its examples'
    provenance names the engine ``traced``: their seed regenerates them only with the same student
    version answering."""

    name = "traced"
    description = "the fact-tracing engine"

    def __init__(self, inputs: BuildInputs, pool: int = 8) -> None:
        super().__init__(inputs.domain, inputs.exclude, pool)
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
    plugin = {"import": f"fact_engine:{engine}"}
    return spec | {"name": name, "engine": engine if engine == "facts" else plugin}
