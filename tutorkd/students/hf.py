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

from tutorkd.config import HFStudentConfig
from tutorkd.protocols import Backend, Domain, Phases
from tutorkd.students.student import LoRAStudent

STOP = ("\nQuestion:",)
"""Stop strings of an answer: a model that has answered may go on to invent the next question."""


def hf_student(domain: Domain, backend: Backend, base_dir: str | Path, cfg: HFStudentConfig,
               work_dir: str | Path, seed: int = 0, phases: Phases | None = None) -> LoRAStudent:
    """The student of ``cfg``: versions ``base``, ``r1``, ... of the model in ``base_dir`` (prepared by
    ``tutorkd.students.models.prepare_model``), answering through ``backend``."""
    return LoRAStudent(domain, backend, Path(base_dir), cfg, work_dir, seed,
                       answer_tokens=cfg.max_new_tokens, stop=STOP, char_confidence=False,
                       max_length=cfg.max_length, device=training_device(cfg), phases=phases)


def training_device(cfg: HFStudentConfig) -> Literal["cpu", "cuda"]:
    """``cfg.device``, with ``auto`` resolved to ``cuda`` when torch sees a GPU, else ``cpu``."""
    if cfg.device != "auto":
        return cfg.device
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"
