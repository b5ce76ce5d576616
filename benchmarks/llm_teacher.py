"""SmolLM2-135M-Instruct as the teacher LLM: how often each LLM-teacher part gets valid output, and what
its fallback then does.

The input is a real evaluation: SmolLM2 itself is the student (the arithmetic domain as a chat, 3 format
examples, greedy, as ``recipes/arithmetic-smollm2.yaml`` serves it) and answers ``--val-per-skill``
validation problems per skill; its wrong answers and per-skill accuracies are the feedback. The same
model then teaches, through ``StructuredLLM`` (each prompt one user message in its chat template):

- ``skill_list_llm`` / ``skill_tree_llm``: DataEnvGym's LLM policies, one call per plan, on ``--calls``
  feedbacks resampled from the evaluation (skill-tree: chains of 5 rounds, its state carried);
  fallback: the heuristic plan;
- ``discovery``: LLM skill labels of arithmetic questions and of word problems, clustered; an invalid
  label's question is clustered by its own text;
- ``stat_labeler``: STAT's missing-skill prompt per wrong answer; an invalid label adds nothing;
- ``stat_solver``: STAT-Syn's LLM solver, 3 samples per problem at temperature 0.7, on the chat domain's
  prompts and on the raw arithmetic prompts; unparseable solutions never agree, so their problem is
  dropped;
- ``tpd_principles``: TPD's principles from 8 wrong answers per call; an invalid reply gives none;
- ``tom_simulation`` (vLLM pass only; transformers scoring): Saha et al.'s pre/post simulation prompts
  with demonstrations of the real student's answers, its P(correct) against what the student then did.

``valid`` is the share of calls whose output passed JSON parsing, the pydantic schema and the part's own
checks. ``vllm`` decodes under the JSON schema (structured outputs), ``transformers`` generates freely.
Writes ``benchmarks/results/llm_teacher.json``. ``llm_teacher_vllm.json`` is the vLLM pass again
after teacher engines write compact JSON and the LLM policies' allocation became an object keyed by
skill (2026-12-06, 10 calls per part).

    .venv/bin/python benchmarks/llm_teacher.py [--calls 20] [--backends vllm transformers]
    .venv/bin/python benchmarks/llm_teacher.py --backends vllm --calls 10 \
        --out benchmarks/results/llm_teacher_vllm.json
"""

from __future__ import annotations

import random
import time
from collections import Counter
from collections.abc import Callable

import common

RESULTS = common.RESULTS / "llm_teacher.json"
MODEL = "smollm2-135m-instruct"
EXAMPLES = 3
"""Raw outputs kept per part (truncated to ``CHARS``)."""
CHARS = 300


def student_attempts(backend, chat, problems, explanations=None) -> list:
    """The SmolLM2 student's attempts at ``problems`` (greedy, 48 tokens), with an explanation opening
    each answer where given."""
    from tutorkd.protocols import SamplingConfig
    from tutorkd.schema import Attempt

    explanations = explanations or [None] * len(problems)
    prompts = [chat.prompt(p, e) for p, e in zip(problems, explanations, strict=True)]
    out = backend.generate(prompts, SamplingConfig(max_tokens=48, temperature=0.0))
    attempts = []
    for p, e, c in zip(problems, explanations, out, strict=True):
        parsed, correct = chat.check(p, c.text)
        attempts.append(Attempt(problem=p, output=c.text, parsed_answer=parsed, correct=correct,
                                explanation=e))
    return attempts


def feedback_of(attempts, domain, round_: int, total: int):
    """Skill-tree feedback (errors, leaf and branch accuracies) on ``attempts``, as an environment
    shows it."""
    from tutorkd.schema import Feedback, StructureLevel

    leaves = domain.tree.leaves()
    acc = {s: sum(a.correct for a in attempts if a.problem.skill_ids == (s,))
           / max(1, sum(a.problem.skill_ids == (s,) for a in attempts)) for s in leaves}
    nodes = {b: sum(acc[s] for s in domain.tree.leaves_under(b)) / len(domain.tree.leaves_under(b))
             for b in domain.tree.children(None)}
    return Feedback(level=StructureLevel.SKILL_TREE, round=round_,
                    errors=tuple(a for a in attempts if not a.correct), skill_accuracy=acc,
                    node_accuracy=nodes, tree=domain.tree, budget_used=0, budget_total=total)


def resample(attempts, rng: random.Random, share: float = 0.6) -> list:
    """A random ``share`` of each skill's attempts: another plausible validation set."""
    by_skill: dict[tuple, list] = {}
    for a in attempts:
        by_skill.setdefault(a.problem.skill_ids, []).append(a)
    return [a for group in by_skill.values() for a in rng.sample(group, max(1, round(share * len(group))))]


def timed(llm, run: Callable[[], dict]) -> dict:
    """``run()``'s record with the teacher's tokens and the wall seconds it took."""
    llm.views()  # Why: reset the usage counter, so the tokens are this part's only
    t0 = time.perf_counter()
    record = run()
    usage = llm.views()[0][1]
    return record | {"tokens_in": usage.tokens_in, "tokens_out": usage.tokens_out,
                     "wall_s": round(time.perf_counter() - t0, 1)}


def policy_parts(llm, attempts, domain, calls: int, seed: int) -> dict:
    """DataEnvGym's skill-list and skill-tree LLM policies on resampled feedbacks."""
    from tutorkd.agents.dataenvgym.llm_policies import LLMSkillListPolicy, LLMSkillTreePolicy
    from tutorkd.agents.dataenvgym.policies import SkillListPolicy, SkillTreePolicy
    from tutorkd.config import SkillPolicyConfig

    cfg, rng = SkillPolicyConfig(), random.Random(seed)

    def record(logs) -> dict:
        used = Counter(log.used for log in logs)
        errors = Counter(log.error for log in logs if log.error is not None)
        return {"calls": len(logs), "valid": used["llm"] / len(logs), "errors": dict(errors),
                "fallback": {k: v for k, v in used.items() if k != "llm"},
                "examples": [log.output[:CHARS] for log in logs[:EXAMPLES]]}

    def skill_list() -> dict:
        policy, logs = LLMSkillListPolicy(llm, SkillListPolicy(240, "rationale", cfg)), []
        for k in range(calls):
            policy.plan(feedback_of(resample(attempts, rng), domain, k, 100_000))
            logs.append(policy.log)
        return record(logs)

    def skill_tree() -> dict:
        logs = []
        for chain in range(0, calls, 5):
            policy = LLMSkillTreePolicy(llm, SkillTreePolicy(240, "rationale", cfg))
            for k in range(min(5, calls - chain)):
                policy.plan(feedback_of(resample(attempts, rng), domain, k, 100_000))
                logs.append(policy.log)
        return record(logs)

    return {"skill_list_llm": timed(llm, skill_list), "skill_tree_llm": timed(llm, skill_tree)}


def discovery_part(llm, domain, calls: int, seed: int) -> dict:
    """LLM skill labels clustered into skills: arithmetic questions (true skills known) and word problems."""
    from tutorkd.environments.discovery import discover_skills, load_problems

    rng = random.Random(seed)
    leaves = domain.tree.leaves()
    arith = [p for i in range(calls) for p in domain.sample(leaves[i % len(leaves)], 1, rng)]
    words = load_problems(common.REPO / "tests" / "data" / "word_problems.jsonl")[:calls]

    def one(problems, true_skill: bool) -> dict:
        found = discover_skills(problems, llm, k=len(leaves), seed=seed)
        bad = sum(found.invalid.values())
        out = {"calls": len(problems), "valid": 1 - bad / len(problems), "errors": found.invalid,
               "fallback": {"question_text_clustered": bad}, "categories": len(found.categories),
               "examples": [c.name for c in found.categories[:EXAMPLES * 2]]}
        if true_skill:
            groups: dict[str, Counter] = {}
            for p in problems:
                groups.setdefault(found.assignment[p.id], Counter())[p.skill_ids[0]] += 1
            # Purity: share of questions whose category's most common true skill is theirs.
            out["purity"] = sum(c.most_common(1)[0][1] for c in groups.values()) / len(problems)
        return out

    return {"discovery_arithmetic": timed(llm, lambda: one(arith, True)),
            "discovery_word_problems": timed(llm, lambda: one(words, False))}


def stat_parts(llm, attempts, domain, chat, calls: int, seed: int) -> dict:
    """STAT's LLM labeller on wrong answers, and its LLM solver on new problems."""
    from tutorkd.agents.stat.profile import LLMSkillLabeler, build_profile
    from tutorkd.agents.stat.teacher import LLMSolver, agreeing

    leaves = set(domain.tree.leaves())

    def labeler() -> dict:
        wrong = [a for a in attempts if not a.correct][:calls]
        lab = LLMSkillLabeler(llm, [n for n in domain.tree.nodes if n.id in leaves])
        fb = feedback_of(wrong, domain, 0, 100_000)
        profile = build_profile(fb, lab)
        labelled = [q for q in profile.questions if q.skills]
        true = {a.problem.id: a.problem.skill_ids[0] for a in wrong}
        return {"calls": profile.difficult, "valid": 1 - profile.invalid / profile.difficult,
                "errors": dict(lab.invalid), "fallback": {"question_left_unlabelled": profile.invalid},
                "true_skill_named": sum(true[q.problem_id] in q.skills for q in labelled)
                / max(1, len(labelled)),
                "profile": profile.counts, "examples": [str(q.skills) for q in labelled[:EXAMPLES]]}

    def solver(target, label: str) -> Callable[[], dict]:
        def run() -> dict:
            rng = random.Random(seed)
            problems = [domain.sample(sorted(leaves)[i % len(leaves)], 1, rng)[0]
                        for i in range(calls // 3 + 1)]
            sols = LLMSolver(llm, target, temperature=0.7).solve(problems, "rationale", 3, seed)
            flat = [s for group in sols for s in group]
            agreed = [(p, agreeing(group, 2)[0]) for p, group in zip(problems, sols, strict=True)]
            kept = [(p, a) for p, a in agreed if a is not None]
            return {"calls": len(flat), "valid": sum(s.answer is not None for s in flat) / len(flat),
                    "errors": {"unparseable": sum(s.answer is None for s in flat)}, "prompts": label,
                    "fallback": {"problem_dropped_no_agreement": len(problems) - len(kept)},
                    "agreed_correct": sum(a == p.answer for p, a in kept),
                    "examples": [s.text[:CHARS] for s in flat[:EXAMPLES]]}
        return run

    return {"stat_labeler": timed(llm, labeler),
            "stat_solver_chat_domain": timed(llm, solver(chat, "chat domain, rendered by the domain")),
            "stat_solver_raw_domain": timed(llm, solver(domain, "raw '59+63=' as one user message"))}


def tpd_part(llm, attempts, domain, calls: int, seed: int) -> dict:
    """TPD's LLM principles, 8 wrong answers shown per call."""
    from tutorkd.agents.tpd.principles import LLMPrinciples

    source, rng = LLMPrinciples(llm, domain.tree.leaves(), max_shown=8), random.Random(seed)
    wrong = [a for a in attempts if a.parsed_answer is not None and not a.correct]

    def run() -> dict:
        sets = [source.principles(rng.sample(wrong, min(8, len(wrong)))) for _ in range(calls)]
        good = [s for s in sets if not s.invalid]
        return {"calls": calls, "valid": len(good) / calls, "errors": dict(source.invalid),
                "fallback": {"no_principles_this_batch": calls - len(good)},
                "mean_principles": sum(len(s.principles) for s in good) / max(1, len(good)),
                "mean_coverage": sum(s.coverage for s in good) / max(1, len(good)),
                "examples": [p.text[:CHARS] for s in good[:EXAMPLES] for p in s.principles[:1]]}

    return {"tpd_principles": timed(llm, run)}


def tom_part(backend, model_dir, chat, domain, per_skill: int, seed: int) -> dict:
    """Saha et al.'s simulated student: demonstrations from one half of the quiz, P(correct) on the other
    half against the real student's pre (no explanation) and post (full explanation) answers."""
    import numpy as np

    from tutorkd.agents.tom.interventions import explain
    from tutorkd.agents.tom.mental_models import SimulatedStudent, TransformersScorer, simulation_demos

    t0, rng = time.perf_counter(), random.Random(seed + 1)
    problems = [p for s in domain.tree.leaves() for p in domain.sample(s, per_skill, rng)]
    pre = student_attempts(backend, chat, problems)
    post = student_attempts(backend, chat, problems, [explain(p, "full") for p in problems])
    fit = set(rng.sample(range(len(problems)), len(problems) // 2))
    kinds = [sum(a[i].correct == right for i in fit) for a in (pre, post) for right in (True, False)]
    if min(kinds) < 1:
        return {"tom_simulation": {"calls": 0, "valid": 0.0, "errors": {},
                                   "skipped": f"too few right/wrong answers to demonstrate: {kinds}"}}
    # Why at most 4: the paper's 4 demonstrations, half right and half wrong where the student has them.
    demos = simulation_demos([pre[i] for i in fit], [post[i] for i in fit], min(4, 2 * min(kinds)), rng)
    sim = SimulatedStudent(TransformersScorer(model_dir, batch_size=8), *demos)
    rest = [i for i in range(len(problems)) if i not in fit]
    beliefs = sim.predict([problems[i] for i in rest], [post[i].explanation for i in rest])
    pre_y = np.array([pre[i].correct for i in rest], float)
    post_y = np.array([post[i].correct for i in rest], float)
    pb, qb = np.array([b.pre for b in beliefs]), np.array([b.post for b in beliefs])
    return {"tom_simulation": {
        "calls": 2 * len(rest), "valid": 1.0, "errors": {},
        "fallback": {"none": "every prompt scored (a ' <' token merged over the boundary is scored whole)"},
        "student_pre_accuracy": float(pre_y.mean()), "student_post_accuracy": float(post_y.mean()),
        "belief_pre_mean": float(pb.mean()), "belief_post_mean": float(qb.mean()),
        "brier_pre": float(((pb - pre_y) ** 2).mean()), "brier_pre_base_rate": float(pre_y.var()),
        "brier_post": float(((qb - post_y) ** 2).mean()), "brier_post_base_rate": float(post_y.var()),
        "examples": [sim.prompt(problems[rest[0]], None)[-CHARS:]],
        "wall_s": round(time.perf_counter() - t0, 1)}}


def run_backend(kind: str, args, attempts, domain) -> dict:
    """Every part with the teacher on ``kind``; the real evaluation when ``attempts`` is empty."""
    from tutorkd.config import TeacherLLMConfig
    from tutorkd.environments.chat import ChatDomain, chat_template
    from tutorkd.llm.structured import StructuredLLM
    from tutorkd.students.models import prepare_model

    model_dir = prepare_model(MODEL)
    llm = StructuredLLM.from_config(TeacherLLMConfig(model=MODEL, backend=kind, max_model_len=2048))
    t0 = time.perf_counter()
    backend = llm.start()
    out: dict = {"engine_start_s": round(time.perf_counter() - t0, 1),
                 "chat_template": llm.template is not None}
    chat = ChatDomain(domain, chat_template(model_dir), EXAMPLES)
    try:
        if not attempts:
            rng = random.Random(args.seed)
            val = [p for s in domain.tree.leaves() for p in domain.sample(s, args.val_per_skill, rng)]
            attempts[:] = student_attempts(backend, chat, val)
        calls = args.calls if kind == "vllm" else args.hf_calls
        out |= policy_parts(llm, attempts, domain, calls, args.seed)
        out |= discovery_part(llm, domain, calls, args.seed)
        out |= stat_parts(llm, attempts, domain, chat, calls, args.seed)
        out |= tpd_part(llm, attempts, domain, calls, args.seed)
        if kind == "vllm":
            out |= tom_part(backend, model_dir, chat, domain, args.tom_per_skill, args.seed)
    finally:
        llm.close()
    return out


def main() -> None:
    p = common.parser(__doc__, val_per_skill=10, out=RESULTS)
    p.add_argument("--calls", type=int, default=20, help="calls per part with the vLLM teacher")
    p.add_argument("--hf-calls", type=int, default=8, help="calls per part with the transformers teacher")
    p.add_argument("--backends", nargs="+", default=["vllm", "transformers"],
                   choices=("vllm", "transformers"))
    p.add_argument("--tom-per-skill", type=int, default=6, help="ToM quiz problems per skill")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    from tutorkd.environments.arithmetic import ArithmeticDomain

    domain, attempts, t0 = ArithmeticDomain(), [], time.perf_counter()
    result = common.header("llm_teacher") | {"config": common.config_record(args), "teacher": MODEL}
    result["backends"] = {}
    for kind in args.backends:
        result["backends"][kind] = run_backend(kind, args, attempts, domain)
        if "student" not in result:
            result["student"] = {"val_problems": len(attempts), "accuracy": sum(a.correct for a in attempts)
                                 / len(attempts), "wrong": sum(not a.correct for a in attempts)}
        for part, rec in result["backends"][kind].items():
            if isinstance(rec, dict):
                print(f"{kind:12s} {part:26s} calls {rec['calls']:3d} valid {rec['valid']:.2f} "
                      f"errors {rec['errors']} {rec.get('wall_s', '')}s", flush=True)
    result["wall_s"] = round(time.perf_counter() - t0, 1)
    common.write_result(result, args.out)


if __name__ == "__main__":
    main()
