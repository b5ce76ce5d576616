"""Two-process LoRA training of the tiny student against one process, at the same global batch.

The default round: the default run (``tutorkd teach`` with no arguments: the arithmetic skill tree, the
uniform teacher, the tiny student with its defaults), its teacher's round-1 examples (1000, drawn per
seed), and one fresh adapter trained on them in one process (in the loop's process, as ever) and in
``--processes`` processes (``student.train_processes``: ``accelerate launch``, gloo on the CPU, each rank
taking 64 / processes examples a step, so the global batch is 64 in both). Every adapter is scored on
the held-out test set through the transformers backend (no vLLM engine; ``--backend vllm`` is faster
where an engine may run). Reported
(``benchmarks/results/distributed_train.json``, loss curves in the PNG next to it): test accuracy
(overall, per skill, format errors) of the base and of each adapter, the difference per seed and its
mean (acceptance: within 1 point), the loss of every optimizer step of both, and the wall times
(the launched training's include starting its processes).

    .venv/bin/python benchmarks/distributed_train.py [--seeds 0 1 2] [--per-round 1000]
        [--test-per-skill 500] [--processes 2] [--backend transformers]
        [--out benchmarks/results/distributed_train.json]

A smoke run: ``--seeds 0 --per-round 128 --test-per-skill 10 --epochs 1 --out /tmp/distributed_train.json``.
"""

from __future__ import annotations

import statistics
import time
from pathlib import Path

import common

RESULTS = common.RESULTS / "distributed_train.json"
ACCEPT = 0.01
ADAPTER = Path("adapters") / "r1"
"""Where a student saves its round-1 adapter, under its work folder."""
"""The acceptance margin: the mean test-accuracy difference between the arms, at most 1 point."""


def round_one_examples(setup, seed: int) -> list:
    """The default teacher's round-1 examples for ``seed`` (its plan from an empty feedback: the uniform
    teacher reads none), as the loop would ask for them."""
    from tutorkd.agents.teacher import build_teacher
    from tutorkd.protocols import GenerationContext
    from tutorkd.schema import Feedback

    cfg = setup.config
    teacher = build_teacher(cfg.teacher, setup.domain, exclude=setup.exclude)
    feedback = Feedback(level=cfg.environment.level, round=0, errors=(), budget_used=0,
                        budget_total=cfg.environment.budget)
    context = GenerationContext(run_id=f"distributed-train-s{seed}", round=1, teacher=teacher.name, seed=seed)
    return teacher.generate(teacher.plan(feedback), context)


def train_and_score(setup, work: Path, processes: int, seed: int, examples: list, test: list) -> dict:
    """A fresh adapter on ``examples`` trained in ``processes`` processes, its stats and test accuracy."""
    from tutorkd.students.student import LoRAStudent

    cfg = setup.config.student.model_copy(update={"train_processes": processes})
    student = LoRAStudent(setup.domain, setup.backend, setup.base_dir, cfg, work / f"p{processes}-s{seed}",
                          seed)
    t0 = time.perf_counter()
    stats = student.train(examples, round=1, init=None).stats
    train_s = round(time.perf_counter() - t0, 1)
    t0 = time.perf_counter()
    score = common.accuracy(student, test)
    return {"arm": f"{processes}p", "processes": processes, "seed": seed, "examples": len(examples),
            "steps": stats.steps, "losses": [round(x, 5) for x in stats.losses], "train_s": train_s,
            "eval_s": round(time.perf_counter() - t0, 1), "test_accuracy": round(score["overall"], 4),
            "per_skill": {k: round(v, 4) for k, v in score["per_skill"].items()},
            "format_errors": score["format_errors"]}


def weight_difference(one: Path, other: Path) -> float:
    """The largest absolute difference between two adapters' weights (same tensors in both)."""
    from safetensors.torch import load_file

    a, b = (load_file(str(p / "adapter_model.safetensors")) for p in (one, other))
    if a.keys() != b.keys():
        raise RuntimeError(f"adapters {one} and {other} hold different tensors")
    return max((a[k] - b[k]).abs().max().item() for k in a)


def summarize(runs: list[dict], processes: int) -> dict:
    """Per seed: the accuracy difference (many processes minus one) and the largest loss difference; their
    mean, and whether the mean is within ``ACCEPT``."""
    by = {(r["processes"], r["seed"]): r for r in runs}
    seeds = sorted({r["seed"] for r in runs})
    per_seed = []
    for seed in seeds:
        one, many = by[(1, seed)], by[(processes, seed)]
        per_seed.append({
            "seed": seed, "accuracy_1p": one["test_accuracy"],
            f"accuracy_{processes}p": many["test_accuracy"],
            "difference": round(many["test_accuracy"] - one["test_accuracy"], 4),
            "max_loss_difference": round(max(abs(a - b) for a, b in zip(one["losses"], many["losses"],
                                                                        strict=True)), 5),
            "max_weight_difference": many["max_weight_difference_to_1p"],
            "train_s_1p": one["train_s"], f"train_s_{processes}p": many["train_s"]})
    mean = statistics.mean(s["difference"] for s in per_seed)
    return {"per_seed": per_seed, "mean_difference": round(mean, 4),
            "max_abs_difference": max(abs(s["difference"]) for s in per_seed),
            "within_1_point": abs(mean) <= ACCEPT}


def plot(result: dict, png: Path) -> None:
    """The loss curves of both arms, one panel per seed."""
    plt = common.pyplot()
    seeds = sorted({r["seed"] for r in result["runs"]})
    fig, axes = plt.subplots(1, len(seeds), figsize=(4.5 * len(seeds), 3.2), squeeze=False)
    for ax, seed in zip(axes[0], seeds, strict=True):
        for run in (r for r in result["runs"] if r["seed"] == seed):
            one = run["processes"] == 1
            ax.plot(range(1, len(run["losses"]) + 1), run["losses"], linestyle="-" if one else "--",
                    label="1 process" if one else f"{run['processes']} processes (accelerate, gloo)")
        ax.set(title=f"seed {seed}", xlabel="optimizer step", ylabel="training loss")
        ax.legend()
    fig.tight_layout()
    fig.savefig(png, dpi=120)


def main() -> None:
    from tutorkd.assembly import build_student_setup
    from tutorkd.config import RunConfig

    parser = common.parser(__doc__, seeds=[0, 1, 2], per_round=None, test_per_skill=None, epochs=None,
                           backend="transformers", out=RESULTS)
    parser.add_argument("--processes", type=int, default=2, help="processes of the launched arm")
    args = parser.parse_args()
    started = time.perf_counter()
    teacher = RunConfig().teacher.model_dump() | ({"per_round": args.per_round} if args.per_round else {})
    environment = {"test_per_skill": args.test_per_skill} if args.test_per_skill else {}
    cfg = RunConfig.model_validate({"backend": {"kind": args.backend}, "teacher": teacher,
                                    "environment": environment, "student": common.student_overrides(args)})
    runs, base = [], None
    with common.scratch("tutorkd-distributed-train-") as work:
        setup = build_student_setup(cfg, work)
        try:
            test = [p for skill in setup.domain.tree.leaves() for p in setup.heldout.test[skill]]
            from tutorkd.students.student import LoRAStudent

            base = common.accuracy(LoRAStudent(setup.domain, setup.backend, setup.base_dir, cfg.student,
                                               work / "base"), test)
            print(f"base: test accuracy {base['overall']:.4f} on {len(test)} problems", flush=True)
            examples = {}

            def run(arm: str, seed: int) -> dict:
                if seed not in examples:
                    examples[seed] = round_one_examples(setup, seed)
                out = train_and_score(setup, work, int(arm[:-1]), seed, examples[seed], test)
                if out["processes"] > 1:  # Why here: the adapters go with the scratch folder
                    out["max_weight_difference_to_1p"] = weight_difference(
                        work / f"p1-s{seed}" / ADAPTER, work / f"p{out['processes']}-s{seed}" / ADAPTER)
                return out

            runs = common.run_matrix(args.seeds, ["1p", f"{args.processes}p"], run, describe=lambda r: (
                f"accuracy {r['test_accuracy']:.4f}, {r['steps']} steps, loss {r['losses'][0]:.3f} -> "
                f"{r['losses'][-1]:.3f}, train {r['train_s']} s, eval {r['eval_s']} s"))
        finally:
            setup.close()
    result = {
        **common.header("distributed_train"),
        "config": common.config_record(args, drop=["out"]),
        "setup": {"student": cfg.student.model_dump(mode="json"), "teacher": cfg.teacher.name,
                  "per_round": cfg.teacher.per_round, "global_batch": cfg.student.batch_size,
                  "per_process_batch": {"1p": cfg.student.batch_size,
                                        f"{args.processes}p": cfg.student.batch_size // args.processes},
                  "backend": f"{args.backend} (evaluation)", "launcher": "accelerate launch, gloo (CPU)",
                  "test_problems": len(test)},
        "base": {"test_accuracy": round(base["overall"], 4), "format_errors": base["format_errors"]},
        "summary": summarize(runs, args.processes),
        "runs": runs,
        "seconds": round(time.perf_counter() - started, 1),
    }
    common.write_result(result, args.out, lambda png: plot(result, png))
    common.print_table({f"seed {s['seed']}": {k: v for k, v in s.items() if k != "seed"}
                        for s in result["summary"]["per_seed"]})
    print(f"mean difference {result['summary']['mean_difference']:+.4f}; within 1 point: "
          f"{result['summary']['within_1_point']}")


if __name__ == "__main__":
    main()
