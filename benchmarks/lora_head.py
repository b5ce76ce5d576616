"""LoRA training time of SmolLM2 with TRL's fused LM head scoring every position vs the labelled ones only.

``tutorkd.students.lora.labelled_positions_only`` makes TRL 1.16's fused LM head project only the
completion tokens on the CPU (TRL scores every position there, prompt included, then zeroes the ignored
ones). This benchmark trains the same LoRA twice per seed, on the recipe's student settings
(``recipes/arithmetic-smollm2.yaml``: rank 16, batch 8, chat prompts with 3 format examples, worked
steps as completions): once through TRL's own path, once inside ``labelled_positions_only``, alternating
which goes first by seed. It times ``trainer.train()`` alone (model loading is the same for both) and
checks that the two give the same losses and bit-identical adapter weights. Writes
``benchmarks/results/lora_head.json``.

    .venv/bin/python benchmarks/lora_head.py [--seeds 0 1 2] [--examples 48]
"""

from __future__ import annotations

import contextlib
import random
import statistics
import time
from pathlib import Path

import yaml
from common import REPO, RESULTS, config_record, header, parser, print_table, scratch, write_result

from tutorkd.config import RunConfig


def train(cfg, base: Path, pairs: list[tuple[str, str]], out: Path, seed: int, compact: bool) -> dict:
    """One training of a fresh adapter: seconds in ``trainer.train()``, losses, LoRA weights, rows scored."""
    from trl.kernels import ChunkedLogProbFunction

    from tutorkd.students.lora import labelled_positions_only, lora_trainer
    from tutorkd.students.pretrain import torch_threads

    rows = []
    scored = ChunkedLogProbFunction.apply

    def counting(hidden, *args):
        rows.append(hidden.shape[0])
        return scored(hidden, *args)

    ChunkedLogProbFunction.apply = staticmethod(counting)
    try:
        with torch_threads():
            trainer = lora_trainer(base, pairs, out, cfg.student, init_adapter=None, seed=seed,
                                   max_length=cfg.student.max_length, device="cpu")
            started = time.monotonic()
            # Why nullcontext: the two trainings differ in this one context and nothing else.
            with labelled_positions_only() if compact else contextlib.nullcontext():
                trainer.train()
            seconds = time.monotonic() - started
    finally:
        ChunkedLogProbFunction.apply = scored
    weights = {k: v.detach().clone() for k, v in trainer.model.state_dict().items() if "lora_" in k}
    losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    return {"seconds": round(seconds, 2), "steps": trainer.state.global_step, "rows_scored": sum(rows),
            "losses": losses, "weights": weights}


def main() -> None:
    args_parser = parser(__doc__, seeds=[0, 1, 2], out=RESULTS / "lora_head.json")
    args_parser.add_argument("--examples", type=int, default=48, help="training pairs (batch 8: 6 steps)")
    args = args_parser.parse_args()

    import torch

    from tutorkd.assembly import build_student_setup
    from tutorkd.students.models import prepare_model

    cfg = RunConfig.model_validate(yaml.safe_load((REPO / "recipes" / "arithmetic-smollm2.yaml").read_text()))
    base = prepare_model(cfg.student.model, Path.home() / ".cache" / "tutorkd" / "models")
    rows = []
    with scratch("tutorkd-lora-head-") as root:
        setup = build_student_setup(cfg, root, base_dir=base)
        try:
            leaves = setup.domain.tree.leaves()
            for seed in args.seeds:
                rng = random.Random(seed)
                problems = [p for i in range(args.examples)
                            for p in setup.domain.sample(leaves[i % len(leaves)], 1, rng, setup.exclude)]
                pairs = [(setup.domain.prompt(p), setup.domain.completion(p, "rationale")) for p in problems]
                order = (False, True) if seed % 2 == 0 else (True, False)
                runs = {compact: train(cfg, base, pairs, root / f"s{seed}-{compact}", seed, compact)
                        for compact in order}
                full, compact = runs[False], runs[True]
                same_weights = full["weights"].keys() == compact["weights"].keys() and all(
                    torch.equal(full["weights"][k], compact["weights"][k]) for k in full["weights"])
                rows.append({"seed": seed, "examples": len(pairs), "steps": full["steps"],
                             "all_positions_s": full["seconds"], "labelled_only_s": compact["seconds"],
                             "speedup": round(full["seconds"] / compact["seconds"], 3),
                             "rows_scored_all": full["rows_scored"],
                             "rows_scored_labelled": compact["rows_scored"],
                             "same_losses": full["losses"] == compact["losses"], "same_weights": same_weights,
                             "first_run": "labelled_only" if order[0] else "all_positions"})
                print(rows[-1])
        finally:
            setup.close()
    summary = {key: statistics.median(r[key] for r in rows)
               for key in ("all_positions_s", "labelled_only_s", "speedup")}
    summary["identical_on_every_seed"] = all(r["same_losses"] and r["same_weights"] for r in rows)
    result = {**header("lora_head"), "config": {**config_record(args),
                                                "recipe": "recipes/arithmetic-smollm2.yaml",
                                                "batch_size": cfg.student.batch_size,
                                                "max_length": cfg.student.max_length},
              "summary_median": summary, "per_seed": rows}
    write_result(result, args.out)
    print_table({"median": summary}, title="SmolLM2 LoRA training: trainer.train() seconds")


if __name__ == "__main__":
    main()
