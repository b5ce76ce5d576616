"""A generator language model as an ``Engine``: plan items become sampled, verified, deduplicated examples.

``CharTeacherEngine`` prompts the teacher LM with each plan item's skill tag (a branch or a leaf), keeps
the drafts that parse into a question of that skill outside the excluded questions (the evaluation
partition, earlier rounds, this batch), and samples again until the item is full. Every rejection is
counted by reason (``GenerationStats``), never raised. ``TeacherDistribution`` summarises what a
teacher writes (styles, skill mix, operand sizes), to show how alignment moved it.
"""

from __future__ import annotations

import logging
import math
from collections import Counter
from collections.abc import Container, Sequence
from typing import Protocol

from tutorkd.agents.arte.char_lm import Draft, spots
from tutorkd.agents.baselines.procedural import _AnyOf, derive_seed
from tutorkd.environments.arithmetic import ArithmeticDomain
from tutorkd.environments.heldout import normalize
from tutorkd.protocols import GenerationContext
from tutorkd.schema import Example, GeneratorParams, Plan, PlanItem, Provenance, Record, SkillTree

log = logging.getLogger(__name__)

MAX_TRIES = 8
"""Sampling passes per plan item before it is left short (with a warning)."""


class GenerationStats(Record):
    """What happened to the drafts of one ``generate`` call, by reason."""

    sampled: int = 0
    malformed: int = 0
    off_skill: int = 0
    eval_partition: int = 0
    """Questions in the excluded set (the evaluation partition): never training data."""
    duplicate: int = 0
    surplus: int = 0
    """Usable drafts beyond what the item asked for."""
    kept: int = 0
    teacher_correct: int = 0
    """Kept drafts whose solution the teacher itself wrote exactly right (the rest were recomputed)."""

    def plus(self, other: GenerationStats) -> GenerationStats:
        """Field-wise sum."""
        return GenerationStats(
            **{k: getattr(self, k) + getattr(other, k) for k in GenerationStats.model_fields}
        )


class Writer(Protocol):
    """A generator model that writes whole examples for a skill tag (``CharTeacherLM``, ``LLMWriter``)."""

    name: str
    """Model id recorded in each example's provenance."""
    temperature: float
    domain: ArithmeticDomain

    def examples(self, node: str, n: int, seed: int) -> list[Draft]:
        """``n`` sampled examples for skill-tree node ``node``, parsed (unusable ones with the reason)."""
        ...


class CharTeacherEngine:
    """Implements ``tutorkd.protocols.Engine`` with a ``Writer`` (which picks each example's style)."""

    name = "teacher_lm"

    def __init__(
        self,
        teacher: Writer,
        exclude: Container[str] = frozenset(),
        oversample: float = 2.5,
        name: str = "teacher_lm",
    ) -> None:
        self.teacher, self.exclude, self.oversample, self.name = teacher, exclude, oversample, name
        self.last_stats = GenerationStats()

    def generate(self, plan: Plan, context: GenerationContext) -> list[Example]:
        """The examples ``plan`` asks for, ids ``{run_id}/r{round}/{index:06d}``; ``item.style`` is not
        used: which style serves the student is what the teacher decides (and what ARTE aligns)."""
        drawn: set[str] = set()
        exclude = _AnyOf(self.exclude, context.avoid)
        examples: list[Example] = []
        total = GenerationStats()
        for index, item in enumerate(plan.items):
            if item.skill_id is None:
                raise ValueError(f"plan item {item!r}: the teacher LM is prompted with a skill; set skill_id")
            kept, stats = self._fill(item, derive_seed(context.seed, context.round, index), exclude, drawn)
            total = total.plus(stats)
            if len(kept) < item.count:
                log.warning(
                    "plan item %d (%s): made %d of %d examples in %d passes",
                    index,
                    item.skill_id,
                    len(kept),
                    item.count,
                    MAX_TRIES,
                )
            for draft, seed in kept:
                examples.append(self._example(draft, seed, len(examples), context))
        self.last_stats = total
        log.info("teacher LM %s: %s", self.teacher.name, total)
        return examples

    def _fill(
        self, item: PlanItem, seed: int, exclude: Container[str], drawn: set[str]
    ) -> tuple[list[tuple[Draft, int]], GenerationStats]:
        kept: list[tuple[Draft, int]] = []
        counts: Counter[str] = Counter()
        for attempt in range(MAX_TRIES):
            need = item.count - len(kept)
            if need <= 0:
                break
            pass_seed = derive_seed(seed, attempt)
            drafts = self.teacher.examples(item.skill_id, math.ceil(need * self.oversample) + 4, pass_seed)
            counts["sampled"] += len(drafts)
            for d in drafts:
                if d.problem is None:
                    counts[d.reject or "malformed"] += 1
                elif d.problem.question in exclude:
                    counts["eval_partition" if d.problem.question in self.exclude else "duplicate"] += 1
                elif normalize(d.problem.question) in drawn:
                    counts["duplicate"] += 1
                elif len(kept) >= item.count:
                    counts["surplus"] += 1
                else:
                    drawn.add(normalize(d.problem.question))
                    kept.append((d, pass_seed))
                    counts["kept"] += 1
                    counts["teacher_correct"] += d.teacher_correct
        return kept, GenerationStats(**counts)

    def _example(self, draft: Draft, seed: int, index: int, context: GenerationContext) -> Example:
        problem, domain = draft.problem, self.teacher.domain
        if problem is None or draft.style is None or draft.completion is None:
            raise ValueError(f"draft {draft.text!r} is unusable ({draft.reject})")
        generator = GeneratorParams(
            engine=self.name,
            seed=seed,
            style=draft.style,
            model=self.teacher.name,
            temperature=self.teacher.temperature,
        )
        return Example(
            id=f"{context.run_id}/r{context.round}/{index:06d}",
            problem=problem,
            prompt=domain.prompt(problem),
            completion=draft.completion,
            provenance=Provenance(
                run_id=context.run_id,
                round=context.round,
                teacher=context.teacher,
                skill_id=problem.skill_ids[0],
                generator=generator,
            ),
        )


def leaf_plan(plan: Plan, tree: SkillTree) -> Plan:
    """``plan`` with every branch item split evenly over the branch's leaves (for leaf-only engines)."""
    from tutorkd.agents.baselines.policies import even_split

    items = []
    for item in plan.items:
        leaves = tree.leaves_under(item.skill_id) if item.skill_id is not None else [None]
        for leaf, count in zip(leaves, even_split(item.count, len(leaves)), strict=True):
            if count:
                items.append(item.model_copy(update={"skill_id": leaf, "count": count}))
    return Plan(items=tuple(items), reasoning=plan.reasoning)


class TeacherDistribution(Record):
    """What a set of examples looks like: style shares, leaf-skill mix, operand sizes."""

    n: int
    rationale_share: float
    skill_mix: dict[str, float]
    """Leaf skill id to its share of the examples."""
    mean_magnitude: float | None
    """Mean position of the operands in their range (0 lowest, 1 highest; see ``char_lm.magnitude``),
    over the examples with a multi-digit number (``None``: none has one)."""
    small_share: float | None
    """Share of those whose operands are all in the lower half of their range."""
    large_share: float | None


def distribution(examples: Sequence[Example], leaves: Sequence[str]) -> TeacherDistribution:
    """The ``TeacherDistribution`` of ``examples``."""
    if not examples:
        raise ValueError("no examples to describe")
    n = len(examples)
    skills = Counter(ex.provenance.skill_id for ex in examples)
    # Why only questions with a multi-digit number: magnitude is an arithmetic notion (where operands sit
    # in their range); a word problem with small numbers, or none, has no magnitude to average.
    where = [w for ex in examples if (w := spots(ex.problem.question))]
    sized = len(where)
    return TeacherDistribution(
        n=n,
        rationale_share=sum(ex.provenance.generator.style == "rationale" for ex in examples) / n,
        skill_mix={s: skills[s] / n for s in leaves},
        mean_magnitude=sum(sum(w) / len(w) for w in where) / sized if sized else None,
        small_share=sum(all(s < 0.5 for s in w) for w in where) / sized if sized else None,
        large_share=sum(all(s >= 0.5 for s in w) for w in where) / sized if sized else None,
    )
