"""Assemble a teaching run from a ``RunConfig``: run directory, domain, student, backend, env, teacher."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO

import yaml

from tutorkd.config import ConfigError, RunConfig, format_validation_error
from tutorkd.io import atomic_write_text, write_json
from tutorkd.loop import LoopEvent, TeachingLoop

CONFIG_FILE = "config.yaml"
LOCK_FILE = ".lock"


def new_run_dir(cfg: RunConfig) -> Path:
    """Create a fresh run directory; an existing one is never reused."""
    root = Path(cfg.runs_root)
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"runs_root: cannot create {root}: {exc.strerror}; "
                          "pick a writable folder") from None
    if not os.access(root, os.W_OK):
        raise ConfigError(f"runs_root: {root} is not writable; pick a writable folder with runs_root=...")
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

    if isinstance(cfg.student, HFStudentConfig):
        from tutorkd.students.hf import check_model_folder

        check_model_folder(cfg.student.model_path)
    llm = cfg.teacher.llm
    if llm is None or llm.backend == "openai":  # an openai teacher's model is a name on its server
        return
    if not (Path(llm.model).expanduser() / "config.json").is_file():
        raise ConfigError(f"teacher.llm.model: {llm.model} is not a local model folder (no config.json). "
                          "Fix: download it first, e.g. `huggingface-cli download <model id> --local-dir "
                          f"{llm.model}`, or set backend: openai and a server's model name")


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


def load_run_config(run_dir: Path) -> RunConfig:
    """The config a run directory was started with."""
    from pydantic import ValidationError

    path = run_dir / CONFIG_FILE
    if not path.is_file():
        raise ConfigError(f"{run_dir}: not a tutorkd run directory (no {CONFIG_FILE}); "
                          "pass a folder under runs/")
    try:
        return RunConfig.model_validate(yaml.safe_load(path.read_text()))
    except ValidationError as exc:
        raise ConfigError(format_validation_error(str(path), exc)) from None


def build_loop(cfg: RunConfig, run_dir: Path, on_event: Callable[[LoopEvent], None]) -> TeachingLoop:
    """Instantiate every component of the run (pretrains the tiny base student if it is not cached).

    Missing datasets or model folders raise ``ConfigError`` naming the fix.
    """
    from tutorkd.agents.teacher import build_teacher
    from tutorkd.config import ArithmeticEnvConfig, HFStudentConfig
    from tutorkd.environments.datasets import build_domain
    from tutorkd.environments.env import TeachingEnv

    env_cfg = cfg.environment
    domain, heldout = build_domain(env_cfg)
    # Why: a procedural domain keeps all training data outside the whole evaluation partition (so
    # eval sets of any size stay clean); a dataset domain's held-out split is exactly its eval sets.
    exclude = heldout.reserved if isinstance(env_cfg, ArithmeticEnvConfig) else heldout.questions
    if isinstance(cfg.student, HFStudentConfig):
        from tutorkd.students.hf import build_hf_student

        student = build_hf_student(cfg, domain, run_dir)
    else:
        from tutorkd.students.pretrain import pretrain_base
        from tutorkd.students.student import LoRAStudent

        mix = cfg.student.pretrain_mix or domain.default_pretrain_mix
        on_event(LoopEvent(node="setup", round=0, message="preparing the base student (cached by recipe)"))
        base_dir = pretrain_base(cfg.student, domain, mix, exclude=exclude)
        on_event(LoopEvent(node="setup", round=0, message=f"base student: {base_dir}"))
        backend = build_backend(cfg, base_dir, run_dir)
        student = LoRAStudent(domain, backend, base_dir, cfg.student, work_dir=run_dir, seed=cfg.seed)
    if not (run_dir / "heldout.json").exists():
        # Why: a later version of tutorkd may draw other sets from the same config; saving them keeps
        # this run's evaluations and contamination checks reproducible.
        write_json(run_dir / "heldout.json", heldout)
    env = TeachingEnv(domain, student, env_cfg, heldout, work_dir=run_dir)
    teacher = build_teacher(cfg.teacher, domain, exclude=exclude, student=student)
    return TeachingLoop(run_dir=run_dir, run_id=run_dir.name, seed=cfg.seed, env=env, teacher=teacher,
                        domain=domain, heldout=heldout, on_event=on_event)


def run_teaching(cfg: RunConfig, on_event: Callable[[LoopEvent], None]) -> tuple[Path, TeachingLoop]:
    """Create a run directory for ``cfg``, run it to the end in this process, release its engine.

    For scripts that run many teaching jobs one after another (benchmarks): the engine is closed even
    when the run fails, because only one in-process vLLM engine may be open at a time.
    """
    run_dir = new_run_dir(cfg)
    save_config(cfg, run_dir)
    loop = build_loop(cfg, run_dir, on_event)
    try:
        loop.run(resume=False)
    finally:
        loop.env.student.backend.close()
    return run_dir, loop


def build_backend(cfg: RunConfig, base_dir: Path, run_dir: Path):
    """The engine serving the tiny student's versions: one in-process vLLM engine, a ``vllm serve``
    reached through the OpenAI client, or transformers."""
    if cfg.backend.kind == "openai":
        from tutorkd.llm.openai_backend import student_backend

        def factory():
            return student_backend(cfg.backend, base_dir, cfg.student.lora_rank, seed=cfg.seed,
                                   log_file=run_dir / "vllm_server.log", dtype="float32")
    elif cfg.backend.kind == "vllm":
        from tutorkd.llm.vllm_backend import VLLMBackend

        def factory():
            return VLLMBackend(str(base_dir), max_lora_rank=cfg.student.lora_rank,
                               max_model_len=cfg.backend.max_model_len,
                               kv_cache_gib=cfg.backend.kv_cache_gib, seed=cfg.seed)
    elif cfg.backend.kind == "transformers":
        from tutorkd.llm.hf_backend import TransformersBackend

        def factory():
            return TransformersBackend(str(base_dir))
    else:
        raise ConfigError(f"backend.kind: unknown backend {cfg.backend.kind!r}")
    if cfg.backend.restart_per_version:
        from tutorkd.llm.restart import RestartingBackend

        return RestartingBackend(factory)
    return factory()
