"""Kill/resume harness: SIGKILL ``tutorkd teach`` at points spread over every loop node, resume, compare.

One uninterrupted reference run records when each node finishes (the CLI prints one line per node).
Each kill point then starts the same run (same config and seed) in a fresh process and kills it:

- timed, from outside (the slow nodes: setup, evaluate, train, finish): wait for the line of the node
  before the target, sleep a random share of the target's reference duration, SIGKILL the group;
- inside a write (every node, also plan/generate/verify, which take milliseconds): the process
  SIGKILLs itself halfway through its nth file write in the target node (``kill_at_write.py``).

``tutorkd teach --resume RUN_DIR`` then finishes the run. The node actually hit is read back from the
run's langgraph checkpoint (the node still pending when the process died), not assumed from the
timing. Every resumed run is compared with the reference: lost and duplicated examples, verify
counts, the bytes of every data file and evaluation (run name masked), adapter weights, training
losses and metrics. A second uninterrupted run checks that the reference itself is reproducible.

With ``--kills-per-run N`` a run is killed N times in a row (each resumed process killed again at a
later node) before it is finished; its comparison then covers all N kill points.

    .venv/bin/python benchmarks/reliability.py [--timed-per-slot 2] [--kills-per-run 1] [--seed 0]
"""

from __future__ import annotations

import os
import random
import signal
import sys
import tempfile
import time
from pathlib import Path

import yaml

# Why: tests/test_reliability.py loads this file by its path, with benchmarks/ not on sys.path.
sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402
from teach_harness import Teach, compare, node_timeline, only_run, pending, stray_temp_files  # noqa: E402

RESULTS = common.RESULTS / "reliability.json"
TINY_STUDENT = {"pretrain_steps": 300, "pretrain_batch": 64, "lora_rank": 8, "lora_alpha": 16,
                "learning_rate": 5e-3, "epochs": 1, "batch_size": 16}
"""The test suite's tiny student (``tests/conftest.py``, so the harness shares its cached base), trained
for one epoch per round: the harness runs it dozens of times."""


def write_config(root: Path, student: dict, rounds: int = 2, seed: int = 0, per_round: int = 60) -> Path:
    """A run config small enough to run dozens of times (uniform teacher, transformers backend): 10 val
    and 10 test problems per skill, ``per_round`` examples a round."""
    cfg = common.run_config(env="arithmetic-tree", teacher="uniform", seed=seed, runs_root=root / "runs",
                            environment={"test_per_skill": 10, "val_per_skill": 10,
                                         "budget": per_round * rounds, "rounds": rounds},
                            teacher_fields={"per_round": per_round}, student=student,
                            backend={"kind": "transformers"})
    root.mkdir(parents=True, exist_ok=True)
    path = root / "run.yaml"
    path.write_text(yaml.safe_dump(cfg.model_dump(mode="json")))
    return path


def reference(cfg: Path, nice: int = 0) -> tuple[Path, dict[tuple[str, int], tuple[float, float]], float]:
    """Run ``cfg`` uninterrupted: its run directory, each slot's (start, end) in seconds, wall time."""
    proc = Teach(str(cfg), nice=nice)
    proc.finish()
    return only_run(cfg.parent), node_timeline(proc.events()), time.monotonic() - proc.started


def interrupted_run(cfg: Path, timeline: dict, targets: list[dict], nice: int = 0) -> tuple[Path, list[dict]]:
    """Start ``cfg`` and kill it at each target in turn, resuming after each kill; then resume to the end.

    A target is ``{"slot": (node, round), "share": s}`` (SIGKILL from outside, ``s`` of the slot's
    reference duration after the line of the slot before it) or ``{"slot": ..., "nth": n}`` (the
    process kills itself in its nth write inside the slot: ``kill_at_write.py``). Targets must be in
    execution order; those left once a kill landed after the run's last step are skipped.
    """
    order = list(timeline)
    kills, run_dir, resume_at = [], None, None
    for target in targets:
        slot = target["slot"]
        if run_dir is not None and resume_at is None:
            break  # the last kill came after the run had finished: nothing left to interrupt
        args = (str(cfg),) if run_dir is None else ("--resume", str(run_dir))
        if "nth" in target:
            proc = Teach(*args, nice=nice, kill_at=f"{slot[0]}:{slot[1]}:{target['nth']}")
            if (code := proc.wait()) != -signal.SIGKILL:
                raise RuntimeError(f"no kill at {target}: exited {code}")
            killed_at, delay = time.monotonic() - proc.started, None
            (where,) = [line.removeprefix("kill_at_write: ") for _, line in proc.lines
                        if line.startswith("kill_at_write: ")]
        else:
            proc = Teach(*args, nice=nice)
            i = order.index(slot)
            if slot == ("setup", 0):
                trigger = ("header", 0)
            elif resume_at is not None and order.index(resume_at) >= i:
                trigger = ("setup", 0)  # a resumed process starts at the node its last run was killed in
            else:
                trigger = order[i - 1]
            trigger_at = proc.wait_for(trigger, nth=2 if trigger == ("setup", 0) else 1)
            start, end = timeline[slot]
            delay = target["share"] * (end - start)
            time.sleep(max(0.0, trigger_at + delay - (time.monotonic() - proc.started)))
            killed_at, where = proc.kill(), None
        run_dir = run_dir or only_run(cfg.parent)
        hit = pending(run_dir)
        resume_at = hit if hit[0] != "done" else None
        kills.append({"mode": "write" if "nth" in target else "timed",
                      "target": {"node": slot[0], "round": slot[1]}, "hit": {"node": hit[0], "round": hit[1]},
                      "nth_write": target.get("nth"), "where": where,
                      "delay_s": None if delay is None else round(delay, 4),
                      "killed_at_s": round(killed_at, 3), "temp_files_left": stray_temp_files(run_dir)})
    resumed = Teach("--resume", str(run_dir), nice=nice)
    resumed.finish()
    return run_dir, kills


SLOW = ("setup", "evaluate", "train", "finish")
"""Nodes long enough (seconds) to kill from outside at a timed point; the others take milliseconds."""


def plan_targets(timeline: dict, timed_per_slot: int, rng: random.Random) -> list[dict]:
    """Timed outside kills at random points of every slow slot (``timed_per_slot`` each), and one kill
    inside every loop slot at a random one of its first four writes, fast slots included."""
    targets = [{"slot": slot, "share": rng.random()} for _ in range(timed_per_slot)
               for slot in timeline if slot[0] in SLOW]
    return targets + [{"slot": slot, "nth": rng.randint(1, 4)} for slot in timeline if slot[0] != "setup"]


def summarize(points: list[dict], runs: list[dict]) -> dict:
    """Totals over every kill point: lost and duplicated examples, identity, where the kills landed."""
    hits: dict[str, int] = {}
    for p in points:
        key = f"{p['hit']['node']} r{p['hit']['round']}"
        hits[key] = hits.get(key, 0) + 1
    return {"kill_points": len(points), "runs": len(runs),
            "lost": sum(r["lost"] for r in runs), "extra": sum(r["extra"] for r in runs),
            "duplicated": sum(r["duplicated"] for r in runs),
            "all_identical": all(r["identical"] for r in runs),
            "max_metric_diff": max((r["max_metric_diff"] for r in runs), default=None),
            "hits_by_node": dict(sorted(hits.items())),
            "loop_nodes_hit": sorted({p["hit"]["node"] for p in points} - {"setup", "done"}),
            "points_with_temp_files_left": sum(bool(p["temp_files_left"]) for p in points)}


def main() -> None:
    parser = common.parser(__doc__, rounds=2, out=RESULTS)
    parser.add_argument("--timed-per-slot", type=int, default=2,
                        help="timed outside kills per slow slot (setup, evaluate, train, finish)")
    parser.add_argument("--kills-per-run", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0, help="seed of the kill schedule (the runs use seed 0)")
    parser.add_argument("--nice", type=int, default=10, help="niceness of the teach processes")
    args = parser.parse_args()
    cache = Path(os.environ.get("TUTORKD_CACHE", Path.home() / ".cache" / "tutorkd")).expanduser()
    student = {**TINY_STUDENT, "cache_dir": str(cache / "test-students")}
    root = Path(tempfile.mkdtemp(prefix="tutorkd-reliability-"))
    t0 = time.monotonic()
    ref_dir, timeline, ref_wall = reference(write_config(root / "ref", student, args.rounds), args.nice)
    print(f"reference: {ref_wall:.1f} s, {ref_dir}", flush=True)
    # Same config and seed once more, uninterrupted: the determinism baseline the kills are held to.
    again_dir, _, _ = reference(write_config(root / "again", student, args.rounds), args.nice)
    determinism = compare(ref_dir, again_dir)
    print(f"second uninterrupted run identical: {determinism['identical']}", flush=True)
    targets = plan_targets(timeline, args.timed_per_slot, random.Random(args.seed))
    order = list(timeline)
    groups = [sorted(targets[i:i + args.kills_per_run], key=lambda t: order.index(t["slot"]))
              for i in range(0, len(targets), args.kills_per_run)]
    runs, points, failed = [], [], []
    for n, group in enumerate(groups):
        try:
            run_dir, kills = interrupted_run(write_config(root / f"kill{n}", student, args.rounds), timeline,
                                             group, args.nice)
            result = compare(ref_dir, run_dir)
        except (RuntimeError, TimeoutError, FileNotFoundError) as exc:
            # Why recorded, not raised: a run that cannot be resumed is the defect this harness looks
            # for; it is reported (and fails the summary) while the other kill points still run.
            failed.append({"run": n, "targets": [{**t, "slot": list(t["slot"])} for t in group],
                           "error": str(exc)[-3000:]})
            print(f"run {n} FAILED: {str(exc)[-500:]}", flush=True)
            continue
        runs.append({"run": n, **result})
        for kill in kills:
            points.append({"run": n, **kill, "lost": result["lost"], "duplicated": result["duplicated"],
                           "identical": result["identical"], "max_metric_diff": result["max_metric_diff"]})
            print(f"kill {len(points):2d} ({kill['mode']}): target {kill['target']} hit {kill['hit']} lost "
                  f"{result['lost']} dup {result['duplicated']} identical {result['identical']}", flush=True)
    summary = {**summarize(points, runs), "failed_runs": len(failed),
               "wall_s": round(time.monotonic() - t0, 1)}
    summary["all_identical"] = summary["all_identical"] and not failed
    setup = {"rounds": args.rounds, "kills_per_run": args.kills_per_run, "schedule_seed": args.seed,
             "timed_per_slot": args.timed_per_slot, "nice": args.nice,
             "backend": "transformers (CPU)", "student": student,
             "eval": "10 val + 10 test problems per skill",
             "budget": 60 * args.rounds, "reference_wall_s": round(ref_wall, 1),
             **common.machine_info(("omp_num_threads", "python", "machine", "cpus"))}
    timeline_out = [{"node": s[0], "round": s[1], "start_s": round(a, 3), "end_s": round(b, 3)}
                    for s, (a, b) in timeline.items()]
    common.write_result({"benchmark": "reliability", "summary": summary, "setup": setup,
                         "reference_timeline": timeline_out, "determinism": determinism,
                         "kill_points": points, "runs": runs, "failed_runs": failed}, args.out)
    common.print_table({k: {"value": v} for k, v in summary.items()})
    print(f"run directories under {root}")


if __name__ == "__main__":
    main()
