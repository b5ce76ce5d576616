"""GSM8K end to end on real data with SmolLM2-135M-Instruct as the student: base and after one round.

Reads the real GSM8K splits from local JSONL files (default ``../shared/data/gsm8k/{train,test}.jsonl``,
MIT licence; at a site with a hub, leave them out and ``openai/gsm8k`` is read with ``datasets``),
evaluates the base model on about 200 test problems (at most 40 per skill over GSM8K's 6 skills), runs one
teaching round of the uniform teacher (train-split problems with their worked solutions, chat format,
LoRA with TRL, merged weights served by vLLM) and evaluates again; answers are compared with
math-verify. Writes ``benchmarks/results/gsm8k_smollm2.json``: accuracy and format-error rate before
and after, examples, wall time per phase.

GSM8K is a plumbing check for a 135 M student on CPU, not where it shows gains (1 % base accuracy).

    python benchmarks/gsm8k_smollm2.py
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from common import REPO, RESULTS, header, parser, scratch, teach, write_result

SHARED = REPO.parent / "shared" / "data" / "gsm8k"


def main() -> None:
    p = parser(__doc__, seeds=[0], rounds=1, test_per_skill=40, val_per_skill=10, per_round=96,
               out=RESULTS / "gsm8k_smollm2.json")
    p.add_argument("--data", type=Path, default=SHARED, help="folder with GSM8K's train.jsonl and test.jsonl")
    p.add_argument("--keep", type=Path, default=None, help="keep the run directory here")
    args = p.parse_args()
    from tutorkd.config import RunConfig

    with scratch("gsm8k-smollm2-", args.keep) as root:
        cfg = RunConfig.model_validate({
            "environment": {"kind": "gsm8k", "level": "skill_tree",
                            "train_file": str(args.data / "train.jsonl"),
                            "test_file": str(args.data / "test.jsonl"), "test_per_skill": args.test_per_skill,
                            "val_per_skill": args.val_per_skill, "budget": args.per_round * args.rounds,
                            "rounds": args.rounds, "max_errors_shown": 16, "split_seed": 1234},
            "teacher": {"name": "uniform", "policy": "uniform", "engine": "procedural",
                        "per_round": args.per_round, "style": "rationale"},
            "student": {"kind": "hf", "model": "smollm2-135m-instruct", "learning_rate": 5e-4, "epochs": 1,
                        "batch_size": 8, "max_length": 640, "max_new_tokens": 256, "format_examples": 1},
            "backend": {"kind": "vllm", "max_model_len": 1280},
            "seed": args.seeds[0], "runs_root": str(root),
        })
        run_dir, wall = teach(cfg, "gsm8k")
        rounds = []
        for r in range(args.rounds + 1):
            folder = run_dir / "rounds" / f"r{r}"
            test = json.loads((folder / "eval.json").read_text())["test"]
            times = json.loads((folder / "times.json").read_text())
            verify = json.loads((folder / "verify.json").read_text()) if r else None
            attempts = json.loads((folder / "eval.json").read_text())["val_attempts"]
            outputs = [a["output"] for a in attempts[:3]]
            rounds.append({"round": r, "n": test["n"], "accuracy": test["correct"] / test["n"],
                           "format_error_rate": sum(s["format_errors"] for s in test["per_skill"])
                           / test["n"],
                           "per_skill": {s["skill_id"]: s["correct"] / s["n"] for s in test["per_skill"]},
                           "examples": verify["admitted"] if verify else 0, "times_s": times,
                           "sample_outputs": [o[:300] for o in outputs]})
    result = header("gsm8k_smollm2") | {
        "config": {"data": str(args.data), "seed": args.seeds[0], "rounds": args.rounds,
                   "test_per_skill": args.test_per_skill, "val_per_skill": args.val_per_skill,
                   "per_round": args.per_round},
        "wall_s": wall, "rounds": rounds,
    }
    write_result(result, args.out)
    for r in rounds:
        print(f"r{r['round']}: accuracy {r['accuracy']:.3f} on {r['n']}, "
              f"format errors {r['format_error_rate']:.3f}")


if __name__ == "__main__":
    sys.exit(main())
