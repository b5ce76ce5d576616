"""SmolLM2-135M-Instruct as the student: base skill profile, and what 2 rounds of teaching do to it.

Runs ``recipes/arithmetic-smollm2.yaml`` with the uniform teacher and with DataEnvGym's skill-tree
teacher (the same examples per round for both), for each seed, one run at a time in this process, and
writes ``benchmarks/results/llm_student.json``. ``--teachers tpd open-ended`` adds TPD's variant d
(training data from the principles it discovers in the student's errors, ``agents/tpd.yaml``) and
DataEnvGym's open-ended baseline, both at the open-ended level (they read errors only);
``--teachers progress`` the learning-progress teacher (``agents/progress.yaml``), ``--teachers
progress-headroom`` its variant that meets issue 17's bar on the tiny student
(``agents/progress-headroom.yaml``, as written). Reported:

- the base model's per-skill test accuracy and format-error rate (replies with no readable answer,
  counted apart from wrong answers);
- per teacher and round: per-skill test accuracy (median over seeds, and each seed's), examples trained
  on, wall time per phase (prepare: model conversion, held-out sets and the first engine; evaluate;
  train; generate: plan, generate and verify), and the process's peak RSS;
- the acceptance check of issue 20: weak skills (base accuracy < 0.5) gaining >= 10 points after the
  last round, strong skills losing no more than 5;
- each teacher's final accuracy minus uniform's and open-ended's, paired by seed.

Run it (about 15 minutes per run on 2 cores; 6 runs by default):
    python benchmarks/llm_student.py
    python benchmarks/llm_student.py --seeds 0 --teachers uniform   # one run
    python benchmarks/llm_student.py --seeds 1 2 --add-to benchmarks/results/llm_student.json
    python benchmarks/llm_student.py --teachers tpd open-ended --add-by teacher \
        --add-to benchmarks/results/llm_student.json
    python benchmarks/llm_student.py --resummarize       # the summary again, from the saved runs
"""

from __future__ import annotations

import json
import resource
import statistics
import sys
from pathlib import Path

import figures
import yaml
from common import (
    REPO,
    RESULTS,
    header,
    kept_runs,
    parser,
    print_table,
    run_matrix,
    scratch,
    teach,
    write_result,
)

RECIPE = REPO / "recipes" / "arithmetic-smollm2.yaml"
TEACHERS = {
    "uniform": {"name": "uniform", "policy": "uniform", "engine": "procedural"},
    "skill-tree": None,  # the recipe's own teacher
    # TPD variant d (training data from principles) and DataEnvGym's open-ended baseline, as in
    # agents/tpd.yaml and agents/open-ended.yaml; both read only errors, so they run at the open-ended level
    "tpd": {"name": "tpd", "policy": "tpd", "engine": "discriminating"},
    "open-ended": {"name": "open-ended", "policy": "error_driven", "engine": "procedural"},
    # The learning-progress teacher at the recipe's skill_tree level, with ProgressConfig's defaults (as
    # agents/progress.yaml but explore_examples null: a never-measured skill gets uniform's share once)
    "progress": {"name": "progress", "policy": "progress", "engine": "procedural"},
    # The teacher that meets issue 17's bar on the tiny student, as agents/progress-headroom.yaml
    "progress-headroom": "agents/progress-headroom.yaml",
}
LEVELS = {"tpd": "open_ended", "open-ended": "open_ended"}  # the others: the recipe's skill_tree
WEAK_BELOW, GAIN, DROP = 0.5, 0.10, 0.05


def config(teacher: str, seed: int, runs_root: Path, args) -> dict:
    """The recipe, with ``teacher`` and ``seed``, resized by the command-line options."""
    cfg = yaml.safe_load(RECIPE.read_text())
    base_teacher = cfg["teacher"]
    spec = TEACHERS[teacher]
    if isinstance(spec, str):  # an agents/*.yaml spec, whole
        spec = yaml.safe_load((REPO / spec).read_text())
    if spec is not None:
        cfg["teacher"] = {**spec, "per_round": base_teacher["per_round"], "style": base_teacher["style"]}
    cfg["teacher"]["per_round"] = args.per_round
    if teacher in LEVELS:
        cfg["environment"]["level"] = LEVELS[teacher]
    cfg["environment"].update(rounds=args.rounds, test_per_skill=args.test_per_skill,
                              val_per_skill=args.val_per_skill, budget=args.per_round * args.rounds)
    cfg.update(seed=seed, runs_root=str(runs_root))
    return cfg


def per_skill(report: dict) -> tuple[dict[str, float], dict[str, float]]:
    """(accuracy, format-error rate) per skill of one evaluation report."""
    acc = {s["skill_id"]: s["correct"] / s["n"] for s in report["per_skill"]}
    errors = {s["skill_id"]: s["format_errors"] / s["n"] for s in report["per_skill"]}
    return acc, errors


def one_run(teacher: str, seed: int, root: Path, args) -> dict:
    """One teaching run and what it measured."""
    from tutorkd.config import RunConfig

    cfg = RunConfig.model_validate(config(teacher, seed, root / f"{teacher}-s{seed}", args))
    run_dir, wall = teach(cfg, f"{teacher} s{seed}")
    rounds = []
    phases = {"evaluate": 0.0, "train": 0.0, "generate": 0.0}
    for r in range(args.rounds + 1):
        folder = run_dir / "rounds" / f"r{r}"
        evaluation = json.loads((folder / "eval.json").read_text())
        acc, errors = per_skill(evaluation["test"])
        times = json.loads((folder / "times.json").read_text())
        phases["evaluate"] += times.get("evaluate", 0.0)
        phases["train"] += times.get("train", 0.0)
        phases["generate"] += sum(times.get(k, 0.0) for k in ("plan", "generate", "verify"))
        verify = json.loads((folder / "verify.json").read_text()) if r else None
        rounds.append({"round": r, "test_accuracy": acc, "format_errors": errors,
                       "overall": evaluation["test"]["correct"] / evaluation["test"]["n"],
                       "examples": verify["admitted"] if verify else 0})
    phases["prepare"] = round(wall - sum(phases.values()), 1)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB on Linux -> GiB
    return {"teacher": teacher, "seed": seed, "wall_s": wall,
            "phases_s": {k: round(v, 1) for k, v in phases.items()}, "rounds": rounds,
            "peak_rss_gib": round(peak, 2),
            "run_dir": str(run_dir)}


def summarize(runs: list[dict], teachers: list[str], last: int) -> dict:
    """Medians over seeds per teacher, and the acceptance check against the base profile.

    Each seed draws its own held-out set, so a gain is measured against the same seed's base model
    and then the median over seeds is taken; weak and strong skills follow the median base profile.
    """
    bases = {r["seed"]: r["rounds"][0] for r in runs}
    skills = list(runs[0]["rounds"][0]["test_accuracy"])
    base_acc = {s: statistics.median(b["test_accuracy"][s] for b in bases.values()) for s in skills}
    base_errors = {s: statistics.median(b["format_errors"][s] for b in bases.values()) for s in skills}
    weak = sorted(s for s, a in base_acc.items() if a < WEAK_BELOW)
    strong = sorted(s for s, a in base_acc.items() if a >= WEAK_BELOW)
    out: dict = {"base": {"test_accuracy_median": base_acc, "format_error_rate_median": base_errors,
                          "overall_median": statistics.median(b["overall"] for b in bases.values()),
                          "format_error_rate_overall": statistics.fmean(base_errors.values()),
                          "seeds": sorted(bases)},
                 "weak_skills": weak, "strong_skills": strong, "teachers": {}}
    for teacher in teachers:
        mine = [r for r in runs if r["teacher"] == teacher]
        if not mine:
            continue
        median = {s: statistics.median(r["rounds"][last]["test_accuracy"][s] for r in mine) for s in skills}
        gains = {s: round(statistics.median(r["rounds"][last]["test_accuracy"][s]
                                            - bases[r["seed"]]["test_accuracy"][s] for r in mine), 4)
                 for s in skills}
        gained = [s for s in weak if gains[s] >= GAIN]
        dropped = [s for s in strong if gains[s] < -DROP]
        out["teachers"][teacher] = {
            "seeds": [r["seed"] for r in mine],
            f"test_accuracy_r{last}_median": median, "gain_median": gains,
            "overall_median": statistics.median(r["rounds"][last]["overall"] for r in mine),
            "overall_per_seed": {r["seed"]: round(r["rounds"][last]["overall"], 4) for r in mine},
            "format_error_rate_median": {
                s: statistics.median(r["rounds"][last]["format_errors"][s] for r in mine) for s in skills},
            "weak_skills_gaining_10_points": gained, "strong_skills_dropping_5_points": dropped,
            "acceptance": len(gained) >= 2 and not dropped,
            "examples_per_round": [r["examples"] for r in mine[0]["rounds"][1:]],
            "wall_s_median": statistics.median(r["wall_s"] for r in mine),
            "phases_s_median": {k: statistics.median(r["phases_s"][k] for r in mine)
                                for k in mine[0]["phases_s"]},
            "peak_rss_gib_max": max(r["peak_rss_gib"] for r in mine),
        }
    # Paired by seed (each seed has its own held-out set): how each teacher's final overall accuracy,
    # here the mean over weak skills (every skill starts weak), compares with the baselines'.
    final = {(r["teacher"], r["seed"]): r["rounds"][last]["overall"] for r in runs}
    for teacher, row in out["teachers"].items():
        for baseline in ("uniform", "open-ended"):
            if baseline == teacher or baseline not in out["teachers"]:
                continue
            diffs = [round(final[teacher, s] - final[baseline, s], 4) for s in row["seeds"]
                     if (baseline, s) in final]
            row[f"overall_minus_{baseline}_per_seed"] = diffs
            row[f"beats_{baseline}_all_seeds"] = bool(diffs) and all(d > 0 for d in diffs)
    return out


def main() -> None:
    p = parser(__doc__, seeds=[0, 1, 2], rounds=2, test_per_skill=300, val_per_skill=30, per_round=240,
               out=RESULTS / "llm_student.json")
    p.add_argument("--teachers", nargs="+", default=["uniform", "skill-tree"], choices=list(TEACHERS))
    p.add_argument("--keep", type=Path, default=None, help="keep the run directories here")
    p.add_argument("--add-to", type=Path, default=None,
                   help="an earlier result file with the same options: keep its runs of other seeds "
                        "(or, with --add-by teacher, of other teachers)")
    p.add_argument("--add-by", choices=("seed", "teacher"), default="seed")
    p.add_argument("--resummarize", action="store_true",
                   help="run nothing: recompute the summary (and plot) of --out from its runs")
    args = p.parse_args()
    if args.resummarize:
        result = json.loads(args.out.read_text())
        config = result["config"]
        result["summary"] = summarize(result["runs"], config["teachers"], config["rounds"])
        write_result(result, args.out, lambda png: figures.llm_student(result["summary"], png))
        return
    config = {"recipe": str(RECIPE.relative_to(REPO)), "rounds": args.rounds,
              "test_per_skill": args.test_per_skill, "val_per_skill": args.val_per_skill,
              "per_round": args.per_round, "teachers": args.teachers}
    earlier = []
    if args.add_to and args.add_by == "seed":
        earlier = kept_runs(args.add_to, config, args.seeds, arm="seed")
    elif args.add_to:  # the same seeds, other teachers: their config lists the seeds, not these teachers
        earlier = kept_runs(args.add_to, {k: v for k, v in config.items() if k != "teachers"}
                            | {"seeds": sorted(args.seeds)}, args.teachers, arm="teacher")
    teachers = list(dict.fromkeys([r["teacher"] for r in earlier] + args.teachers))
    with scratch("llm-student-", args.keep) as root:
        runs = run_matrix(args.seeds, args.teachers, lambda t, s: one_run(t, s, root, args))
    runs = sorted(earlier + runs, key=lambda r: (r["seed"], teachers.index(r["teacher"])))
    seeds = sorted({r["seed"] for r in runs})
    result = header("llm_student") | {
        "config": config | {"seeds": seeds, "teachers": teachers},
        "summary": summarize(runs, teachers, args.rounds),
        "runs": runs,
    }
    summary = result["summary"]
    write_result(result, args.out, lambda png: figures.llm_student(summary, png))
    rows = {t: {"overall": v["overall_median"], "gained": ",".join(v["weak_skills_gaining_10_points"]),
                "dropped": ",".join(v["strong_skills_dropping_5_points"]), "accept": v["acceptance"]}
            for t, v in result["summary"]["teachers"].items()}
    print_table(rows, f"SmolLM2 after {args.rounds} rounds (base overall "
                      f"{result['summary']['base']['overall_median']:.3f})")


if __name__ == "__main__":
    sys.exit(main())
