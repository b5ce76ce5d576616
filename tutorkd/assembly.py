"""Assemble a run in one place: domain, held-out sets, base model, backend, student, environment, teacher.

Every entry point builds through here: ``tutorkd teach`` (``tutorkd.lifecycle``), ``tutorkd eval`` and
``report`` (which rebuild a run's student from its saved config), ``tutorkd generate``, the Python API
and the benchmarks. Who calls whom::

    build_run ── build_student_setup ── build_domain      (tutorkd.environments.factory)
             │                      ├─ prepare_base       (pretrain the tiny base / check an HF folder)
             │                      └─ student_backend    (tutorkd.llm.factory: vllm | transformers | openai)
             ├─ new_student                                (LoRAStudent, or a plug-in student class)
             ├─ TeachingEnv                                (tutorkd.environments.env)
             ├─ build_teacher                              (tutorkd.agents.teacher)
             └─ TeachingLoop                               (tutorkd.loop)
"""

from __future__ import annotations

from collections.abc import Callable, Container
from dataclasses import dataclass
from pathlib import Path

from tutorkd.agents.teacher import build_teacher
from tutorkd.config import BackendConfig, HFStudentConfig, RunConfig, StudentConfig, TinyStudentConfig
from tutorkd.config.student import PluginStudentConfig
from tutorkd.environments.discovery import DiscoveredSkills
from tutorkd.environments.env import TeachingEnv
from tutorkd.environments.factory import DomainSetup, build_domain
from tutorkd.environments.heldout import HeldOut
from tutorkd.io import write_json
from tutorkd.loop import LoopEvent, TeachingLoop
from tutorkd.protocols import Backend, Domain, Phases, Student, Teacher
from tutorkd.rundir import DISCOVERED_FILE, HELDOUT_FILE
from tutorkd.students.student import LoRAStudent

OnEvent = Callable[[LoopEvent], None]


def _quiet(event: LoopEvent) -> None:
    """The default ``on_event``: nobody is watching."""


def prepare_base(student: StudentConfig, setup: DomainSetup, on_event: OnEvent = _quiet) -> Path | None:
    """The folder of the student's base model: the tiny base pretrained on the domain (cached by content
    hash; training data kept outside ``setup.exclude``), or the HF model folder, checked; ``None`` for a
    plug-in student without ``model_path`` (it serves itself)."""
    if isinstance(student, PluginStudentConfig):
        from tutorkd.students.models import check_model_folder

        if student.model_path is None:
            return None
        return check_model_folder(student.model_path, "student.model_path")
    if isinstance(student, HFStudentConfig):
        from tutorkd.students.models import prepare_model

        on_event(LoopEvent(node="setup", round=0, message=f"preparing the student model {student.source}"))
        return prepare_model(student.source, student.cache_dir)
    from tutorkd.students.pretrain import pretrain_base

    mix = student.pretrain_mix or setup.domain.default_pretrain_mix
    on_event(LoopEvent(node="setup", round=0, message="preparing the base student (cached by content hash)"))
    base_dir = pretrain_base(student, setup.domain, mix, exclude=setup.exclude)
    on_event(LoopEvent(node="setup", round=0, message=f"base student: {base_dir}"))
    return base_dir


@dataclass(frozen=True)
class StudentInputs:
    """What a student is built from. A plug-in student class (``student: {kind: plugin, import:
    module.path:ClassName, <option>: <value>, ...}``) is built as ``Cls(inputs, **options)``."""

    domain: Domain
    """The problems' domain: ``prompt`` renders a problem, ``check`` verifies an answer."""
    work_dir: Path
    """Where the student saves what it trains (the run directory; LoRA students use ``adapters/``)."""
    seed: int
    """The run's seed, for training and sampling."""
    backend: Backend | None = None
    """The engine serving ``base_dir`` and adapters on it; ``None`` for a plug-in student without
    ``model_path``, which serves itself."""
    base_dir: Path | None = None
    """The base model folder ``backend`` serves."""
    phases: Phases | None = None
    """The engine again, where it must sleep while the student trains on the same GPU."""


def new_student(cfg: StudentConfig, inputs: StudentInputs) -> Student:
    """A student of ``cfg``: a ``LoRAStudent`` (versions base, r1, ... of ``inputs.base_dir``, answering
    through ``inputs.backend``), or the plug-in class ``cfg`` names, built as ``Cls(inputs, **options)``."""
    if isinstance(cfg, PluginStudentConfig):
        return cfg.load()(inputs, **cfg.options())
    backend, base_dir = inputs.backend, inputs.base_dir
    if backend is None or base_dir is None:
        raise ValueError(f"a {cfg.kind} student answers through a backend serving its base: build it with "
                         "build_student_setup")
    if isinstance(cfg, TinyStudentConfig):
        return LoRAStudent(inputs.domain, backend, base_dir, cfg, work_dir=inputs.work_dir, seed=inputs.seed)
    from tutorkd.students.hf import hf_student

    return hf_student(inputs.domain, backend, base_dir, cfg, inputs.work_dir, seed=inputs.seed,
                      phases=inputs.phases)


@dataclass(frozen=True)
class StudentSetup:
    """A run's student side without a loop: what ``tutorkd eval``, ``generate`` and benchmarks need."""

    config: RunConfig
    domain: Domain
    heldout: HeldOut
    exclude: Container[str]
    """Questions generated training data must never be (the evaluation partition)."""
    base_dir: Path | None
    """The student's base model folder; ``None`` for a plug-in student that serves itself."""
    backend: Backend | None
    """The engine serving ``base_dir``; ``None`` where ``base_dir`` is."""
    phases: Phases | None
    """The serving engine as something that sleeps while the student trains, where it must."""
    discovered: DiscoveredSkills | None = None
    """The skills discovered for unlabelled data (saved with a run as ``discovered_skills.json``)."""
    task: Domain | None = None
    """The environment's own domain, without the student's prompt format (``domain`` wraps it in a chat
    for a chat model); ``None`` where it is ``domain``. What a teacher reading the task itself (TPD's
    bug library) builds on."""

    def new_student(self, work_dir: Path, seed: int | None = None) -> Student:
        """A student on this setup's engine, saving what it trains under ``work_dir`` (default seed: the
        config's)."""
        inputs = StudentInputs(self.domain, work_dir, self.config.seed if seed is None else seed,
                               self.backend, self.base_dir, self.phases)
        return new_student(self.config.student, inputs)

    def close(self) -> None:
        """Release the serving engine (if one was started) and the domain's own workers."""
        if self.backend is not None:
            self.backend.close()
        self.domain.close()


def build_student_setup(cfg: RunConfig, work_dir: Path, on_event: OnEvent = _quiet,
                        base_dir: Path | None = None) -> StudentSetup:
    """Domain, held-out sets, base model and serving engine of ``cfg``; the engine logs under
    ``work_dir``. ``base_dir`` serves that base instead of preparing the config's (an evaluation of
    adapters trained on a base that still exists). A plug-in student without ``model_path`` gets no
    engine. Raises ``ConfigError`` naming the fix for a missing dataset or model folder, or for more GPUs
    asked for than are visible (``check_devices``)."""
    from tutorkd.config.student import check_devices
    from tutorkd.llm.factory import student_backend

    check_devices(cfg.student, cfg.backend)  # Why first: no dataset or model is prepared for nothing
    setup = build_domain(cfg.environment)
    base_dir = base_dir or prepare_base(cfg.student, setup, on_event)
    if base_dir is None:
        return StudentSetup(cfg, setup.domain, setup.heldout, setup.exclude, None, None, None,
                            setup.discovered)
    serving = _serving(cfg.student, cfg.backend)
    backend, phases = student_backend(cfg.backend, base_dir, lora_rank=cfg.student.lora_rank, seed=cfg.seed,
                                      log_file=work_dir / "vllm_server.log", dtype=serving.dtype,
                                      device=serving.device,
                                      merged_root=work_dir / "merged" if serving.merged else None)
    domain = setup.domain
    if isinstance(cfg.student, HFStudentConfig):
        from tutorkd.environments.chat import ChatDomain, chat_template

        template = chat_template(base_dir, cfg.student.prompt_format)
        if template is not None:
            domain = ChatDomain(domain, template, cfg.student.format_examples, setup.exclude)
    return StudentSetup(cfg, domain, setup.heldout, setup.exclude, base_dir, backend, phases,
                        setup.discovered, task=setup.domain)


@dataclass(frozen=True)
class Serving:
    """How a student's versions are served: engine dtype, device, merged weights or adapters."""

    dtype: str
    device: str
    merged: bool


def _serving(student: StudentConfig, backend: BackendConfig) -> Serving:
    """``backend``'s ``auto`` choices resolved for ``student`` (see ``BackendConfig.serving``/``dtype``)."""
    from tutorkd.llm.factory import engine_dtype

    if isinstance(student, TinyStudentConfig):
        # Why float32: a served char-level model must score answers as it was trained.
        device = "cpu"
        dtype = "float32" if backend.dtype == "auto" else backend.dtype
    elif isinstance(student, HFStudentConfig):
        from tutorkd.students.hf import training_device

        device = training_device(student)
        dtype = engine_dtype(backend.dtype, device)
    else:
        import torch

        dtype, device = backend.dtype, "cuda" if torch.cuda.is_available() else "cpu"
    merged = backend.serving == "merged" or (
        backend.serving == "auto" and isinstance(student, HFStudentConfig) and device == "cpu"
        and backend.kind == "vllm" and not backend.restart_per_version)
    return Serving(dtype, device, merged)


@dataclass(frozen=True)
class Run:
    """Every part of one teaching run, built once; ``loop.run`` runs it, ``close`` releases engines."""

    config: RunConfig
    run_dir: Path
    domain: Domain
    heldout: HeldOut
    exclude: Container[str]
    student: Student
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
        if setup.discovered is not None:
            # Why saved: the skills of unlabelled data are the run's own; a labels_file pointing here
            # rebuilds the same tree (an LLM discovery would not repeat itself).
            write_json(run_dir / DISCOVERED_FILE, setup.discovered)
        env = TeachingEnv(setup.domain, student, cfg.environment, setup.heldout, work_dir=run_dir)
        teacher = build_teacher(cfg.teacher, setup.domain, exclude=setup.exclude, student=student,
                                task=setup.task)
        loop = TeachingLoop(run_dir=run_dir, run_id=run_dir.name, seed=cfg.seed, env=env, teacher=teacher,
                            domain=setup.domain, heldout=setup.heldout, on_event=on_event)
    except BaseException:
        setup.close()
        raise
    return Run(cfg, run_dir, setup.domain, setup.heldout, setup.exclude, student, env, teacher, loop, setup)
