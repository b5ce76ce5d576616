"""The dataset card of a generated dataset: for whom, from which teacher, selected how, checked how."""

from __future__ import annotations

from collections import Counter

from tutorkd.agents.arte.char_lm_engine import TeacherDistribution
from tutorkd.agents.arte.dpo import AlignStats
from tutorkd.agents.persyn.teacher import Route
from tutorkd.schema import Record


class DatasetCard(Record):
    """What a generated dataset is: for whom, from which teacher, selected how, checked how."""

    name: str
    method: str
    seed: int
    student: str
    """The student the data is tailored to: its base (content hash) and adapter, if any."""
    student_base: str
    """Folder of the student's pretrained base (weights and tokenizer)."""
    teacher: str
    selection: str
    """How the data was selected for this student, in words."""
    size_requested: int
    size: int
    verification: dict[str, int]
    """Rejections of the verification filter by reason (``duplicate`` is the deduplication figure)."""
    generation: dict[str, int]
    """Drafts the engine dropped before verification, by reason (malformed, off-skill, evaluation
    partition, duplicate), where the engine reports them."""
    eval_overlap: int
    """Kept examples whose question is a held-out question: 0 by construction, checked again here."""
    distribution: TeacherDistribution
    routes: tuple[Route, ...] = ()
    align: AlignStats | None = None
    preference_pairs: int = 0


def render_card(card: DatasetCard) -> str:
    """The dataset card as Markdown."""
    magnitude = card.distribution.mean_magnitude
    skills = Counter({s: round(v * card.size) for s, v in card.distribution.skill_mix.items()})
    lines = [
        f"# {card.name} (seed {card.seed})",
        "",
        f"Training data tailored to one student by `tutorkd generate` (method **{card.method}**).",
        "",
        f"- **student**: {card.student}",
        f"- **teacher**: {card.teacher}",
        f"- **selection**: {card.selection}",
        f"- **size**: {card.size} of {card.size_requested} requested",
        f"- **verification rejections**: {card.verification or 'none'} (answers and rationales are "
        "recomputed by the domain's solver; `duplicate` is deduplication)",
        f"- **dropped before verification**: {card.generation or 'none reported'}",
        f"- **overlap with held-out sets**: {card.eval_overlap} (all data is from outside the evaluation "
        "partition)",
        f"- **rationale share**: {card.distribution.rationale_share:.2f}"
        + (f"; operand size {magnitude:.2f} (0 lowest, 1 highest)" if magnitude is not None else ""),
        f"- **skills**: {', '.join(f'{s} {n}' for s, n in skills.items() if n)}",
        "",
        "Load: `datasets.load_from_disk('sft')` (prompt/completion, for TRL `SFTTrainer`)"
        + (
            "; `datasets.load_from_disk('preference')` (prompt/chosen/rejected, for `DPOTrainer`)."
            if card.preference_pairs
            else "."
        ),
    ]
    if card.align is not None:
        a = card.align
        lines += [
            "",
            f"Teacher DPO: {a.pairs} pairs ({a.question_pairs} question-level, {a.rationale_pairs} "
            f"rationale-level), {a.steps} steps, loss {a.loss[0]:.3f} -> {a.loss[-1]:.3f}, reward margin "
            f"{a.margins[0]:.3f} -> {a.margins[-1]:.3f}.",
        ]
    for r in card.routes:
        lines += [
            f"- route {r.task} -> {r.teacher} ("
            + ", ".join(f"{n}: r {s.score:.2f}, quality {s.quality:.2f}" for n, s in r.scores.items())
            + ")"
        ]
    return "\n".join(lines) + "\n"
