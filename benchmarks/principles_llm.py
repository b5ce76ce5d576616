"""TPD's in-context variants on a real LLM student: SmolLM2-135M-Instruct (Principle discovery, 2024).

The student of ``recipes/arithmetic-smollm2.yaml`` (chat template, 3 format examples, greedy, vLLM
bfloat16, merged weights): the base model, and the model after one round of rationale fine-tuning
(``llm_student.py``'s uniform round-1 adapter of the same seed, kept with ``--keep``). Per seed and
student:

1. the student answers practice problems (outside the held-out sets); its wrong answers are
   diagnosed into principles twice: the bug-library diagnosis (``ProceduralPrinciples``) and the LLM
   principle generator (``LLMPrinciples``, base SmolLM2 as the teacher under structured outputs, at
   most 16 errors shown, at most 4 principles, 768 tokens); per principle, the share of the wrong
   answers it explains;
2. held-out test problems are answered with the plain prompt and with each in-context variant: (a)
   the top principles appended to the instruction, (b) the instruction rewritten as their checks
   (``append_principles`` / ``rewrite_instruction``, for each source), (c) worked demonstrations after
   the format examples, chosen by principle (``select_examples``: the practice problems the
   principles explain, with their gold rationale) vs chosen at random from the practice problems;
3. accuracy per variant on the weak skills (practice accuracy < 0.5: what a teacher can see) and
   overall, and the acceptance check: a variant beating the plain prompt on weak-skill accuracy on
   every seed.

Variant (d), training data from principles in a teaching run, is ``principles.py``'s subject (tiny
student); it is not run here. Writes ``benchmarks/results/principles_llm.json`` and ``.png``.

    python benchmarks/llm_student.py --keep /tmp/bench/llm_student        # the trained adapters
    python benchmarks/principles_llm.py --trained /tmp/bench/llm_student
"""

from __future__ import annotations

import random
import statistics
import time
from pathlib import Path

import common
import figures
import numpy as np
import yaml
from intervention_llm import llm_parser, student_version

from tutorkd.agents.tpd.principles import (
    LLMPrinciples,
    PrincipleSet,
    ProceduralPrinciples,
    append_principles,
    rewrite_instruction,
    select_examples,
)

RESULTS = common.RESULTS / "principles_llm.json"
RECIPE = common.REPO / "recipes" / "arithmetic-smollm2.yaml"
MODEL = "smollm2-135m-instruct"
TOP, DEMOS, WEAK_BELOW = 4, 4, 0.5
"""Principles put in an instruction, demonstrations shown (variant c), weak-skill threshold."""


def variants(chat, sets: dict[str, PrincipleSet], attempts, rng: random.Random) -> dict:
    """The domain of every condition: plain, (a)/(b) per principle source, (c) by principle / random."""
    out = {"plain": chat}
    for name, found in sets.items():
        top = found.principles[:TOP]
        if top:  # Why skipped when empty: the variant would be the plain prompt again.
            out[f"a_append_{name}"] = chat.in_context(append_principles(chat.system, top).text)
            out[f"b_rewrite_{name}"] = chat.in_context(rewrite_instruction(chat.system, top).text)
    chosen = [p for p, _ in select_examples(sets["procedural"], attempts, DEMOS)][:DEMOS]
    if chosen:
        out["c_demos_by_principle"] = chat.in_context(demos=chosen)
        out["c_demos_random"] = chat.in_context(demos=rng.sample([a.problem for a in attempts], len(chosen)))
    return out


def skill_accuracy(attempts) -> dict[str, float]:
    """Accuracy per skill (sorted)."""
    by: dict[str, list[bool]] = {}
    for a in attempts:
        by.setdefault(a.problem.skill_ids[0], []).append(a.correct)
    return {s: float(np.mean(v)) for s, v in sorted(by.items())}


def principle_record(found: PrincipleSet) -> dict:
    """What a source found: counts, coverage, and per principle its text and share of the errors."""
    return {"attempts": found.attempts, "wrong": found.wrong, "format_errors": found.format_errors,
            "coverage": found.coverage, "invalid": found.invalid,
            "principles": [{"text": p.text, "skills": p.skills, "bug": p.bug_id,
                            "share_of_errors": len(p.explains) / found.wrong if found.wrong else 0.0}
                           for p in found.principles]}


def student_for(setup, student_cfg, domain, work: Path, seed: int, version):
    """A student of ``setup``'s engine that reads ``domain``'s prompts, at ``version`` (``None``: base)."""
    from tutorkd.assembly import StudentInputs, new_student

    student = new_student(student_cfg, StudentInputs(domain, work / f"s{seed}", seed, setup.backend,
                                                     setup.base_dir, setup.phases))
    if version is not None:
        student.use(version)
    return student


def evaluate(setup, student_cfg, work: Path, domains: dict, test, seed: int, version) -> dict:
    """Accuracy of every condition's prompt on ``test`` (per skill and overall)."""
    out = {}
    for name, domain in domains.items():
        attempts = student_for(setup, student_cfg, domain, work, seed, version).answer(test)
        out[name] = {"overall": float(np.mean([a.correct for a in attempts])),
                     "per_skill": skill_accuracy(attempts),
                     "format_errors": float(np.mean([a.parsed_answer is None for a in attempts]))}
    return out


def llm_principles(items: list[dict], skills) -> None:
    """Every item's LLM principles, from one teacher engine (the student's is closed meanwhile)."""
    from tutorkd.config import TeacherLLMConfig
    from tutorkd.llm.structured import StructuredLLM

    # Why 768 tokens and TOP principles: a reply listing 16 errors per principle overflows the default 256.
    llm = StructuredLLM.from_config(TeacherLLMConfig(model=MODEL, backend="vllm", max_model_len=2048,
                                                     max_tokens=768))
    llm.start()
    try:
        source = LLMPrinciples(llm, skills, max_shown=16, max_principles=TOP)
        for item in items:
            item["sets"]["llm"] = source.principles(item["attempts"])
    finally:
        llm.close()


def summarize(rows: list[dict]) -> dict:
    """Per student: weak-skill and overall accuracy per condition (median over seeds), and whether a
    variant beats the plain prompt on weak-skill accuracy on every seed."""
    out = {}
    for student in {r["student"] for r in rows}:
        mine = [r for r in rows if r["student"] == student]
        names = [n for n in mine[0]["conditions"] if all(n in r["conditions"] for r in mine)]
        mine = [r for r in mine if r["weak_skills"]]  # Why: with no weak skill there is nothing to compare
        if not mine:
            out[student] = {"acceptance": {"holds": False, "why": "no weak skill on any seed"}}
            continue
        weak = {n: [r["weak_accuracy"][n] for r in mine] for n in names}
        out[student] = {
            "seeds": [r["seed"] for r in mine],
            "weak_accuracy_median": {n: statistics.median(v) for n, v in weak.items()},
            "overall_median": {n: statistics.median(r["conditions"][n]["overall"] for r in mine)
                               for n in names},
            "beats_plain_on_weak_skills_per_seed": {n: [w > p for w, p in zip(v, weak["plain"], strict=True)]
                                                    for n, v in weak.items() if n != "plain"},
            "procedural_coverage_median": statistics.median(r["principles"]["procedural"]["coverage"]
                                                            for r in mine),
            "llm_valid_share": float(np.mean([not r["principles"]["llm"]["invalid"] for r in mine])),
        }
        wins = [n for n, v in out[student]["beats_plain_on_weak_skills_per_seed"].items() if all(v)]
        out[student]["acceptance"] = {"variants_beating_plain_on_every_seed": wins, "holds": bool(wins)}
    return out


def main() -> None:
    from tutorkd.assembly import build_student_setup
    from tutorkd.config import RunConfig
    from tutorkd.environments.factory import build_domain

    args = llm_parser(__doc__, RESULTS, practice_per_skill=20).parse_args()
    started = time.perf_counter()
    cfg = yaml.safe_load(RECIPE.read_text())
    cfg["backend"]["max_model_len"] = 1024  # Why: demonstrations and principles lengthen the prompt
    items: list[dict] = []
    with common.scratch("tutorkd-principles-llm-") as work:
        run_cfg = RunConfig.model_validate(cfg | {"runs_root": str(work)})
        setup = build_student_setup(run_cfg, work)
        procedural = ProceduralPrinciples(build_domain(run_cfg.environment).domain)
        chat, heldout, skills = setup.domain, setup.heldout, setup.domain.tree.leaves()
        for seed in args.seeds:  # 1. practice answers and procedural principles, on the student engine
            rng = random.Random(seed)
            test = [p for s in skills for p in rng.sample(heldout.test[s], args.per_skill)]
            practice = [p for s in skills
                        for p in chat.sample(s, args.practice_per_skill, rng, heldout.questions)]
            for name in args.students:
                version = student_version(name, args.trained, seed)
                attempts = student_for(setup, run_cfg.student, chat, work, seed, version).answer(practice)
                items.append({"seed": seed, "student": name, "version": version, "test": test,
                              "attempts": attempts, "sets": {"procedural": procedural.principles(attempts)}})
        setup.backend.close()  # 2. the teacher LLM's principles, one engine at a time
        llm_principles(items, skills)
        rows = []
        for item in items:  # 3. every variant on the held-out problems (the student engine restarts)
            t0 = time.perf_counter()
            seed, attempts = item["seed"], item["attempts"]
            practice_acc = skill_accuracy(attempts)
            weak = [s for s, a in practice_acc.items() if a < WEAK_BELOW]
            domains = variants(chat, item["sets"], attempts, random.Random(seed))
            conditions = evaluate(setup, run_cfg.student, work, domains, item["test"], seed, item["version"])
            rows.append({
                "seed": seed, "student": item["student"], "practice_accuracy": practice_acc,
                "weak_skills": weak,
                "principles": {k: principle_record(v) for k, v in item["sets"].items()},
                "conditions": conditions,
                "weak_accuracy": {n: float(np.mean([c["per_skill"][s] for s in weak])) if weak else None
                                  for n, c in conditions.items()},
                "seconds": round(time.perf_counter() - t0, 1)})
            print(f"seed {seed} {item['student']}: weak-skill accuracy " + ", ".join(
                f"{n} {v:.3f}" for n, v in rows[-1]["weak_accuracy"].items() if v is not None), flush=True)
        setup.close()
    result = {**common.header("principles_llm"),
              "setup": {"recipe": str(RECIPE.relative_to(common.REPO)), "students": args.students,
                        "top_principles": TOP, "demonstrations": DEMOS, "weak_below": WEAK_BELOW,
                        "teacher_llm": f"{MODEL} (vLLM, structured outputs)",
                        "args": common.config_record(args, drop=["out"])},
              "runs": rows, "summary": summarize(rows), "seconds": round(time.perf_counter() - started, 1)}
    common.write_result(result, args.out, lambda png: figures.principles_llm(result, png), indent=1)
    for name, s in result["summary"].items():
        common.print_table({n: {"weak (median)": v, "overall": s["overall_median"][n]}
                            for n, v in s["weak_accuracy_median"].items()}, f"{name}: {s['acceptance']}")


if __name__ == "__main__":
    main()
