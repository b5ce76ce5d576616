"""Preference-aligned generation (ARTE) and student-personalized routing (PerSyn) on the tiny student.

For each seed, on the arithmetic domain with the default tiny student (its cached base) and the tiny
teacher LM (``TeacherLMConfig`` defaults, cached), the five skill branches are the task prompts and
every condition gets the same number of verified examples, spread evenly over them:

- ``original``: the pretrained teacher LM writes the data (ARTE's "Original Teacher");
- ``arte``: the teacher after ARTE (drafts scored by the student's probe-loss reduction, DPO);
- ``persyn``: each branch routed to one of three teachers, the procedural engine with worked
  rationales, the procedural engine with answers only (a short-answer teacher) and the original
  teacher LM, by PerSyn's quality + learnability score on a small calibration set;
- ``procedural``: the procedural engine (worked rationales, uniform over each branch's leaves), as a
  reference.

The student trains one fresh LoRA adapter per condition (the ``TinyStudentConfig`` recipe, 2 epochs) and is
evaluated greedily on the first ``--test-per-skill`` problems of every skill's held-out test set
(``HeldOut`` of ``ArithmeticEnvConfig``; all training data comes from outside its evaluation partition).
Reported in ``benchmarks/results/preference.json`` and ``preference.png``: per-skill and overall test
accuracy, the teacher's DPO loss and reward margins, what the student preferred, and how the teacher's
output distribution moved (rationale share, skill mix, operand size, raw error rates).

    .venv/bin/python benchmarks/preference.py [--seeds 0 1 2] [--size 1000] [--test-per-skill 200]
        [--out benchmarks/results/preference.json]
"""

from __future__ import annotations

import json
import statistics
import time
from pathlib import Path

import common
import figures

RESULTS = common.RESULTS / "preference.json"
CONDITIONS = ("original", "arte", "persyn", "procedural")


def preference_summary(run) -> dict:
    """What the student preferred: mean ŝ_r by style and by leaf skill, and the pairs by level."""
    by_style: dict[str, list[float]] = {}
    by_skill: dict[str, list[float]] = {}
    for q in run.scored:
        by_skill.setdefault(q.skill_id, []).append(q.score)
        for s in q.solutions:
            by_style.setdefault(s.style, []).extend([s.score] * s.samples)
    chosen_styles = [p.chosen.split("=", 1)[1][:2] if p.level == "question" else p.chosen[:2]
                     for p in run.pairs]
    return {
        "mean_score_by_style": {k: statistics.fmean(v) for k, v in by_style.items()},
        "mean_question_score_by_skill": {k: statistics.fmean(v) for k, v in sorted(by_skill.items())},
        "pairs": {"question": sum(p.level == "question" for p in run.pairs),
                  "rationale": sum(p.level == "rationale" for p in run.pairs)},
        "chosen_rationale_share": sum(c == "R:" for c in chosen_styles) / max(1, len(chosen_styles)),
    }


def one_seed(seed: int, setup, teacher_dir: Path, plan, test: list, work: Path) -> dict:
    """Every condition for one seed: align and route the teachers, generate, train and test a student."""
    from tutorkd.agents.arte.char_lm import CharTeacherLM
    from tutorkd.agents.arte.char_lm_engine import CharTeacherEngine, distribution
    from tutorkd.agents.arte.learning_signal import ProbeGain, StudentSignals
    from tutorkd.agents.arte.teacher import run_arte
    from tutorkd.agents.persyn.teacher import ProceduralWriter, RoutedEngine, calibrate
    from tutorkd.config import ArteConfig, PerSynConfig
    from tutorkd.protocols import GenerationContext
    from tutorkd.verify import verify

    domain, heldout = setup.domain, setup.heldout
    reserved, tasks, work = heldout.reserved, [i.skill_id for i in plan.items], work / f"s{seed}"
    times: dict[str, float] = {}
    t0 = time.perf_counter()
    signals = StudentSignals(setup.base_dir)
    original = CharTeacherLM(teacher_dir, domain, name=f"teacher-lm:{teacher_dir.name}")
    arte_cfg = ArteConfig()
    preference = ProbeGain(signals, domain, arte_cfg.probe_lr)
    arte = run_arte(original, signals, preference, heldout, tasks, arte_cfg, reserved, seed, work / "aligned")
    aligned = CharTeacherLM(arte.aligned_dir, domain, name=f"{original.name}+dpo:s{seed}")
    times["arte_align"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    persyn_cfg = PerSynConfig()
    writers = {"procedural": ProceduralWriter(domain, reserved),
               "procedural_direct": ProceduralWriter(domain, reserved, style="direct"),
               "teacher_lm": original}
    routes = calibrate(writers, signals, tasks, persyn_cfg.calibration_per_task, persyn_cfg.alpha, reserved,
                       seed)
    times["persyn_calibrate"] = time.perf_counter() - t0
    engines = {
        "original": CharTeacherEngine(original, reserved),
        "arte": CharTeacherEngine(aligned, reserved),
        "persyn": RoutedEngine({r.task: r.teacher for r in routes},
                               {n: CharTeacherEngine(w, reserved, name=n) for n, w in writers.items()}),
        "procedural": CharTeacherEngine(ProceduralWriter(domain, reserved), reserved, name="procedural"),
    }
    data, raw = {}, {}
    t0 = time.perf_counter()
    for name, engine in engines.items():
        context = GenerationContext(run_id=f"{name}-s{seed}", round=1, teacher=name, seed=seed)
        result = verify(engine.generate(plan, context), domain, heldout.questions)
        data[name] = list(result.kept)
        raw[name] = {**engine.last_stats.model_dump(),
                     "verify_rejected": {k: v for k, v in result.counts.items() if v}}
    times["generate"] = time.perf_counter() - t0
    size = min(len(v) for v in data.values())
    accuracy = {}
    for name in CONDITIONS:
        t0 = time.perf_counter()
        student = setup.new_student(work / name, seed)
        trained = student.train(data[name][:size], round=1, init=None)
        accuracy[name] = {**common.accuracy(student, test), "train_loss": trained.stats.last_loss}
        times[f"train_eval_{name}"] = time.perf_counter() - t0
    for lm in (original, aligned):
        lm.close()
    leaves = domain.tree.leaves()
    return {
        "seed": seed, "examples_per_condition": size, "accuracy": accuracy, "dpo": arte.align.model_dump(),
        "drafts": [d.model_dump() for d in arte.drafts], "preferences": preference_summary(arte),
        "distribution": {n: distribution(data[n][:size], leaves).model_dump() for n in CONDITIONS},
        "generation": raw, "routes": [r.model_dump() for r in routes], "times_s": times,
    }


def summarize(seeds: list[dict], base: dict) -> dict:
    """Medians over seeds and the acceptance checks."""
    med = statistics.median
    acc = {c: med(s["accuracy"][c]["overall"] for s in seeds) for c in CONDITIONS}
    skills = list(base["per_skill"])

    def by_condition(value, keys) -> dict[str, dict[str, float]]:
        """Per condition and key, the median over seeds of ``value(seed's result, condition, key)``."""
        return {c: {k: med(value(s, c, k) for s in seeds) for k in keys} for c in CONDITIONS}

    per_skill = by_condition(lambda s, c, k: s["accuracy"][c]["per_skill"][k], skills)
    dist = by_condition(lambda s, c, k: s["distribution"][c][k],
                        ("rationale_share", "mean_magnitude", "small_share", "large_share"))
    mix = by_condition(lambda s, c, k: s["distribution"][c]["skill_mix"][k], skills)

    def dpo(field: str, i: int | None = None) -> float:
        """Median over seeds of a DPO statistic (its ``i``th logged value for a per-step one)."""
        return med(s["dpo"][field] if i is None else s["dpo"][field][i] for s in seeds)

    dpo_med = {"first_loss": dpo("loss", 0), "last_loss": dpo("loss", -1), "first_margin": dpo("margins", 0),
               "last_margin": dpo("margins", -1), "last_accuracy": dpo("accuracies", -1),
               "pairs": dpo("pairs"), "steps": dpo("steps")}
    wins = [s["accuracy"]["arte"]["overall"] - s["accuracy"]["original"]["overall"] for s in seeds]
    return {
        "median_accuracy": acc, "median_per_skill": per_skill, "base_accuracy": base,
        "median_distribution": dist, "median_skill_mix": mix, "median_dpo": dpo_med,
        "arte_minus_original_per_seed": wins,
        "acceptance": {
            "arte_beats_original_median": acc["arte"] > acc["original"],
            "dpo_real": all(s["dpo"]["steps"] > 0 and len(s["dpo"]["loss"]) == s["dpo"]["steps"]
                            for s in seeds),
            "dpo_loss_fell": dpo_med["last_loss"] < dpo_med["first_loss"],
            "dpo_margin_positive": dpo_med["last_margin"] > 0,
        },
    }


def main() -> None:
    from tutorkd.agents.arte.char_lm_pretrain import pretrain_teacher
    from tutorkd.agents.baselines.policies import even_split
    from tutorkd.assembly import build_student_setup
    from tutorkd.config import RunConfig, TeacherLMConfig
    from tutorkd.schema import Plan, PlanItem

    parser = common.parser(__doc__, seeds=[0, 1, 2], test_per_skill=200, out=RESULTS)
    parser.add_argument("--size", type=int, default=1000, help="training examples per condition")
    args = parser.parse_args()
    started = time.perf_counter()
    # Why epochs 2: the committed preference.json was measured with the student's earlier default (2 epochs
    # per round); pinned so that the script reproduces it. The base (pretraining) does not depend on it.
    cfg = RunConfig.model_validate({"student": {"epochs": 2}, "backend": {"kind": "transformers"}})
    with common.scratch("tutorkd-preference-") as work:
        setup = build_student_setup(cfg, work)
        domain, heldout = setup.domain, setup.heldout
        teacher_dir = pretrain_teacher(TeacherLMConfig(), domain, heldout.reserved)
        tasks = domain.tree.children(None)
        plan = Plan(items=tuple(PlanItem(count=c, skill_id=t)
                                for t, c in zip(tasks, even_split(args.size, len(tasks)), strict=True)))
        test = [p for s in domain.tree.leaves() for p in heldout.test[s][: args.test_per_skill]]
        base_acc = common.accuracy(setup.new_student(work / "base"), test)
        seeds = []
        for seed in args.seeds:
            t0 = time.perf_counter()
            seeds.append(one_seed(seed, setup, teacher_dir, plan, test, work))
            scores = ", ".join(f"{c} {seeds[-1]['accuracy'][c]['overall']:.3f}" for c in CONDITIONS)
            print(f"seed {seed}: {scores} ({time.perf_counter() - t0:.0f} s)", flush=True)
        setup.close()
    config = {"seeds": args.seeds, "size": args.size, "test_per_skill": args.test_per_skill,
              "student_base": setup.base_dir.name, "teacher": teacher_dir.name,
              "teacher_recipe": json.loads((teacher_dir / "recipe.json").read_text())}
    result = {"config": config, "summary": summarize(seeds, base_acc), "seeds": seeds,
              "seconds": time.perf_counter() - started}
    common.write_result(result, args.out, lambda png: figures.preference(result["summary"], png))
    common.print_table({c: {"test_accuracy": a} for c, a in result["summary"]["median_accuracy"].items()},
                       title="medians over seeds")
    common.print_table({k: {"value": v} for k, v in result["summary"]["acceptance"].items()})


if __name__ == "__main__":
    main()
