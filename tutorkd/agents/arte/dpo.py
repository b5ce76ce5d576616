"""Align a teacher LM with preference pairs: TRL's ``DPOTrainer``, full fine-tune against a frozen copy.

The teacher is tiny (about 1 M parameters), so the reference is simply a second copy loaded from the
same folder; on GPUs the same call takes any Hugging Face causal LM folder.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

from tutorkd import progress
from tutorkd.config import AlignConfig
from tutorkd.io import staging_dir
from tutorkd.schema import Record

log = logging.getLogger(__name__)


class PreferencePair(Record):
    """One DPO pair for the teacher, in TRL's prompt/chosen/rejected form."""

    level: Literal["question", "rationale"]
    task: str
    prompt: str
    chosen: str
    rejected: str
    margin: float
    """ŝ(chosen) - ŝ(rejected)."""


class AlignStats(Record):
    """The DPO run: per logged step, loss and the reward statistics TRL reports."""

    pairs: int
    question_pairs: int
    rationale_pairs: int
    steps: int
    seconds: float
    loss: tuple[float, ...]
    margins: tuple[float, ...]
    """``rewards/margins``: beta x (policy - reference) log-ratio of chosen minus that of rejected."""
    accuracies: tuple[float, ...]
    chosen_rewards: tuple[float, ...]
    rejected_rewards: tuple[float, ...]


def align_teacher(
    teacher_dir: str | Path, pairs: Sequence[PreferencePair], cfg: AlignConfig, out_dir: str | Path, seed: int
) -> AlignStats:
    """DPO the teacher in ``teacher_dir`` on ``pairs`` (TRL ``DPOTrainer``) and save it to ``out_dir``."""
    import datasets
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, PrinterCallback
    from trl import DPOConfig, DPOTrainer

    from tutorkd.students.lora import report_steps, trainer_args
    from tutorkd.students.pretrain import MAX_LENGTH, torch_threads

    if not pairs:
        raise ValueError("no preference pairs: the student preferred no draft over another")
    started = time.monotonic()
    with staging_dir(Path(out_dir), "aligned teacher") as tmp:
        with torch_threads():
            tokenizer = AutoTokenizer.from_pretrained(teacher_dir)
            model = AutoModelForCausalLM.from_pretrained(teacher_dir, dtype=torch.float32)
            ref = AutoModelForCausalLM.from_pretrained(teacher_dir, dtype=torch.float32)
            data = datasets.Dataset.from_dict(
                {
                    "prompt": [p.prompt for p in pairs],
                    "chosen": [p.chosen for p in pairs],
                    "rejected": [p.rejected for p in pairs],
                }
            )
            args = DPOConfig(
                **trainer_args(
                    tmp / "trainer",
                    # Why: on a GPU the same call aligns a real teacher, with bf16 autocast.
                    cuda=torch.cuda.is_available(),
                    learning_rate=cfg.learning_rate,
                    epochs=cfg.epochs,
                    batch_size=cfg.batch_size,
                    seed=seed,
                    max_length=MAX_LENGTH,
                ),
                beta=cfg.beta,
                warmup_steps=cfg.warmup_ratio,
                lr_scheduler_type="cosine",
            )
            datasets.disable_progress_bars()
            trainer = DPOTrainer(
                model=model, ref_model=ref, args=args, train_dataset=data, processing_class=tokenizer
            )
            trainer.remove_callback(PrinterCallback)
            with progress.task(f"aligning the teacher LM (DPO, {len(pairs)} pairs)") as bar:
                trainer.add_callback(report_steps(bar))
                trainer.train()
            trainer.model.save_pretrained(tmp / "model")
            tokenizer.save_pretrained(tmp / "model")
        (tmp / "model").rename(out_dir)
    logs = [h for h in trainer.state.log_history if "loss" in h and "rewards/margins" in h]

    def series(key: str) -> tuple[float, ...]:
        return tuple(float(h[key]) for h in logs)

    stats = AlignStats(
        pairs=len(pairs),
        question_pairs=sum(p.level == "question" for p in pairs),
        rationale_pairs=sum(p.level == "rationale" for p in pairs),
        steps=trainer.state.global_step,
        seconds=time.monotonic() - started,
        loss=series("loss"),
        margins=series("rewards/margins"),
        accuracies=series("rewards/accuracies"),
        chosen_rewards=series("rewards/chosen"),
        rejected_rewards=series("rewards/rejected"),
    )
    log.info(
        "teacher DPO: %d pairs, %d steps, loss %.3f -> %.3f, margin %.3f -> %.3f",
        stats.pairs,
        stats.steps,
        stats.loss[0],
        stats.loss[-1],
        stats.margins[0],
        stats.margins[-1],
    )
    return stats
