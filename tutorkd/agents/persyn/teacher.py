"""PerSyn (Zhang et al. 2025): route every task prompt to the teacher whose data suits the student best.

Calibration: for each task (a skill tag), ``calibration_per_task`` prompts each get one response from
every teacher in the pool. A response's quality is binary correctness (PerSyn's math setting): 1 when
the teacher's own solution is exactly the verified one, 0 when it was wrong, unusable (malformed, off
the skill) or in the evaluation partition. Its learnability is the student's mean token
log-likelihood of the verified completion (``StudentSignals.learnability``); an unusable response takes
the lowest learnability of that prompt. Both are min-max normalized within each prompt across the
teachers (all equal: 0.5), then r = (1 - alpha) quality + alpha learnability.

Routing: the calibration set is small, so the router is a per-task choice, the teacher with the highest
mean r over the task's prompts (PerSyn's learned Bradley-Terry router is not needed for a handful of
task prompts). ``RoutedEngine`` then lets each teacher generate only its tasks' examples.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Container, Mapping, Sequence
from typing import TYPE_CHECKING

from tutorkd.agents.arte.char_lm import Draft, parse
from tutorkd.agents.arte.char_lm_engine import CharTeacherEngine, GenerationStats, Writer
from tutorkd.agents.arte.learning_signal import StudentSignals
from tutorkd.agents.baselines.procedural import derive_seed
from tutorkd.environments.arithmetic import ArithmeticDomain
from tutorkd.protocols import GenerationContext, SamplingConfig
from tutorkd.schema import Example, Plan, Record

if TYPE_CHECKING:
    from tutorkd.llm.structured import StructuredLLM

log = logging.getLogger(__name__)


class ProceduralWriter:
    """The procedural engine as a ``Writer``: a uniform leaf of the node, the domain's exact solution."""

    temperature = 0.0

    def __init__(self, domain: ArithmeticDomain, exclude: Container[str], style: str = "rationale") -> None:
        self.domain, self.exclude, self.style = domain, exclude, style
        self.name = f"procedural:{style}"

    def examples(self, node: str, n: int, seed: int) -> list[Draft]:
        """``n`` exact examples of ``node`` drawn outside ``exclude``."""
        rng = random.Random(seed)
        leaves = self.domain.tree.leaves_under(node)
        out = []
        for _ in range(n):
            (p,) = self.domain.sample(rng.choice(leaves), 1, rng, self.exclude)
            style = self.style if self.style != "mixed" else rng.choice(("rationale", "direct"))
            out.append(parse(self.domain, node, p.question + self.domain.completion(p, style)))
        return out


class LLMWriter:
    """A teacher LLM (``StructuredLLM``) as a ``Writer``: asked for one example per call in the domain's
    format, its first line parsed like the teacher LM's output (so gold answers are recomputed here too)."""

    def __init__(
        self, llm: StructuredLLM, domain: ArithmeticDomain, model: str, temperature: float = 1.0
    ) -> None:
        self.llm, self.domain, self.temperature = llm, domain, temperature
        self.name = f"llm:{model}"

    def prompt(self, node: str, rng: random.Random) -> str:
        """The instruction, two worked examples of the node, and the line to complete."""
        skill = next(s for s in self.domain.tree.nodes if s.id == node)
        shots = []
        for style in ("rationale", "direct"):
            (p,) = self.domain.sample(rng.choice(self.domain.tree.leaves_under(node)), 1, rng)
            shots.append(p.question + self.domain.completion(p, style))
        return (
            f"Write one new arithmetic problem for this skill: {skill.description} Write it on one line, "
            "as the question, then R: and the column-by-column steps, then A: and the answer (or A: and "
            "the answer alone), exactly like these:\n" + "\n".join(shots) + "\n"
        )

    def examples(self, node: str, n: int, seed: int) -> list[Draft]:
        """``n`` sampled examples for ``node``, parsed."""
        rng = random.Random(seed)
        prompts = [self.prompt(node, rng) for _ in range(n)]
        params = SamplingConfig(max_tokens=64, temperature=self.temperature, seed=seed % 2**31, stop=("\n",))
        return [parse(self.domain, node, c.text.strip()) for c in self.llm.generate(prompts, params)]


class TeacherScore(Record):
    """One teacher's calibration figures on one task (means over the task's prompts)."""

    quality: float
    """Share of responses that were correct as written."""
    learnability: float | None
    """Mean raw learnability (mean token log-likelihood) of its usable responses; ``None`` without any."""
    usable: float
    """Share of responses that became an example (verified, outside the evaluation partition)."""
    score: float
    """Mean normalized r = (1 - alpha) quality + alpha learnability."""
    wins: float
    """Share of the task's prompts on which this teacher had the highest r."""


class Route(Record):
    """The routing decision for one task."""

    task: str
    teacher: str
    scores: dict[str, TeacherScore]


def _minmax(values: Sequence[float]) -> list[float]:
    lo, hi = min(values), max(values)
    return [0.5] * len(values) if hi == lo else [(v - lo) / (hi - lo) for v in values]


def calibrate(
    writers: Mapping[str, Writer],
    signals: StudentSignals,
    tasks: Sequence[str],
    per_task: int,
    alpha: float,
    exclude: Container[str],
    seed: int,
) -> list[Route]:
    """Score every teacher on ``per_task`` parallel prompts per task and route each task to the best."""
    routes = []
    for t_index, task in enumerate(tasks):
        names = list(writers)
        responses = {
            n: writers[n].examples(task, per_task, derive_seed(seed, "calibrate", t_index, n)) for n in names
        }
        usable = {
            n: [
                d.completion is not None and d.problem is not None and d.problem.question not in exclude
                for d in responses[n]
            ]
            for n in names
        }
        learn: dict[str, list[float | None]] = {}
        for n in names:
            pairs = [
                (d.problem.question, d.completion)
                for d, ok in zip(responses[n], usable[n], strict=True)
                if ok and d.problem is not None and d.completion is not None
            ]
            values = iter(signals.learnability(pairs))
            learn[n] = [next(values) if ok else None for ok in usable[n]]
        r: dict[str, list[float]] = {n: [] for n in names}
        for i in range(per_task):
            quality = [float(usable[n][i] and responses[n][i].teacher_correct) for n in names]
            present = [v for n in names if (v := learn[n][i]) is not None]
            floor = min(present) if present else 0.0
            learned = [v if (v := learn[n][i]) is not None else floor for n in names]
            for n, q, lv in zip(names, _minmax(quality), _minmax(learned), strict=True):
                r[n].append((1 - alpha) * q + alpha * lv)
        wins = {
            n: sum(r[n][i] == max(r[m][i] for m in names) for i in range(per_task)) / per_task for n in names
        }
        scores = {
            n: TeacherScore(
                quality=sum(u and d.teacher_correct for u, d in zip(usable[n], responses[n], strict=True))
                / per_task,
                learnability=_mean([v for v in learn[n] if v is not None]),
                usable=sum(usable[n]) / per_task,
                score=sum(r[n]) / per_task,
                wins=wins[n],
            )
            for n in names
        }
        best = max(names, key=lambda n: scores[n].score)
        routes.append(Route(task=task, teacher=best, scores=scores))
        log.info(
            "PerSyn: task %s -> %s (%s)",
            task,
            best,
            ", ".join(f"{n} {s.score:.2f}" for n, s in scores.items()),
        )
    return routes


def _mean(values: Sequence[float]) -> float | None:
    return sum(values) / len(values) if values else None


class RoutedEngine:
    """Implements ``tutorkd.protocols.Engine``: each plan item goes to its task's routed engine.

    Engines run one after another, each avoiding the questions the earlier ones drew; the merged
    examples are renumbered ``{run_id}/r{round}/{index:06d}``."""

    name = "persyn"

    def __init__(self, routes: Mapping[str, str], engines: Mapping[str, CharTeacherEngine]) -> None:
        self.routes, self.engines = dict(routes), dict(engines)
        self.last_stats = GenerationStats()
        """The routed engines' drop counts of the last ``generate``, summed."""

    def generate(self, plan: Plan, context: GenerationContext) -> list[Example]:
        """The examples ``plan`` asks for, each from the engine its skill is routed to."""
        drawn: set[str] = set()
        merged: list[Example] = []
        self.last_stats = GenerationStats()
        for index, item in enumerate(plan.items):
            if item.skill_id not in self.routes:
                raise ValueError(
                    f"plan item for {item.skill_id!r}: no route; routed tasks are {sorted(self.routes)}"
                )
            engine = self.engines[self.routes[item.skill_id]]
            sub = context.model_copy(
                update={
                    "avoid": context.avoid | frozenset(drawn),
                    "seed": derive_seed(context.seed, "route", index),
                }
            )
            for ex in engine.generate(Plan(items=(item,)), sub):
                drawn.add(ex.problem.question)
                merged.append(
                    ex.model_copy(update={"id": f"{context.run_id}/r{context.round}/{len(merged):06d}"})
                )
            self.last_stats = self.last_stats.plus(engine.last_stats)
        return merged
