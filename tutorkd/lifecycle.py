"""The one lifecycle of a teaching run, shared by ``tutorkd teach``, the Python API and the benchmarks.

    start_run (check paths, new run directory, config.yaml)   or   resume_config (the saved config)
      -> teach_run: lock the directory, build_run, loop.run, release the engines and the lock
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path

from tutorkd.config import ConfigError, RunConfig
from tutorkd.loop import LoopEvent
from tutorkd.rundir import check_paths, load_run_config, lock_run, new_run_dir, save_config


def start_run(cfg: RunConfig) -> Path:
    """Check ``cfg``'s paths, then create its run directory holding ``config.yaml``.

    A missing model folder or an unwritable ``runs_root`` raises ``ConfigError`` before anything is
    written."""
    check_paths(cfg)
    run_dir = new_run_dir(cfg)
    save_config(cfg, run_dir)
    return run_dir


def resume_config(run_dir: Path, asked: RunConfig | None = None) -> RunConfig:
    """The config ``run_dir`` was started with; ``ConfigError`` if ``asked`` (a config the user gave
    along with the resume) differs from it, or a path it names is gone."""
    saved = load_run_config(run_dir)
    if asked is not None and asked != saved:
        raise ConfigError(f"--resume {run_dir}: the given config differs from the one the run was started "
                          "with; resume with no other options, or start a new run")
    check_paths(saved)
    return saved


def teach_run(cfg: RunConfig, run_dir: Path, *, resume: bool,
              on_event: Callable[[LoopEvent], None] = lambda event: None,
              on_locked: Callable[[], None] = lambda: None,
              during: AbstractContextManager[object] | None = None) -> Path:
    """Run (or resume) the teaching run in ``run_dir`` to the end, in this process.

    The directory is locked first (a second process on a live run gets ``ConfigError`` and writes
    nothing), then ``on_locked`` runs (the CLI's header and log file). A new run
    that cannot be built (``ConfigError``: a missing dataset, say) leaves no directory behind, since it
    holds no work. ``during`` wraps the loop itself (the CLI's live progress display: building may show
    its own). Engines are released however the loop ends; a failed run keeps its files for a resume.
    """
    from tutorkd.assembly import build_run

    lock = lock_run(run_dir)
    try:
        on_locked()
        try:
            run = build_run(cfg, run_dir, on_event)
        except ConfigError:
            if not resume:
                shutil.rmtree(run_dir)
            raise
        try:
            with during or nullcontext():
                run.loop.run(resume=resume)
        finally:
            run.close()
    finally:
        lock.close()
    return run_dir


def run_teaching(cfg: RunConfig, on_event: Callable[[LoopEvent], None] = lambda event: None) -> Path:
    """Start a new run of ``cfg``, run it to the end, release its engines; its run directory."""
    return teach_run(cfg, start_run(cfg), resume=False, on_event=on_event)
