"""The processes of a launched LoRA training (``tutorkd.students.distributed``), in two roles:

- ``python -m tutorkd.students.lora_worker launch PARENT_PID ARGS...``: the group's leader. It asks the
  kernel for SIGTERM when the loop's process dies, then becomes ``accelerate launch ARGS...`` (an exec,
  so the setting holds): a loop killed mid-training leaves no ranks training on.
- ``python -m tutorkd.students.lora_worker JOB.json``: one rank, started by that launcher and killed
  when it dies (torchrun puts each rank in a session of its own, out of the launcher's group). It
  builds the trainer the in-process training builds (``lora.lora_trainer``) with its share of the
  global batch and trains; DDP (or DeepSpeed) keeps the ranks' weights equal. Rank 0 alone writes: a
  line per logged step to the job's ``steps_file`` (the parent's progress bar), then the adapter and
  ``stats.json`` (steps and the loss of each) into the job's staging folder ``out``.

``TUTORKD_TEST_FAIL_RANK=<rank>`` makes that rank raise after its first optimizer step, to test how a
crashed rank is handled; it is honoured only under pytest (``PYTEST_CURRENT_TEST`` set).
"""

from __future__ import annotations

import ctypes
import json
import os
import shutil
import signal
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tutorkd.config import HFStudentConfig, TinyStudentConfig
from tutorkd.students.lora import labelled_positions_only, lora_trainer
from tutorkd.students.pretrain import torch_threads

if TYPE_CHECKING:
    from transformers import TrainerCallback

PR_SET_PDEATHSIG = 1
"""``prctl`` option: the signal this process gets when its parent dies (Linux)."""
FAIL_RANK_ENV = "TUTORKD_TEST_FAIL_RANK"


def launch(parent_pid: int, args: list[str]) -> None:
    """Become ``accelerate launch args`` with SIGTERM due when ``parent_pid`` (the loop) dies: torchrun
    then stops its ranks."""
    die_with_parent(signal.SIGTERM, parent_pid)
    os.execv(sys.executable, [sys.executable, "-m", "accelerate.commands.launch", *args])


def die_with_parent(sig: signal.Signals, parent_pid: int | None = None) -> None:
    """Have the kernel send ``sig`` to this process when its parent dies (Linux; it holds across
    ``exec``); with ``parent_pid``, exit at once if that parent is already gone."""
    if not sys.platform.startswith("linux"):
        return
    if ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, sig) != 0:
        print(f"tutorkd: prctl(PR_SET_PDEATHSIG) failed (errno {ctypes.get_errno()}): this process outlives "
              "its parent", file=sys.stderr, flush=True)
    if parent_pid is not None and os.getppid() != parent_pid:  # Why: it died before the setting took effect
        sys.exit(f"the process that started this one ({parent_pid}) is gone; not starting")


def train_rank(job_file: Path) -> None:
    """Run this rank's part of the job in ``job_file``."""
    # Why: torchrun starts each rank in a session of its own, out of reach of the loop's kill of the
    # launcher's group; a launcher that dies (even by SIGKILL) must take its ranks with it.
    die_with_parent(signal.SIGKILL)
    job = json.loads(job_file.read_text())
    kinds: dict[str, Any] = {"tiny": TinyStudentConfig, "hf": HFStudentConfig}
    cfg = kinds[job["student"]["kind"]].model_validate(job["student"])
    out = Path(job["out"])
    with torch_threads(job["threads"]):
        trainer = lora_trainer(job["base_dir"], [tuple(p) for p in job["pairs"]], out / "trainer", cfg,
                               init_adapter=job["init_adapter"], seed=job["seed"],
                               max_length=job["max_length"], device=job["device"],
                               batch_size=job["batch_size"])
        trainer.add_callback(_report(Path(job["steps_file"]), trainer.args.process_index))
        with labelled_positions_only():
            trainer.train()
        # Why save_model, on every rank: it gathers ZeRO-3 shards (a collective) and writes on rank 0 only.
        trainer.save_model(str(out / "saved"))
    if trainer.is_world_process_zero():
        _keep_adapter(out / "saved", out / "adapter")
        losses = [float(h["loss"]) for h in trainer.state.log_history if "loss" in h]
        (out / "stats.json").write_text(json.dumps({"steps": trainer.state.global_step, "losses": losses}))


def _keep_adapter(saved: Path, adapter: Path) -> None:
    """Move the adapter's files from the trainer's ``saved`` folder to ``adapter``: what the in-process
    training's ``save_pretrained`` writes, without the tokenizer and training arguments ``save_model``
    adds (a tokenizer in an adapter folder is one vLLM may load for it)."""
    adapter.mkdir()
    for path in saved.iterdir():
        if path.name.startswith("adapter_") or path.name == "README.md":
            path.rename(adapter / path.name)
    shutil.rmtree(saved)


def _report(steps_file: Path, rank: int) -> TrainerCallback:
    """A callback appending rank 0's step count and losses to ``steps_file``, one JSON line each; on the
    rank ``FAIL_RANK_ENV`` names (under pytest), a failure after the first step."""
    from transformers import TrainerCallback

    fail = os.environ.get(FAIL_RANK_ENV) == str(rank) and "PYTEST_CURRENT_TEST" in os.environ

    class Report(TrainerCallback):
        def _write(self, entry: dict) -> None:
            if rank == 0:
                with steps_file.open("a") as f:
                    f.write(json.dumps(entry) + "\n")

        def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            """The step count, known from here on."""
            self._write({"max_steps": state.max_steps})

        def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            """Fail on purpose where a test asks for it."""
            if fail:
                raise RuntimeError(f"rank {rank} fails on purpose ({FAIL_RANK_ENV}={rank})")

        def on_log(self, args: Any, state: Any, control: Any, logs: dict | None = None,
                   **kwargs: Any) -> None:
            """One optimizer step's loss."""
            if logs and "loss" in logs:
                self._write({"step": state.global_step, "loss": float(logs["loss"])})

    return Report()


def main(argv: list[str]) -> None:
    """Dispatch on the role (see the module docstring)."""
    if argv[:1] == ["launch"]:
        launch(int(argv[1]), argv[2:])
    elif len(argv) == 1:
        train_rank(Path(argv[0]))
        # Why exit here, skipping the interpreter's and C++'s teardown: a gloo rank that finished (rank 0's
        # files written and closed) aborted in that teardown ("terminate called without an active
        # exception", SIGABRT; seen in two fresh-clone test runs), and the launcher then reported the
        # whole training failed. Leaving the group with a barrier first would wait on a rank that died.
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)
    else:
        sys.exit("usage: python -m tutorkd.students.lora_worker (launch PARENT_PID ARGS... | JOB.json)")


if __name__ == "__main__":
    main(sys.argv[1:])
