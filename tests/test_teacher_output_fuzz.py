"""Fuzz: thousands of bad teacher outputs through every path that parses them; none crashes, none trains.

At least 1000 outputs per gate (100 cases of 10 to 60 each), and 1440 solutions through STAT-Syn.

Three gates, each fed outputs whose kind is known in advance, so the counts by kind are checked
exactly: the LLM policy's JSON action (malformed JSON, schema violations, empty and enormous outputs,
unknown or duplicate skills, over-budget and empty allocations), the STAT labeler's JSON judgement,
and the verifier in front of training (wrong answers, garbled, empty and enormous completions,
duplicates, copies of evaluation problems). Solutions an LLM solver writes pass the STAT-Syn
consistency filter and then the verifier; whatever they are, nothing but the exact worked solution of
a correct, new, non-evaluation problem is kept.
"""

from __future__ import annotations

import json
import random
import re
from collections import Counter
from collections.abc import Sequence

from feedbacks import attempts, feedback
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tutorkd.agents.baselines.procedural import _AnyOf
from tutorkd.agents.dataenvgym.llm_policies import LLMSkillListPolicy
from tutorkd.agents.dataenvgym.policies import SkillListPolicy
from tutorkd.agents.stat.profile import LLMSkillLabeler
from tutorkd.agents.stat.teacher import LLMSolver, SkillPool, SynthesisEngine
from tutorkd.config import SkillPolicyConfig
from tutorkd.environments.arithmetic import ArithmeticDomain
from tutorkd.environments.heldout import HeldOut, normalize
from tutorkd.llm.structured import StructuredLLM
from tutorkd.protocols import Completion, GenerationContext, SamplingConfig
from tutorkd.schema import Example, GeneratorParams, Plan, PlanItem, Problem, Provenance, StudentVersion
from tutorkd.verify import REASONS, verify

DOMAIN = ArithmeticDomain()
LEAVES = DOMAIN.tree.leaves()
HELDOUT = HeldOut.build(DOMAIN, 10, 10, 1234)
EVAL_PROBLEMS = HELDOUT.val_problems() + HELDOUT.test_problems()
TOTAL = 100
FEEDBACK = feedback(DOMAIN, {"add.carry": 0.2, "sub.borrow": 0.5, "mul.by_digit": 0.0}, total=TOTAL)
HEURISTIC = SkillListPolicy(TOTAL, "rationale", SkillPolicyConfig())
FUZZ = settings(
    max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large]
)


class Scripted:
    """A backend answering each prompt with the next of ``texts``."""

    def __init__(self, texts: Sequence[str]) -> None:
        self.texts = list(texts)

    def generate(
        self, prompts: Sequence[str], params: SamplingConfig, version: StudentVersion | None = None
    ) -> list[Completion]:
        return [Completion(text=self.texts.pop(0), prompt_tokens=1, completion_tokens=1) for _ in prompts]

    def close(self) -> None:
        pass


def llm(texts: Sequence[str]) -> StructuredLLM:
    backend = Scripted(texts)
    return StructuredLLM(lambda: backend, SamplingConfig(max_tokens=64), structured=True)


# --------------------------------------------------------------------------------------------------
# The LLM policy's JSON action


def _action(allocation: list[tuple[str, object]], **extra: object) -> str:
    """An action's JSON text; ``allocation`` is written pair by pair, so a skill may repeat in it."""
    body = json.dumps({"action": "allocate", "reasoning": "weak skills", **extra})
    pairs = ", ".join(f"{json.dumps(s)}: {json.dumps(a)}" for s, a in allocation)
    return body[:-1] + ', "allocation": {' + pairs + "}}"


@st.composite
def action_output(draw: st.DrawFn) -> tuple[str, str | None]:
    """(LLM output, the reason the policy must reject it, or ``None`` for a valid action)."""
    skills = draw(st.lists(st.sampled_from(LEAVES), min_size=1, max_size=4, unique=True))
    amounts = [draw(st.integers(1, 20)) for _ in skills]
    valid = _action(list(zip(skills, amounts, strict=True)))
    kind = draw(
        st.sampled_from(
            ["valid", "invalid_json", "schema", "unknown_skill", "duplicate_skill", "over_budget", "empty"]
        )
    )
    if kind == "valid":
        return valid, None
    if kind == "invalid_json":
        return (
            draw(
                st.sampled_from(
                    [
                        "",  # empty output
                        valid[: draw(st.integers(0, len(valid) - 1))],  # cut off mid-answer
                        "the student is weak at carrying, so " + valid[:-1],
                        "{" + "x" * draw(st.integers(10**5, 10**6)),  # enormous
                    ]
                )
            ),
            kind,
        )
    if kind == "schema":
        return draw(
            st.sampled_from(
                [
                    json.dumps({"action": "allocate"}),
                    json.dumps({"action": "allocate", "allocation": {skills[0]: "ten"}}),
                    json.dumps({"action": "allocate", "allocation": [{"skill": skills[0], "amount": 1}]}),
                    _action([(skills[0], 1)], reasoning="x" * draw(st.integers(301, 100_000))),  # enormous
                    _action([(f"skill.{i}", 1) for i in range(65)]),  # too many skills
                    _action([(skills[0], 1)], confidence=0.9),  # a field the schema does not have
                    valid.replace('"allocate"', '"explore"'),
                    json.dumps([1, 2]),
                    "null",
                    '"allocate"',
                ]
            )
        ), kind
    if kind == "unknown_skill":
        unknown = draw(st.sampled_from(["division", "add", "add.nope", ""]))
        return _action([(skills[0], 5), (unknown, 5)]), kind
    if kind == "duplicate_skill":
        # The same key twice in the allocation object: JSON parsers would keep only the last.
        return _action([(skills[0], 5), (skills[0], draw(st.integers(1, 5)))]), kind
    if kind == "over_budget":
        return _action(
            [(skills[0], draw(st.integers(TOTAL + 1, 10**9)))]
            if draw(st.booleans())
            else [(skills[0], -draw(st.integers(1, 10**9)))]
        ), kind
    return _action([(s, 0) for s in skills] if draw(st.booleans()) else []), kind


@FUZZ
@given(st.lists(action_output(), min_size=10, max_size=40))
def test_llm_policy_actions_are_counted_by_kind_and_bad_ones_never_become_plans(
    outputs: list[tuple[str, str | None]],
) -> None:
    policy = LLMSkillListPolicy(llm([text for text, _ in outputs]), HEURISTIC)
    fallback = HEURISTIC.plan(FEEDBACK)
    for text, reason in outputs:
        plan = policy.plan(FEEDBACK)
        assert policy.log.error == reason and len(policy.log.output) <= 2000
        if reason is None:
            wanted = json.loads(text)["allocation"]
            assert {i.skill_id: i.count for i in plan.items} == wanted
        else:
            assert plan == fallback
        assert plan.total <= TOTAL and {i.skill_id for i in plan.items} <= set(LEAVES)
    assert policy.invalid == Counter(reason for _, reason in outputs if reason is not None)


def test_invalid_action_counts_survive_a_resume(tmp_path) -> None:
    from tutorkd.io import write_json

    before = LLMSkillListPolicy(llm(["oops"]), HEURISTIC)
    before.plan(FEEDBACK)
    for name, record in before.views():  # what the loop saves in the round's directory
        write_json(tmp_path / name, record)
    after = LLMSkillListPolicy(llm(["{}"]), HEURISTIC)  # a new process resuming the run
    after.restore(tmp_path)
    after.plan(FEEDBACK)
    assert after.invalid == after.log.invalid == {"invalid_json": 1, "schema": 1}


# --------------------------------------------------------------------------------------------------
# The STAT labeler's JSON judgement


@st.composite
def judgement_output(draw: st.DrawFn) -> tuple[str, str | None]:
    skills = draw(st.lists(st.sampled_from(LEAVES), max_size=3))
    valid = json.dumps({"judge": "incorrect", "reason": "missed the carry", "skills": skills})
    kind = draw(st.sampled_from(["valid", "invalid_json", "schema", "unknown_skill"]))
    if kind == "valid":
        return valid, None
    if kind == "invalid_json":
        return draw(st.sampled_from(["", valid[:-1], "incorrect: add.carry", "[" * 100_000])), kind
    if kind == "schema":
        return draw(
            st.sampled_from(
                [
                    valid.replace('"incorrect"', '"maybe"'),
                    json.dumps({"judge": "incorrect", "reason": "r" * 5000, "skills": []}),
                    json.dumps({"judge": "incorrect", "reason": "", "skills": LEAVES[:4]}),
                    json.dumps({"judge": "incorrect", "skills": []}),
                ]
            )
        ), kind
    return json.dumps({"judge": "incorrect", "reason": "", "skills": [*skills[:2], "long.division"]}), kind


@FUZZ
@given(st.lists(judgement_output(), min_size=10, max_size=40))
def test_llm_skill_labels_are_counted_by_kind_and_invalid_ones_label_nothing(
    outputs: list[tuple[str, str | None]],
) -> None:
    catalogue = [n for n in DOMAIN.tree.nodes if n.id in LEAVES]
    labeler = LLMSkillLabeler(llm([text for text, _ in outputs]), catalogue)
    wrong = attempts(DOMAIN, {s: 0.0 for s in LEAVES}, n=5)[: len(outputs)]
    labels = labeler.missing_skills(wrong)
    for (text, reason), label in zip(outputs, labels, strict=True):
        assert (label is None) == (reason is not None)
        if label is not None:
            assert label == tuple(dict.fromkeys(json.loads(text)["skills"]))
    assert labeler.invalid == Counter(reason for _, reason in outputs if reason is not None)


# --------------------------------------------------------------------------------------------------
# The verifier in front of training: examples whose kind is known

SEEN = frozenset(p.question for p in DOMAIN.sample("add.carry", 20, random.Random(9), HELDOUT.reserved))
"""Questions trained on in earlier rounds."""


def from_question(question: str) -> Problem:
    """The problem of ``question``, derived from its text alone (a stored answer is not trusted)."""
    return DOMAIN.make(DOMAIN.classify(question), tuple(int(x) for x in re.findall(r"\d+", question)))


def teacher_example(
    problem: Problem, completion: str, style: str, index: int, prompt: str | None = None
) -> Example:
    return Example(
        id=f"fuzz/r1/{index:06d}",
        problem=problem,
        completion=completion,
        prompt=problem.question if prompt is None else prompt,
        provenance=Provenance(
            run_id="fuzz",
            round=1,
            teacher="llm",
            skill_id=problem.skill_ids[0],
            generator=GeneratorParams(engine="llm", seed=0, style=style),
        ),
    )


def _wrong_answer(answer: str, rng: random.Random) -> str:
    if answer in ("<", ">", "="):
        return rng.choice([s for s in "<>=" if s != answer])
    return rng.choice([str(int(answer) + rng.choice([-10, -1, 1, 7])), "0" + answer])


@st.composite
def teacher_batch(draw: st.DrawFn) -> tuple[list[Example], list[str]]:
    """A batch of examples and, for each, the reason the verifier must give (``ok`` when it keeps it)."""
    rng = random.Random(draw(st.integers(0, 2**32)))
    kinds = draw(st.lists(st.sampled_from(["ok", *REASONS]), min_size=10, max_size=60))
    examples, reasons, kept, used = [], [], [], set(SEEN)
    for i, kind in enumerate(kinds):
        style = rng.choice(["rationale", "direct"])
        if kind == "eval_overlap":
            problem = rng.choice(EVAL_PROBLEMS)
        elif kind == "duplicate" and kept and rng.random() < 0.5:
            repeat = rng.choice(kept)  # the same text as an example kept earlier in this batch
            examples.append(repeat.model_copy(update={"id": f"fuzz/r1/{i:06d}"}))
            reasons.append(kind)
            continue
        elif kind == "duplicate":
            problem = from_question(rng.choice(sorted(SEEN)))
        else:
            (problem,) = DOMAIN.sample(rng.choice(LEAVES), 1, rng, _AnyOf(HELDOUT.reserved, used))
            used.add(problem.question)
        right = DOMAIN.completion(problem, style)
        prompt = None
        if kind == "malformed":
            completion, prompt = rng.choice(
                [
                    ("", None),
                    ("A:", None),
                    (right + " A:0", None),
                    (right + "\n", None),
                    (right + " " + "9" * rng.randint(10**4, 10**5), None),  # enormous
                    ("".join(rng.choices("0123456789+-*= R", k=rng.randint(1, 200))), None),  # no answer
                    (right.replace("A:", "A:é"), None),
                    (right, problem.question + " "),
                    (right, ""),
                ]
            )
        elif kind == "wrong_answer":
            completion = right[: right.index("A:") + 2] + _wrong_answer(problem.answer, rng)
        elif kind == "wrong_rationale":
            completion = (
                f"R:{'1+1=2 ' * rng.randint(1, 20_000)}A:{problem.answer}"
                if style == "rationale"
                else f"R:A:{problem.answer}"
            )
        else:
            completion = right
        example = teacher_example(problem, completion, style, i, prompt)
        examples.append(example)
        reasons.append(kind)
        if kind == "ok":
            kept.append(example)
    return examples, reasons


@FUZZ
@given(teacher_batch())
def test_the_verifier_counts_each_kind_and_keeps_only_the_good_examples(
    batch: tuple[list[Example], list[str]],
) -> None:
    examples, reasons = batch
    result = verify(examples, DOMAIN, HELDOUT.questions, {normalize(q) for q in SEEN})
    got = {e.id: e.provenance.verification.reason for e in result.kept + result.rejected}
    assert [got[e.id] for e in examples] == reasons
    assert result.counts == {r: reasons.count(r) for r in REASONS}
    assert [e.id for e in result.kept] == [e.id for e, r in zip(examples, reasons, strict=True) if r == "ok"]


# --------------------------------------------------------------------------------------------------
# An LLM solver's solutions through STAT-Syn's consistency filter, then the verifier

POOL = SkillPool(DOMAIN, per_skill=30, seed=0, exclude=HELDOUT.reserved)


class SolutionWriter:
    """A teacher LLM answering each problem with a solution of the next drawn kind."""

    def __init__(self, kinds: list[str], rng: random.Random) -> None:
        self.kinds, self.rng, self.n = kinds, rng, 0

    def generate(
        self, prompts: Sequence[str], params: SamplingConfig, version: StudentVersion | None = None
    ) -> list[Completion]:
        out = []
        for prompt in prompts:
            problem = from_question(prompt)
            kind, self.n = self.kinds[self.n % len(self.kinds)], self.n + 1
            right = DOMAIN.completion(problem, self.rng.choice(["rationale", "direct"]))
            text = {
                "right": right,
                "padded": f"\n {right}\n",
                "empty": "",
                "garbage": "R:" + "?" * 50,
                "wrong": f"A:{_wrong_answer(problem.answer, self.rng)}",
                "enormous": right + " and so on" * 10_000,
                "json": json.dumps({"answer": problem.answer}),
            }[kind]
            out.append(Completion(text=text, prompt_tokens=1, completion_tokens=1))
        return out

    def close(self) -> None:
        pass


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(
        st.sampled_from(["right", "padded", "wrong", "empty", "enormous", "garbage", "json"]),
        min_size=1,
        max_size=12,
    ),
    st.integers(0, 2**32),
)
def test_llm_solutions_never_train_anything_but_the_exact_worked_solution(
    kinds: list[str], seed: int
) -> None:
    writer = SolutionWriter(kinds, random.Random(seed))
    solver = LLMSolver(StructuredLLM(lambda: writer, SamplingConfig(max_tokens=64), structured=False), DOMAIN)
    engine = SynthesisEngine(DOMAIN, POOL, solver, HELDOUT.reserved)
    plan = Plan(
        items=(
            PlanItem(count=6, skill_id="add.carry", style="rationale"),
            PlanItem(count=6, skill_id="cmp.same_lead", style="direct"),
        )
    )
    examples = engine.generate(plan, GenerationContext(run_id="fuzz", round=1, teacher="stat", seed=seed))
    stats = engine.last_stats
    assert stats.proposed == stats.inconsistent + stats.unverified + stats.kept == 12
    result = verify(examples, DOMAIN, HELDOUT.questions)
    assert sum(result.counts.values()) + len(result.kept) == len(examples)
    for example in result.kept:
        problem, style = from_question(example.problem.question), example.provenance.generator.style
        assert example.completion == DOMAIN.completion(problem, style)
        assert normalize(problem.question) not in HELDOUT.questions
    if set(kinds) <= {"right", "padded"}:
        # Every answer agrees and is right, so all twelve pass the filter; a solution written in the
        # other style than the plan asked for is then a wrong rationale, never trained on.
        assert stats.kept == 12 and len(result.kept) + result.counts["wrong_rationale"] == 12
