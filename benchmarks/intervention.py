"""Theory-of-mind interventions on the tiny student (Saha et al. 2023 on the arithmetic domain).

For each seed: draw test items from the held-out test set and practice items outside the held-out
sets; quiz the real student on the practice items (alone and with each explanation style) and fit
the learned mental model on them; then answer every test item alone, with each explanation style,
with the model's personalized choice of style, and with a deliberately wrong explanation. Reported
(``benchmarks/results/intervention.json`` and ``intervention_*.png``):

- accuracy versus budget B for every strategy (full-rationale explanations) and its area;
- personalized (the model picks the style per item) versus unpersonalized (one style for every item:
  first step only, the paper's GSM8k protocol; up to the error step; the full rationale) explanations,
  at an equal number of items explained (EU order) and at an equal length of explanation
  (``tutorkd.agents.tom.explanation_budget``: a knapsack over item and style against one style in EU order);
- the misaligned teacher: lowest expected utility first, with wrong explanations;
- calibration of the learned model on the test items; and a multi-turn run: 3 rounds of the ``tom``
  policy's explained items as training data, chosen by the paper's immediate utility (an explanation
  flips the answer in context) or by the learning utility (``tutorkd.agents.tom.learning``: what
  training on the item is predicted to teach, fitted on the earlier rounds' gains), against the same
  number of random unexplained (direct) or random explained items, evaluated on the test items without
  explanations, with the model's calibration per round (``intervention_multiturn.png``).

The few-shot LLM mental model is not benchmarked: the only LM here is the student itself (a
21-character alphabet, 128 positions), which can neither read the simulation prompt nor act as a
teacher distinct from the student.

    .venv/bin/python benchmarks/intervention.py [--seeds 0 1 2] [--per-skill 40] [--backend vllm]
        [--rounds 3] [--per-round 300] [--out benchmarks/results/intervention.json]
"""

from __future__ import annotations

import random
import statistics
import time
from pathlib import Path

import common
import figures
import numpy as np

from tutorkd.agents.baselines.procedural import derive_seed
from tutorkd.agents.tom.calibration import calibration
from tutorkd.agents.tom.explanation_budget import cost_curves
from tutorkd.agents.tom.interventions import (
    STRATEGIES,
    ItemSignals,
    budget_curve,
    corrupt,
    curve_area,
    strategy_scores,
)
from tutorkd.agents.tom.mental_models import LogisticStudentModel
from tutorkd.agents.tom.teacher import ItemEngine, ToMPolicy
from tutorkd.protocols import GenerationContext
from tutorkd.schema import Feedback, Plan, PlanItem, StructureLevel

RESULTS = common.RESULTS / "intervention.json"
BUDGETS = (0.0, 0.2, 0.4, 0.6, 0.8, 1.0)
CONDITIONS = ("first", "full", "error_step", "personalized")
SETUP_NOTES = {
    "explanations": "procedural teacher: gold rationale (full), its first step, or up to the step "
                    "the student's practice errors point to; wrong: final step corrupted",
    "mental_models": {
        "learned": "LogisticStudentModel fitted on practice answers (never test)",
        "llm_simulation": "skipped: the only local LM is the student itself (21-character "
                          "alphabet, 128 positions), which cannot read the paper's simulation "
                          "prompt and is not a teacher distinct from the student"},
    "teacher_confidence": "the procedural teacher is always right (confidence 1): random order",
    "true_utility": "real student's P(gold) with the full rationale minus without, each after its "
                    "own reasoning up to A: (forced scoring with transformers)",
    "oracle": "budget-capped: explain first where the explanation turns wrong into right",
    "length_budget": "budget = share of the characters full rationales for every test item take; "
                     "one style: items in descending predicted gain of that style, each if it "
                     "fits; personalized: greedy multiple-choice knapsack over (item, style) on "
                     "the learned model's predicted gain per character"}
"""How each measurement was made, recorded in the result's ``setup``."""


def gold_probability(scorer, domain, problems, explanations, attempts, mark: str = "A:",
                     space: str = "") -> np.ndarray:
    """The real student's P(gold answer) after its own reasoning up to ``mark`` (the first; 0 for a
    format error); ``space`` is what the domain writes between ``mark`` and the answer."""
    index = [i for i, a in enumerate(attempts) if mark in a.output]
    prompts = [domain.prompt(problems[i], explanations[i]) + attempts[i].output.split(mark)[0] + mark
               for i in index]
    scores = scorer.score(prompts, [space + problems[i].answer + scorer.tokenizer.eos_token for i in index])
    out = np.zeros(len(problems))
    out[index] = [np.exp(sum(s)) for s in scores]
    return out


def single_turn(student, scorer, domain, policy, test, practice, seed: int, *, mark: str = "A:",
                space: str = "", keep: dict | None = None, difficulty: bool = False) -> dict:
    """Every strategy's and explanation condition's budget curve, and the model's calibration.

    ``mark``/``space``: the domain's answer marker (see ``gold_probability``); ``keep`` (if given)
    receives the fitted model, the practice and test answers and the explanations, for further analysis;
    ``difficulty``: the learned model with its item term (``LogisticStudentModel``)."""
    alone, styled = policy.quiz(practice)
    fitted = alone + [a for v in styled.values() for a in v]
    model = LogisticStudentModel(policy.skills).fit(fitted)
    rng = random.Random(seed)
    explanations = {c: [model.explanation(p, c) for p in test] for c in CONDITIONS[:3]}
    chosen = model.personalized(test, ("first", "error_step", "full"))
    explanations["personalized"] = [e for _, e in chosen]
    pairs = zip(explanations["personalized"], test, strict=True)
    explanations["wrong"] = [corrupt(p, rng) for p in test]
    names = list(explanations)
    answers = student.answer(test * len(names), [e for n in names for e in explanations[n]])
    got = {n: answers[i * len(test): (i + 1) * len(test)] for i, n in enumerate(names)}
    pre = student.answer(test)
    pre_ok = [a.correct for a in pre]
    ok = {n: [a.correct for a in got[n]] for n in names}
    pre_pred = model.p_correct(test, [None] * len(test))
    post_pred = {n: model.p_correct(test, explanations[n]) for n in names}
    signals = ItemSignals(
        pre_pred=tuple(pre_pred), post_pred=tuple(post_pred["full"]), teacher_confidence=(1.0,) * len(test),
        true_pre=tuple(gold_probability(scorer, domain, test, [None] * len(test), pre, mark, space)),
        true_post=tuple(gold_probability(scorer, domain, test, explanations["full"], got["full"], mark,
                                         space)),
        pre_correct=tuple(pre_ok), post_correct=tuple(ok["full"]))
    if keep is not None:
        keep.update(model=model, practice_alone=alone, practice_styled=styled, pre=pre, got=got,
                    explanations=explanations, signals=signals)

    def curve(scores: np.ndarray, post: list[bool]) -> list[float]:
        return budget_curve(scores, pre_ok, post, BUDGETS, seed=seed)

    curves = {s: curve(strategy_scores(s, signals), ok["full"]) for s in STRATEGIES}
    # The ceiling of any per-skill mental model: each item scored by its skill's true mean gain on these
    # test items (ties, i.e. the items of a skill, broken at random).
    skill_of = [p.skill_ids[0] for p in test]
    gains = np.array(ok["full"], dtype=float) - np.array(pre_ok, dtype=float)
    skill_gain = {k: float(np.mean([g for g, s in zip(gains, skill_of, strict=True) if s == k]))
                  for k in set(skill_of)}
    curves["skill_oracle"] = curve(np.array([skill_gain[k] for k in skill_of]), ok["full"])
    item: dict = {}
    if difficulty:
        with_term = LogisticStudentModel(policy.skills, difficulty=True).fit(fitted)
        item_pre = with_term.p_correct(test, [None] * len(test))
        item_post = with_term.p_correct(test, explanations["full"])
        curves["expected_utility_item"] = curve(item_post - item_pre, ok["full"])
        item = {"item_model": {"calibration": {"pre": calibration(item_pre, pre_ok).model_dump(),
                                               "post_full": calibration(item_post, ok["full"]).model_dump()},
                               "model": with_term.state().model_dump()}}
    curves["misaligned"] = curve(strategy_scores("misaligned", signals), ok["wrong"])
    curves["random_wrong"] = curve(np.zeros(len(test)), ok["wrong"])
    personal = {c: curve(post_pred[c] - pre_pred, ok[c]) for c in CONDITIONS}
    styles = CONDITIONS[:3]
    length = {c: np.array([len(e) for e in explanations[c]], dtype=float) for c in styles}
    by_length, mixes = cost_curves({c: post_pred[c] - pre_pred for c in styles}, length,
                                   pre_ok, {c: ok[c] for c in styles}, BUDGETS)
    return {
        "n_test": len(test), "n_practice_answers": len(alone) * 4, "accuracy_alone": float(np.mean(pre_ok)),
        "accuracy_explained": {n: float(np.mean(ok[n])) for n in names},
        "curves": curves, "area": {s: curve_area(BUDGETS, c) for s, c in curves.items()},
        "personalization_curves": personal,
        "personalization_area": {c: curve_area(BUDGETS, v) for c, v in personal.items()},
        "personalized_is_full_rationale": sum(e == p.rationale for e, p in pairs),
        "length_budget_curves": by_length, "length_budget_styles": mixes,
        "length_budget_area": {c: curve_area(BUDGETS, v) for c, v in by_length.items()},
        "mean_length": {c: float(length[c].mean()) for c in styles},
        "calibration": {"pre": calibration(pre_pred, pre_ok).model_dump(),
                        "post_full": calibration(post_pred["full"], ok["full"]).model_dump()},
        "model": model.state().model_dump(), **item,
    }


def accuracy(student, test) -> tuple[float, dict[str, float]]:
    """Accuracy alone on ``test``, overall and per skill (skills sorted)."""
    scores = common.accuracy(student, test)
    return scores["overall"], dict(sorted(scores["per_skill"].items()))


def multi_turn(setup, work: Path, policy_cfg, test, rounds: int, per_round: int, seed: int) -> dict:
    """Accuracy alone on ``test`` after each round of training a new student of ``setup`` on explained
    items chosen by the ``tom`` policy with the paper's immediate utility (``tom_explained``) or with
    the learning utility (``tom_learning``: what training on an item is predicted to teach, from the
    earlier rounds' gains), random explained items, or random unexplained (direct) items of the same
    number (held-out questions never drawn)."""
    domain, exclude, out = setup.domain, setup.heldout.questions, {}
    utility = {"tom_explained": "immediate", "tom_learning": "learning"}
    for condition in ("tom_explained", "tom_learning", "random_explained", "random_unexplained"):
        student = setup.new_student(work / f"s{seed}-{condition}", seed)
        policy = ToMPolicy(domain, per_round, policy_cfg.model_copy(update={
            "seed": seed, "utility": utility.get(condition, "immediate")}), student=student, exclude=exclude)
        scores, views, seen = [accuracy(student, test)], [], set()
        for k in range(rounds):
            if condition in utility:
                plan = policy.plan(Feedback(level=StructureLevel.SKILL_TREE, round=k, errors=(),
                                            budget_used=k * per_round, budget_total=rounds * per_round))
                views.append(policy.last.model_dump(include={"pre", "post", "selected", "mean_utility",
                                                             "gain"}))
            else:  # as many items, drawn uniformly over the skills
                rng = random.Random(derive_seed("random", seed, k))
                chosen = rng.sample(policy.draw(per_round // len(policy.skills) + 2, rng), per_round)
                style = "rationale" if condition == "random_explained" else "direct"
                plan = Plan(items=tuple(PlanItem(count=1, like=p, style=style) for p in chosen))
            context = GenerationContext(run_id=condition, round=k + 1, teacher="tom", seed=seed,
                                        avoid=frozenset(seen))
            examples = ItemEngine(domain, exclude).generate(plan, context)
            seen |= {e.problem.question for e in examples}
            student.train(examples, round=k + 1, init=None if k == 0 else student.version)
            scores.append(accuracy(student, test))
        out[condition] = {"accuracy_by_round": [a for a, _ in scores],
                          "skill_accuracy_by_round": [s for _, s in scores],
                          **({"calibration_by_round": views} if views else {})}
    return out


def summarize(seeds: list[dict]) -> dict:
    """Medians over seeds and the acceptance checks."""
    med = lambda xs: float(statistics.median(xs))  # noqa: E731
    st = [s["single_turn"] for s in seeds]
    curves = {k: [med([s["curves"][k][j] for s in st]) for j in range(len(BUDGETS))] for k in st[0]["curves"]}
    area = {k: med([s["area"][k] for s in st]) for k in st[0]["area"]}
    areas = [s["area"] for s in st]
    gap = [(a["expected_utility"] - a["random"]) / (a["true_utility"] - a["random"]) for a in areas]
    parea = {k: med([s["personalization_area"][k] for s in st]) for k in CONDITIONS}
    larea = {k: med([s["length_budget_area"][k] for s in st]) for k in st[0]["length_budget_area"]}
    lmargin = [s["length_budget_area"]["personalized"] - max(v for k, v in s["length_budget_area"].items()
                                                           if k != "personalized") for s in st]
    turns = [s["multi_turn"] for s in seeds if "multi_turn" in s]
    multi = {c: [med(round_) for round_ in zip(*(t[c]["accuracy_by_round"] for t in turns), strict=True)]
             for c in (turns[0] if turns else {})}
    return {
        "median_curves": curves, "median_area": area, "median_personalization_area": parea,
        "median_length_budget_area": larea,
        "median_multi_turn_accuracy_by_round": multi,
        "median_calibration": {k: {m: med([s["calibration"][k][m] for s in st]) for m in ("auc", "brier")}
                               for k in ("pre", "post_full")},
        "acceptance": {
            "eu_beats_random_at_0.2": curves["expected_utility"][1] > curves["random"][1],
            "eu_beats_random_at_0.4": curves["expected_utility"][2] > curves["random"][2],
            "gap_closed_per_seed": gap, "gap_closed_median": med(gap),
            "eu_closes_half_the_gap": med(gap) >= 0.5,
            "personalized_beats_every_style_at_equal_items": parea["personalized"] > max(
                parea[c] for c in CONDITIONS[:3]),
            "personalized_margin_at_equal_length_per_seed": lmargin,
            "personalized_beats_every_style_at_equal_length": med(lmargin) > 0,
            "misaligned_lowers_accuracy": all(a < curves["misaligned"][0] for a in curves["misaligned"][1:]),
            "tom_training_beats_random_explained": bool(multi) and multi["tom_explained"][-1] > multi[
                "random_explained"][-1],
            # Per seed, final accuracy: the learning utility against the immediate one and random explained
            "learning_minus_immediate_per_seed": [
                t["tom_learning"]["accuracy_by_round"][-1] - t["tom_explained"]["accuracy_by_round"][-1]
                for t in turns],
            "learning_minus_random_explained_per_seed": [
                t["tom_learning"]["accuracy_by_round"][-1] - t["random_explained"]["accuracy_by_round"][-1]
                for t in turns],
        },
    }


def main() -> None:
    from tutorkd.agents.tom.mental_models import TransformersScorer
    from tutorkd.assembly import build_student_setup
    from tutorkd.config import RunConfig, ToMConfig

    parser = common.parser(__doc__, seeds=[0, 1, 2], per_round=300, backend="vllm", out=RESULTS)
    parser.add_argument("--per-skill", type=int, default=40, help="test items per skill")
    parser.add_argument("--practice-per-skill", type=int, default=30, help="practice items per skill")
    # Why 3: the learning utility measures its gains from the rounds before; with 3, two of its rounds
    # are chosen from measured gains (the first from the prior)
    parser.add_argument("--rounds", type=int, default=3, help="multi-turn rounds (0: skip)")
    args = parser.parse_args()
    started = time.perf_counter()
    # The default environment and tiny student (base pretrained outside the held-out partition).
    cfg = RunConfig.model_validate({"backend": {"kind": args.backend}})
    with common.scratch("tutorkd-intervention-") as work:  # the multi-turn adapters
        setup = build_student_setup(cfg, work)
        domain, heldout = setup.domain, setup.heldout
        scorer, tom_cfg, seeds = TransformersScorer(setup.base_dir, batch_size=64), ToMConfig(), []
        for seed in args.seeds:
            t0 = time.perf_counter()
            rng = random.Random(seed)
            test = [p for s in domain.tree.leaves() for p in rng.sample(heldout.test[s], args.per_skill)]
            student = setup.new_student(work / f"s{seed}", seed)
            policy = ToMPolicy(domain, args.per_round, tom_cfg, student=student, exclude=heldout.questions)
            practice = policy.draw(args.practice_per_skill, rng)
            row = {"seed": seed,
                   "single_turn": single_turn(student, scorer, domain, policy, test, practice, seed)}
            if args.rounds:
                row["multi_turn"] = multi_turn(setup, work, tom_cfg, test, args.rounds, args.per_round, seed)
            row["seconds"] = round(time.perf_counter() - t0, 1)
            print(f"seed {seed}: {row['seconds']} s, areas " + ", ".join(
                f"{k} {v:.3f}" for k, v in row["single_turn"]["area"].items()), flush=True)
            seeds.append(row)
        setup.close()
    result = {
        "setup": {"student": "tiny default base (TinyStudentConfig(), default skewed mix, held-out excluded)",
                  "base_dir": str(setup.base_dir), "backend": args.backend, "budgets": BUDGETS,
                  "args": common.config_record(args, drop=["out"]), **SETUP_NOTES},
        "seeds": seeds, "summary": summarize(seeds), "seconds": round(time.perf_counter() - started, 1),
    }
    common.write_result(result, args.out, lambda png: figures.intervention(result, png), indent=1)
    common.print_table({k: {"value": v} for k, v in result["summary"]["acceptance"].items()})


if __name__ == "__main__":
    main()
