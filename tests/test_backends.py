"""Backends: one vLLM engine serving base and adapters, structured output, logprobs, and agreement
with the transformers backend."""

from __future__ import annotations

import logging
import math
import random

import pytest

from tutorkd.protocols import SamplingConfig
from tutorkd.schema import StudentVersion
from tutorkd.students.lora import train_lora

pytestmark = pytest.mark.vllm

GREEDY = SamplingConfig(max_tokens=32, logprobs=True)


@pytest.fixture(scope="module")
def prompts(domain) -> list[str]:
    """20 prompts over all skills, a quarter of them with the rationale already in context."""
    rng = random.Random(3)
    problems = [p for skill in domain.tree.leaves() for p in domain.sample(skill, 2, rng)][:20]
    return [domain.prompt(p, p.rationale if i % 4 == 0 else None) for i, p in enumerate(problems)]


@pytest.fixture(scope="module")
def versions(tiny_base, tiny_cfg, domain, prompts, tmp_path_factory) -> dict[str, StudentVersion]:
    """Two adapters that answer every prompt with a constant, and one trained on real rationales."""
    root = tmp_path_factory.mktemp("adapters")
    rng = random.Random(4)
    problems = [p for skill in domain.tree.leaves() for p in domain.sample(skill, 8, rng)]
    constant_prompts = [domain.prompt(p, e) for p in problems for e in (None, p.rationale)]
    targets = {
        "sevens": [(prompt, "A:7777") for prompt in constant_prompts],
        "fours": [(prompt, "A:4444") for prompt in constant_prompts],
        "real": [(domain.prompt(p), domain.completion(p, "rationale")) for p in problems],
    }
    # Why 6 epochs for the constant adapters, not tiny_cfg's 3: with 3, one build host's "sevens"
    # adapter answered 17 of the 20 prompts with the constant; the tests check serving, not learning.
    constant_cfg = tiny_cfg.model_copy(update={"epochs": 6})
    out = {}
    for i, (name, pairs) in enumerate(targets.items(), start=1):
        train_lora(tiny_base, pairs, root / name, tiny_cfg if name == "real" else constant_cfg, seed=i)
        out[name] = StudentVersion(name=name, round=i, adapter_path=str(root / name), lora_int_id=i)
    return out


def texts(backend, prompts, version=None, params=GREEDY) -> list[str]:
    return [c.text for c in backend.generate(prompts, params, version)]


def test_one_engine_serves_base_and_adapter_versions(vllm_backend, versions, prompts):
    engine = vllm_backend.llm
    base = texts(vllm_backend, prompts)
    sevens = texts(vllm_backend, prompts, versions["sevens"])
    fours = texts(vllm_backend, prompts, versions["fours"])
    assert sum(t == "A:7777" for t in sevens) >= 18
    assert sum(t == "A:4444" for t in fours) >= 18
    assert sum(t in ("A:7777", "A:4444") for t in base) <= 2
    # Switching back and forth neither leaks adapter weights into the base nor rebuilds the engine.
    assert texts(vllm_backend, prompts) == base
    assert texts(vllm_backend, prompts, versions["sevens"]) == sevens
    assert vllm_backend.llm is engine


def test_a_reused_adapter_id_serves_the_new_weights(vllm_backend, versions, prompts):
    sevens, fours = versions["sevens"], versions["fours"]
    texts(vllm_backend, prompts, sevens)
    repointed = sevens.model_copy(update={"adapter_path": fours.adapter_path})
    assert texts(vllm_backend, prompts, repointed) == texts(vllm_backend, prompts, fours)
    assert sum(t == "A:7777" for t in texts(vllm_backend, prompts, sevens)) >= 18


def test_only_one_in_process_engine_at_a_time(vllm_backend, tiny_base):
    from tutorkd.llm.vllm_backend import VLLMBackend

    with pytest.raises(RuntimeError, match="close"):
        VLLMBackend(tiny_base, max_lora_rank=8)


def test_structured_output_and_logprobs(vllm_backend, prompts, domain):
    regex = SamplingConfig(max_tokens=12, regex=r"A:[0-9]{3}")
    assert all(
        c.text[:2] == "A:" and c.text[2:].isdigit() and len(c.text) == 5
        for c in vllm_backend.generate(prompts, regex)
    )
    for c in vllm_backend.generate(prompts, GREEDY):
        # One logprob per generated token, the EOS included; a greedy token is the most likely one,
        # so its probability is at least 1 / vocabulary size.
        assert len(c.token_logprobs) == c.completion_tokens == len(c.text) + 1
        vocab = len(set(domain.alphabet)) + 3
        assert all(-math.log(vocab) - 1e-4 <= lp <= 0 for lp in c.token_logprobs)
        assert c.prompt_tokens > 1


def test_backends_agree_on_greedy_completions(vllm_backend, versions, tiny_base, prompts):
    from tutorkd.llm.hf_backend import TransformersBackend

    hf = TransformersBackend(tiny_base)
    stop = SamplingConfig(max_tokens=32, logprobs=True, stop=(" ",))
    pairs = []
    for version in (None, versions["real"]):
        for params in (GREEDY, stop):
            pairs += zip(
                vllm_backend.generate(prompts, params, version),
                hf.generate(prompts, params, version),
                strict=True,
            )
    # Both run float32, but vLLM's CPU kernels (attention, batched LoRA) sum in another order than
    # torch's; a near-tie between two tokens can then flip, so exact agreement is required on 90 %.
    same = [(v, h) for v, h in pairs if v.text == h.text]
    assert len(same) >= 0.9 * len(pairs), [(v.text, h.text) for v, h in pairs if v.text != h.text]
    for v, h in same:
        assert v.completion_tokens == h.completion_tokens
        assert v.token_logprobs == pytest.approx(h.token_logprobs, abs=1e-3)


def _record(message: str, cause: Exception | None) -> logging.LogRecord:
    """A warning record as vLLM's renderer logs it: ``exc_info`` whose exception was raised from ``cause``."""
    try:
        raise ValueError("rendering failed") from cause
    except ValueError as error:
        exc_info = (ValueError, error, error.__traceback__)
    return logging.LogRecord("vllm.renderers.base", logging.WARNING, __file__, 1, message, None, exc_info)


def test_only_the_unencodable_warmup_probe_is_dropped_and_only_while_the_engine_starts():
    from tutorkd.llm.vllm_backend import UnencodableWarmupProbe, quiet_unencodable_warmup

    probe = UnencodableWarmupProbe()
    unk = Exception("WordLevel error: Missing [UNK] token from the vocabulary")
    assert not probe.filter(_record("Chat template warmup failed", unk))
    assert not probe.filter(_record(f"Chat template rejected the request: {unk}", None))
    # Any other failure of the warmup, or any other record, still reaches the log.
    assert probe.filter(_record("Chat template warmup failed", KeyError("messages")))
    assert probe.filter(_record("Chat template warmup failed", None))
    assert probe.filter(_record("Chat template rejected the request: bad role", None))
    assert probe.filter(_record("Missing [UNK] token", unk))

    logger = logging.getLogger("vllm.renderers.base")
    with quiet_unencodable_warmup():
        assert not logger.filter(_record("Chat template warmup failed", unk))
    assert logger.filter(_record("Chat template warmup failed", unk))
