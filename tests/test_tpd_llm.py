"""The TPD teacher's LLM principle source: replies mapped back to the attempts, invalid ones counted,
and real structured outputs under vLLM."""

from __future__ import annotations

import json
import random
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import pytest
from test_llm_policy import ScriptedBackend, scripted
from test_tpd import DOMAIN, LEAVES, REPO, attempt, buggy

from tutorkd.agents.tpd.principles import LLMPrinciples, PrincipleSet


def llm_source(texts: Sequence[str]) -> tuple[LLMPrinciples, ScriptedBackend]:
    llm, backend = scripted(*texts)
    return LLMPrinciples(llm, LEAVES, max_shown=3), backend


def test_llm_principles_map_shown_indices_back_to_the_attempts() -> None:
    rng = random.Random(2)
    wrong = buggy("add.forgot_carry", "add.carry", 4, rng, strip=False)
    right = attempt(DOMAIN.sample("add.no_carry", 1, rng)[0], None)  # a format error: never shown
    attempts = [right, wrong[0], wrong[1], wrong[2], wrong[3]]
    reply = {"principles": [{"when": "the ones overflow", "do": "carry 1", "explains": [0, 2, 2],
                             "skills": ["add.carry"]},
                            {"when": "adding", "do": "check", "explains": [1], "skills": []}]}
    source, backend = llm_source([json.dumps(reply)])
    pset = source.principles(attempts)
    assert pset.principles[0].explains == (1, 3)
    assert pset.principles[0].text == "When the ones overflow, carry 1"
    assert pset.principles[1].explains == (2,)
    assert (pset.wrong, pset.format_errors, pset.explained, pset.invalid) == (4, 1, 3, {})
    ((prompts, params),) = backend.calls
    # Only the first max_shown=3 wrong attempts are shown, each with the student's and the gold answer.
    assert f"{wrong[2].problem.question} student wrote {wrong[2].parsed_answer}, correct is " \
           f"{wrong[2].problem.answer}" in prompts[0]
    assert wrong[3].problem.question not in prompts[0]
    schema = json.loads(params.json_schema)
    assert schema["properties"]["principles"]["items"]["properties"]["explains"]["items"]["maximum"] == 2


@pytest.mark.parametrize(("text", "reason"), [
    ("not json at all", "invalid_json"),
    ('{"principles": [{"when": "x", "do": "y", "explains": [1]}]}', "schema"),  # no skills
    ('{"principles": [{"when": "x", "do": "y", "explains": [], "skills": []}]}', "schema"),
    ('{"principles": [{"when": "x", "do": "y", "explains": [3], "skills": []}]}', "bad_index"),
    ('{"principles": [{"when": "x", "do": "y", "explains": [0], "skills": ["add"]}]}', "unknown_skill"),
    ('{"principles": [{"when": ", ", "do": ", ", "explains": [0], "skills": []}]}', "no_content"),
])
def test_invalid_llm_replies_are_counted_and_give_no_principles(text: str, reason: str) -> None:
    attempts = buggy("add.forgot_carry", "add.carry", 3, random.Random(3))
    source, _ = llm_source([text, text])
    for k in (1, 2):
        pset = source.principles(attempts)
        assert pset.principles == () and pset.explained == 0 and pset.invalid == {reason: 1}
        assert source.invalid == {reason: k}


def test_llm_is_not_asked_when_nothing_is_wrong() -> None:
    source, backend = llm_source([])
    p = DOMAIN.sample("add.carry", 1, random.Random(0))[0]
    pset = source.principles([attempt(p, p.answer)])
    assert backend.calls == [] and pset.wrong == 0 and pset.coverage == 0.0


# --------------------------------------------------------------------------------------------------
# Real structured outputs: vLLM on a tiny random model, in its own process (one engine per process)

VLLM_SCRIPT = """
import random, sys
from pathlib import Path
sys.path.insert(0, sys.argv[1])
from tiny_llm import build_tiny_llm
from tutorkd.llm.structured import StructuredLLM
from tutorkd.agents.tpd.principles import LLMPrinciples
from tutorkd.environments.arithmetic import ArithmeticDomain
from tutorkd.llm.vllm_backend import VLLMBackend
from tutorkd.protocols import SamplingConfig
from tutorkd.schema import Attempt

domain = ArithmeticDomain()
problems = domain.sample("add.carry", 3, random.Random(0))
attempts = [Attempt(problem=p, output="A:1", parsed_answer="1", correct=False) for p in problems]
backend = VLLMBackend(build_tiny_llm(Path(sys.argv[2]) / "llm"), max_lora_rank=8, max_model_len=2048)
try:
    llm = StructuredLLM(lambda: backend, SamplingConfig(max_tokens=300, temperature=1.0), structured=True)
    pset = LLMPrinciples(llm, domain.tree.leaves(), max_principles=2, max_chars=12).principles(attempts)
    print("RESULT", pset.model_dump_json())
    print("USAGE", llm.usage.model_dump_json())
finally:
    backend.close()
"""


# Why slow: a fresh interpreter, a tiny LLM trained, then an engine (about 25 s here); the default run's
# real structured outputs are tests/test_llm_teacher_smollm2.py's (SmolLM2, schema, compact JSON).
@pytest.mark.slow
@pytest.mark.vllm
def test_llm_principles_under_vllm_structured_outputs(tmp_path: Path) -> None:
    pytest.importorskip("vllm")
    script = tmp_path / "principles_vllm.py"
    script.write_text(VLLM_SCRIPT)
    proc = subprocess.run([sys.executable, str(script), str(REPO / "tests"), str(tmp_path)],
                          capture_output=True, text=True, timeout=600, cwd=REPO)
    assert proc.returncode == 0, proc.stderr[-3000:]
    tagged = [line for line in proc.stdout.splitlines() if line.startswith(("RESULT ", "USAGE "))]
    lines = dict(line.split(" ", 1) for line in tagged)
    pset = PrincipleSet.model_validate_json(lines["RESULT"])
    usage = json.loads(lines["USAGE"])
    assert usage["calls"] == 1 and usage["tokens_in"] > 300
    # Under the schema a random model's reply can only fail by being cut off at max_tokens.
    assert set(pset.invalid) <= {"invalid_json"}
    if pset.invalid:
        assert usage["tokens_out"] == 300
    for p in pset.principles:
        assert set(p.explains) <= {0, 1, 2} and set(p.skills) <= set(LEAVES) and len(p.when) <= 12
