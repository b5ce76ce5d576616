"""Fine-tune a LoRA adapter on (prompt, completion) pairs with TRL's ``SFTTrainer`` on the CPU.

The adapter is vLLM-servable by construction: plain LoRA on every linear layer, no DoRA and no
``modules_to_save`` (vLLM rejects both); the tokenizer already has a chat template and all its
tokens, so TRL never adds any (which would silently put ``lm_head`` into ``modules_to_save``).
"""

from __future__ import annotations

import contextlib
import json
import logging
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from tutorkd import progress
from tutorkd.config import HFStudentConfig, TinyStudentConfig
from tutorkd.io import staging_dir
from tutorkd.schema import TrainStats
from tutorkd.students.pretrain import MAX_LENGTH, torch_threads

if TYPE_CHECKING:
    import torch
    from transformers import TrainerCallback
    from trl import SFTTrainer

log = logging.getLogger(__name__)


@contextlib.contextmanager
def labelled_positions_only() -> Iterator[None]:
    """While it is open, TRL's fused LM head projects only the positions that carry a label, on the CPU
    too; wrap a LoRA trainer's ``train()`` in it.

    TRL 1.16's fused head (``trl.trainer.utils.add_fused_lm_head``) scores every position of a batch,
    prompt tokens included, on devices without Triton, and zeroes the ignored ones afterwards; the
    reason it gives is recompilation on Neuron, which eager CPU training does not have. With the loss on
    completions only that is most of the LM head's work: SmolLM2's 49 152-token head over 3 format
    examples of prompt per 8-token completion took 11.5 s of a 2-step training's 25.4 s. Scoring the
    labelled rows alone runs the same per-row computation (the tiles fold each row on its own), and the
    losses and saved adapters come out bit-identical (``tests/test_students.py``). Only the decision in
    ``trl.trainer.utils`` changes; the kernel's own Triton check is untouched, so the CPU keeps its torch
    fold. TRL is pinned in ``pyproject.toml``; a TRL without ``_use_triton`` fails here, loudly.
    """
    from trl.trainer import utils as trl_utils

    triton_decides = trl_utils._use_triton

    def compact(device: torch.device) -> bool:
        return device.type == "cpu" or triton_decides(device)

    trl_utils._use_triton = compact
    try:
        yield
    finally:
        trl_utils._use_triton = triton_decides


def trainer_args(
    output_dir: Path,
    *,
    cuda: bool,
    learning_rate: float,
    epochs: int,
    batch_size: int,
    seed: int,
    max_length: int,
) -> dict[str, Any]:
    """Keyword arguments shared by this package's TRL trainer configs (``SFTConfig`` for LoRA here,
    ``DPOConfig`` for the ARTE teacher); each caller adds its method's own.

    On the CPU unless ``cuda`` (then bf16 autocast); the seed also fixes the data order; a loss is
    logged every step (callers read the losses back from the trainer's log history), but nothing is
    reported, saved or drawn as a tqdm bar, since a teaching loop runs many short trainings and shows
    its own progress (``report_steps``).
    """
    return {
        "output_dir": str(output_dir),
        "use_cpu": not cuda,
        "bf16": cuda,
        "gradient_checkpointing": False,
        "report_to": "none",
        "learning_rate": learning_rate,
        "num_train_epochs": epochs,
        "per_device_train_batch_size": batch_size,
        "seed": seed,
        "data_seed": seed,
        "max_length": max_length,
        "logging_steps": 1,
        "save_strategy": "no",
        "disable_tqdm": True,
        "dataloader_num_workers": 0,
    }


def report_steps(bar: progress.Bar) -> TrainerCallback:
    """A trainer callback that shows the trainer's optimizer steps on ``bar`` (its total set when
    training begins), with the last logged loss as its note. It only observes: it changes no
    ``TrainerControl``."""
    from transformers import TrainerCallback, TrainerControl, TrainerState, TrainingArguments

    class ReportSteps(TrainerCallback):
        def on_train_begin(self, args: TrainingArguments, state: TrainerState, control: TrainerControl,
                           **kwargs: Any) -> None:
            """The bar's total: the trainer's step count, known from here on."""
            bar.set_total(state.max_steps)

        def on_step_end(self, args: TrainingArguments, state: TrainerState, control: TrainerControl,
                        **kwargs: Any) -> None:
            """One optimizer step done."""
            bar.advance()

        def on_log(self, args: TrainingArguments, state: TrainerState, control: TrainerControl,
                   logs: dict[str, float] | None = None, **kwargs: Any) -> None:
            """Show the last logged loss (a step's loss is logged after its ``on_step_end``)."""
            if logs and "loss" in logs:
                bar.advance(0, note=f"loss {logs['loss']:.3f}")

    return ReportSteps()


def train_lora(
    base_dir: str | Path,
    pairs: Sequence[tuple[str, str]],
    out_dir: str | Path,
    cfg: TinyStudentConfig | HFStudentConfig,
    init_adapter: str | Path | None = None,
    seed: int = 0,
    max_length: int = MAX_LENGTH,
    device: Literal["cpu", "cuda"] = "cpu",
    launch_dir: str | Path | None = None,
) -> TrainStats:
    """Train an adapter on ``pairs`` (loss on completions only) and save it to ``out_dir``.

    ``init_adapter`` continues training an existing adapter instead of starting a fresh one of rank
    ``cfg.lora_rank``. ``max_length`` caps a training sequence in tokens; ``device="cuda"`` trains on
    the GPU with bf16 autocast (the weights stay float32, as LoRA training wants). The adapter is
    written to a temporary folder and renamed to ``out_dir`` once complete; ``out_dir`` must not exist
    yet (an adapter's weights never change under its path). Loading and training show as one
    ``tutorkd.progress`` task, advanced per optimizer step.

    With ``cfg.train_processes`` > 1 (or DeepSpeed) the training runs in processes of its own, launched
    through ``accelerate launch`` (``tutorkd.students.distributed``); its config, job and log go to
    ``launch_dir`` (default: ``.launch-<name>`` beside ``out_dir``).
    """
    if not pairs:
        raise ValueError("no training pairs; a LoRA needs at least one (prompt, completion)")
    if cfg.launched:
        from tutorkd.students.distributed import train_lora_launched

        out_dir = Path(out_dir)
        return train_lora_launched(base_dir, pairs, out_dir, cfg, init_adapter=init_adapter, seed=seed,
                                   max_length=max_length, device=device,
                                   launch_dir=launch_dir or out_dir.with_name(f".launch-{out_dir.name}"))
    started = time.monotonic()
    task = progress.task(f"training a LoRA adapter on {len(pairs)} examples")
    with staging_dir(Path(out_dir), "adapter") as tmp, task as bar:
        with torch_threads():
            trainer = lora_trainer(base_dir, pairs, tmp / "trainer", cfg, init_adapter=init_adapter,
                                   seed=seed, max_length=max_length, device=device)
            trainer.add_callback(report_steps(bar))
            with labelled_positions_only():
                trainer.train()
            trainer.model.save_pretrained(tmp / "adapter")
        check_servable(tmp / "adapter")
        (tmp / "adapter").rename(out_dir)
    losses = tuple(float(h["loss"]) for h in trainer.state.log_history if "loss" in h)
    return train_stats(len(pairs), trainer.state.global_step, time.monotonic() - started, losses)


def lora_trainer(
    base_dir: str | Path,
    pairs: Sequence[tuple[str, str]],
    output_dir: Path,
    cfg: TinyStudentConfig | HFStudentConfig,
    *,
    init_adapter: str | Path | None,
    seed: int,
    max_length: int,
    device: Literal["cpu", "cuda"],
    batch_size: int | None = None,
) -> SFTTrainer:
    """The TRL ``SFTTrainer`` of one LoRA training, ready to ``train()``: the base in ``base_dir`` with a
    fresh adapter (or ``init_adapter``), ``pairs`` as its dataset, no printing callback.

    ``batch_size`` is the per-process batch (default ``cfg.batch_size``: one process). The same for the
    in-process training and each rank of a launched one (``tutorkd.students.lora_worker``), so the two
    differ only in how the batch is split.
    """
    import datasets
    import torch
    from peft import LoraConfig, PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer, PrinterCallback, set_seed
    from trl import SFTConfig, SFTTrainer

    # Why seed here: PEFT draws the fresh adapter's initial weights before the trainer seeds.
    set_seed(seed)
    tokenizer = AutoTokenizer.from_pretrained(base_dir)
    model = AutoModelForCausalLM.from_pretrained(base_dir, dtype=torch.float32)
    peft_config = None
    if init_adapter is not None:
        model = PeftModel.from_pretrained(model, str(init_adapter), is_trainable=True)
    else:
        peft_config = LoraConfig(
            r=cfg.lora_rank,
            lora_alpha=cfg.lora_alpha,
            lora_dropout=0.0,
            target_modules="all-linear",
            modules_to_save=None,
            use_dora=False,
            task_type="CAUSAL_LM",
        )
    dataset = datasets.Dataset.from_dict(
        {"prompt": [p for p, _ in pairs], "completion": [c for _, c in pairs]}
    )
    args = SFTConfig(
        **trainer_args(
            output_dir,
            cuda=device == "cuda",
            learning_rate=cfg.learning_rate,
            epochs=cfg.epochs,
            batch_size=cfg.batch_size if batch_size is None else batch_size,
            seed=seed,
            max_length=max_length,
        ),
        completion_only_loss=True,
        # Why: every LoRA weight takes part in each forward pass, so DDP's search for unused ones (its
        # default without gradient checkpointing) would only cost a graph traversal per step.
        ddp_find_unused_parameters=False,
    )
    # Why: one progress bar per dataset pass is noise inside a teaching loop's own progress.
    datasets.disable_progress_bars()
    trainer = SFTTrainer(
        model=model,
        args=args,
        train_dataset=dataset,
        processing_class=tokenizer,
        peft_config=peft_config,
    )
    trainer.remove_callback(PrinterCallback)
    return trainer


def train_stats(examples: int, steps: int, seconds: float, losses: Sequence[float]) -> TrainStats:
    """The ``TrainStats`` of a finished training (``losses``: one per optimizer step), logged."""
    if not losses:
        raise RuntimeError(f"the trainer logged no loss in {steps} steps on {examples} examples")
    stats = TrainStats(examples=examples, steps=steps, seconds=seconds, first_loss=losses[0],
                       last_loss=losses[-1], losses=tuple(losses))
    log.info(
        "LoRA trained on %d pairs: %d steps in %.1f s, loss %.3f -> %.3f",
        stats.examples,
        stats.steps,
        stats.seconds,
        stats.first_loss,
        stats.last_loss,
    )
    return stats


def check_servable(adapter_dir: Path) -> None:
    """Raise unless the saved adapter is plain LoRA that vLLM can load."""
    config = json.loads((adapter_dir / "adapter_config.json").read_text())
    if config.get("modules_to_save") or config.get("use_dora") or config.get("trainable_token_indices"):
        raise RuntimeError(
            f"adapter in {adapter_dir} has modules_to_save/DoRA/trainable tokens, which vLLM cannot serve: "
            f"modules_to_save={config.get('modules_to_save')}, use_dora={config.get('use_dora')}"
        )
