"""Assemble a teaching run from a ``RunConfig``: run directory, domain, student, backend, env, teacher."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path

import yaml

from tutorkd.config import ConfigError, RunConfig, format_validation_error
from tutorkd.io import atomic_write_text
from tutorkd.loop import LoopEvent, TeachingLoop

CONFIG_FILE = "config.yaml"


def new_run_dir(cfg: RunConfig) -> Path:
    """Create a fresh run directory; an existing one is never reused."""
    root = Path(cfg.runs_root)
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"runs_root: cannot create {root}: {exc.strerror}; pick a writable folder") from None
    if not os.access(root, os.W_OK):
        raise ConfigError(f"runs_root: {root} is not writable; pick a writable folder with runs_root=...")
    stamp = time.strftime("%Y%m%d-%H%M%S")
    run_dir = root / f"{stamp}-{cfg.teacher.name}-s{cfg.seed}"
    suffix = 1
    while run_dir.exists():
        suffix += 1
        run_dir = root / f"{stamp}-{cfg.teacher.name}-s{cfg.seed}-{suffix}"
    run_dir.mkdir()
    return run_dir


def save_config(cfg: RunConfig, run_dir: Path) -> None:
    """Write the resolved config (specs inlined) that a resume must match."""
    atomic_write_text(run_dir / CONFIG_FILE, yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False))


def load_run_config(run_dir: Path) -> RunConfig:
    """The config a run directory was started with."""
    from pydantic import ValidationError

    path = run_dir / CONFIG_FILE
    if not path.is_file():
        raise ConfigError(f"{run_dir}: not a tutorkd run directory (no {CONFIG_FILE}); pass a folder under runs/")
    try:
        return RunConfig.model_validate(yaml.safe_load(path.read_text()))
    except ValidationError as exc:
        raise ConfigError(format_validation_error(str(path), exc)) from None


def build_loop(cfg: RunConfig, run_dir: Path, on_event: Callable[[LoopEvent], None]) -> TeachingLoop:
    """Instantiate every component of the run (pretrains the base student if it is not cached)."""
    from tutorkd.agents.teacher import build_teacher
    from tutorkd.environments.arithmetic import ArithmeticDomain
    from tutorkd.environments.env import TeachingEnv
    from tutorkd.environments.heldout import HeldOut
    from tutorkd.students.pretrain import pretrain_base
    from tutorkd.students.tiny import TinyStudent

    env_cfg = cfg.environment
    domain = ArithmeticDomain()
    heldout = HeldOut.build(domain, env_cfg.test_per_skill, env_cfg.val_per_skill, env_cfg.split_seed)
    mix = cfg.student.pretrain_mix or domain.default_pretrain_mix
    on_event(LoopEvent(node="setup", round=0, message="preparing the base student (cached by recipe)"))
    base_dir = pretrain_base(cfg.student, domain, mix, exclude=heldout.questions)
    on_event(LoopEvent(node="setup", round=0, message=f"base student: {base_dir}"))
    backend = build_backend(cfg, base_dir)
    student = TinyStudent(domain, backend, base_dir, cfg.student, work_dir=run_dir, seed=cfg.seed)
    env = TeachingEnv(domain, student, env_cfg, heldout, work_dir=run_dir)
    teacher = build_teacher(cfg.teacher, domain, exclude=heldout.questions)
    return TeachingLoop(run_dir=run_dir, run_id=run_dir.name, seed=cfg.seed, env=env, teacher=teacher,
                        domain=domain, heldout=heldout, on_event=on_event)


def build_backend(cfg: RunConfig, base_dir: Path):
    """The engine serving the student versions: one vLLM engine, or transformers."""
    if cfg.backend.kind == "vllm":
        from tutorkd.llm.vllm_backend import VLLMBackend

        def factory():
            return VLLMBackend(str(base_dir), max_lora_rank=cfg.student.lora_rank,
                               max_model_len=cfg.backend.max_model_len,
                               kv_cache_gib=cfg.backend.kv_cache_gib, seed=cfg.seed)
    else:
        from tutorkd.llm.hf_backend import TransformersBackend

        def factory():
            return TransformersBackend(str(base_dir))
    if cfg.backend.restart_per_version:
        from tutorkd.llm.restart import RestartingBackend

        return RestartingBackend(factory)
    return factory()
