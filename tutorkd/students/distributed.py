"""LoRA training as a process group of its own: one training step launched through ``accelerate launch``.

The loop stays one process; only ``train_lora`` with ``train_processes`` > 1 (or DeepSpeed) comes here.
It writes the job (pairs and training arguments) and an accelerate config into ``launch_dir``, starts
``accelerate launch --config_file accelerate.yaml -m tutorkd.students.lora_worker job.json`` in a session
of its own, and waits. Every rank builds the trainer the in-process training builds
(``lora.lora_trainer``) with ``batch_size / processes`` examples per step, so the global batch is the
same and DDP averages the gradients. Rank 0 saves the adapter and ``stats.json`` into a staging folder
beside the adapter's, which is renamed into place only once the launcher has exited 0. Any rank that
fails makes the launcher exit non-zero: what is left of the group is killed, the staging folder removed,
and a ``RuntimeError`` names the log (``launch_dir/train.log``), so the loop's train node fails with no
adapter written and the run resumes from there.

What accelerate 1.16 needs (read from its ``commands/launch.py``, ``utils/launch.py`` and ``state.py``):
``distributed_type: MULTI_CPU`` launches through ``mpirun`` only (without an ``mpirun_hostfile`` its
simple launcher starts a single process), whereas the torchrun launcher behind ``MULTI_GPU`` starts the
ranks anywhere, and a rank whose ``TrainingArguments`` say ``use_cpu`` makes accelerate pick
``MULTI_CPU`` with the gloo backend (NCCL on GPUs). So the CPU config says ``MULTI_GPU`` with
``use_cpu: true``; ``deepspeed_zero`` makes it ``DEEPSPEED`` with a ``deepspeed_config``: a config
switch, the worker is the same.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import yaml

import tutorkd
from tutorkd import progress
from tutorkd.config import HFStudentConfig, TinyStudentConfig
from tutorkd.io import staging_dir
from tutorkd.schema import TrainStats
from tutorkd.students.lora import check_servable, train_stats

log = logging.getLogger(__name__)

RANK_ERROR = re.compile(r"^\[rank\d+\]: \w*(Error|Exception|Interrupt)\b")
"""The line ending a rank's traceback in the launcher's output (torchrun prefixes each rank's lines)."""

POLL_S = 1.0
"""How often the parent looks at the ranks' step file (the progress bar) while it waits."""
STOP_GRACE_S = 10.0
"""How long a launcher told to stop (SIGTERM: torchrun stops its ranks) gets before SIGKILL."""
RANK_ENV = ("RANK", "LOCAL_RANK", "WORLD_SIZE", "LOCAL_WORLD_SIZE", "GROUP_RANK", "ROLE_RANK",
            "MASTER_ADDR", "MASTER_PORT", "TORCHELASTIC_RUN_ID")
"""Variables a launcher sets for its ranks: dropped from the launched group's environment, so a loop
that itself runs under a launcher starts a fresh group rather than joining its own."""


def accelerate_config(processes: int, device: Literal["cpu", "cuda"],
                      zero_stage: int | None) -> dict[str, Any]:
    """The ``accelerate launch`` config of a training in ``processes`` ranks on ``device``, with DeepSpeed
    ZeRO ``zero_stage`` when not ``None`` (GPUs only; see the module notes on ``MULTI_GPU`` for the CPU)."""
    cpu = device == "cpu"
    config: dict[str, Any] = {
        "compute_environment": "LOCAL_MACHINE",
        "distributed_type": "MULTI_GPU" if zero_stage is None else "DEEPSPEED",
        "num_processes": processes,
        "num_machines": 1,
        "machine_rank": 0,
        "main_process_port": 0,  # Why 0: a free port, so two runs on one machine never collide on 29500
        "gpu_ids": "all",
        "use_cpu": cpu,
        "mixed_precision": "no" if cpu else "bf16",  # as trainer_args: bf16 autocast on CUDA only
    }
    if zero_stage is not None:
        if cpu:
            raise ValueError("DeepSpeed ZeRO trains on GPUs only; drop deepspeed_zero or train on CUDA")
        config["deepspeed_config"] = {
            "zero_stage": zero_stage,
            "gradient_accumulation_steps": 1,
            "offload_optimizer_device": "none",
            "offload_param_device": "none",
            "zero3_init_flag": False,
            # Why: under ZeRO-3 the adapter can only be saved from weights gathered onto rank 0.
            "zero3_save_16bit_model": zero_stage == 3,
        }
    return config


def train_lora_launched(
    base_dir: str | Path,
    pairs: Sequence[tuple[str, str]],
    out_dir: Path,
    cfg: TinyStudentConfig | HFStudentConfig,
    *,
    init_adapter: str | Path | None,
    seed: int,
    max_length: int,
    device: Literal["cpu", "cuda"],
    launch_dir: str | Path,
) -> TrainStats:
    """``lora.train_lora`` in ``cfg.train_processes`` processes launched through ``accelerate launch``.

    ``launch_dir`` receives ``accelerate.yaml``, ``job.json`` (kept only when training fails), the ranks'
    ``steps.jsonl`` and their combined output ``train.log``; an earlier attempt's folder is replaced.
    Raises ``RuntimeError`` naming the log when any rank fails; ``out_dir`` then does not exist.
    """
    processes = cfg.train_processes
    zero_stage = cfg.deepspeed_zero if isinstance(cfg, HFStudentConfig) else None
    launch_dir = Path(launch_dir)
    shutil.rmtree(launch_dir, ignore_errors=True)
    launch_dir.mkdir(parents=True)
    config_file, job_file = launch_dir / "accelerate.yaml", launch_dir / "job.json"
    steps_file, log_file = launch_dir / "steps.jsonl", launch_dir / "train.log"
    config_file.write_text(yaml.safe_dump(accelerate_config(processes, device, zero_stage), sort_keys=False))
    # Why threads split: the ranks share the machine's cores (on a GPU the threads only feed the GPU).
    threads = max(1, (os.cpu_count() or 1) // processes)
    started = time.monotonic()
    what = f"training a LoRA adapter on {len(pairs)} examples in {processes} processes"
    with staging_dir(out_dir, "adapter") as tmp, progress.task(what) as bar:
        job = {"base_dir": str(base_dir), "pairs": [list(p) for p in pairs],
               "student": cfg.model_dump(mode="json"),
               "init_adapter": None if init_adapter is None else str(init_adapter), "seed": seed,
               "max_length": max_length, "device": device, "batch_size": cfg.batch_size // processes,
               "threads": threads, "deepspeed": zero_stage is not None, "out": str(tmp),
               "steps_file": str(steps_file)}
        job_file.write_text(json.dumps(job))
        command = [sys.executable, "-m", "tutorkd.students.lora_worker", "launch", str(os.getpid()),
                   "--config_file", str(config_file), "-m", "tutorkd.students.lora_worker", str(job_file)]
        log.info("launching %d training processes: %s (log: %s)", processes, " ".join(command), log_file)
        code = _run(command, _environment(threads), log_file, steps_file, bar)
        if code != 0:
            raise RuntimeError(
                f"LoRA training in {processes} processes failed (launcher exit code {code}); no adapter was "
                f"written to {out_dir}. The ranks' output is in {log_file}; it ends:\n{_failures(log_file)}")
        if not (tmp / "adapter").is_dir() or not (tmp / "stats.json").is_file():
            raise RuntimeError(f"LoRA training in {processes} processes exited 0 but rank 0 left no adapter "
                               f"and stats in {tmp}; see {log_file}")
        check_servable(tmp / "adapter")
        stats = json.loads((tmp / "stats.json").read_text())
        (tmp / "adapter").rename(out_dir)
    job_file.unlink()  # Why: a copy of the round's data, kept only to look into a failed training
    return train_stats(len(pairs), stats["steps"], time.monotonic() - started, stats["losses"])


def _environment(threads: int) -> dict[str, str]:
    """The launched group's environment: this one without a launcher's rank variables, with the thread
    count set and this ``tutorkd`` importable whatever the working folder."""
    env = {k: v for k, v in os.environ.items() if k not in RANK_ENV}
    env["OMP_NUM_THREADS"] = str(threads)
    root = str(Path(tutorkd.__file__).resolve().parents[1])
    env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH")) if p)
    return env


def _run(command: list[str], env: dict[str, str], log_file: Path, steps_file: Path, bar: progress.Bar) -> int:
    """Run ``command`` as the leader of a new session, its output into ``log_file``, showing the steps
    rank 0 appends to ``steps_file`` on ``bar``; its exit code. Whatever way this ends (a failed rank,
    an exception or interrupt here), no process of the group is left running."""
    shown = 0
    with log_file.open("w") as out:
        # Why a session: the launcher (and whatever it starts outside torchrun's ranks) is one group.
        proc = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=env,
                                start_new_session=True)
        try:
            while True:
                try:
                    code = proc.wait(timeout=POLL_S)
                except subprocess.TimeoutExpired:
                    code = None
                shown = _show_steps(steps_file, shown, bar)
                if code is not None:
                    return code
        finally:
            _kill_group(proc)


def _kill_group(proc: subprocess.Popen) -> None:
    """Stop the process group ``proc`` leads: a launcher still running gets SIGTERM (torchrun then stops
    its ranks) and ``STOP_GRACE_S`` to exit; then whatever is left of the group gets SIGKILL. The ranks
    sit in sessions of their own (torchrun's doing) and die with the launcher (``lora_worker``)."""
    if proc.poll() is None:
        _signal_group(proc.pid, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=STOP_GRACE_S)
    # Why also after the launcher exited: whatever else it started in its group would outlive it.
    _signal_group(proc.pid, signal.SIGKILL)
    proc.wait()


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    """Send ``sig`` to the process group ``pgid``, if any process of it is left."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, sig)


def _show_steps(steps_file: Path, shown: int, bar: progress.Bar) -> int:
    """Show on ``bar`` the complete lines of ``steps_file`` after the first ``shown``; how many are shown."""
    try:
        lines = steps_file.read_text().split("\n")[:-1]  # Why [:-1]: the last line may be half-written
    except FileNotFoundError:
        return shown
    for line in lines[shown:]:
        entry = json.loads(line)
        if "max_steps" in entry:
            bar.set_total(entry["max_steps"])
        else:
            bar.advance(1, note=f"loss {entry['loss']:.3f}" if "loss" in entry else None)
    return len(lines)


def _failures(log_file: Path, lines: int = 12) -> str:
    """What ``log_file`` says went wrong, indented: the error line that ends each rank's traceback
    (``[rankN]: ...Error: ...``, the first one being the cause) where there are any, then its last lines."""
    text = log_file.read_text(errors="replace").splitlines() if log_file.exists() else ["(no output)"]
    errors = [line for line in text if RANK_ERROR.match(line)]
    return "\n".join("  " + line for line in [*errors[:8], *(["  ..."] if errors else []), *text[-lines:]])
