"""Principle discovery (TPD) against the baselines: accuracy, diagnosis coverage, and the bugs it targets.

On the arithmetic domain with the tiny student, at the open-ended level (the teacher sees errors
without skill labels; TPD reads the skills from the questions), these teachers get the same example
budget per round and the same seeds:

- ``tpd``: variant d, problems on which each active principle's bug gives a wrong answer;
- ``tpd-examples``: variant c, new problems like the validation errors each principle explains;
  both also give the errors no active principle explains their share (``tpd.unexplained: like``);
  ``tpd-principles-only`` (variant d without that share) runs when named with ``--teachers``;
- ``tpd-steps``: variant d, with each unexplained error whose first wrong step is a fact slip
  (``7*8=44``) given problems of its skill that have that step (``tpd.unexplained: steps``);
- ``uniform`` and ``open-ended`` (DataEnvGym's error-driven baseline).

For every run and round the full validation attempts (never test) are diagnosed against the bug
library: the diagnosis *coverage* (share of wrong answers some bug reproduces) and the per-bug error
counts. The bugs TPD targets are those active after round 0 (identical for all teachers of a seed:
same base student, same validation set); their counts over rounds show whether targeting them made
them fall faster than under the baselines. Writes ``benchmarks/results/principles.json`` and
``principles.png``.

    .venv/bin/python benchmarks/principles.py [--seeds 0 1 2] [--rounds 3] [--test-per-skill 500]
    .venv/bin/python benchmarks/principles.py --teachers tpd-steps --add-to benchmarks/results/principles.json
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import statistics
import tempfile
import time
from pathlib import Path

RESULTS = Path(__file__).parent / "results" / "principles.json"
TEACHERS = {
    "tpd": {"name": "tpd", "policy": "tpd", "engine": "discriminating", "tpd": {"variant": "bugs"}},
    "tpd-examples": {"name": "tpd-examples", "policy": "tpd", "tpd": {"variant": "examples"}},
    "tpd-principles-only": {"name": "tpd-principles-only", "policy": "tpd", "engine": "discriminating",
                            "tpd": {"variant": "bugs", "unexplained": "ignore"}},
    "tpd-steps": {"name": "tpd-steps", "policy": "tpd", "engine": "discriminating",
                  "tpd": {"variant": "bugs", "unexplained": "steps"}},
    "uniform": {"name": "uniform", "policy": "uniform"},
    "open-ended": {"name": "open-ended", "policy": "error_driven"},
}

DEFAULT_TEACHERS = ["tpd", "tpd-steps", "tpd-examples", "uniform", "open-ended"]
"""``tpd-principles-only`` (the paper's TPD: nothing for unexplained errors) runs when named."""


def run_once(teacher: str, seed: int, args: argparse.Namespace, root: Path) -> dict:
    """One teaching run; per round: accuracies, the diagnosis of the validation attempts, TPD's targets."""
    from tutorkd.agents.tpd.diagnosis import diagnose
    from tutorkd.agents.tpd.slips import KINDS, locate_slips
    from tutorkd.config import RunConfig
    from tutorkd.environments.arithmetic import ArithmeticDomain
    from tutorkd.plots import load_round_evals
    from tutorkd.run import run_teaching

    cfg = RunConfig.model_validate({
        "environment": {"level": "open_ended", "rounds": args.rounds, "test_per_skill": args.test_per_skill,
                        "val_per_skill": args.val_per_skill, "budget": args.rounds * args.per_round},
        "teacher": {**TEACHERS[teacher], "per_round": args.per_round},
        "backend": {"kind": args.backend},
        "student": {} if args.pretrain_steps is None else {"pretrain_steps": args.pretrain_steps},
        "seed": seed,
        "runs_root": str(root / teacher),
    })
    t0 = time.perf_counter()

    def show(e) -> None:
        print(f"  [{teacher} s{seed}] r{e.round} {e.node}: {e.message}")

    run_dir, loop = run_teaching(cfg, on_event=show)
    histories = loop.teacher.policy.histories if cfg.teacher.policy == "tpd" else {}
    domain = ArithmeticDomain()
    rounds = []
    for k, ev in enumerate(load_round_evals(run_dir)):
        d = diagnose(ev.val_attempts, domain)
        slips = locate_slips(ev.val_attempts, domain)
        data = run_dir / "rounds" / f"r{k}" / "data.jsonl"
        rounds.append({
            "round": k, "val_accuracy": ev.val.accuracy, "test_accuracy": ev.test.accuracy,
            # Examples trained on this round (fewer than asked when a skill's problems ran out).
            "examples": len(data.read_text().splitlines()) if k else 0,
            "test_per_skill": ev.test.skill_accuracy(),
            "wrong": d.wrong, "format_errors": d.format_errors, "explained": d.explained,
            "coverage": round(d.coverage, 4),
            # Where the wrong numeric answers first went wrong: fact slips are what no bug reproduces.
            "first_wrong_step_share": {k: round(slips.share(k), 4) for k in KINDS},
            "top_wrong_facts": [f"{f.skill_id} {f.expression}={f.right} x{f.count}" for f in slips.facts[:5]],
            "bug_counts": {b.bug_id: b.attributed for b in d.bugs if b.attributed},
            "active_principles": [t.bug_id for t in histories[k].active] if k in histories else None,
        })
    return {"teacher": teacher, "seed": seed, "wall_s": round(time.perf_counter() - t0, 1), "rounds": rounds}


def _mean_sd(xs: list[float]) -> dict[str, float]:
    sd = statistics.stdev(xs) if len(xs) > 1 else 0.0
    return {"mean": round(statistics.mean(xs), 4), "sd": round(sd, 4)}


def summarize(runs: list[dict], args: argparse.Namespace) -> dict:
    """Per teacher: final accuracy (overall, per skill), coverage by round, targeted-bug counts by round."""
    skills = list(runs[0]["rounds"][0]["test_per_skill"])
    # The bugs TPD targets first: active after round 0 (the same for every teacher of a seed).
    targeted = {r["seed"]: r["rounds"][0]["active_principles"] for r in runs if r["teacher"] == "tpd"}
    out = {}
    for teacher in args.teachers:
        rs = [r for r in runs if r["teacher"] == teacher]
        final = [r["rounds"][-1] for r in rs]
        per_round = range(len(rs[0]["rounds"]))
        targeted_counts = [
            [sum(r["rounds"][k]["bug_counts"].get(b, 0) for b in targeted[r["seed"]]) for k in per_round]
            for r in rs if r["seed"] in targeted
        ]
        out[teacher] = {
            "final_test_accuracy": _mean_sd([f["test_accuracy"] for f in final]),
            "final_test_per_skill": {s: _mean_sd([f["test_per_skill"][s] for f in final]) for s in skills},
            "coverage_by_round": [_mean_sd([r["rounds"][k]["coverage"] for r in rs]) for k in per_round],
            "fact_slip_share_by_round": [
                _mean_sd([r["rounds"][k]["first_wrong_step_share"]["fact"] for r in rs]) for k in per_round],
            "wrong_by_round": [_mean_sd([r["rounds"][k]["wrong"] for r in rs]) for k in per_round],
            "targeted_bug_errors_by_round": [_mean_sd([c[k] for c in targeted_counts]) for k in per_round]
            if targeted_counts else None,
        }
    # Weak skills: the base student's test accuracy below 0.3 (round 0 is the same base for every run).
    # Strong skills (base >= 0.6) are reported too, so that forgetting cannot hide behind a weak-skill gain.
    base_skills = runs[0]["rounds"][0]["test_per_skill"]
    weak = [s for s, a in base_skills.items() if a < 0.3]
    strong = [s for s, a in base_skills.items() if a >= 0.6]

    def mean_acc(rnd: dict, skills: list[str] = weak) -> float:
        """Mean test accuracy over ``skills`` (the weak ones unless told)."""
        return statistics.mean(rnd["test_per_skill"][s] for s in skills)

    for teacher in out:
        rs = [r for r in runs if r["teacher"] == teacher]
        for name, skills in (("weak", weak), ("strong", strong)):
            out[teacher][f"{name}_accuracy_by_round_median"] = [
                round(statistics.median(mean_acc(r["rounds"][k], skills) for r in rs), 4)
                for k in range(len(rs[0]["rounds"]))]
    if "open-ended" in out:
        ref = {r["seed"]: mean_acc(r["rounds"][-1]) for r in runs if r["teacher"] == "open-ended"}
        for teacher in out:
            diffs = [mean_acc(r["rounds"][-1]) - ref[r["seed"]] for r in runs if r["teacher"] == teacher]
            out[teacher]["weak_minus_open_ended_per_seed"] = [round(d, 4) for d in diffs]
            out[teacher]["weak_minus_open_ended_median"] = round(statistics.median(diffs), 4)
    if "uniform" in out:
        base = {r["seed"]: r["rounds"][-1]["test_accuracy"] for r in runs if r["teacher"] == "uniform"}
        for teacher in out:
            diffs = [r["rounds"][-1]["test_accuracy"] - base[r["seed"]]
                     for r in runs if r["teacher"] == teacher]
            out[teacher]["minus_uniform_per_seed"] = [round(d, 4) for d in diffs]
    return {"targeted_bugs": targeted, "weak_skills": weak, "strong_skills": strong, "teachers": out}


def plot(summary: dict, path: Path) -> None:
    """Three panels: final per-skill test accuracy, coverage by round (bugs, and fact slips at the first
    wrong step), targeted-bug errors by round."""
    import matplotlib

    matplotlib.use("Agg")  # Why: runs headless.
    import matplotlib.pyplot as plt

    teachers = summary["teachers"]
    skills = list(next(iter(teachers.values()))["final_test_per_skill"])
    fig, axes = plt.subplots(1, 3, figsize=(16, 4.8), dpi=110, gridspec_kw={"width_ratios": [2.2, 1, 1]})
    width = 0.8 / len(teachers)
    for i, (name, t) in enumerate(teachers.items()):
        xs = [j + i * width for j in range(len(skills) + 1)]
        ys = [t["final_test_per_skill"][s]["mean"] for s in skills] + [t["final_test_accuracy"]["mean"]]
        es = [t["final_test_per_skill"][s]["sd"] for s in skills] + [t["final_test_accuracy"]["sd"]]
        axes[0].bar(xs, ys, width, yerr=es, label=name, capsize=2)
        rounds = range(len(t["coverage_by_round"]))
        line, = axes[1].plot(rounds, [c["mean"] for c in t["coverage_by_round"]], marker="o",
                             label=f"{name}: a bug")
        axes[1].plot(rounds, [c["mean"] for c in t["fact_slip_share_by_round"]], marker="x", ls="--",
                     color=line.get_color(), label=f"{name}: a fact slip")
        if t["targeted_bug_errors_by_round"] is not None:
            ys = [c["mean"] for c in t["targeted_bug_errors_by_round"]]
            axes[2].plot(rounds, ys, marker="o", label=name)
    axes[0].set_xticks([j + 0.4 - width / 2 for j in range(len(skills) + 1)], skills + ["overall"],
                       rotation=35, ha="right", fontsize=8)
    axes[0].set_ylabel("final test accuracy (mean, sd over seeds)")
    axes[0].set_ylim(0, 1.02)
    for ax in axes[1:]:
        ax.set_xticks(range(len(next(iter(teachers.values()))["coverage_by_round"])))
    axes[1].set_title("validation errors explained by ...")
    axes[1].set_xlabel("round")
    axes[1].set_ylim(0, 1.02)
    axes[2].set_title("validation errors of the bugs TPD targeted")
    axes[2].set_xlabel("round")
    for ax in axes:
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def run_config(args: argparse.Namespace) -> dict:
    """What makes two invocations' runs comparable (the teachers aside)."""
    return {"seeds": args.seeds, "rounds": args.rounds, "per_round": args.per_round,
            "test_per_skill": args.test_per_skill, "val_per_skill": args.val_per_skill,
            "level": "open_ended", "backend": args.backend, "pretrain_steps": args.pretrain_steps}


def kept_runs(args: argparse.Namespace) -> list[dict]:
    """The runs of ``--add-to`` for teachers not named now; ``SystemExit`` if its config differs."""
    earlier = json.loads(args.add_to.read_text())
    config = {k: v for k, v in earlier["config"].items() if k != "teachers"}
    if config != run_config(args):
        raise SystemExit(f"--add-to {args.add_to}: its config {config} differs from this one "
                         f"{run_config(args)}; pass the same options")
    return [r for r in earlier["runs"] if r["teacher"] not in args.teachers]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--test-per-skill", type=int, default=500)
    parser.add_argument("--val-per-skill", type=int, default=100)
    parser.add_argument("--per-round", type=int, default=1000,
                        help="examples per round (the same for every teacher)")
    parser.add_argument("--backend", choices=["vllm", "transformers"], default="vllm")
    parser.add_argument("--pretrain-steps", type=int, default=None,
                        help="pretraining steps of the base student (default: the config's); for smoke runs")
    parser.add_argument("--teachers", nargs="+", choices=list(TEACHERS), default=DEFAULT_TEACHERS)
    parser.add_argument("--out", type=Path, default=RESULTS, help="results JSON (the PNG goes next to it)")
    parser.add_argument("--add-to", type=Path, default=None,
                        help="an earlier results JSON of the same config: keep its runs of the teachers not "
                             "named in --teachers, so that one teacher can be added without rerunning all")
    args = parser.parse_args()
    runs = kept_runs(args) if args.add_to else []
    args.teachers = list(dict.fromkeys([r["teacher"] for r in runs] + args.teachers))
    root = Path(tempfile.mkdtemp(prefix="tutorkd-principles-"))
    done = {(r["teacher"], r["seed"]) for r in runs}
    for seed in args.seeds:
        for teacher in args.teachers:  # Why interleaved: machine load drifts; a seed's teachers share it.
            if (teacher, seed) in done:
                continue
            runs.append(run_once(teacher, seed, args, root))
            print(f"{teacher} seed {seed}: test {runs[-1]['rounds'][-1]['test_accuracy']:.3f} "
                  f"({runs[-1]['wall_s']} s)")
    summary = summarize(runs, args)
    result = {
        "benchmark": "principles",
        "date": time.strftime("%Y-%m-%d"),
        "machine": {"cpus": __import__("os").cpu_count(), "platform": platform.platform(),
                    "python": platform.python_version()},
        "config": {**run_config(args), "teachers": {t: TEACHERS[t] for t in args.teachers}},
        "summary": summary,
        "runs": runs,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    plot(summary, args.out.with_suffix(".png"))
    print(json.dumps(summary["teachers"], indent=1))
    shutil.rmtree(root)


if __name__ == "__main__":
    main()
