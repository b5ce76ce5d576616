"""Tailored datasets as a product: ``tutorkd generate SPEC`` writes one student's data without a loop.

The folder ``<out_dir>/<name>-s<seed>/`` holds:

- ``sft/``: HF ``datasets`` on disk with ``prompt``/``completion`` (TRL's ``SFTTrainer`` takes it as it
  is), plus ``id``, ``skill_id``, ``style``;
- ``preference/`` (ARTE only): the teacher's DPO pairs, ``prompt``/``chosen``/``rejected`` (for
  ``DPOTrainer``), plus ``level`` and ``task``; ``aligned-teacher/``: the DPO-aligned teacher LM;
- ``examples.jsonl``, ``rejected.jsonl``: every example with full provenance, and what verification
  rejected;
- ``card.json``, ``README.md``: the dataset card (``tutorkd.generation.card``): student, teacher,
  selection, verification and deduplication figures.

The student, domain and held-out sets come from the run assembly (``tutorkd.assembly``), so any
environment works for STAT-Syn (GSM8K, MATH, arithmetic); ARTE and PerSyn use the character-level
teacher LM, which writes arithmetic. All data comes from outside the evaluation partition of the spec's
environment, and passes ``verify`` against its held-out questions before it is written.
"""

from __future__ import annotations

import logging
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from tutorkd.agents.arte.char_lm_engine import GenerationStats, distribution
from tutorkd.agents.arte.teacher import ArteRun
from tutorkd.agents.persyn.teacher import Route
from tutorkd.assembly import StudentSetup, build_student_setup
from tutorkd.config import BackendConfig, ConfigError, GenerateConfig, RunConfig, TeacherConfig
from tutorkd.generation.card import DatasetCard, render_card
from tutorkd.io import atomic_write_text, save_hf_dataset, write_json, write_jsonl
from tutorkd.protocols import Domain, GenerationContext
from tutorkd.schema import Example, Feedback, Plan, PlanItem, StructureLevel, StudentVersion

log = logging.getLogger(__name__)

Status = Callable[[str], None]


@dataclass(frozen=True)
class Made:
    """What one method made: the examples, who wrote them and how they were chosen."""

    examples: list[Example]
    teacher: str
    selection: str
    generation: GenerationStats | None = None
    """Drafts the teacher LM's engine dropped before verification, by reason (ARTE, PerSyn)."""
    routes: tuple[Route, ...] = ()
    arte: ArteRun | None = None


def _plan(cfg: GenerateConfig, domain: Domain) -> Plan:
    from tutorkd.agents.baselines.policies import even_split

    tasks = list(cfg.tasks or domain.tree.children(None))
    nodes = {s.id for s in domain.tree.nodes}
    unknown = sorted(set(tasks) - nodes)
    if unknown:
        raise ConfigError(f"tasks: unknown skill-tree nodes {unknown}; use ids of {sorted(nodes)}")
    counts = even_split(cfg.size, len(tasks))
    return Plan(items=tuple(PlanItem(count=c, skill_id=t) for t, c in zip(tasks, counts, strict=True) if c))


def _given(cfg: GenerateConfig) -> StudentVersion | None:
    """The student version the spec tailors to: its ``adapter``, or ``None`` for the base."""
    if cfg.adapter is None:
        return None
    return StudentVersion(name="given", round=1, adapter_path=cfg.adapter, lora_int_id=1)


def generate_dataset(cfg: GenerateConfig, on_status: Status = lambda m: None) -> Path:
    """Write the dataset ``cfg`` describes and return its folder (which must not exist yet)."""
    out = Path(cfg.out_dir) / f"{cfg.name}-s{cfg.seed}"
    if out.exists():
        raise ConfigError(f"out_dir: {out} already exists; remove it or change name, seed or out_dir")
    if cfg.adapter is not None and not (Path(cfg.adapter) / "adapter_config.json").is_file():
        raise ConfigError(f"adapter: {cfg.adapter} is not a LoRA adapter folder (no adapter_config.json)")
    work = out.with_name(f".tmp-{out.name}")
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    run_cfg = RunConfig(environment=cfg.environment, student=cfg.student, seed=cfg.seed,
                        backend=BackendConfig(kind="transformers"))
    setup = build_student_setup(run_cfg, work, on_event=lambda event: on_status(event.message))
    try:
        plan = _plan(cfg, setup.domain)
        context = GenerationContext(run_id=cfg.name, round=1, teacher=cfg.method, seed=cfg.seed)
        made = METHODS[cfg.method](cfg, setup, plan, context, work, on_status)
        return _write(cfg, setup, made, out, work)
    finally:
        setup.close()


def _stat_syn(cfg: GenerateConfig, setup: StudentSetup, plan: Plan, context: GenerationContext, work: Path,
              on_status: Status) -> Made:
    """STAT-Syn: the student answers the validation set; its missing skills decide the data."""
    from tutorkd.agents.teacher import build_teacher

    student = setup.new_student(work)
    given = _given(cfg)
    if given is not None:
        student.use(given)
    heldout, domain = setup.heldout, setup.domain
    attempts = student.answer(heldout.val_problems())
    accuracy = {
        leaf: sum(a.correct for a in attempts if leaf in a.problem.skill_ids) / len(heldout.val[leaf])
        for leaf in domain.tree.leaves()
    }
    errors = tuple(a for a in attempts if not a.correct)
    feedback = Feedback(level=StructureLevel.SKILL_LIST, round=0, errors=errors, skill_accuracy=accuracy,
                        budget_used=0, budget_total=cfg.size)
    teacher = build_teacher(
        TeacherConfig(name=cfg.name, policy="stat", engine="stat_synthesis", per_round=cfg.size,
                      style=cfg.style, stat=cfg.stat),
        domain,
        exclude=setup.exclude,
    )
    stat_plan = teacher.plan(feedback)
    on_status(f"generating {stat_plan.total} examples")
    return Made(teacher.generate(stat_plan, context), "stat_synthesis (procedural solver)",
                f"STAT-Syn: {stat_plan.reasoning}")


def _teacher_lm(cfg: GenerateConfig, setup: StudentSetup, plan: Plan, context: GenerationContext, work: Path,
                on_status: Status) -> Made:
    """ARTE (the teacher LM aligned to the student writes the data) or PerSyn (each task routed to the
    teacher that suits the student best)."""
    from tutorkd.agents.arte.char_lm import CharTeacherLM
    from tutorkd.agents.arte.char_lm_engine import CharTeacherEngine
    from tutorkd.agents.arte.char_lm_pretrain import pretrain_teacher
    from tutorkd.agents.arte.learning_signal import StudentSignals

    domain, heldout = setup.domain, setup.heldout
    on_status("preparing the teacher LM (cached by content hash)")
    folder = cfg.teacher_lm.model or pretrain_teacher(cfg.teacher_lm, domain, heldout.reserved)
    teacher_lm = CharTeacherLM(folder, domain, cfg.teacher_lm.temperature)
    signals = StudentSignals(setup.base_dir, cfg.adapter)
    tasks = [i.skill_id for i in plan.items if i.skill_id is not None]
    arte: ArteRun | None = None
    aligned: CharTeacherLM | None = None
    if cfg.method == "arte" or "aligned_lm" in cfg.persyn.teachers:
        from tutorkd.agents.arte.teacher import run_arte

        on_status("ARTE: drafting, collecting the student's preferences, aligning the teacher (DPO)")
        arte = run_arte(teacher_lm, signals, _preference_signal(cfg, setup, signals), heldout, tasks,
                        cfg.arte, heldout.reserved, cfg.seed, work / "aligned-teacher")
        aligned = CharTeacherLM(arte.aligned_dir, domain, cfg.teacher_lm.temperature,
                                name=f"{teacher_lm.name}+dpo:s{cfg.seed}")
    if cfg.method == "arte" and aligned is not None and arte is not None:
        engine = CharTeacherEngine(aligned, heldout.reserved)
        on_status(f"generating {plan.total} examples")
        examples = engine.generate(plan, context)
        selection = (f"ARTE: {sum(d.questions for d in arte.drafts)} draft questions x {cfg.arte.rationales} "
                     "solutions scored by the student's probe-loss reduction after one SGD step; "
                     f"{len(arte.pairs)} DPO pairs aligned the teacher, which wrote the data")
        return Made(examples, aligned.name, selection, engine.last_stats, arte=arte)
    from tutorkd.agents.persyn.teacher import RoutedEngine, calibrate

    writers = _writers(cfg, setup, teacher_lm, aligned)
    on_status(f"PerSyn: calibrating {len(writers)} teachers on the student")
    p = cfg.persyn
    routes = tuple(calibrate(writers, signals, tasks, p.calibration_per_task, p.alpha, heldout.reserved,
                             cfg.seed))
    routed = RoutedEngine({r.task: r.teacher for r in routes},
                          {n: CharTeacherEngine(w, heldout.reserved, name=n) for n, w in writers.items()})
    on_status(f"generating {plan.total} examples")
    examples = routed.generate(plan, context)
    selection = (f"PerSyn: each task routed to the teacher with the best mean (1-{p.alpha}) quality + "
                 f"{p.alpha} learnability over {p.calibration_per_task} calibration prompts, normalized per "
                 f"prompt across {sorted(writers)}")
    teacher = ", ".join(f"{r.task}->{writers[r.teacher].name}" for r in routes)
    return Made(examples, teacher, selection, routed.last_stats, routes=routes, arte=arte)


METHODS: dict[str, Callable[[GenerateConfig, StudentSetup, Plan, GenerationContext, Path, Status], Made]] = {
    "stat_syn": _stat_syn,
    "arte": _teacher_lm,
    "persyn": _teacher_lm,
}
"""``GenerateConfig.method`` to the function that makes the examples."""


def _preference_signal(cfg: GenerateConfig, setup: StudentSetup, signals):
    """ARTE's preference signal of the spec's student (``arte.signal``)."""
    from tutorkd.agents.arte.learning_signal import ICLAccuracy, ProbeGain

    if cfg.arte.signal == "probe_gain":
        return ProbeGain(signals, setup.domain, cfg.arte.probe_lr)
    # Why a space: the tiny student's alphabet has no newline to separate the demo from the question.
    return ICLAccuracy(setup.backend, setup.domain, _given(cfg), separator=" ")


def _writers(cfg: GenerateConfig, setup: StudentSetup, teacher_lm, aligned):
    """The PerSyn teacher pool of the spec (``aligned`` is the ARTE-aligned teacher LM, if one was made)."""
    from tutorkd.agents.persyn.teacher import LLMWriter, ProceduralWriter

    writers = {}
    for name in cfg.persyn.teachers:
        if name == "procedural":
            writers[name] = ProceduralWriter(setup.domain, setup.heldout.reserved, cfg.style)
        elif name == "teacher_lm":
            writers[name] = teacher_lm
        elif name == "aligned_lm" and aligned is not None:
            writers[name] = aligned
        elif name == "llm" and cfg.persyn.llm is not None:
            from tutorkd.llm.structured import StructuredLLM

            llm = cfg.persyn.llm
            writers[name] = LLMWriter(StructuredLLM.from_config(llm), setup.domain, llm.model,
                                      max(llm.temperature, 0.7))
        else:  # the config validators make this unreachable
            raise ConfigError(f"persyn.teachers: {name} is not available")
    return writers


def _write(cfg: GenerateConfig, setup: StudentSetup, made: Made, out: Path, work: Path) -> Path:
    """Verify, write the dataset folders and the card, and move ``work`` to ``out``."""
    from tutorkd.verify import verify

    heldout = setup.heldout
    result = verify(made.examples, setup.domain, heldout.questions)
    kept = list(result.kept[: cfg.size])
    if len(kept) < cfg.size:
        log.warning("dataset %s: %d of %d examples survived verification", cfg.name, len(kept), cfg.size)
    if not kept:
        raise RuntimeError(f"dataset {cfg.name}: no example survived verification ({result.counts})")
    write_jsonl(work / "examples.jsonl", kept)
    write_jsonl(work / "rejected.jsonl", result.rejected)
    save_hf_dataset({"prompt": [e.prompt for e in kept], "completion": [e.completion for e in kept],
                     "id": [e.id for e in kept], "skill_id": [e.provenance.skill_id or "" for e in kept],
                     "style": [e.provenance.generator.style for e in kept]}, work / "sft")
    arte = made.arte
    if arte is not None:
        pairs = arte.pairs
        save_hf_dataset({"prompt": [p.prompt for p in pairs], "chosen": [p.chosen for p in pairs],
                         "rejected": [p.rejected for p in pairs], "level": [p.level for p in pairs],
                         "task": [p.task for p in pairs]}, work / "preference")
    generation = made.generation
    card = DatasetCard(
        name=cfg.name,
        method=cfg.method,
        seed=cfg.seed,
        student=f"{cfg.student.kind} base {setup.base_dir.name}" + (f" + adapter {cfg.adapter}" if cfg.adapter
                                                                     else ""),
        student_base=str(setup.base_dir),
        teacher=made.teacher,
        selection=made.selection,
        size_requested=cfg.size,
        size=len(kept),
        verification={k: v for k, v in result.counts.items() if v},
        generation=generation.model_dump(exclude={"kept", "sampled", "teacher_correct"})
        if generation is not None else {},
        eval_overlap=len(heldout.overlapping(kept)),
        distribution=distribution(kept, setup.domain.tree.leaves()),
        routes=made.routes,
        align=arte.align if arte is not None else None,
        preference_pairs=len(arte.pairs) if arte is not None else 0,
    )
    if card.eval_overlap:
        raise RuntimeError(f"{card.eval_overlap} examples overlap the held-out sets; verification is broken")
    write_json(work / "card.json", card)
    atomic_write_text(work / "README.md", render_card(card))
    work.rename(out)
    return out
