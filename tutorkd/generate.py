"""Tailored datasets as a product: ``tutorkd generate SPEC`` writes one student's data without a loop.

The folder ``<out_dir>/<name>-s<seed>/`` holds:

- ``sft/``: HF ``datasets`` on disk with ``prompt``/``completion`` (TRL's ``SFTTrainer`` takes it as it
  is), plus ``id``, ``skill_id``, ``style``;
- ``preference/`` (ARTE only): the teacher's DPO pairs, ``prompt``/``chosen``/``rejected`` (for
  ``DPOTrainer``), plus ``level`` and ``task``; ``aligned-teacher/``: the DPO-aligned teacher LM;
- ``examples.jsonl``, ``rejected.jsonl``: every example with full provenance, and what verification
  rejected;
- ``card.json``, ``README.md``: the dataset card (``tutorkd.dataset_card``): student, teacher,
  selection, verification and deduplication figures.

All data comes from outside the evaluation partition (``HeldOut.reserved``) of the spec's environment,
and passes ``verify`` against its held-out questions before it is written.
"""

from __future__ import annotations

import logging
import shutil
from collections.abc import Callable
from pathlib import Path

from tutorkd.agents.arte.char_lm_engine import Writer, distribution
from tutorkd.agents.arte.learning_signal import PreferenceSignal, StudentSignals
from tutorkd.agents.arte.teacher import ArteRun
from tutorkd.agents.persyn.teacher import Route
from tutorkd.config import ConfigError, TeacherConfig
from tutorkd.dataset_card import DatasetCard, render_card
from tutorkd.environments.arithmetic import ArithmeticDomain
from tutorkd.environments.heldout import HeldOut
from tutorkd.generate_config import GenerateConfig
from tutorkd.io import atomic_write_text, write_json, write_jsonl
from tutorkd.protocols import Engine, GenerationContext
from tutorkd.schema import Example, Feedback, Plan, PlanItem, StructureLevel

log = logging.getLogger(__name__)


def _plan(cfg: GenerateConfig, domain: ArithmeticDomain) -> Plan:
    from tutorkd.agents.baselines.policies import even_split

    tasks = list(cfg.tasks or domain.tree.children(None))
    nodes = {s.id for s in domain.tree.nodes}
    unknown = sorted(set(tasks) - nodes)
    if unknown:
        raise ConfigError(f"tasks: unknown skill-tree nodes {unknown}; use ids of {sorted(nodes)}")
    counts = even_split(cfg.size, len(tasks))
    return Plan(items=tuple(PlanItem(count=c, skill_id=t) for t, c in zip(tasks, counts, strict=True) if c))


def generate_dataset(cfg: GenerateConfig, on_status: Callable[[str], None] = lambda m: None) -> Path:
    """Write the dataset ``cfg`` describes and return its folder (which must not exist yet)."""
    from tutorkd.students.pretrain import pretrain_base

    out = Path(cfg.out_dir) / f"{cfg.name}-s{cfg.seed}"
    if out.exists():
        raise ConfigError(f"out_dir: {out} already exists; remove it or change name, seed or out_dir")
    domain, env = ArithmeticDomain(), cfg.environment
    heldout = HeldOut.build(domain, env.test_per_skill, env.val_per_skill, env.split_seed)
    on_status("preparing the base student (cached by recipe)")
    base = pretrain_base(
        cfg.student, domain, cfg.student.pretrain_mix or domain.default_pretrain_mix, exclude=heldout.reserved
    )
    if cfg.adapter is not None and not (Path(cfg.adapter) / "adapter_config.json").is_file():
        raise ConfigError(f"adapter: {cfg.adapter} is not a LoRA adapter folder (no adapter_config.json)")
    work = out.with_name(f".tmp-{out.name}")
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    plan = _plan(cfg, domain)
    context = GenerationContext(run_id=cfg.name, round=1, teacher=cfg.method, seed=cfg.seed)
    arte: ArteRun | None = None
    routes: tuple[Route, ...] = ()
    engine: Engine
    if cfg.method == "stat_syn":
        engine, plan, teacher, selection = _stat_syn(cfg, domain, heldout, base, work)
    else:
        from tutorkd.agents.arte.char_lm import CharTeacherLM
        from tutorkd.agents.arte.char_lm_engine import CharTeacherEngine
        from tutorkd.agents.arte.char_lm_pretrain import pretrain_teacher

        on_status("preparing the teacher LM (cached by recipe)")
        folder = cfg.teacher_lm.model or pretrain_teacher(cfg.teacher_lm, domain, heldout.reserved)
        teacher_lm = CharTeacherLM(folder, domain, cfg.teacher_lm.temperature)
        signals = StudentSignals(base, cfg.adapter)
        tasks = [i.skill_id for i in plan.items if i.skill_id is not None]
        aligned: CharTeacherLM | None = None
        if cfg.method == "arte" or "aligned_lm" in cfg.persyn.teachers:
            from tutorkd.agents.arte.teacher import run_arte

            on_status("ARTE: drafting, collecting the student's preferences, aligning the teacher (DPO)")
            arte = run_arte(
                teacher_lm,
                signals,
                _preference_signal(cfg, domain, signals, base),
                heldout,
                tasks,
                cfg.arte,
                heldout.reserved,
                cfg.seed,
                work / "aligned-teacher",
            )
            aligned = CharTeacherLM(
                arte.aligned_dir,
                domain,
                cfg.teacher_lm.temperature,
                name=f"{teacher_lm.name}+dpo:s{cfg.seed}",
            )
        if cfg.method == "arte" and aligned is not None and arte is not None:
            engine, teacher = CharTeacherEngine(aligned, heldout.reserved), aligned.name
            selection = (
                f"ARTE: {sum(d.questions for d in arte.drafts)} draft questions x "
                f"{cfg.arte.rationales} solutions scored by the student's probe-loss reduction after "
                f"one SGD step; {len(arte.pairs)} DPO pairs aligned the teacher, which wrote the data"
            )
        else:
            from tutorkd.agents.persyn.teacher import RoutedEngine, calibrate

            writers = _writers(cfg, domain, heldout, teacher_lm, aligned)
            on_status(f"PerSyn: calibrating {len(writers)} teachers on the student")
            p = cfg.persyn
            routes = tuple(
                calibrate(
                    writers, signals, tasks, p.calibration_per_task, p.alpha, heldout.reserved, cfg.seed
                )
            )
            engine = RoutedEngine(
                {r.task: r.teacher for r in routes},
                {n: CharTeacherEngine(w, heldout.reserved, name=n) for n, w in writers.items()},
            )
            teacher = ", ".join(f"{r.task}->{writers[r.teacher].name}" for r in routes)
            selection = (
                f"PerSyn: each task routed to the teacher with the best mean (1-{p.alpha}) quality + "
                f"{p.alpha} learnability over {p.calibration_per_task} calibration prompts, normalized "
                f"per prompt across {sorted(writers)}"
            )
    on_status(f"generating {plan.total} examples")
    examples = engine.generate(plan, context)
    return _write(cfg, domain, heldout, examples, engine, out, work, base, teacher, selection, routes, arte)


def _preference_signal(
    cfg: GenerateConfig, domain: ArithmeticDomain, signals: StudentSignals, base: Path
) -> PreferenceSignal:
    """ARTE's preference signal of the spec's student (``arte.signal``)."""
    from tutorkd.agents.arte.learning_signal import ICLAccuracy, ProbeGain

    if cfg.arte.signal == "probe_gain":
        return ProbeGain(signals, domain, cfg.arte.probe_lr)
    from tutorkd.llm.hf_backend import TransformersBackend
    from tutorkd.schema import StudentVersion

    version = None
    if cfg.adapter is not None:
        version = StudentVersion(name="given", round=1, adapter_path=cfg.adapter, lora_int_id=1)
    # Why a space: the tiny student's alphabet has no newline to separate the demo from the question.
    return ICLAccuracy(TransformersBackend(base), domain, version, separator=" ")


def _writers(
    cfg: GenerateConfig,
    domain: ArithmeticDomain,
    heldout: HeldOut,
    teacher_lm: Writer,
    aligned: Writer | None,
) -> dict[str, Writer]:
    """The PerSyn teacher pool of the spec (``aligned`` is the ARTE-aligned teacher LM, if one was made)."""
    from tutorkd.agents.persyn.teacher import LLMWriter, ProceduralWriter

    writers: dict[str, Writer] = {}
    for name in cfg.persyn.teachers:
        if name == "procedural":
            writers[name] = ProceduralWriter(domain, heldout.reserved, cfg.style)
        elif name == "teacher_lm":
            writers[name] = teacher_lm
        elif name == "aligned_lm" and aligned is not None:
            writers[name] = aligned
        elif name == "llm" and cfg.persyn.llm is not None:
            from tutorkd.llm.structured import StructuredLLM

            llm = cfg.persyn.llm
            writers[name] = LLMWriter(
                StructuredLLM.from_config(llm), domain, llm.model, max(llm.temperature, 0.7)
            )
        else:  # the config validators make this unreachable
            raise ConfigError(f"persyn.teachers: {name} is not available")
    return writers


def _stat_syn(
    cfg: GenerateConfig, domain: ArithmeticDomain, heldout: HeldOut, base: Path, work: Path
) -> tuple[Engine, Plan, str, str]:
    """STAT-Syn: the student answers the validation set; its missing skills decide the data."""
    from tutorkd.agents.teacher import build_teacher
    from tutorkd.llm.hf_backend import TransformersBackend
    from tutorkd.schema import StudentVersion
    from tutorkd.students.student import LoRAStudent

    backend = TransformersBackend(base)
    student = LoRAStudent(domain, backend, base, cfg.student, work_dir=work, seed=cfg.seed)
    if cfg.adapter is not None:
        student.use(StudentVersion(name="given", round=1, adapter_path=cfg.adapter, lora_int_id=1))
    attempts = student.answer(heldout.val_problems())
    backend.close()
    accuracy = {
        leaf: sum(a.correct for a in attempts if leaf in a.problem.skill_ids) / len(heldout.val[leaf])
        for leaf in domain.tree.leaves()
    }
    feedback = Feedback(
        level=StructureLevel.SKILL_LIST,
        round=0,
        errors=tuple(a for a in attempts if not a.correct),
        skill_accuracy=accuracy,
        budget_used=0,
        budget_total=cfg.size,
    )
    teacher = build_teacher(
        TeacherConfig(
            name=cfg.name,
            policy="stat",
            engine="stat_synthesis",
            per_round=cfg.size,
            style=cfg.style,
            stat=cfg.stat,
        ),
        domain,
        exclude=heldout.reserved,
    )
    plan = teacher.plan(feedback)
    return teacher.engine, plan, "stat_synthesis (procedural solver)", f"STAT-Syn: {plan.reasoning}"


def _write(
    cfg: GenerateConfig,
    domain: ArithmeticDomain,
    heldout: HeldOut,
    examples: list[Example],
    engine: Engine,
    out: Path,
    work: Path,
    base: Path,
    teacher: str,
    selection: str,
    routes: tuple[Route, ...],
    arte: ArteRun | None,
) -> Path:
    """Verify, write the dataset folders and the card, and move ``work`` to ``out``."""
    import datasets

    from tutorkd.verify import verify

    result = verify(examples, domain, heldout.questions)
    kept = list(result.kept[: cfg.size])
    if len(kept) < cfg.size:
        log.warning("dataset %s: %d of %d examples survived verification", cfg.name, len(kept), cfg.size)
    if not kept:
        raise RuntimeError(f"dataset {cfg.name}: no example survived verification ({result.counts})")
    write_jsonl(work / "examples.jsonl", kept)
    write_jsonl(work / "rejected.jsonl", result.rejected)
    datasets.disable_progress_bars()
    datasets.Dataset.from_dict(
        {
            "prompt": [e.prompt for e in kept],
            "completion": [e.completion for e in kept],
            "id": [e.id for e in kept],
            "skill_id": [e.provenance.skill_id or "" for e in kept],
            "style": [e.provenance.generator.style for e in kept],
        }
    ).save_to_disk(work / "sft")
    if arte is not None:
        pairs = arte.pairs
        datasets.Dataset.from_dict(
            {
                "prompt": [p.prompt for p in pairs],
                "chosen": [p.chosen for p in pairs],
                "rejected": [p.rejected for p in pairs],
                "level": [p.level for p in pairs],
                "task": [p.task for p in pairs],
            }
        ).save_to_disk(work / "preference")
    from tutorkd.agents.arte.char_lm_engine import CharTeacherEngine
    from tutorkd.agents.persyn.teacher import RoutedEngine

    stats = engine.last_stats if isinstance(engine, CharTeacherEngine | RoutedEngine) else None
    card = DatasetCard(
        name=cfg.name,
        method=cfg.method,
        seed=cfg.seed,
        student=f"tiny base {base.name}" + (f" + adapter {cfg.adapter}" if cfg.adapter else ""),
        student_base=str(base),
        teacher=teacher,
        selection=selection,
        size_requested=cfg.size,
        size=len(kept),
        verification={k: v for k, v in result.counts.items() if v},
        generation=stats.model_dump(exclude={"kept", "sampled", "teacher_correct"})
        if stats is not None
        else {},
        eval_overlap=len(heldout.overlapping(kept)),
        distribution=distribution(kept, domain.tree.leaves()),
        routes=routes,
        align=arte.align if arte is not None else None,
        preference_pairs=len(arte.pairs) if arte is not None else 0,
    )
    if card.eval_overlap:
        raise RuntimeError(f"{card.eval_overlap} examples overlap the held-out sets; verification is broken")
    write_json(work / "card.json", card)
    atomic_write_text(work / "README.md", render_card(card))
    work.rename(out)
    return out
