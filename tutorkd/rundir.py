"""A run directory: created race-free, locked while a process works on it, holding the resolved config."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import IO

import yaml

from tutorkd.config import ConfigError, RunConfig, format_validation_error
from tutorkd.io import atomic_write_text

CONFIG_FILE = "config.yaml"
HELDOUT_FILE = "heldout.json"
"""The held-out sets a run is scored on, saved so a later version of tutorkd rebuilds the same ones."""
DISCOVERED_FILE = "discovered_skills.json"
"""The skills discovered for a dataset without skill labels (``kind: dataset``)."""
LOCK_FILE = ".lock"


def writable_folder(path: str | Path, field: str) -> Path:
    """``path`` as a folder that exists and this process may write in, created if missing; else
    ``ConfigError`` naming the config ``field`` that gave it and the fix."""
    root = Path(path)
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"{field}: cannot create {root}: {exc.strerror}; pick a writable folder") from None
    if not os.access(root, os.W_OK):
        raise ConfigError(f"{field}: {root} is not writable; pick a writable folder with {field}=...")
    return root


def new_run_dir(cfg: RunConfig) -> Path:
    """Create a fresh run directory; an existing one is never reused."""
    root = writable_folder(cfg.runs_root, "runs_root")
    stamp = time.strftime("%Y%m%d-%H%M%S")
    name = f"{stamp}-{cfg.teacher.name}-s{cfg.seed}"
    suffix = 1
    while True:
        run_dir = root / (name if suffix == 1 else f"{name}-{suffix}")
        try:
            # Why mkdir without exist_ok instead of checking first: two runs started in the same second
            # must not both take the same folder; the one that loses tries the next suffix.
            run_dir.mkdir()
            return run_dir
        except FileExistsError:
            suffix += 1
        except OSError as exc:
            raise ConfigError(f"runs_root: cannot create {run_dir}: {exc.strerror}; "
                              "pick a writable folder") from None


def check_paths(cfg: RunConfig) -> None:
    """Raise ``ConfigError`` naming the field and fix for a model folder in ``cfg`` that does not exist.

    Called before a run directory is created, so a missing download leaves nothing behind. The teacher
    LLM in particular starts only at its first call, rounds into a run, so it is checked here.
    """
    from tutorkd.config import HFStudentConfig
    from tutorkd.students.models import MODELS, check_model

    if isinstance(cfg.student, HFStudentConfig):
        check_model(cfg.student.source, "student.model" if cfg.student.model else "student.model_path")
    llm = cfg.teacher.llm
    if llm is None or llm.backend == "openai":  # an openai teacher's model is a name on its server
        return
    if llm.model in MODELS:
        check_model(llm.model, "teacher.llm.model")
    elif not (Path(llm.model).expanduser() / "config.json").is_file():
        raise ConfigError(f"teacher.llm.model: {llm.model} is not a local model folder (no config.json). "
                          f"Fix: name a short model ({', '.join(MODELS)}) or download it first, e.g. "
                          f"`huggingface-cli download <model id> --local-dir {llm.model}`, or set backend: "
                          "openai and a server's model name")


def lock_run(run_dir: Path) -> IO[str]:
    """Hold an exclusive lock on ``run_dir`` while the returned handle is open (the process lives).

    Two processes working on one run directory would overwrite each other's rounds, so a second
    ``--resume`` of a run that is still going is refused with ``ConfigError``. The kernel drops the
    lock when the holder dies, however it dies, so a killed run can always be resumed.
    """
    import fcntl

    handle = open(run_dir / LOCK_FILE, "a")  # held open until the process ends
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        raise ConfigError(f"{run_dir}: another tutorkd process is running this run; wait for it to end "
                          "(or stop it), then resume") from None
    return handle


def save_config(cfg: RunConfig, run_dir: Path) -> None:
    """Write the resolved config (specs inlined) that a resume must match."""
    atomic_write_text(run_dir / CONFIG_FILE, yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False))


def load_run_config(run_dir: Path, *, check_plugins: tuple[type, ...] | None = None) -> RunConfig:
    """The config a run directory was started with, every plug-in class it names imported and checked.

    ``check_plugins`` limits that to the plug-ins implementing those protocols (``checking_only``):
    ``()`` for readers of the run's files, which work where no plug-in's code is installed;
    ``(Student,)`` for ``tutorkd eval``, which rebuilds the student and nothing else."""
    from pydantic import ValidationError

    from tutorkd.config.plugins import checking_only

    path = run_dir / CONFIG_FILE
    if not path.is_file():
        raise ConfigError(f"{run_dir}: not a tutorkd run directory (no {CONFIG_FILE}); "
                          "pass a folder under runs/")
    try:
        return RunConfig.model_validate(yaml.safe_load(path.read_text()),
                                        context=None if check_plugins is None
                                        else checking_only(*check_plugins))
    except ValidationError as exc:
        raise ConfigError(format_validation_error(str(path), exc)) from None
