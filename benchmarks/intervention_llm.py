"""Theory-of-mind interventions on a real LLM student: SmolLM2-135M-Instruct (Saha et al. 2023).

The same measurement as ``intervention.py`` (the tiny student), with the student of
``recipes/arithmetic-smollm2.yaml`` (chat template, 3 format examples, greedy, vLLM bfloat16, merged
weights), for two students: the base model, and the model after one round of rationale fine-tuning
(the uniform teacher's round-1 adapter of ``llm_student.py``, kept with ``--keep``: each seed uses
its own run's adapter). The explanation opens the student's turn (the assistant reply starts with it,
the student continues with ``Answer:``), the same place for every condition. Per seed and student:

- the learned mental model (knowledge tracing, fitted on 30 practice problems per skill answered alone and
  with each explanation style, never test) and every
  strategy's accuracy-vs-budget curve with the procedural teacher's full rationale; the misaligned
  teacher (lowest expected utility first, wrong explanations); personalized vs single style at equal
  items and at equal explanation length; ``skill_oracle``, the ceiling of any per-skill model, and with
  ``--difficulty`` the learned model with its item term;
- echo control: the share of explained replies whose answer is a number the explanation contains, and
  accuracy on the items whose gold answer the explanation does not contain;
- explanations written by an LLM teacher (base SmolLM2, the paper's CoT prompt with 4 practice
  demonstrations): malformed share, how often the teacher's own answer (``So the answer is``) is
  right, the student's accuracy with them, and their budget curves;
- the few-shot simulation mental model (the paper's pre/post prompts) run by base SmolLM2 as the
  teacher's simulator: calibration (AUC, Brier) against the learned model's, and its EU curve.

Writes ``benchmarks/results/intervention_llm.json`` and ``.png``.

    python benchmarks/llm_student.py --keep /tmp/bench/llm_student        # the trained adapters
    python benchmarks/intervention_llm.py --trained /tmp/bench/llm_student --difficulty   # the committed JSON
    python benchmarks/intervention_llm.py --students base                  # the base model only
    python benchmarks/intervention_llm.py --merge A.json B.json --out C.json   # two students' runs joined
"""

from __future__ import annotations

import random
import re
import statistics
import time
from pathlib import Path

import common
import figures
import numpy as np
import yaml
from intervention import BUDGETS, CONDITIONS, gold_probability, single_turn

from tutorkd.agents.tom.calibration import calibration
from tutorkd.agents.tom.interventions import ItemSignals, budget_curve, curve_area, strategy_scores
from tutorkd.agents.tom.mental_models import SimulatedStudent, simulation_demos
from tutorkd.agents.tom.teacher import LLMExplainer, ToMPolicy
from tutorkd.config import ToMConfig
from tutorkd.schema import StudentVersion

RESULTS = common.RESULTS / "intervention_llm.json"
RECIPE = common.REPO / "recipes" / "arithmetic-smollm2.yaml"
STUDENTS = ("base", "trained")
LLM_STRATEGIES = ("random", "expected_utility", "true_utility", "oracle")
_NUMBER = re.compile(r"-?\d+")


def numbers(text: str | None) -> set[str]:
    """The integers written in ``text``."""
    return set(_NUMBER.findall(text or ""))


def echo(attempts, explanations) -> dict:
    """How much of an explained condition's accuracy is copying: the share of replies answering with a
    number of the explanation, and accuracy where the gold answer is not in the explanation."""
    pairs = [(a, e) for a, e in zip(attempts, explanations, strict=True) if e is not None]
    copied = [a.parsed_answer in numbers(e) for a, e in pairs]
    fresh = [a.correct for a, e in pairs if a.problem.answer not in numbers(e)]
    return {"echo_share": float(np.mean(copied)) if copied else None,
            "gold_in_explanation_share": 1 - len(fresh) / len(pairs) if pairs else None,
            "accuracy_gold_not_in_explanation": float(np.mean(fresh)) if fresh else None,
            "n_gold_not_in_explanation": len(fresh)}


def teacher_explanations(backend, domain, practice, test, seed: int) -> tuple[list[str | None], dict]:
    """Base SmolLM2 as the teacher: the paper's CoT prompt with 4 practice demonstrations (gold
    rationales), greedy; the explanations (``None`` where malformed) and their quality."""
    from tutorkd.protocols import SamplingConfig

    class Base:  # the teacher is the base model, whatever version the student engine serves
        def generate(self, prompts, params):
            return backend.generate(prompts, params, None)

    demos = [(p, p.rationale or "") for p in random.Random(seed).sample(practice, 4)]
    explainer = LLMExplainer(Base(), demos, domain.alphabet, SamplingConfig(max_tokens=64, temperature=0.0))
    raw = Base().generate([explainer.prompt(p) for p in test], explainer.params)
    said = [re.search(r"So the answer is\s*(-?\d+|[<>])", c.text) for c in raw]
    right = [m is not None and m.group(1) == p.answer for m, p in zip(said, test, strict=True)]
    explained = explainer.read(test, raw)  # the same completions: greedy, generated once
    step = max(1, len(test) // 9)  # about one example per skill
    return explained, {"malformed_share": explainer.malformed / len(test),
                       "teacher_answer_right_share": float(np.mean(right)),
                       "contains_gold_share": float(np.mean([p.answer in numbers(e)
                                                             for p, e in zip(test, explained, strict=True)])),
                       "examples": [{"question": p.question, "explanation": e, "gold": p.answer}
                                    for p, e in list(zip(test, explained, strict=True))[::step]]}


def with_llm_explanations(student, scorer, domain, test, keep, explained, seed: int) -> dict:
    """The student's accuracy with the LLM teacher's explanations, and their budget curves."""
    answers = student.answer(test, explained)
    pre, ok = [a.correct for a in keep["pre"]], [a.correct for a in answers]
    model = keep["model"]
    signals = ItemSignals(
        pre_pred=tuple(model.p_correct(test, [None] * len(test))),
        post_pred=tuple(model.p_correct(test, explained)),
        true_pre=keep["signals"].true_pre,
        true_post=tuple(gold_probability(scorer, domain, test, explained, answers, "Answer:", " ")),
        pre_correct=tuple(pre), post_correct=tuple(ok))
    curves = {s: budget_curve(strategy_scores(s, signals), pre, ok, BUDGETS, seed=seed)
              for s in LLM_STRATEGIES}
    return {"accuracy": float(np.mean(ok)), "echo": echo(answers, explained), "curves": curves,
            "area": {s: curve_area(BUDGETS, c) for s, c in curves.items()}}


def simulation(simulator, keep, test, seed: int) -> dict:
    """The paper's few-shot simulation model (SmolLM2 as the simulator) on the test items: calibration
    of its pre/post predictions and its expected-utility curve."""
    try:
        demos = simulation_demos(keep["practice_alone"], keep["practice_styled"]["full"], 4,
                                 random.Random(seed))
    except ValueError as e:  # too few right or wrong practice answers to balance the demonstrations
        return {"skipped": str(e)}
    beliefs = SimulatedStudent(simulator, *demos).predict(test, keep["explanations"]["full"])
    pre = np.array([b.pre for b in beliefs])
    post = np.array([b.post for b in beliefs])
    pre_ok = [a.correct for a in keep["pre"]]
    ok = [a.correct for a in keep["got"]["full"]]
    curve = budget_curve(post - pre, pre_ok, ok, BUDGETS, seed=seed)
    return {"calibration": {"pre": calibration(pre, pre_ok).model_dump(),
                            "post_full": calibration(post, ok).model_dump()},
            "expected_utility_curve": curve, "expected_utility_area": curve_area(BUDGETS, curve)}


def one_student(setup, work: Path, scorers, simulator, test, practice, explained, seed: int, version,
                difficulty: bool = False) -> dict:
    """Everything measured for one student version on one seed's items (``difficulty``: also the learned
    mental model with its item term)."""
    student = setup.new_student(work / f"s{seed}", seed)
    if version is not None:
        student.use(version)
    scorer = scorers(version)
    policy = ToMPolicy(setup.domain, 1, ToMConfig(), student=student, exclude=setup.heldout.questions)
    keep: dict = {}
    out = single_turn(student, scorer, setup.domain, policy, test, practice, seed, mark="Answer:", space=" ",
                      keep=keep, difficulty=difficulty)
    out["echo"] = {c: echo(keep["got"][c], keep["explanations"][c]) for c in keep["got"]}
    out["llm_teacher"] = with_llm_explanations(student, scorer, setup.domain, test, keep, explained, seed)
    out["simulation"] = simulation(simulator, keep, test, seed)
    out["format_error_rate_alone"] = float(np.mean([a.parsed_answer is None for a in keep["pre"]]))
    return out


def student_version(name: str, root: Path, seed: int) -> StudentVersion | None:
    """``None`` for the base student; for ``trained``, the uniform teacher's round-1 adapter of seed
    ``seed`` in ``llm_student.py``'s kept runs under ``root``."""
    if name == "base":
        return None
    found = sorted(root.glob(f"uniform-s{seed}/*/adapters/r1"))
    if not found:
        raise SystemExit(f"no round-1 adapter for seed {seed} under {root}: run "
                         f"python benchmarks/llm_student.py --seeds {seed} --teachers uniform --keep {root}")
    return StudentVersion(name="r1", round=1, adapter_path=str(found[-1]), lora_int_id=1)


def llm_parser(doc: str, out: Path, practice_per_skill: int):
    """The options both in-context benchmarks take (``principles_llm.py`` shares them)."""
    parser = common.parser(doc, seeds=[0, 1, 2], out=out)
    parser.add_argument("--per-skill", type=int, default=20, help="held-out test items per skill")
    parser.add_argument("--practice-per-skill", type=int, default=practice_per_skill,
                        help="practice items per skill")
    parser.add_argument("--students", nargs="+", default=list(STUDENTS), choices=STUDENTS)
    parser.add_argument("--trained", type=Path, default=Path("/tmp/bench/llm_student"),
                        help="llm_student.py's kept runs (the trained student's adapters)")
    return parser


def median_known(values: list[float | None]) -> float | None:
    """The median of the values that exist (``None`` when none does)."""
    known = [v for v in values if v is not None]
    return float(statistics.median(known)) if known else None


def item_gap(areas: list[dict]) -> dict:
    """The gap closed by the learned model with its item term (``--difficulty``) and by the per-skill
    ceiling (``skill_oracle``: any model that predicts per skill), per seed and median, where measured."""
    out: dict = {}
    for key, name in (("expected_utility_item", "item_model"), ("skill_oracle", "skill_oracle")):
        if key in areas[0]:
            gap = [(a[key] - a["random"]) / (a["true_utility"] - a["random"]) for a in areas]
            out |= {f"{name}_gap_closed_per_seed": gap, f"{name}_gap_closed_median": statistics.median(gap)}
    return out


def summarize(seeds: list[dict], students: list[str]) -> dict:
    """Medians over seeds per student, and the acceptance checks."""
    med = lambda xs: float(statistics.median(xs))  # noqa: E731
    out = {}
    for name in students:
        st = [s[name] for s in seeds]
        areas = [s["area"] for s in st]
        gap = [(a["expected_utility"] - a["random"]) / (a["true_utility"] - a["random"])
               if a["true_utility"] != a["random"] else None for a in areas]
        curves = {k: [med([s["curves"][k][j] for s in st]) for j in range(len(BUDGETS))]
                  for k in st[0]["curves"]}
        misaligned = curves["misaligned"]
        out[name] = {
            "accuracy_alone": med([s["accuracy_alone"] for s in st]),
            "accuracy_explained": {k: med([s["accuracy_explained"][k] for s in st])
                                   for k in st[0]["accuracy_explained"]},
            "median_curves": curves,
            "median_area": {k: med([s["area"][k] for s in st]) for k in st[0]["area"]},
            "echo_full": {k: median_known([s["echo"]["full"][k] for s in st])
                          for k in ("echo_share", "accuracy_gold_not_in_explanation")},
            "learned_calibration": {k: {m: median_known([s["calibration"][k][m] for s in st])
                                        for m in ("auc", "brier")} for k in ("pre", "post_full")},
            "simulation_calibration": {k: {m: median_known([s["simulation"]["calibration"][k][m] for s in st
                                                            if "calibration" in s["simulation"]])
                                           for m in ("auc", "brier")} for k in ("pre", "post_full")},
            "simulation_skipped": [s["simulation"]["skipped"] for s in st if "skipped" in s["simulation"]],
            "llm_teacher_accuracy": med([s["llm_teacher"]["accuracy"] for s in st]),
            "llm_teacher_area": {k: med([s["llm_teacher"]["area"][k] for s in st]) for k in LLM_STRATEGIES},
            "personalization_area": {k: med([s["personalization_area"][k] for s in st]) for k in CONDITIONS},
            "length_budget_area": {k: med([s["length_budget_area"][k] for s in st])
                                   for k in st[0]["length_budget_area"]},
            "personalized_margin_at_equal_length_per_seed": [
                s["length_budget_area"]["personalized"] - max(v for k, v in s["length_budget_area"].items()
                                                              if k != "personalized") for s in st],
            "acceptance": {
                "gap_closed_per_seed": gap,
                "gap_closed_median": median_known(gap),
                "eu_closes_half_the_gap": all(g is not None for g in gap) and med(gap) >= 0.5,
                **item_gap(areas),
                "misaligned_lowers_accuracy": all(a < misaligned[0] for a in misaligned[1:]),
            },
        }
    return out


def merge(a: Path, b: Path, out: Path) -> None:
    """Join results ``a`` and ``b`` (same options and seeds, other students; each seed draws the same test
    and practice items) into ``out``: each seed's rows of both, the summary of all the students."""
    import json

    first, second = (json.loads(p.read_text()) for p in (a, b))
    options = [{k: v for k, v in r["setup"]["args"].items() if k != "students"} for r in (first, second)]
    if options[0] != options[1]:
        raise SystemExit(f"{a} and {b} were run with different options: {options[0]} vs {options[1]}")
    students = first["setup"]["students"] + [s for s in second["setup"]["students"]
                                             if s not in first["setup"]["students"]]
    seeds = [{**x, **{s: y[s] for s in second["setup"]["students"]},
              "seconds": round(x["seconds"] + y["seconds"], 1)}
             for x, y in zip(first["seeds"], second["seeds"], strict=True)]
    args = {**first["setup"]["args"], "students": students}
    result = {**first, "setup": {**first["setup"], "students": students, "args": args,
                                 "merged_from": [a.name, b.name]},
              "seeds": seeds, "summary": summarize(seeds, students),
              "seconds": round(first["seconds"] + second["seconds"], 1)}
    common.write_result(result, out, lambda png: figures.intervention_llm(result, png), indent=1)


def main() -> None:
    from tutorkd.agents.tom.mental_models import TransformersScorer
    from tutorkd.assembly import build_student_setup
    from tutorkd.config import RunConfig

    parser = llm_parser(__doc__, RESULTS, practice_per_skill=30)
    parser.add_argument("--difficulty", action="store_true",
                        help="also the learned model with its item term (rationale length in its skill)")
    parser.add_argument("--merge", type=Path, nargs=2, default=None, metavar=("A", "B"),
                        help="run nothing: join two results of the same options for different --students "
                             "(seed by seed) into --out, with the summary of all their students")
    args = parser.parse_args()
    if args.merge is not None:
        merge(*args.merge, args.out)
        return
    started = time.perf_counter()
    cfg = yaml.safe_load(RECIPE.read_text())
    seeds = []
    with common.scratch("tutorkd-intervention-llm-") as work:
        setup = build_student_setup(RunConfig.model_validate(cfg | {"runs_root": str(work)}), work)
        base_scorer = TransformersScorer(setup.base_dir, batch_size=16)
        scorers = lambda v: base_scorer if v is None else TransformersScorer(  # noqa: E731
            setup.base_dir, adapter=v.adapter_path, batch_size=16)
        domain, heldout = setup.domain, setup.heldout
        for seed in args.seeds:
            t0 = time.perf_counter()
            rng = random.Random(seed)
            test = [p for s in domain.tree.leaves() for p in rng.sample(heldout.test[s], args.per_skill)]
            practice = ToMPolicy(domain, 1, ToMConfig(), student=setup.new_student(work / "draw", seed),
                                 exclude=heldout.questions).draw(args.practice_per_skill, rng)
            explained, quality = teacher_explanations(setup.backend, domain, practice, test, seed)
            row: dict = {"seed": seed, "llm_teacher_quality": quality}
            for name in args.students:
                version = student_version(name, args.trained, seed)
                row[name] = one_student(setup, work, scorers, base_scorer, test, practice, explained, seed,
                                        version, args.difficulty)
                print(f"seed {seed} {name}: alone {row[name]['accuracy_alone']:.3f}, areas " + ", ".join(
                    f"{k} {v:.3f}" for k, v in row[name]["area"].items()), flush=True)
            row["seconds"] = round(time.perf_counter() - t0, 1)
            seeds.append(row)
        setup.close()
    result = {
        **common.header("intervention_llm"),
        "setup": {"recipe": str(RECIPE.relative_to(common.REPO)), "students": args.students,
                  "trained": "uniform teacher, round 1 of llm_student.py (240 rationale examples), per seed",
                  "budgets": BUDGETS, "args": common.config_record(args, drop=["out"]),
                  "teacher_confidence": "the procedural teacher is always right (confidence 1): random order",
                  "llm_teacher": "base SmolLM2, raw-text CoT prompt of 4 practice items with gold rationales",
                  "simulator": "base SmolLM2 scoring the gold answer after the paper's pre/post prompts"},
        "seeds": seeds, "summary": summarize(seeds, args.students),
        "seconds": round(time.perf_counter() - started, 1),
    }
    common.write_result(result, args.out, lambda png: figures.intervention_llm(result, png), indent=1)
    for name in args.students:
        common.print_table({k: {"value": v} for k, v in result["summary"][name]["acceptance"].items()}, name)


if __name__ == "__main__":
    main()
