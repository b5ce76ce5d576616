"""Assemble a run in one place: domain, held-out sets, base model, backend, student, environment, teacher.

Every entry point builds through here: ``tutorkd teach`` (``tutorkd.lifecycle``), ``tutorkd eval`` and
``report`` (which rebuild a run's student from its saved config), ``tutorkd generate``, the Python API
and the benchmarks. Who calls whom::

    build_run ── build_student_setup ── build_domain      (tutorkd.environments.factory)
             │                      ├─ prepare_base       (pretrain the tiny base / check an HF folder)
             │                      └─ student_backend    (tutorkd.llm.factory: vllm | transformers | openai)
             ├─ TeachingEnv                                (tutorkd.environments.env)
             ├─ build_teacher                              (tutorkd.agents.teacher)
             └─ TeachingLoop                               (tutorkd.loop)
"""

from __future__ import annotations

from collections.abc import Callable, Container
from dataclasses import dataclass
from pathlib import Path

from tutorkd.agents.teacher import build_teacher
from tutorkd.config import HFStudentConfig, RunConfig, StudentConfig, TinyStudentConfig
from tutorkd.environments.env import TeachingEnv
from tutorkd.environments.factory import DomainSetup, build_domain
from tutorkd.environments.heldout import HeldOut
from tutorkd.io import write_json
from tutorkd.loop import LoopEvent, TeachingLoop
from tutorkd.protocols import Backend, Domain, Phases, Teacher
from tutorkd.rundir import HELDOUT_FILE
from tutorkd.students.student import LoRAStudent

OnEvent = Callable[[LoopEvent], None]


def _quiet(event: LoopEvent) -> None:
    """The default ``on_event``: nobody is watching."""


def prepare_base(student: StudentConfig, setup: DomainSetup, on_event: OnEvent = _quiet) -> Path:
    """The folder of the student's base model: the tiny base pretrained on the domain (cached by content
    hash; training data kept outside ``setup.exclude``), or the HF model folder, checked."""
    if isinstance(student, HFStudentConfig):
        from tutorkd.students.hf import check_model_folder

        return check_model_folder(student.model_path)
    from tutorkd.students.pretrain import pretrain_base

    mix = student.pretrain_mix or setup.domain.default_pretrain_mix
    on_event(LoopEvent(node="setup", round=0, message="preparing the base student (cached by content hash)"))
    base_dir = pretrain_base(student, setup.domain, mix, exclude=setup.exclude)
    on_event(LoopEvent(node="setup", round=0, message=f"base student: {base_dir}"))
    return base_dir


def new_student(cfg: StudentConfig, domain: Domain, backend: Backend, base_dir: Path, work_dir: Path,
                seed: int, phases: Phases | None = None) -> LoRAStudent:
    """A student of ``cfg`` (versions base, r1, ... of ``base_dir``) answering through ``backend``."""
    if isinstance(cfg, TinyStudentConfig):
        return LoRAStudent(domain, backend, base_dir, cfg, work_dir=work_dir, seed=seed)
    from tutorkd.students.hf import hf_student

    return hf_student(domain, backend, cfg, work_dir, seed=seed, phases=phases)


@dataclass(frozen=True)
class StudentSetup:
    """A run's student side without a loop: what ``tutorkd eval``, ``generate`` and benchmarks need."""

    config: RunConfig
    domain: Domain
    heldout: HeldOut
    exclude: Container[str]
    """Questions generated training data must never be (the evaluation partition)."""
    base_dir: Path
    backend: Backend
    phases: Phases | None
    """The serving engine as something that sleeps while the student trains, where it must."""

    def new_student(self, work_dir: Path, seed: int | None = None) -> LoRAStudent:
        """A student on this setup's engine, saving its adapters under ``work_dir`` (default seed: the
        config's)."""
        return new_student(self.config.student, self.domain, self.backend, self.base_dir, work_dir,
                           self.config.seed if seed is None else seed, self.phases)

    def close(self) -> None:
        """Release the serving engine and the domain's own workers."""
        self.backend.close()
        self.domain.close()


def build_student_setup(cfg: RunConfig, work_dir: Path, on_event: OnEvent = _quiet,
                        base_dir: Path | None = None) -> StudentSetup:
    """Domain, held-out sets, base model and serving engine of ``cfg``; the engine logs under
    ``work_dir``. ``base_dir`` serves that base instead of preparing the config's (an evaluation of
    adapters trained on a base that still exists). Raises ``ConfigError`` naming the fix for a missing
    dataset or model folder."""
    from tutorkd.llm.factory import student_backend
    from tutorkd.students.hf import training_device

    setup = build_domain(cfg.environment)
    base_dir = base_dir or prepare_base(cfg.student, setup, on_event)
    hf = isinstance(cfg.student, HFStudentConfig)
    # Why float32 for the tiny student: a served char-level model must score answers as it was trained.
    backend, phases = student_backend(cfg.backend, base_dir, lora_rank=cfg.student.lora_rank, seed=cfg.seed,
                                      log_file=work_dir / "vllm_server.log",
                                      dtype="auto" if hf else "float32",
                                      device=training_device(cfg.student) if hf else "cpu")
    return StudentSetup(cfg, setup.domain, setup.heldout, setup.exclude, base_dir, backend, phases)


@dataclass(frozen=True)
class Run:
    """Every part of one teaching run, built once; ``loop.run`` runs it, ``close`` releases engines."""

    config: RunConfig
    run_dir: Path
    domain: Domain
    heldout: HeldOut
    exclude: Container[str]
    student: LoRAStudent
    env: TeachingEnv
    teacher: Teacher
    loop: TeachingLoop
    setup: StudentSetup

    def close(self) -> None:
        """Release the student's engine (and the domain's workers); the run's files stay."""
        self.setup.close()


def build_run(cfg: RunConfig, run_dir: Path, on_event: OnEvent = _quiet) -> Run:
    """Instantiate every part of the run ``cfg`` describes, in ``run_dir`` (pretrains the tiny base
    student if it is not cached). Missing datasets or model folders raise ``ConfigError``."""
    setup = build_student_setup(cfg, run_dir, on_event)
    try:
        student = setup.new_student(run_dir)
        if not (run_dir / HELDOUT_FILE).exists():
            # Why: a later version of tutorkd may draw other sets from the same config; saving them
            # keeps this run's evaluations and contamination checks reproducible.
            write_json(run_dir / HELDOUT_FILE, setup.heldout)
        env = TeachingEnv(setup.domain, student, cfg.environment, setup.heldout, work_dir=run_dir)
        teacher = build_teacher(cfg.teacher, setup.domain, exclude=setup.exclude, student=student)
        loop = TeachingLoop(run_dir=run_dir, run_id=run_dir.name, seed=cfg.seed, env=env, teacher=teacher,
                            domain=setup.domain, heldout=setup.heldout, on_event=on_event)
    except BaseException:
        setup.close()
        raise
    return Run(cfg, run_dir, setup.domain, setup.heldout, setup.exclude, student, env, teacher, loop, setup)
