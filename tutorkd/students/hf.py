"""A pretrained Hugging Face causal LM as the student: loaded from a local folder, taught with LoRA.

It is a ``LoRAStudent`` whose base comes from ``model_path`` instead of pretraining; only the options
a real model needs differ: answers get ``max_new_tokens`` and stop before an invented next question,
training runs where ``device`` says with the config's ``max_length``, and when the serving engine
shares the GPU it sleeps while the trainer runs (``phases``: the ``openai`` backend of a ``vllm serve``
tutorkd started with ``sleep_during_training``). Adapters are plain LoRA of a rank vLLM accepts,
without DoRA or ``modules_to_save`` (``train_lora`` checks every saved adapter).

``confidence`` is ``None``: the answer-span probability needs one token per character, and subword
tokens do not line up with the parsed answer.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from tutorkd.config import ConfigError, HFStudentConfig, RunConfig
from tutorkd.protocols import Backend, Domain
from tutorkd.students.student import LoRAStudent, Phases

STOP = ("\nQuestion:",)
"""Stop strings of an answer: a model that has answered may go on to invent the next question."""


def hf_student(domain: Domain, backend: Backend, cfg: HFStudentConfig, work_dir: str | Path, seed: int = 0,
               phases: Phases | None = None) -> LoRAStudent:
    """The student of ``cfg``: versions ``base``, ``r1``, ... of the local model, answering through
    ``backend``; ``ConfigError`` with the fix when the model folder is missing."""
    return LoRAStudent(domain, backend, check_model_folder(cfg.model_path), cfg, work_dir, seed,
                       answer_tokens=cfg.max_new_tokens, stop=STOP, char_confidence=False,
                       max_length=cfg.max_length, device=training_device(cfg), phases=phases)


def training_device(cfg: HFStudentConfig) -> Literal["cpu", "cuda"]:
    """``cfg.device``, with ``auto`` resolved to ``cuda`` when torch sees a GPU, else ``cpu``."""
    if cfg.device != "auto":
        return cfg.device
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def check_model_folder(model_path: str) -> Path:
    """``model_path`` as a folder with a model config and tokenizer; else ``ConfigError`` with the fix."""
    folder = Path(model_path).expanduser()
    missing = [name for name in ("config.json", "tokenizer_config.json") if not (folder / name).is_file()]
    if missing:
        raise ConfigError(
            f"student.model_path: {model_path} is not a local model folder (missing {', '.join(missing)}). "
            "Fix: download it first, e.g. `huggingface-cli download Qwen/Qwen2.5-0.5B-Instruct "
            f"--local-dir {model_path}`"
        )
    return folder


def build_hf_student(cfg: RunConfig, domain: Domain, run_dir: Path) -> LoRAStudent:
    """The ``kind: hf`` student of a run and the engine serving it (``cfg.backend``), ready to answer.

    ``vllm``: one in-process engine; ``transformers``: plain generate; ``openai``: the server at
    ``base_url``, or a ``vllm serve`` started for the run (log in ``run_dir/vllm_server.log``), put to
    sleep around training when ``sleep_during_training`` is set. The model folder is checked first, so
    a missing download fails with the fix before any engine starts.
    """
    student_cfg = cfg.student
    if not isinstance(student_cfg, HFStudentConfig):
        raise TypeError(f"build_hf_student needs student kind hf, got {student_cfg.kind}")
    model_dir = check_model_folder(student_cfg.model_path)
    backend_cfg = cfg.backend
    phases: Phases | None = None
    backend: Backend
    if backend_cfg.kind == "openai":
        from tutorkd.llm.openai_backend import student_backend

        backend = student_backend(backend_cfg, model_dir, student_cfg.lora_rank, seed=cfg.seed,
                                  log_file=run_dir / "vllm_server.log")
        if backend_cfg.sleep_during_training:
            phases = backend
    elif backend_cfg.kind == "vllm":
        from tutorkd.llm.vllm_backend import VLLMBackend

        backend = VLLMBackend(model_dir, max_lora_rank=student_cfg.lora_rank,
                              max_model_len=backend_cfg.max_model_len, kv_cache_gib=backend_cfg.kv_cache_gib,
                              seed=cfg.seed)
    else:
        from tutorkd.llm.hf_backend import TransformersBackend

        backend = TransformersBackend(model_dir, device=training_device(student_cfg))
    return hf_student(domain, backend, student_cfg, run_dir, seed=cfg.seed, phases=phases)
