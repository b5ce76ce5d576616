"""A ``Backend`` on plain transformers: batched generation with left padding, PEFT adapters per version.

Slower than vLLM but needs nothing beyond transformers and peft; tests and small evaluations use it,
and it is the reference the vLLM backend's greedy outputs are checked against.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path

from tutorkd import progress
from tutorkd.protocols import Completion, SamplingConfig
from tutorkd.schema import StudentVersion


class TransformersBackend:
    """Serves a base model and its LoRA versions with ``model.generate``.

    Implements ``tutorkd.protocols.Backend``. Adapters are loaded into one ``PeftModel`` on first use
    and kept (the ``max_adapters`` most recently used); the base is served with the adapters
    disabled. Semantics match ``VLLMBackend``: ``token_logprobs`` are logprobs of the sampled tokens
    under the unmodified model distribution (before temperature), the EOS token counts as a generated
    token but is not part of ``text``, and ``text`` stops before the first stop string. Structured
    decoding (``regex``, ``json_schema``) is not supported here and raises. An adapter id that comes
    back naming another path (or rewritten weights) is reloaded.
    """

    def __init__(
        self, model_dir: str | Path, *, device: str = "cpu", max_adapters: int = 4, batch_size: int = 64
    ) -> None:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        with progress.task(f"loading {Path(model_dir).name} (transformers)"):
            self._tokenizer = AutoTokenizer.from_pretrained(model_dir, padding_side="left")
            model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
            self._model = model.to(device).eval()
        self._device = device
        self._max_adapters = max_adapters
        self._batch_size = batch_size
        self._adapters: OrderedDict[str, tuple[str, int]] = OrderedDict()
        """Loaded adapter name (``v{lora_int_id}``) to (path, weights mtime), least recently used first."""

    def generate(
        self, prompts: Sequence[str], params: SamplingConfig, version: StudentVersion | None = None
    ) -> list[Completion]:
        """Complete each prompt with ``version``'s adapter (``None`` or no adapter: the base), in
        batches of ``batch_size``; each batch advances a ``tutorkd.progress`` task over the prompts."""
        if params.regex is not None or params.json_schema is not None:
            raise NotImplementedError("structured decoding (regex/json_schema) needs the vllm backend")
        self._activate(version)
        out: list[Completion] = []
        described = f"generating {len(prompts)} completions" + (f" with {version.name}" if version else "")
        with progress.task(described, total=len(prompts)) as bar:
            for start in range(0, len(prompts), self._batch_size):
                batch = list(prompts[start : start + self._batch_size])
                out += self._generate_batch(batch, params, version)
                bar.advance(len(batch))
        return out

    def close(self) -> None:
        """Drop the model and adapters."""
        self._adapters.clear()
        del self._model

    def _activate(self, version: StudentVersion | None) -> None:
        if version is None or version.adapter_path is None:
            return
        from peft import PeftModel

        name = f"v{version.lora_int_id}"
        weights = Path(version.adapter_path) / "adapter_model.safetensors"
        now = (version.adapter_path, weights.stat().st_mtime_ns)
        if name in self._adapters and self._adapters[name] != now:
            # Same semantics as the vLLM backend: an id that names new weights is reloaded.
            del self._adapters[name]
            self._model.delete_adapter(name)
        if name in self._adapters:
            self._adapters.move_to_end(name)
        elif isinstance(self._model, PeftModel):
            self._model.load_adapter(version.adapter_path, adapter_name=name)
        else:
            self._model = PeftModel.from_pretrained(self._model, version.adapter_path, adapter_name=name)
        self._adapters[name] = now
        self._model.set_adapter(name)
        self._model.eval()
        while len(self._adapters) > self._max_adapters:
            oldest, _ = self._adapters.popitem(last=False)
            self._model.delete_adapter(oldest)

    def _generate_batch(
        self, prompts: list[str], params: SamplingConfig, version: StudentVersion | None
    ) -> list[Completion]:
        import contextlib

        import torch
        from peft import PeftModel
        from transformers import GenerationConfig

        tok = self._tokenizer
        enc = tok(prompts, return_tensors="pt", padding=True).to(self._device)
        sample = params.temperature > 0
        gen_cfg = GenerationConfig(
            max_new_tokens=params.max_tokens,
            do_sample=sample,
            temperature=params.temperature if sample else None,
            top_k=0 if sample else None,
            top_p=1.0 if sample else None,
            eos_token_id=tok.eos_token_id,
            pad_token_id=tok.pad_token_id,
            bos_token_id=tok.bos_token_id,
            return_dict_in_generate=True,
            output_logits=params.logprobs,
        )
        use_base = isinstance(self._model, PeftModel) and (version is None or version.adapter_path is None)
        adapters_off = self._model.disable_adapter() if use_base else contextlib.nullcontext()
        with torch.random.fork_rng(), torch.inference_mode(), adapters_off:
            torch.manual_seed(params.seed)
            gen = self._model.generate(**enc, generation_config=gen_cfg)
        new = gen.sequences[:, enc["input_ids"].shape[1] :]
        logprobs = None
        if params.logprobs:
            logits = torch.stack(gen.logits, dim=1).float()
            logprobs = torch.log_softmax(logits, dim=-1).gather(-1, new.unsqueeze(-1)).squeeze(-1)
        results = []
        for i in range(len(prompts)):
            ids = new[i].tolist()
            if tok.eos_token_id in ids:
                ids = ids[: ids.index(tok.eos_token_id) + 1]
            text, n = self._stop(ids, params.stop)
            results.append(
                Completion(
                    text=text,
                    token_logprobs=tuple(logprobs[i, :n].tolist()) if logprobs is not None else (),
                    prompt_tokens=int(enc["attention_mask"][i].sum()),
                    completion_tokens=n,
                )
            )
        return results

    def _stop(self, ids: list[int], stops: Sequence[str]) -> tuple[str, int]:
        """Text before the first stop string, and the tokens generated up to the one completing it."""
        decode = self._tokenizer.decode
        if stops:
            for n in range(1, len(ids) + 1):
                text = decode(ids[:n], skip_special_tokens=True)
                hits = [text.find(s) for s in stops if s in text]
                if hits:
                    return text[: min(hits)], n
        return decode(ids, skip_special_tokens=True), len(ids)
