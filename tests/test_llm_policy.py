"""LLM teacher policies: valid actions become plans; every kind of invalid action is counted and falls back.

Scripted backends pin the validation logic; a tiny random Llama (garbage by design) checks that real
generation never crashes a plan, through transformers here and through vLLM structured outputs in a
subprocess (one in-process vLLM engine per process: the test session already holds one).
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import pytest
from feedbacks import feedback
from tiny_llm import build_tiny_llm

from tutorkd.agents.baselines.procedural import ProceduralEngine
from tutorkd.agents.dataenvgym.llm_policies import (
    LLMSkillListPolicy,
    LLMSkillTreePolicy,
    action_schema,
    repeats_a_skill,
)
from tutorkd.agents.dataenvgym.policies import SkillListPolicy, SkillTreePolicy
from tutorkd.agents.stat.profile import LLMSkillLabeler, build_profile
from tutorkd.agents.teacher import Teacher, build_teacher
from tutorkd.config import SkillPolicyConfig, TeacherConfig, load_config
from tutorkd.environments.arithmetic import ArithmeticDomain
from tutorkd.llm.structured import StructuredLLM
from tutorkd.protocols import Completion, SamplingConfig
from tutorkd.schema import StudentVersion, TeacherUsage

TESTS = Path(__file__).resolve().parent
DOMAIN = ArithmeticDomain()
CFG = SkillPolicyConfig()
WEAK = {"add.carry": 0.2, "sub.borrow": 0.5, "mul.by_digit": 0.0}


class ScriptedBackend:
    """Answers with the given texts in turn; remembers each call's prompts and sampling config."""

    def __init__(self, *texts: str) -> None:
        self.texts = list(texts)
        self.calls: list[tuple[list[str], SamplingConfig]] = []

    def generate(self, prompts: Sequence[str], params: SamplingConfig,
                 version: StudentVersion | None = None) -> list[Completion]:
        self.calls.append((list(prompts), params))
        return [Completion(text=self.texts.pop(0), prompt_tokens=len(p), completion_tokens=7)
                for p in prompts]

    def close(self) -> None:
        pass


def scripted(*texts: str, structured: bool = True) -> tuple[StructuredLLM, ScriptedBackend]:
    backend = ScriptedBackend(*texts)
    return StructuredLLM(lambda: backend, SamplingConfig(max_tokens=64), structured), backend


def action(kind: str, **amounts: int) -> str:
    allocation = {s.replace("_", ".", 1): a for s, a in amounts.items()}
    return json.dumps({"action": kind, "allocation": allocation, "reasoning": "because"})


def test_a_valid_skill_list_action_becomes_the_plan_and_is_decoded_under_the_schema() -> None:
    llm, backend = scripted(action("allocate", add_carry=30, mul_by_digit=10))
    policy = LLMSkillListPolicy(llm, SkillListPolicy(100, "rationale", CFG))
    plan = policy.plan(feedback(DOMAIN, WEAK))
    assert {i.skill_id: i.count for i in plan.items} == {"add.carry": 30, "mul.by_digit": 10}
    assert policy.log.used == "llm" and policy.log.error is None and not policy.invalid
    schema = json.loads(backend.calls[0][1].json_schema)
    amounts = schema["properties"]["allocation"]["properties"]
    assert list(amounts) == DOMAIN.tree.leaves() and amounts["add.carry"]["maximum"] == 100


def test_the_schema_makes_a_repeated_or_unknown_skill_impossible() -> None:
    schema = action_schema(("allocate",), DOMAIN.tree.leaves(), 0, 100)
    allocation = schema["properties"]["allocation"]
    # An object keyed by skill id: a key cannot repeat, and only the known skills may be keys.
    assert allocation["type"] == "object" and allocation["additionalProperties"] is False
    assert set(allocation["properties"]) == set(DOMAIN.tree.leaves())
    amount = {"type": "integer", "minimum": 0, "maximum": 100}
    assert all(p == amount for p in allocation["properties"].values())
    assert "required" not in allocation  # the model picks which skills to name


DUPLICATE = '{"action": "allocate", "allocation": {"add.carry": 5, "add.carry": 5}, "reasoning": ""}'


@pytest.mark.parametrize(("text", "reason"), [
    ("the student is weak at carrying", "invalid_json"),
    ('{"action": "allocate"}', "schema"),
    (action("explore", add_carry=30), "schema"),
    (action("allocate", add_nope=30), "unknown_skill"),
    (action("allocate", add_carry=80, sub_borrow=21), "over_budget"),
    (action("allocate", add_carry=-5), "over_budget"),
    (action("allocate", add_carry=0), "empty"),
    (DUPLICATE, "duplicate_skill"),
    (json.dumps({"action": "allocate", "allocation": [{"skill": "add.carry", "amount": 5}]}), "schema"),
])
def test_an_invalid_skill_list_action_is_counted_and_replaced_by_the_heuristic(text: str, reason: str):
    llm, _ = scripted(text)
    heuristic = SkillListPolicy(100, "rationale", CFG)
    policy = LLMSkillListPolicy(llm, heuristic)
    fb = feedback(DOMAIN, WEAK)
    assert policy.plan(fb) == heuristic.plan(fb)
    assert policy.invalid == {reason: 1}
    ((name, log),) = policy.views()
    assert name == "llm_policy.json" and log.error == reason and log.used == "heuristic skill-list"


def test_free_generation_is_validated_from_the_first_to_the_last_brace() -> None:
    chatty = "Sure! " + action("allocate", sub_borrow=40) + " Hope this helps."
    llm, backend = scripted(chatty, structured=False)
    plan = LLMSkillListPolicy(llm, SkillListPolicy(100, "rationale", CFG)).plan(feedback(DOMAIN, WEAK))
    assert {i.skill_id: i.count for i in plan.items} == {"sub.borrow": 40}
    assert backend.calls[0][1].json_schema is None  # transformers cannot decode under a schema


def test_a_skill_repeated_in_free_generation_is_counted_not_collapsed() -> None:
    # JSON parsers keep the last of repeated keys; without structured outputs nothing else stops one.
    llm, _ = scripted("Sure! " + DUPLICATE + " Done.", structured=False)
    heuristic = SkillListPolicy(100, "rationale", CFG)
    policy = LLMSkillListPolicy(llm, heuristic)
    assert policy.plan(feedback(DOMAIN, WEAK)) == heuristic.plan(feedback(DOMAIN, WEAK))
    assert policy.invalid == {"duplicate_skill": 1} and policy.log.used == "heuristic skill-list"
    assert not repeats_a_skill(action("allocate", add_carry=5, sub_borrow=5))
    assert repeats_a_skill(DUPLICATE)


def test_the_tree_llm_action_moves_the_state_and_an_invalid_one_falls_back() -> None:
    llm, _ = scripted(action("explore", add_carry=12, cmp_lead=3), action("exploit", cmp_same_lead=5),
                      action("exploit", add_carry=500))
    policy = LLMSkillTreePolicy(llm, SkillTreePolicy(60, "rationale", CFG))
    plan = policy.plan(feedback(DOMAIN, WEAK))
    assert policy.tree.state.allocation == {"add.carry": 12, "cmp.lead": 3}
    assert {i.skill_id: i.count for i in plan.items} == {"add.carry": 48, "cmp.lead": 12}
    assert policy.tree.state.action.source == "llm"
    policy.plan(feedback(DOMAIN, WEAK, round=1))  # exploits an untargeted skill: invalid
    assert policy.tree.state.action.source == "fallback" and policy.tree.state.action.kind == "exploit"
    policy.plan(feedback(DOMAIN, WEAK, round=2))  # 12 + 500 units: over the 200 cap
    assert policy.invalid == {"not_targeted": 1, "over_budget": 1}
    assert policy.log.invalid == {"not_targeted": 1, "over_budget": 1}


def test_the_teacher_shows_the_action_log_the_tree_state_and_its_token_usage() -> None:
    llm, _ = scripted(action("explore", add_carry=12))
    policy = LLMSkillTreePolicy(llm, SkillTreePolicy(60, "rationale", CFG))
    teacher = Teacher(name="t", policy=policy, engine=ProceduralEngine(DOMAIN), llm=llm, viewers=(policy,))
    teacher.plan(feedback(DOMAIN, WEAK))
    views = dict(teacher.views())
    assert set(views) == {"llm_policy.json", "skill_tree_state.json", "teacher_usage.json"}
    assert views["teacher_usage.json"].calls == 1 and views["teacher_usage.json"].tokens_out == 7
    assert dict(teacher.views())["teacher_usage.json"] == TeacherUsage()  # usage is per round


def test_the_stat_llm_labeler_counts_invalid_and_unknown_labels() -> None:
    fb = feedback(DOMAIN, {"add.carry": 0.9, "mul.by_digit": 0.9})  # two errors each
    good = json.dumps({"judge": "incorrect", "reason": "no carry", "skills": ["add.carry", "add.carry"]})
    unknown = json.dumps({"judge": "incorrect", "reason": "", "skills": ["division"]})
    fine = json.dumps({"judge": "correct", "reason": "", "skills": []})
    llm, backend = scripted(good, "{oops", unknown, fine)
    catalogue = [n for n in DOMAIN.tree.nodes if n.id in DOMAIN.tree.leaves()]
    labeler = LLMSkillLabeler(llm, catalogue)
    profile = build_profile(fb, labeler)
    assert (profile.difficult, profile.invalid, profile.counts) == (4, 2, {"add.carry": 1})
    assert labeler.invalid == {"invalid_json": 1, "unknown_skill": 1}
    assert "[SKILL LIST] add.no_carry:" in backend.calls[0][0][0]


@pytest.fixture(scope="module")
def tiny_llm(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random Llama over printable ASCII (a stand-in teacher LLM)."""
    return build_tiny_llm(tmp_path_factory.mktemp("tiny-llm"))


def test_a_tiny_random_llm_through_transformers_never_breaks_a_plan(tiny_llm: Path) -> None:
    cfg = load_config(TeacherConfig, TESTS.parent / "agents" / "skill-tree-llm.yaml")
    llm_cfg = cfg.llm.model_copy(update={"model": str(tiny_llm), "backend": "transformers", "max_tokens": 48})
    teacher = build_teacher(cfg.model_copy(update={"llm": llm_cfg, "per_round": 90}), DOMAIN)
    try:
        for k in range(2):
            plan = teacher.plan(feedback(DOMAIN, WEAK, round=k))
            assert plan.total == 90 and all(i.skill_id in DOMAIN.tree.leaves() for i in plan.items)
            views = dict(teacher.views())
            assert views["teacher_usage.json"].calls == 1 and views["teacher_usage.json"].tokens_in > 500
        # Garbage in, garbage out: whatever the model wrote was counted, not trusted.
        assert sum(teacher.policy.invalid.values()) == 2
    finally:
        teacher.llm.close()


VLLM_SCRIPT = """
import json, random, sys
sys.path.insert(0, {tests!r})
from pathlib import Path
from feedbacks import feedback
from tiny_llm import build_tiny_llm, imitate
from tutorkd.agents.dataenvgym.policies import SkillTreePolicy
from tutorkd.agents.dataenvgym.llm_policies import LLMAction, LLMSkillTreePolicy
from tutorkd.llm.structured import StructuredLLM
from tutorkd.config import SkillPolicyConfig, TeacherLLMConfig
from tutorkd.environments.arithmetic import ArithmeticDomain

domain = ArithmeticDomain()
rng = random.Random(0)
leaves = domain.tree.leaves()
# Why imitate: a random model pads structured JSON with whitespace and long strings (hundreds of
# tokens at ~0.1 s each on this CPU); a few seconds of training on compact actions make it terse.
def compact_action():
    allocation = {{s: rng.randint(1, 30) for s in rng.sample(leaves, 2)}}
    action = {{"action": "explore", "allocation": allocation, "reasoning": rng.choice(["weak", "new", ""])}}
    return json.dumps(action, separators=(",", ":"))

actions = [compact_action() for _ in range(300)]
model = imitate(build_tiny_llm(Path({out!r})), actions)
cfg = TeacherLLMConfig(model=str(model), temperature=1.0, max_tokens=200, max_model_len=2048)
llm = StructuredLLM.from_config(cfg)
policy = LLMSkillTreePolicy(llm, SkillTreePolicy(90, "rationale", SkillPolicyConfig()))
rounds = []
for k in range(2):
    plan = policy.plan(feedback(domain, {{"add.carry": 0.2, "mul.by_digit": 0.0}}, round=k))
    parsed = None
    try:
        parsed = LLMAction.model_validate_json(policy.log.output).model_dump()
    except ValueError:
        pass
    rounds.append({{"total": plan.total, "error": policy.log.error, "parsed": parsed}})
llm.close()
print("RESULT " + json.dumps(rounds))
"""


# Why slow: a fresh interpreter, a tiny LLM trained, then an engine (about 25 s here); the default run's
# real structured outputs are tests/test_llm_teacher_smollm2.py's (SmolLM2, schema, compact JSON).
@pytest.mark.slow
@pytest.mark.vllm
def test_a_tiny_llm_under_vllm_structured_outputs_writes_schema_valid_actions(tmp_path: Path) -> None:
    pytest.importorskip("vllm")
    script = tmp_path / "run.py"
    script.write_text(VLLM_SCRIPT.format(tests=str(TESTS), out=str(tmp_path / "model")))
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    (line,) = [x for x in done.stdout.splitlines() if x.startswith("RESULT ")]
    rounds = json.loads(line.removeprefix("RESULT "))
    assert [r["total"] for r in rounds] == [90, 90]
    # Under the schema a finished output is a well-formed action over known skills, whatever the
    # model knows; its plan may still be invalid (say, exploiting an untargeted skill) and fall back.
    parsed = [r["parsed"] for r in rounds if r["parsed"] is not None]
    assert parsed, rounds
    assert all(s in DOMAIN.tree.leaves() for p in parsed for s in p["allocation"])
    assert all(r["error"] not in ("schema", "unknown_skill") for r in rounds)
