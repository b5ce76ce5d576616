"""Hard-example selection by quizzing the student, as an engine plug-in: an ablation for issue 17.

``QuizEngine`` makes the examples a plan asks for from problems the student gets wrong *now*: for each
plan item it draws ``pool`` candidates of the item's skill per example asked for, asks the student
(greedy answers, one batched call for the whole plan) and takes the ones it missed first, up to
``hard_share`` of the item, then ones it got right. A skill with a pool of 1 is drawn as the
procedural engine draws it, unquizzed. The question it answers: does training on the student's own
misses (items chosen by measurement, on far more problems than the 100 validation problems a skill the
policy sees) teach more per example than plain draws, and does quizzing the contrast siblings find the
problems a student is starting to misapply a procedure to?

Measured in ``benchmarks/results/teaching_efficiency_quiz750.json`` (``teaching_efficiency.py
--teachers mix-contrast35-quiz progress-light-quiz``): less weak-skill accuracy at 750 examples than
the same allocations with plain draws, as step focus (``agents/progress-steps.yaml``) before it.
"""

from __future__ import annotations

import random

from common import teacher_spec
from fixed_mix import MIXES, mix_teacher

from tutorkd.agents.baselines.facts import QueuedSampler, draw_candidates, plain_skill_counts
from tutorkd.agents.baselines.procedural import ProceduralEngine, _AnyOf, derive_seed
from tutorkd.agents.teacher import BuildInputs
from tutorkd.protocols import GenerationContext
from tutorkd.schema import Example, Plan

QUIZZED: dict[str, tuple[str, dict]] = {
    # mix-contrast35's split; the two targets' examples are misses among 4 candidates each.
    "mix-contrast35-quiz": ("mix-contrast35", {"pool": {"add.carry": 4, "sub.borrow": 4}, "default": 1}),
    # progress-light's plans; every skill's examples (contrast siblings too) misses among 4 candidates.
    "progress-light-quiz": ("progress-light", {"default": 4}),
}
"""Teachers ``teaching_efficiency.py`` runs with this engine: (the teacher whose plans it keeps, the
engine's options)."""


class QuizEngine:
    """Implements ``tutorkd.protocols.Engine``: each item's examples are the student's misses first
    (module docstring). ``pool``: candidates per example by skill (``default`` for the others). Its
    examples' provenance names the engine ``quiz``: their seed regenerates them only with the same
    student version answering."""

    name = "quiz"

    def __init__(self, inputs: BuildInputs, pool: dict[str, int] | None = None, default: int = 4,
                 hard_share: float = 1.0) -> None:
        self.domain, self.exclude, self.student = inputs.domain, inputs.exclude, inputs.need_student()
        self.pool, self.default, self.hard_share = dict(pool or {}), default, hard_share

    def size(self, skill_id: str) -> int:
        """Candidates drawn per example of ``skill_id``."""
        return self.pool.get(skill_id, self.default)

    def generate(self, plan: Plan, context: GenerationContext) -> list[Example]:
        """Quiz the candidates of every item at once, queue each skill's misses first, then let the
        procedural engine make (and stamp the provenance of) the examples from those queues."""
        counts = plain_skill_counts(plan, "the quiz engine")
        rng = random.Random(derive_seed("quiz", context.seed, context.round))
        queues = draw_candidates(self.domain, counts, self.size, rng, _AnyOf(self.exclude, context.avoid))
        quizzed = [p for skill in counts if self.size(skill) > 1 for p in queues[skill]]
        answers = self.student.answer(quizzed) if quizzed else []
        missed = {a.problem.question for a in answers if not a.correct}
        for skill, count in counts.items():
            if self.size(skill) == 1:
                continue
            drawn = queues[skill]
            wrong = [p for p in drawn if p.question in missed]
            right = [p for p in drawn if p.question not in missed]
            hard = min(round(count * self.hard_share), len(wrong))
            queues[skill] = wrong[:hard] + right[:count - hard] + wrong[hard:] + right[count - hard:]
            print(f"  quiz {skill}: {len(wrong)} of {len(drawn)} candidates missed, {hard} of "
                  f"{count} examples are misses", flush=True)
        engine = ProceduralEngine(self.domain, self.exclude, QueuedSampler(self.domain, queues), self.name)
        return engine.generate(plan, context)


def quiz_teacher(name: str) -> dict:
    """The teacher spec (a dict for ``TeacherConfig``) of the named ``QUIZZED`` teacher."""
    base, options = QUIZZED[name]
    spec = mix_teacher(base) if base in MIXES else teacher_spec(base).model_dump()
    return spec | {"name": name, "engine": {"import": "quiz_engine:QuizEngine", **options}}
