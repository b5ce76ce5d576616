"""Synthetic validation feedback on the real arithmetic domain, shaped as ``TeachingEnv.feedback`` does,
and training examples as a procedural teacher writes them."""

from __future__ import annotations

import random
from collections.abc import Sequence

from tutorkd.environments.arithmetic import ArithmeticDomain
from tutorkd.protocols import Domain
from tutorkd.schema import Attempt, Example, Feedback, GeneratorParams, Problem, Provenance, StructureLevel


def training_examples(domain: Domain, problems: Sequence[Problem], style: str) -> list[Example]:
    """Round-1 examples of ``problems`` in ``domain``'s format and ``style``, with a procedural
    teacher's provenance (ids ``t/0``, ``t/1``, ...)."""
    generator = GeneratorParams(engine="procedural", seed=0, style=style)
    return [Example(id=f"t/{i}", problem=p, prompt=domain.prompt(p), completion=domain.completion(p, style),
                    provenance=Provenance(run_id="t", round=1, teacher="t", skill_id=p.skill_ids[0],
                                          generator=generator))
            for i, p in enumerate(problems)]


def attempts(
    domain: ArithmeticDomain, accuracy: dict[str, float], n: int = 20, seed: int = 0
) -> list[Attempt]:
    """``n`` validation attempts per skill, the first ``round(accuracy * n)`` right and the rest wrong."""
    rng = random.Random(seed)
    out = []
    for skill, acc in accuracy.items():
        for i, problem in enumerate(domain.sample(skill, n, rng)):
            output = domain.completion(problem, "direct") if i < round(acc * n) else "A:?"
            parsed, correct = domain.check(problem, output)
            out.append(Attempt(problem=problem, output=output, parsed_answer=parsed, correct=correct))
    return out


def feedback(
    domain: ArithmeticDomain,
    accuracy: dict[str, float],
    level: StructureLevel = StructureLevel.SKILL_TREE,
    round: int = 0,
    n: int = 20,
    used: int = 0,
    total: int = 100_000,
    seed: int = 0,
) -> Feedback:
    """Feedback on a student with ``accuracy`` per skill (other skills perfect) at ``level``."""
    full = {s: accuracy.get(s, 1.0) for s in domain.tree.leaves()}
    shown = attempts(domain, full, n, seed)
    errors = [a for a in shown if not a.correct]
    skill_accuracy = {s: sum(a.correct for a in shown if a.problem.skill_ids == (s,)) / n for s in full}
    if level is StructureLevel.OPEN_ENDED:
        errors = [a.model_copy(update={"problem": a.problem.model_copy(
            update={"skill_ids": (), "id": f"arithmetic:{a.problem.question}"})}) for a in errors]
    tree = domain.tree if level is StructureLevel.SKILL_TREE else None
    nodes = None
    if tree is not None:
        nodes = {b: sum(skill_accuracy[s] for s in tree.leaves_under(b)) / len(tree.leaves_under(b))
                 for b in tree.children(None)}
    return Feedback(
        level=level,
        round=round,
        errors=tuple(errors),
        skill_accuracy=None if level is StructureLevel.OPEN_ENDED else skill_accuracy,
        node_accuracy=nodes,
        tree=tree,
        budget_used=used,
        budget_total=total,
    )
