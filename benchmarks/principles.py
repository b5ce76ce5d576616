"""Principle discovery (TPD) against the baselines: accuracy, diagnosis coverage, and the bugs it targets.

On the arithmetic domain with the tiny student, at the open-ended level (the teacher sees errors
without skill labels; TPD reads the skills from the questions), these teachers (``agents/{name}.yaml``)
get the same example budget per round and the same seeds:

- ``tpd``: variant d, problems on which each active principle's bug gives a wrong answer;
- ``tpd-examples``: variant c, new problems like the validation errors each principle explains;
  both also give the errors no active principle explains their share (``tpd.unexplained: like``);
  ``tpd-principles-only`` (variant d without that share) runs when named with ``--teachers``;
- ``tpd-steps``: variant d, with each unexplained error whose first wrong step is a fact slip
  (``7*8=44``) given problems of its skill that have that step (``tpd.unexplained: steps``);
- ``uniform`` and ``open-ended`` (DataEnvGym's error-driven baseline).

For every run and round the full validation attempts (never test) saved in the run directory are
diagnosed against the bug library: the diagnosis *coverage* (share of wrong answers some bug
reproduces) and the per-bug error counts. The bugs TPD targets are those active after round 0
(identical for all teachers of a seed: same base student, same validation set); their counts over
rounds show whether targeting them made them fall faster than under the baselines. Writes
``benchmarks/results/principles.json`` and ``principles.png``.

    .venv/bin/python benchmarks/principles.py [--seeds 0 1 2] [--rounds 3] [--test-per-skill 500]
    .venv/bin/python benchmarks/principles.py --teachers tpd-steps --add-to benchmarks/results/principles.json
"""

from __future__ import annotations

import statistics
from pathlib import Path

import common
import figures

RESULTS = common.RESULTS / "principles.json"
TEACHERS = ("tpd", "tpd-examples", "tpd-principles-only", "tpd-steps", "uniform", "open-ended")
"""Names of ``agents/*.yaml`` specs this benchmark compares."""
DEFAULT_TEACHERS = ["tpd", "tpd-steps", "tpd-examples", "uniform", "open-ended"]
"""``tpd-principles-only`` (the paper's TPD: nothing for unexplained errors) runs when named."""


def run_once(teacher: str, seed: int, args, root: Path) -> dict:
    """One teaching run of ``agents/{teacher}.yaml`` at the open-ended level; its rounds (``read_rounds``)."""
    cfg = common.run_config(
        env="arithmetic-open", teacher=teacher, seed=seed, runs_root=root / teacher,
        environment={"rounds": args.rounds, "test_per_skill": args.test_per_skill,
                     "val_per_skill": args.val_per_skill, "budget": args.rounds * args.per_round},
        teacher_fields={"per_round": args.per_round}, student=common.student_overrides(args),
        backend={"kind": args.backend})
    run_dir, wall_s = common.teach(cfg, f"{teacher} s{seed}")
    return {"teacher": teacher, "seed": seed, "wall_s": wall_s, "rounds": read_rounds(run_dir)}


def active_principles(run_dir: Path) -> dict[int, list[str]]:
    """Feedback round to the bugs of the principles TPD held active after it, from the principle history
    it saves with each plan (none for other teachers)."""
    from tutorkd.agents.tpd.diagnosis import PrincipleHistory
    from tutorkd.agents.tpd.teacher import PRINCIPLES_FILE
    from tutorkd.io import read_json

    histories = (read_json(p, PrincipleHistory) for p in run_dir.glob(f"rounds/r*/{PRINCIPLES_FILE}"))
    return {h.round: [t.bug_id for t in h.active] for h in histories}


def read_rounds(run_dir: Path) -> list[dict]:
    """Per round of a finished run: accuracies, the diagnosis of its validation attempts, TPD's targets."""
    from tutorkd.agents.tpd.diagnosis import diagnose
    from tutorkd.agents.tpd.slips import KINDS, locate_slips
    from tutorkd.environments.arithmetic import ArithmeticDomain
    from tutorkd.evals.plots import load_round_evals
    from tutorkd.loop import round_dir

    domain, active, rounds = ArithmeticDomain(), active_principles(run_dir), []
    for k, ev in enumerate(load_round_evals(run_dir)):
        d = diagnose(ev.val_attempts, domain)
        slips = locate_slips(ev.val_attempts, domain)
        data = round_dir(run_dir, k) / "data.jsonl"
        rounds.append({
            "round": k, "val_accuracy": ev.val.accuracy, "test_accuracy": ev.test.accuracy,
            # Examples trained on this round (fewer than asked when a skill's problems ran out).
            "examples": len(data.read_text().splitlines()) if k else 0,
            "test_per_skill": ev.test.skill_accuracy(),
            "wrong": d.wrong, "format_errors": d.format_errors, "explained": d.explained,
            "coverage": round(d.coverage, 4),
            # Where the wrong numeric answers first went wrong: fact slips are what no bug reproduces.
            "first_wrong_step_share": {kind: round(slips.share(kind), 4) for kind in KINDS},
            "top_wrong_facts": [f"{f.skill_id} {f.expression}={f.right} x{f.count}" for f in slips.facts[:5]],
            "bug_counts": {b.bug_id: b.attributed for b in d.bugs if b.attributed},
            "active_principles": active.get(k),
        })
    return rounds


def summarize(runs: list[dict], teachers: list[str]) -> dict:
    """Per teacher: final accuracy (overall, per skill), coverage by round, targeted-bug counts by round."""
    mean_sd = common.mean_sd
    skills = list(runs[0]["rounds"][0]["test_per_skill"])
    # The bugs TPD targets first: active after round 0 (the same for every teacher of a seed).
    targeted = {r["seed"]: r["rounds"][0]["active_principles"] for r in runs if r["teacher"] == "tpd"}
    # Weak skills: the base student's test accuracy below 0.3 (round 0 is the same base for every run).
    # Strong skills (base >= 0.6) are reported too, so that forgetting cannot hide behind a weak-skill gain.
    weak, strong = common.skill_groups(runs[0]["rounds"][0]["test_per_skill"])

    def mean_acc(rnd: dict, skills: list[str] = weak) -> float:
        """Mean test accuracy over ``skills`` (the weak ones unless told)."""
        return statistics.mean(rnd["test_per_skill"][s] for s in skills)

    out = {}
    for teacher in teachers:
        rs = [r for r in runs if r["teacher"] == teacher]
        final, per_round = [r["rounds"][-1] for r in rs], range(len(rs[0]["rounds"]))

        def by_round(value, rs=rs, per_round=per_round) -> list[dict[str, float]]:
            return [mean_sd([value(r["rounds"][k]) for r in rs]) for k in per_round]

        targeted_counts = [
            [sum(r["rounds"][k]["bug_counts"].get(b, 0) for b in targeted[r["seed"]]) for k in per_round]
            for r in rs if r["seed"] in targeted
        ]
        out[teacher] = {
            "final_test_accuracy": mean_sd([f["test_accuracy"] for f in final]),
            "final_test_per_skill": {s: mean_sd([f["test_per_skill"][s] for f in final]) for s in skills},
            "coverage_by_round": by_round(lambda x: x["coverage"]),
            "fact_slip_share_by_round": by_round(lambda x: x["first_wrong_step_share"]["fact"]),
            "wrong_by_round": by_round(lambda x: x["wrong"]),
            "targeted_bug_errors_by_round": [mean_sd([c[k] for c in targeted_counts]) for k in per_round]
            if targeted_counts else None,
        }
        for name, group in (("weak", weak), ("strong", strong)):
            out[teacher][f"{name}_accuracy_by_round_median"] = [
                round(statistics.median(mean_acc(r["rounds"][k], group) for r in rs), 4) for k in per_round]
    if "open-ended" in out:
        for teacher, diffs in paired(runs, out, "open-ended", mean_acc).items():
            out[teacher]["weak_minus_open_ended_per_seed"] = [round(d, 4) for d in diffs]
            out[teacher]["weak_minus_open_ended_median"] = round(statistics.median(diffs), 4)
    if "uniform" in out:
        for teacher, diffs in paired(runs, out, "uniform", lambda x: x["test_accuracy"]).items():
            out[teacher]["minus_uniform_per_seed"] = [round(d, 4) for d in diffs]
    return {"targeted_bugs": targeted, "weak_skills": weak, "strong_skills": strong, "teachers": out}


def paired(runs: list[dict], teachers, reference: str, value) -> dict[str, list[float]]:
    """Per teacher, ``value`` of each run's final round minus that of ``reference``'s run of its seed."""
    ref = {r["seed"]: value(r["rounds"][-1]) for r in runs if r["teacher"] == reference}
    return {t: [value(r["rounds"][-1]) - ref[r["seed"]] for r in runs if r["teacher"] == t] for t in teachers}


def comparable(args) -> dict:
    """What makes two invocations' runs comparable (the teachers aside)."""
    return {"seeds": args.seeds, "rounds": args.rounds, "per_round": args.per_round,
            "test_per_skill": args.test_per_skill, "val_per_skill": args.val_per_skill,
            "level": "open_ended", "backend": args.backend, "pretrain_steps": args.pretrain_steps}


def main() -> None:
    parser = common.parser(__doc__, seeds=[0, 1, 2], rounds=3, test_per_skill=500, val_per_skill=100,
                           per_round=1000, backend="vllm", pretrain_steps=None, out=RESULTS)
    parser.add_argument("--teachers", nargs="+", choices=TEACHERS, default=DEFAULT_TEACHERS)
    parser.add_argument("--add-to", type=Path, default=None,
                        help="an earlier results JSON of the same config: keep its runs of the teachers not "
                             "named in --teachers, so that one teacher can be added without rerunning all")
    args = parser.parse_args()
    runs = common.kept_runs(args.add_to, comparable(args), args.teachers) if args.add_to else []
    args.teachers = list(dict.fromkeys([r["teacher"] for r in runs] + args.teachers))
    with common.scratch("tutorkd-principles-") as root:
        runs += common.run_matrix(
            args.seeds, args.teachers, lambda t, s: run_once(t, s, args, root),
            done={(r["teacher"], r["seed"]) for r in runs},
            describe=lambda r: f"test {r['rounds'][-1]['test_accuracy']:.3f} ({r['wall_s']} s)")
    summary = summarize(runs, args.teachers)
    specs = {t: common.teacher_spec(t).model_dump(mode="json", exclude_defaults=True) for t in args.teachers}
    result = {**common.header("principles"), "config": {**comparable(args), "teachers": specs},
              "summary": summary, "runs": runs}
    common.write_result(result, args.out, lambda png: figures.principles(summary, png))
    common.print_table({t: {"final_test": s["final_test_accuracy"]["mean"],
                            "weak_final": s["weak_accuracy_by_round_median"][-1],
                            "strong_final": s["strong_accuracy_by_round_median"][-1],
                            "coverage_final": s["coverage_by_round"][-1]["mean"]}
                        for t, s in summary["teachers"].items()}, title="means and medians over seeds")


if __name__ == "__main__":
    main()
