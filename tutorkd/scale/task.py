"""The body of one sweep run, as a Ray task executes it on a worker: ``tutorkd teach --resume RUN_DIR``
in a subprocess, its output appended to ``RUN_DIR/sweep.log``.

Kept apart from ``tutorkd.scale.sweep`` so that a worker imports only this (and no Ray driver code).
Why a subprocess rather than ``teach_run`` in the worker: a run holds engines, threads and a lock on
its directory for its whole life; a process of its own releases all of them when it ends, however it
ends, and a worker is reused for the next task.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

SWEEP_LOG = "sweep.log"
"""The file in each run directory that receives the output of every ``tutorkd teach`` a sweep ran there."""


def _die_with_parent() -> None:  # pragma: no cover - runs in the child between fork and exec
    """Have the kernel SIGKILL this process when the worker that started it dies (Linux).

    Why: a worker killed with its driver would otherwise leave ``tutorkd teach`` running as an orphan,
    holding the run's lock, so that the next sweep could not resume that run."""
    import ctypes
    import signal

    pr_set_pdeathsig = 1
    ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGKILL)


def run_point(run_dir: str, config: dict | None, cwd: str, gpus: bool) -> tuple[int, float]:
    """Run (or resume) the teaching run in ``run_dir`` to its end; ``(exit code, seconds)``.

    ``config`` is the resolved run config (JSON) of a run not started yet: the directory and its
    ``config.yaml`` are written first, then the run is "resumed" from nothing, which starts it from
    the beginning in that very directory (``tutorkd teach`` alone would pick a new, timestamped one).
    ``cwd`` is the driver's working directory, which relative paths in the config are relative to.
    ``gpus``: whether the task asked Ray for GPUs; Ray points ``CUDA_VISIBLE_DEVICES`` at those it
    assigned, but leaves a task that asked for none seeing every GPU of its node.
    """
    from tutorkd.config import RunConfig
    from tutorkd.rundir import CONFIG_FILE, save_config

    path = Path(run_dir)
    if config is not None and not (path / CONFIG_FILE).is_file():
        path.mkdir(parents=True, exist_ok=True)
        save_config(RunConfig.model_validate(config), path)
    started = time.monotonic()
    command = [sys.executable, "-m", "tutorkd.cli", "teach", "--resume", run_dir]
    with open(path / SWEEP_LOG, "a") as log:
        # Why a header line: the driver sees the log grow and reports the run started; a resumed run's
        # log keeps each attempt's output, one after the other.
        log.write(f"=== {time.strftime('%Y-%m-%d %H:%M:%S')} on {os.uname().nodename}: {' '.join(command)}\n")
        log.flush()
        # Why hide them: a CPU run that found a GPU would use it, beside the runs Ray gave it to.
        env = os.environ if gpus else {**os.environ, "CUDA_VISIBLE_DEVICES": ""}
        code = subprocess.call(command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                               cwd=cwd if Path(cwd).is_dir() else None, env=env,
                               preexec_fn=_die_with_parent if sys.platform == "linux" else None)
        log.write(f"=== exit code {code} after {time.monotonic() - started:.1f} s\n")
    return code, time.monotonic() - started
