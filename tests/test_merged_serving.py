"""``backend.serving: merged``: each student version's adapter merged into the base and served by a
fresh engine, against the resident engine serving the same adapter (the tiny student, float32).

This module builds its own engines (one at a time: in-process vLLM allows one), so it does not use
the shared ``vllm_backend`` fixture.
"""

from __future__ import annotations

import os
import random
from pathlib import Path

import pytest

from tutorkd.config import BackendConfig, HFStudentConfig, RunConfig, TinyStudentConfig
from tutorkd.environments.arithmetic import ArithmeticDomain
from tutorkd.llm.merged import SOURCE_FILE, MergedBackend
from tutorkd.protocols import SamplingConfig
from tutorkd.schema import StudentVersion
from tutorkd.students.lora import train_lora


@pytest.fixture(scope="module")
def adapter(tiny_base: Path, tiny_cfg: TinyStudentConfig, domain: ArithmeticDomain,
            tmp_path_factory: pytest.TempPathFactory) -> StudentVersion:
    rng = random.Random(0)
    problems = [p for leaf in ("add.carry", "sub.borrow") for p in domain.sample(leaf, 48, rng)]
    out = tmp_path_factory.mktemp("adapters") / "r1"
    train_lora(tiny_base, [(domain.prompt(p), domain.completion(p, "rationale")) for p in problems], out,
               tiny_cfg, seed=0)
    return StudentVersion(name="r1", round=1, adapter_path=str(out), lora_int_id=1)


@pytest.mark.vllm
def test_merged_weights_answer_as_the_adapter_does(tiny_base: Path, tiny_cfg: TinyStudentConfig,
                                                   domain: ArithmeticDomain, adapter: StudentVersion,
                                                   tmp_path: Path) -> None:
    from tutorkd.llm.vllm_backend import VLLMBackend

    rng = random.Random(1)
    prompts = [domain.prompt(p) for leaf in domain.tree.leaves() for p in domain.sample(leaf, 8, rng)]
    params = SamplingConfig(max_tokens=32, temperature=0.0)
    resident = VLLMBackend(tiny_base, max_lora_rank=tiny_cfg.lora_rank)
    try:
        through_adapter = [c.text for c in resident.generate(prompts, params, adapter)]
        base = [c.text for c in resident.generate(prompts, params, None)]
    finally:
        resident.close()

    def start(folder: Path) -> VLLMBackend:
        return VLLMBackend(folder, max_lora_rank=tiny_cfg.lora_rank, enable_lora=False)

    merged = MergedBackend(start, tiny_base, tmp_path / "merged")
    try:
        first = [c.text for c in merged.generate(prompts, params, adapter)]
        again = [c.text for c in merged.generate(prompts, params, adapter)]
        assert merged.restarts == 1  # the same version: the same engine
        plain = [c.text for c in merged.generate(prompts, params, None)]
        assert merged.restarts == 2
    finally:
        merged.close()
    assert first == again
    # LoRA adds x@A@B beside W; merged weights hold W+BA: greedy answers agree up to float rounding.
    same = sum(a == b for a, b in zip(first, through_adapter, strict=True)) / len(prompts)
    assert same >= 0.9, same
    assert first != base
    assert plain == base
    assert (tmp_path / "merged" / "r1" / SOURCE_FILE).is_file()


def test_a_replaced_adapter_is_merged_again(tiny_base: Path, adapter: StudentVersion, tmp_path: Path) -> None:
    merged = MergedBackend(lambda folder: pytest.fail("no engine needed"), tiny_base, tmp_path / "merged")
    folder = merged.merged(adapter)
    stamp = (folder / "model.safetensors").stat().st_mtime_ns
    assert merged.merged(adapter) == folder and (folder / "model.safetensors").stat().st_mtime_ns == stamp
    weights = Path(str(adapter.adapter_path)) / "adapter_model.safetensors"
    os.utime(weights, ns=(weights.stat().st_atime_ns, weights.stat().st_mtime_ns + 1_000_000))
    assert merged.merged(adapter) == folder
    assert (folder / "model.safetensors").stat().st_mtime_ns != stamp


NATIVE = "bfloat16 where the CPU has it, else float32"


@pytest.mark.parametrize("native_bf16", [True, False], ids=["bf16-cpu", "avx2-cpu"])
@pytest.mark.parametrize(("student", "backend", "merged", "dtype"), [
    ({"kind": "tiny"}, {}, False, "float32"),
    ({"kind": "hf", "model_path": "m", "device": "cpu"}, {}, True, NATIVE),
    ({"kind": "hf", "model_path": "m", "device": "cpu"}, {"serving": "adapters"}, False, NATIVE),
    ({"kind": "hf", "model_path": "m", "device": "cuda"}, {}, False, "auto"),
    ({"kind": "hf", "model_path": "m", "device": "cpu"}, {"kind": "openai"}, False, NATIVE),
    ({"kind": "hf", "model_path": "m", "device": "cpu"}, {"dtype": "float32"}, True, "float32"),
    ({"kind": "hf", "model_path": "m", "device": "cpu"}, {"dtype": "bfloat16"}, True, "bfloat16"),
    ({"kind": "tiny"}, {"serving": "merged"}, True, "float32"),
])
def test_serving_auto_means_merged_for_a_hf_student_on_the_cpu(student: dict, backend: dict, merged: bool,
                                                               dtype: str, native_bf16: bool,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    from tutorkd.assembly import _serving
    from tutorkd.llm import factory

    monkeypatch.setattr(factory, "_native_bf16", lambda: native_bf16)
    cfg = RunConfig.model_validate({"student": student, "backend": backend})
    assert isinstance(cfg.student, TinyStudentConfig | HFStudentConfig)
    assert isinstance(cfg.backend, BackendConfig)
    serving = _serving(cfg.student, cfg.backend)
    if dtype == NATIVE:
        dtype = "bfloat16" if native_bf16 else "float32"
    assert (serving.merged, serving.dtype) == (merged, dtype)


@pytest.mark.parametrize(("text", "native"), [
    ("processor\t: 0\nflags\t\t: fpu sse avx2 fma avx512f avx512_bf16 amx_tile\n", True),
    ("processor\t: 0\nflags\t\t: fpu sse avx2 fma amx_bf16 amx_tile\n", True),
    ("processor\t: 0\nflags\t\t: fpu sse avx2 fma avx512f avx512bw\n", False),  # AVX-512, no BF16
    ("processor\t: 0\nFeatures\t: fp asimd sve bf16 i8mm\n", True),  # ARM (Graviton 3)
    ("processor\t: 0\nFeatures\t: fp asimd\n", False),
    ("processor\t: 0\nmodel name\t: bf16 lookalike\n", False),  # only the flags line counts
])
def test_native_bf16_is_read_from_the_cpu_flags(tmp_path: Path, text: str, native: bool) -> None:
    from tutorkd.llm.factory import cpu_has_native_bf16

    (tmp_path / "cpuinfo").write_text(text)
    assert cpu_has_native_bf16(tmp_path / "cpuinfo") is native
    assert cpu_has_native_bf16(tmp_path / "absent") is False
