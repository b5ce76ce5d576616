"""What an explanation does in context against what training on the explained item teaches, on SmolLM2.

Saha et al.'s teacher picks the items whose explanation helps the student *now* (single-turn expected
utility). On the tiny student, those items, used as training data, taught no more than random ones
(``intervention.json``, multi-turn). This measures the same gap on the real LLM student of
``recipes/arithmetic-smollm2.yaml`` (base SmolLM2-135M-Instruct, chat template, vLLM, merged weights).

Per seed, three students trained from the base model on one round of ``--per-round`` examples:

- ``tom_explained``: the ``tom`` policy's round (it quizzes the student on practice items alone and with
  each explanation style, fits the learned mental model, and explains the candidates with the highest
  expected utility; ``replay_share`` of the round spread over the skills);
- ``random_explained``: as many items drawn uniformly over the skills, with their full rationale;
- ``random_unexplained``: the same number of random items, answer only.

For each condition, before training, the student answers its training items alone and with the full
rationale in its context (the explanation opens its turn, as in ``intervention_llm.py``): the
*single-turn utility* of the items (accuracy with minus without, and the shares flipped wrong -> right
and right -> wrong) and the echo share (replies answering with a number the explanation contains).
After training: accuracy alone on the held-out test items (``--per-skill`` per skill, the same draw as
``intervention_llm.py``), overall and per skill, and the gain over the base model.

Writes ``benchmarks/results/multiturn_llm.json`` and ``.png``.

    python benchmarks/multiturn_llm.py [--seeds 0 1 2] [--per-round 240] [--per-skill 20]
    python benchmarks/multiturn_llm.py --seeds 1 2 --add-to benchmarks/results/multiturn_llm.json
"""

from __future__ import annotations

import json
import random
import statistics
import time
from pathlib import Path

import common
import figures
import numpy as np
import yaml
from intervention_llm import RECIPE, numbers

from tutorkd.agents.baselines.procedural import derive_seed
from tutorkd.agents.tom.teacher import ItemEngine, ToMPolicy
from tutorkd.config import ToMConfig
from tutorkd.protocols import GenerationContext
from tutorkd.schema import Feedback, Plan, PlanItem, StructureLevel

RESULTS = common.RESULTS / "multiturn_llm.json"
CONDITIONS = ("tom_explained", "random_explained", "random_unexplained")


def training_plan(condition: str, policy: ToMPolicy, per_round: int, seed: int) -> tuple[Plan, dict]:
    """The round's plan for ``condition`` and, for ``tom_explained``, the policy's view of it."""
    if condition == "tom_explained":
        plan = policy.plan(Feedback(level=StructureLevel.SKILL_TREE, round=0, errors=(), budget_used=0,
                                    budget_total=per_round))
        view = policy.last.model_dump(include={"pre", "post", "mean_utility", "quizzed", "selected"})
        return plan, view
    rng = random.Random(derive_seed("random", seed, 0))
    chosen = rng.sample(policy.draw(per_round // len(policy.skills) + 2, rng), per_round)
    style = "rationale" if condition == "random_explained" else "direct"
    return Plan(items=tuple(PlanItem(count=1, like=p, style=style) for p in chosen)), {}


def single_turn_utility(student, problems) -> dict:
    """The student's answers to ``problems`` alone and with each one's full rationale in its context."""
    alone = student.answer(problems)
    explained = student.answer(problems, [p.rationale for p in problems])
    pre = np.array([a.correct for a in alone])
    post = np.array([a.correct for a in explained])
    echo = [a.parsed_answer in numbers(p.rationale) for a, p in zip(explained, problems, strict=True)]
    return {"n": len(problems), "accuracy_alone": float(pre.mean()), "accuracy_explained": float(post.mean()),
            "utility": float(post.mean() - pre.mean()),
            "wrong_to_right": float((~pre & post).mean()), "right_to_wrong": float((pre & ~post).mean()),
            "echo_share": float(np.mean(echo))}


def one_seed(setup, work: Path, test, per_round: int, seed: int) -> dict:
    """The base accuracy and the three conditions of one seed."""
    domain, exclude = setup.domain, setup.heldout.questions
    base = common.accuracy(setup.new_student(work / f"s{seed}-base", seed), test)
    out: dict = {"seed": seed, "base": base}
    for condition in CONDITIONS:
        t0 = time.perf_counter()
        student = setup.new_student(work / f"s{seed}-{condition}", seed)
        policy = ToMPolicy(domain, per_round, ToMConfig(seed=seed), student=student, exclude=exclude)
        plan, view = training_plan(condition, policy, per_round, seed)
        context = GenerationContext(run_id=condition, round=1, teacher=condition, seed=seed)
        examples = ItemEngine(domain, exclude).generate(plan, context)
        single = single_turn_utility(student, [e.problem for e in examples])
        stats = student.train(examples, round=1, init=None).stats
        after = common.accuracy(student, test)
        skills = sorted({e.provenance.skill_id for e in examples})
        out[condition] = {
            "examples": len(examples),
            "examples_per_skill": {s: sum(e.provenance.skill_id == s for e in examples) for s in skills},
            "single_turn": single, "test_after": after,
            "test_gain": after["overall"] - base["overall"],
            "train_loss": [stats.first_loss, stats.last_loss], "policy_view": view,
            "seconds": round(time.perf_counter() - t0, 1)}
        print(f"seed {seed} {condition}: single-turn utility {single['utility']:+.3f}, test "
              f"{base['overall']:.3f} -> {after['overall']:.3f}", flush=True)
    return out


def summarize(seeds: list[dict]) -> dict:
    """Medians over seeds, and whether the utility-chosen items teach more than random ones."""
    med = lambda xs: float(statistics.median(xs))  # noqa: E731
    out: dict = {"base_accuracy": med([s["base"]["overall"] for s in seeds]), "conditions": {}}
    for c in CONDITIONS:
        rows = [s[c] for s in seeds]
        out["conditions"][c] = {
            "single_turn_utility": med([r["single_turn"]["utility"] for r in rows]),
            "single_turn_wrong_to_right": med([r["single_turn"]["wrong_to_right"] for r in rows]),
            "single_turn_echo_share": med([r["single_turn"]["echo_share"] for r in rows]),
            "test_after": med([r["test_after"]["overall"] for r in rows]),
            "test_gain": med([r["test_gain"] for r in rows]),
            "test_gain_per_seed": [round(r["test_gain"], 4) for r in rows]}
    tom, rnd = (out["conditions"][c] for c in ("tom_explained", "random_explained"))
    margins = [s["tom_explained"]["test_gain"] - s["random_explained"]["test_gain"] for s in seeds]
    out["tom_minus_random_explained_gain_per_seed"] = [round(m, 4) for m in margins]
    out["tom_items_higher_single_turn_utility"] = tom["single_turn_utility"] > rnd["single_turn_utility"]
    out["tom_training_beats_random_explained_all_seeds"] = all(m > 0 for m in margins)
    return out


def main() -> None:
    from tutorkd.assembly import build_student_setup
    from tutorkd.config import RunConfig

    parser = common.parser(__doc__, seeds=[0, 1, 2], out=RESULTS)
    parser.add_argument("--per-round", type=int, default=240, help="training examples per condition")
    parser.add_argument("--per-skill", type=int, default=20, help="held-out test items per skill")
    parser.add_argument("--add-to", type=Path, default=None,
                        help="an earlier result file with the same options: keep its seeds other than these")
    args = parser.parse_args()
    earlier: list[dict] = []
    if args.add_to is not None:
        old = json.loads(args.add_to.read_text())
        mine = common.config_record(args, drop=["out", "add_to", "seeds"])
        theirs = {k: v for k, v in old["setup"]["args"].items() if k not in ("add_to", "seeds")}
        if theirs != mine:
            raise SystemExit(f"{args.add_to}: its options {theirs} differ from these {mine}")
        earlier = [s for s in old["seeds"] if s["seed"] not in args.seeds]
    started = time.perf_counter()
    cfg = yaml.safe_load(RECIPE.read_text())
    seeds = []
    with common.scratch("tutorkd-multiturn-llm-") as work:
        setup = build_student_setup(RunConfig.model_validate(cfg | {"runs_root": str(work)}), work)
        for seed in args.seeds:
            rng = random.Random(seed)  # the same test draw as intervention_llm.py
            test = [p for s in setup.domain.tree.leaves()
                    for p in rng.sample(setup.heldout.test[s], args.per_skill)]
            seeds.append(one_seed(setup, work, test, args.per_round, seed))
        setup.close()
    seeds = sorted(earlier + seeds, key=lambda s: s["seed"])
    result = {**common.header("multiturn_llm"),
              "setup": {"recipe": str(RECIPE.relative_to(common.REPO)),
                        "student": "base SmolLM2; each condition trains a fresh LoRA adapter on it",
                        "args": common.config_record(args, drop=["out", "add_to"]),
                        "seeds": [s["seed"] for s in seeds]},
              "seeds": seeds, "summary": summarize(seeds), "seconds": round(time.perf_counter() - started, 1)}
    common.write_result(result, args.out, lambda png: figures.multiturn_llm(result["summary"], png))
    common.print_table({c: {k: v[k] for k in ("single_turn_utility", "test_gain")}
                        for c, v in result["summary"]["conditions"].items()}, "single turn vs training")


if __name__ == "__main__":
    main()
