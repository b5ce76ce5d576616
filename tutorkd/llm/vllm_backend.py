"""A ``Backend`` on one in-process vLLM engine that serves every student version as a LoRA adapter.

The engine loads the base once; each request batch names the student version it is for, and vLLM
loads that version's adapter on demand (``LoRARequest``), so rounds of training never restart it.

The engine core runs in this process (``VLLM_ENABLE_V1_MULTIPROCESSING=0`` unless the user set it).
vLLM's default spawns the engine core as a child process: every script that builds an engine must
then guard its entry point with ``if __name__ == "__main__"``, and a dying parent can leave the child
behind. In-process works the same under pytest, a typer console script and a plain script, and on
the 2-core CPU it is faster (measured: engine start 6 s instead of 19 s, 512 greedy completions
0.8 s instead of 1.2 s, LoRA training in the same process after it unaffected). The price: vLLM keeps
distributed state per process and tears it down when an engine shuts down, so only one in-process
engine may be open at a time (a second raises; close the first, which takes about 5 s to rebuild).
"""

from __future__ import annotations

import io
import logging
import os
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tutorkd import progress
from tutorkd.llm import core_claims, orphans
from tutorkd.protocols import Completion, SamplingConfig
from tutorkd.schema import StudentVersion

if TYPE_CHECKING:
    from tqdm import tqdm
    from vllm.lora.request import LoRARequest

log = logging.getLogger(__name__)

_open_engines = 0
"""Engines open in this process; in-process engines share vLLM's global state, so at most one."""


class VLLMBackend:
    """Serves a base model and its LoRA versions from one ``vllm.LLM`` engine.

    Implements ``tutorkd.protocols.Backend``. ``version`` ``None`` or without an adapter means the
    base; otherwise the request goes through ``LoRARequest(version.name, version.lora_int_id,
    version.adapter_path)``. vLLM caches adapters (and prefix KV blocks) by id, so when an id comes
    back naming another path, or its weights file changed, the old adapter is removed from the engine
    and the prefix cache reset before serving: never stale weights.

    ``token_logprobs`` are the sampled tokens' logprobs under the unmodified model distribution; the
    EOS token counts as a generated token but is not part of ``text``; ``text`` stops before the
    first stop string. Each prompt of a batch gets its own sampling seed (``params.seed + index``), so
    repeated prompts give different samples at temperature > 0.
    """

    def __init__(
        self,
        model_dir: str | Path,
        *,
        max_lora_rank: int,
        max_model_len: int = 128,
        kv_cache_gib: int = 1,
        seed: int = 0,
        max_loras: int = 1,
        max_cpu_loras: int = 8,
        dtype: str = "float32",
        enable_lora: bool = True,
        compact_json: bool = False,
        tensor_parallel_size: int = 1,
    ) -> None:
        global _open_engines
        # Why setdefault: a user who tuned these for their machine keeps their values.
        os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", str(kv_cache_gib))
        os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
        if _open_engines and os.environ["VLLM_ENABLE_V1_MULTIPROCESSING"] == "0":
            raise RuntimeError(
                "another in-process vLLM engine is open; close() it first (vLLM's distributed state is "
                "per process), or set VLLM_ENABLE_V1_MULTIPROCESSING=1 to give each engine its own process"
            )
        from vllm import LLM
        from vllm.platforms import current_platform

        # Why claim the cores: a second engine on the same CPU cores slows both about 10x, silently.
        self._cores = core_claims.claim_engine(
            f"vLLM engine of {model_dir} (for `{' '.join(sys.argv)[:200]}` in {os.getcwd()})",
            os.environ.get(core_claims.BIND_ENV)) if current_platform.is_cpu() else None
        # Why: an engine core in a child process does not notice this process's death (see orphans).
        child_engine = os.environ["VLLM_ENABLE_V1_MULTIPROCESSING"] != "0"
        before = orphans.descendants() if child_engine else set()
        with (progress.task("starting the vLLM engine"), core_claims.released_on_error(self._cores),
              quiet_unencodable_warmup()):
            self.llm = LLM(
                model=str(model_dir),
                dtype=dtype,
                max_model_len=max_model_len,
                enforce_eager=True,
                **({"enable_lora": True, "max_lora_rank": max_lora_rank, "max_loras": max_loras,
                    "max_cpu_loras": max_cpu_loras} if enable_lora else {}),
                seed=seed,
                # Why compact JSON for teachers: a small model fills the whitespace JSON allows until it
                # runs out of tokens (SmolLM2 as TPD's principle generator: every reply cut off). vLLM
                # 0.32 reads this only from the engine's config, and only for xgrammar or guidance.
                **({"structured_outputs_config": {"backend": "xgrammar", "disable_any_whitespace": True}}
                   if compact_json else {}),
                use_tqdm_on_load=False,  # Why: the progress display shows the start as one task instead
                # Why only above 1: the engine's arguments stay exactly those of a one-device run.
                **({"tensor_parallel_size": tensor_parallel_size} if tensor_parallel_size > 1 else {}),
            )
            """The engine; public so tests and callers can check that it is never rebuilt."""
        _open_engines += 1
        self._guard = (orphans.Guard(orphans.descendants() - before, "vLLM engine processes")
                       if child_engine else None)
        self._adapters: dict[int, tuple[str, int]] = {}
        """Adapter id to (path, modification time of its weights) as last loaded into the engine."""

    def generate(
        self, prompts: Sequence[str], params: SamplingConfig, version: StudentVersion | None = None
    ) -> list[Completion]:
        """Complete each prompt with ``version``'s adapter (``None`` or no adapter: the base); each
        finished request advances a ``tutorkd.progress`` task over the prompts."""
        from vllm import SamplingParams
        from vllm.sampling_params import StructuredOutputsParams

        if not prompts:
            return []
        structured = None
        if params.json_schema is not None or params.regex is not None:
            structured = StructuredOutputsParams(json=params.json_schema, regex=params.regex)
        sampling = [
            SamplingParams(
                max_tokens=params.max_tokens,
                temperature=params.temperature,
                top_p=1.0,
                top_k=0,
                seed=params.seed + i,
                logprobs=0 if params.logprobs else None,
                stop=list(params.stop) or None,
                structured_outputs=structured,
            )
            for i in range(len(prompts))
        ]
        described = f"generating {len(prompts)} completions" + (f" with {version.name}" if version else "")
        with progress.task(described, total=len(prompts)) as bar:
            results = self.llm.generate(
                list(prompts), sampling, use_tqdm=_feeding(bar), lora_request=self._lora_request(version)
            )
        out = []
        for result in results:
            gen = result.outputs[0]
            logprobs: tuple[float, ...] = ()
            if params.logprobs:
                logprobs = tuple(
                    step[tok].logprob for tok, step in zip(gen.token_ids, gen.logprobs, strict=True)
                )
            out.append(
                Completion(
                    text=gen.text,
                    token_logprobs=logprobs,
                    prompt_tokens=len(result.prompt_token_ids),
                    completion_tokens=len(gen.token_ids),
                )
            )
        return out

    def close(self) -> None:
        """Shut the engine core down (in-process this also frees vLLM's distributed state and cached
        memory; otherwise it stops the child process); the backend is unusable after."""
        global _open_engines
        try:
            self.llm.llm_engine.engine_core.shutdown()
        finally:
            if self._guard is not None:
                self._guard.release()
        del self.llm
        _open_engines -= 1
        if self._cores is not None:
            self._cores.close()

    def _lora_request(self, version: StudentVersion | None) -> LoRARequest | None:
        from vllm.lora.request import LoRARequest

        if version is None or version.adapter_path is None:
            return None
        if version.lora_int_id < 1:
            raise ValueError(
                f"student version {version.name} has an adapter but lora_int_id {version.lora_int_id}; "
                "adapter ids start at 1 (0 is the base)"
            )
        weights = Path(version.adapter_path) / "adapter_model.safetensors"
        now = (version.adapter_path, weights.stat().st_mtime_ns)
        before = self._adapters.get(version.lora_int_id)
        if before is not None and before != now:
            # Why: vLLM would keep serving the weights (and cached prefixes) it loaded under this id.
            log.info("LoRA id %d now names %s (was %s): reloading", version.lora_int_id, now[0], before[0])
            self.llm.llm_engine.remove_lora(version.lora_int_id)
            if not self.llm.reset_prefix_cache():
                raise RuntimeError("vLLM refused to reset its prefix cache; stale adapter KV could be served")
        self._adapters[version.lora_int_id] = now
        return LoRARequest(version.name, version.lora_int_id, version.adapter_path)


def _feeding(bar: progress.Bar) -> Callable[..., tqdm]:
    """A ``use_tqdm`` for ``LLM.generate`` that draws nothing and feeds vLLM's own count of finished
    requests into ``bar``; the engine adds, batches and schedules the requests exactly as it would
    without a bar (vLLM only counts tokens for the bar's speed figures).

    vLLM calls it twice per ``generate``: around the prompts it renders (an iterable, not fed: that
    pass finishes no request) and with the number of requests the engine then runs (fed)."""
    from tqdm import tqdm

    class Feed(tqdm):
        monitor_interval = 0  # Why: tqdm would start a monitor thread for a bar nobody sees

        def __init__(self, iterable: Any = None, *args: Any, **kwargs: Any) -> None:
            self._feeds = iterable is None
            super().__init__(iterable, *args, **{**kwargs, "file": io.StringIO(), "leave": False})

        def display(self, msg: str | None = None, pos: int | None = None) -> bool:
            """Draw nothing: ``bar`` is the display."""
            return True

        def update(self, n: float | None = 1) -> bool | None:
            """Count ``n`` more finished requests, on ``bar`` too."""
            if self._feeds and n:
                bar.advance(n)
            return super().update(n)

    return Feed


UNENCODABLE = "Missing [UNK] token"
"""What a ``tokenizers`` WordLevel model without an unknown token raises for a character it has no id for."""


class UnencodableWarmupProbe(logging.Filter):
    """Drops vLLM's two warnings about its chat-template warmup probe (it renders the word ``warmup``)
    when the tokenizer cannot encode that word, and logs one debug line instead.

    Why: a tiny student's character tokenizer covers its domain's alphabet only and has no unknown token
    by design (``tutorkd.students.tokenizer``), so the probe always fails, and vLLM logs the failure as a
    warning with two chained tracebacks: noise in every run's ``run.log`` that says nothing about the
    run. Any other warmup failure, and every record after the engine's start, passes unchanged."""

    def filter(self, record: logging.LogRecord) -> bool:
        """False for the two records of an unencodable probe; True for every other record."""
        text = record.getMessage()
        if text.startswith("Chat template rejected the request") and UNENCODABLE in text:
            return False
        if text == "Chat template warmup failed" and record.exc_info and record.exc_info[1] is not None:
            cause = record.exc_info[1].__cause__
            if cause is not None and UNENCODABLE in str(cause):
                log.debug("vLLM's chat-template warmup probe is outside the tokenizer's alphabet; skipped")
                return False
        return True


@contextmanager
def quiet_unencodable_warmup() -> Iterator[None]:
    """``UnencodableWarmupProbe`` on the two vLLM loggers that report the probe, for the ``with`` block."""
    loggers = [logging.getLogger(name) for name in ("vllm.renderers.hf", "vllm.renderers.base")]
    probe = UnencodableWarmupProbe()
    for logger in loggers:
        logger.addFilter(probe)
    try:
        yield
    finally:
        for logger in loggers:
            logger.removeFilter(probe)
