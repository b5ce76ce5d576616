"""The OpenAI-compatible backend against a real ``vllm serve`` (CPU build, the tiny base, loopback).

One server per module (about 30-90 s to start on 2 cores), started the way a run starts it
(``student_backend`` for a ``kind: openai`` backend without ``base_url``): dynamic LoRA loading on,
sleep endpoints on. A separate process, so it never conflicts with the in-process engine rule.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from feedbacks import training_examples
from pydantic import BaseModel

from tutorkd.config import (
    ArithmeticEnvConfig,
    BackendConfig,
    HFStudentConfig,
    TeacherConfig,
    TinyStudentConfig,
)
from tutorkd.protocols import SamplingConfig
from tutorkd.schema import StudentVersion

PROMPTS = ["47+38=", "85-38=", "473?538=", "12+34=", "47*8="]


@pytest.fixture(scope="module")
def backend(tiny_base: Path, tiny_cfg: TinyStudentConfig, tmp_path_factory: pytest.TempPathFactory):
    """An ``OpenAIBackend`` that owns a ``vllm serve`` of the tiny base (stopped after the module)."""
    pytest.importorskip("vllm")
    pytest.importorskip("openai")
    from tutorkd.llm.openai_backend import student_backend

    cfg = BackendConfig(kind="openai", max_model_len=128, sleep_during_training=True)
    log_file = tmp_path_factory.mktemp("server") / "vllm_server.log"
    backend = student_backend(cfg, tiny_base, tiny_cfg.lora_rank, seed=0, log_file=log_file, dtype="float32")
    yield backend
    backend.close()
    assert backend.server is not None and backend.server.proc is None


@pytest.fixture(scope="module")
def reference(tiny_base: Path):
    """Plain transformers on the same weights: what the server's greedy outputs must equal."""
    from tutorkd.llm.hf_backend import TransformersBackend

    ref = TransformersBackend(tiny_base)
    yield ref
    ref.close()


@pytest.fixture(scope="module")
def taught(backend, domain, tiny_base: Path, tiny_cfg: TinyStudentConfig,
           tmp_path_factory: pytest.TempPathFactory):
    """A one-round teaching loop (uniform teacher, procedural engine) whose student is a ``LoRAStudent``
    answering through the OpenAI client: returns the run directory and the student."""
    from tutorkd.agents.teacher import build_teacher
    from tutorkd.environments.env import TeachingEnv
    from tutorkd.environments.heldout import HeldOut
    from tutorkd.loop import TeachingLoop
    from tutorkd.students.student import LoRAStudent

    run_dir = tmp_path_factory.mktemp("run")
    env_cfg = ArithmeticEnvConfig(test_per_skill=10, val_per_skill=10, budget=90, rounds=1)
    student = LoRAStudent(domain, backend, tiny_base, tiny_cfg, work_dir=run_dir, seed=0)
    env = TeachingEnv(domain, student, env_cfg, HeldOut.build(domain, 10, 10, env_cfg.split_seed), run_dir)
    teacher = build_teacher(TeacherConfig(name="uniform", policy="uniform", per_round=90), domain,
                            exclude=env.heldout.questions)
    loop = TeachingLoop(run_dir=run_dir, run_id=run_dir.name, seed=0, env=env, teacher=teacher, domain=domain,
                        heldout=env.heldout)
    loop.run(resume=False)
    return run_dir, student


@pytest.mark.vllm
def test_greedy_completions_match_transformers_and_count_tokens(backend, reference) -> None:
    params = SamplingConfig(max_tokens=16, logprobs=True)
    before = backend.usage
    served = backend.generate(PROMPTS, params)
    expected = reference.generate(PROMPTS, params)
    assert [c.text for c in served] == [c.text for c in expected]
    for s, e in zip(served, expected, strict=True):
        assert len(s.token_logprobs) == len(e.token_logprobs) == s.completion_tokens
        assert s.token_logprobs == pytest.approx(e.token_logprobs, abs=2e-3)
        assert s.prompt_tokens == len(PROMPTS[served.index(s)]) + 1  # one token per character, plus BOS
    used = backend.usage
    assert used.calls - before.calls == len(PROMPTS)
    assert used.tokens_in - before.tokens_in == sum(c.prompt_tokens for c in served)
    assert used.tokens_out - before.tokens_out == sum(c.completion_tokens for c in served)


class _Guess(BaseModel):
    answer: int


@pytest.mark.vllm
def test_structured_outputs_use_the_current_server_fields(backend) -> None:
    import re

    regex = backend.generate(PROMPTS, SamplingConfig(max_tokens=12, regex=r"A:[0-9]{3}"))
    assert all(re.fullmatch(r"A:[0-9]{3}", c.text) for c in regex), [c.text for c in regex]


def test_regex_has_no_chat_equivalent() -> None:
    from tutorkd.llm.openai_backend import _response_format

    with pytest.raises(NotImplementedError, match="completions"):
        _response_format(SamplingConfig(regex="A:[0-9]+"))


@pytest.mark.vllm
def test_a_one_round_teaching_loop_runs_through_the_openai_client(taught, backend, reference) -> None:
    run_dir, student = taught
    assert student.version.name == "r1"
    assert (run_dir / "adapters" / "r1" / "adapter_model.safetensors").is_file()
    evals = sorted(run_dir.glob("rounds/r*/eval.json"))
    assert [p.parent.name for p in evals] == ["r0", "r1"]
    served = {m.id for m in backend.client.models.list().data}
    assert {"base", "r1"} <= served
    # The loaded adapter is the trained one: the server answers as transformers does with it.
    params = SamplingConfig(max_tokens=16, logprobs=True)
    assert [c.text for c in backend.generate(PROMPTS, params, student.version)] == [
        c.text for c in reference.generate(PROMPTS, params, student.version)]


@pytest.mark.vllm
def test_an_adapter_name_that_moves_is_reloaded_and_a_new_client_takes_over(taught, backend,
                                                                             tmp_path: Path) -> None:
    from tutorkd.llm.openai_backend import OpenAIBackend

    run_dir, student = taught
    params = SamplingConfig(max_tokens=16)
    before = [c.text for c in backend.generate(PROMPTS, params, student.version)]
    moved = tmp_path / "r1-copy"
    shutil.copytree(student.version.adapter_path, moved)
    version = student.version.model_copy(update={"adapter_path": str(moved)})
    assert [c.text for c in backend.generate(PROMPTS, params, version)] == before
    assert backend._adapters["r1"][0] == str(moved.resolve())
    # A second client finds the base model's name itself and replaces the adapter the server holds.
    other = OpenAIBackend(backend.server.url)
    try:
        assert other.model == "base"
        assert [c.text for c in other.generate(PROMPTS, params, student.version)] == before
    finally:
        other.close()


class _RecordingPhases:
    def __init__(self, backend) -> None:
        self.backend, self.calls = backend, []

    def sleep(self) -> None:
        self.calls.append("sleep")
        self.backend.sleep()

    def wake_up(self) -> None:
        self.calls.append("wake_up")
        self.backend.wake_up()


@pytest.mark.vllm
def test_a_hf_student_trains_while_the_server_sleeps(backend, domain, tiny_base: Path,
                                                     tmp_path: Path) -> None:
    from tutorkd.students.hf import hf_student

    cfg = HFStudentConfig(model_path=str(tiny_base), lora_rank=8, lora_alpha=16, learning_rate=5e-3, epochs=2,
                          batch_size=16, max_length=64, max_new_tokens=24, device="cpu")
    phases = _RecordingPhases(backend)
    student = hf_student(domain, backend, tiny_base, cfg, work_dir=tmp_path, seed=0, phases=phases)
    import random

    problems = [p for leaf in domain.tree.leaves() for p in domain.sample(leaf, 4, random.Random(leaf))]
    base = student.answer(problems)
    assert all(a.confidence is None for a in base)
    examples = training_examples(domain, problems, "direct")
    trained = student.train(examples, round=1, init=None)
    version = trained.version
    assert phases.calls == ["sleep", "wake_up"]
    assert version == StudentVersion(name="r1", round=1, adapter_path=str(tmp_path / "adapters" / "r1"),
                                     lora_int_id=1)
    assert trained.stats is not None and trained.stats.examples == len(problems)
    after = student.answer(problems)  # served by the woken server, through the new adapter
    assert [a.output for a in after] != [a.output for a in base]
    assert all(domain.check(a.problem, a.output) == (a.parsed_answer, a.correct) for a in after)


def test_a_remote_server_without_an_api_key_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    from tutorkd.llm.openai_backend import OpenAIBackend

    monkeypatch.delenv("TUTORKD_TEST_KEY", raising=False)
    with pytest.raises(ValueError, match="set the environment variable TUTORKD_TEST_KEY"):
        OpenAIBackend("https://api.example.com/v1", "gpt-x", api_key_env="TUTORKD_TEST_KEY")


def test_a_missing_student_model_fails_with_the_fix(tmp_path: Path) -> None:
    from tutorkd.config import ConfigError
    from tutorkd.students.models import check_model_folder

    with pytest.raises(ConfigError, match="huggingface-cli download"):
        check_model_folder(str(tmp_path / "models" / "Qwen2.5-0.5B-Instruct"))


def _recording_backend(endpoint: str, bodies: list[dict]):
    """An ``OpenAIBackend`` whose HTTP goes to an in-memory handler recording each request body."""
    import httpx
    import openai

    from tutorkd.llm.openai_backend import OpenAIBackend

    def handle(request: httpx.Request) -> httpx.Response:
        bodies.append(json.loads(request.content))
        usage = {"prompt_tokens": 7, "completion_tokens": 3, "total_tokens": 10}
        if request.url.path.endswith("/chat/completions"):
            choice = {"index": 0, "finish_reason": "stop", "logprobs": None,
                      "message": {"role": "assistant", "content": '{"answer": 4}'}}
            return httpx.Response(200, json={"id": "c", "object": "chat.completion", "created": 0,
                                             "model": "m", "choices": [choice], "usage": usage})
        choice = {"index": 0, "finish_reason": "stop", "logprobs": None, "text": '{"answer": 4}'}
        return httpx.Response(200, json={"id": "c", "object": "text_completion", "created": 0, "model": "m",
                                         "choices": [choice], "usage": usage})

    backend = OpenAIBackend("http://127.0.0.1:9/v1", "m", endpoint=endpoint)
    backend.client = openai.OpenAI(base_url="http://127.0.0.1:9/v1", api_key="EMPTY",
                                   http_client=httpx.Client(transport=httpx.MockTransport(handle)))
    return backend


@pytest.mark.parametrize("endpoint", ["completions", "chat"])
def test_requests_carry_the_schema_in_current_fields_and_count_usage(endpoint: str) -> None:
    bodies: list[dict] = []
    backend = _recording_backend(endpoint, bodies)
    schema = _Guess.model_json_schema()
    params = SamplingConfig(max_tokens=8, json_schema=json.dumps(schema), seed=5)
    out = backend.generate(["2+2=", "1+3="], params)
    assert [_Guess.model_validate_json(c.text).answer for c in out] == [4, 4]
    assert sorted(b["seed"] for b in bodies) == [5, 6]  # one request and one seed per prompt
    for body in bodies:
        assert not any(key.startswith("guided_") for key in body)
        if endpoint == "chat":
            assert body["response_format"] == {"type": "json_schema",
                                               "json_schema": {"name": "answer", "schema": schema}}
            assert body["messages"][0]["role"] == "user"
        else:
            assert body["structured_outputs"] == {"json": schema}
    assert (backend.usage.calls, backend.usage.tokens_in, backend.usage.tokens_out) == (2, 14, 6)
    assert [(c.prompt_tokens, c.completion_tokens) for c in out] == [(7, 3), (7, 3)]
