"""Shared fixtures: the arithmetic domain, a tiny pretrained base, and one vLLM engine per module.

The tiny base is pretrained once (``TINY_CFG``, about 45 s) and cached by content hash under
``$TUTORKD_CACHE/test-students`` (default ``~/.cache/tutorkd/test-students``), so reruns skip it.

vLLM runs in-process and allows one open engine per process (see ``tutorkd.llm.vllm_backend``), so
``vllm_backend`` is module-scoped: the tests of a module share it and it is closed when the module
ends (the first engine of a session starts in about 15 s, later ones in about 5 s). A test that
builds its own engine (say, through a full run) must live in a module that does not use the
fixture, and must close its engine; no test may close the fixture's.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from tutorkd.config import TinyStudentConfig
from tutorkd.environments.arithmetic import ArithmeticDomain

if TYPE_CHECKING:
    from tutorkd.llm.vllm_backend import VLLMBackend

TINY_CFG = TinyStudentConfig(
    pretrain_steps=300,
    pretrain_batch=64,
    lora_rank=8,
    lora_alpha=16,
    learning_rate=5e-3,
    epochs=3,
    batch_size=16,
)
"""A student config small enough for tests: a 300-step base (about 45 s; comparisons and easy
additions partly learned) and rank-8 LoRA."""


@pytest.fixture(scope="session")
def domain() -> ArithmeticDomain:
    """The embedded arithmetic domain."""
    return ArithmeticDomain()


@pytest.fixture(scope="session")
def tiny_cfg() -> TinyStudentConfig:
    """``TINY_CFG`` with its cache folder set to the stable test cache."""
    root = Path(os.environ.get("TUTORKD_CACHE", Path.home() / ".cache" / "tutorkd")).expanduser()
    return TINY_CFG.model_copy(update={"cache_dir": str(root / "test-students")})


@pytest.fixture(scope="session")
def tiny_base(tiny_cfg: TinyStudentConfig, domain: ArithmeticDomain) -> Path:
    """Folder of a tiny base student (weights and tokenizer), pretrained once and cached."""
    from tutorkd.students.pretrain import pretrain_base

    return pretrain_base(tiny_cfg, domain, domain.default_pretrain_mix)


@pytest.fixture(scope="module")
def vllm_backend(tiny_base: Path, tiny_cfg: TinyStudentConfig) -> Iterator[VLLMBackend]:
    """One ``VLLMBackend`` on ``tiny_base`` per test module (LoRA rank up to ``tiny_cfg.lora_rank``)."""
    pytest.importorskip("vllm")
    from tutorkd.llm.vllm_backend import VLLMBackend

    backend = VLLMBackend(tiny_base, max_lora_rank=tiny_cfg.lora_rank, max_loras=2)
    yield backend
    backend.close()
