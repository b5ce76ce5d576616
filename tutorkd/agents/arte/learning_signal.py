"""What a trained student says about candidate training examples, measured on the student itself.

Signals on (prompt, completion) pairs in the student's own format:

- ``learnability``: the student's mean token log-likelihood of the completion (and its EOS) after the
  prompt: PerSyn's r_l. High means the student finds the example natural; it says nothing about
  whether training on it teaches anything new.
- ``probe_gain``: how much the student's loss on a probe set drops after one plain SGD step on the
  candidate alone (the weights are restored after each candidate). This is the learning signal ARTE's
  preferences use for a trained (not prompted) student: the tiny student cannot do one-shot
  in-context learning from a demonstration, but it can learn, and the probe-loss reduction measures
  exactly what one example teaches it about the skill (to first order it is the step size times the
  inner product of the candidate's and the probe set's gradients). The step updates every weight of
  the student (its adapter merged in, if any).
- ``ICLAccuracy``: ARTE's own signal for a prompted student, its one-shot accuracy on the preference
  set with the candidate as the demonstration.

``ProbeGain`` and ``ICLAccuracy`` are the ``PreferenceSignal`` choices of ARTE (``ArteConfig.signal``).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from tutorkd.protocols import Backend, Domain, SamplingConfig
from tutorkd.schema import Problem, StudentVersion

if TYPE_CHECKING:
    import torch

Pair = tuple[str, str]


class StudentSignals:
    """A student (base folder plus optional LoRA adapter, merged) loaded in float32 for scoring."""

    def __init__(self, base_dir: str | Path, adapter: str | Path | None = None, batch_size: int = 64) -> None:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        self.tokenizer = AutoTokenizer.from_pretrained(base_dir)
        model = AutoModelForCausalLM.from_pretrained(base_dir, dtype=torch.float32)
        if adapter is not None:
            from peft import PeftModel

            model = PeftModel.from_pretrained(model, str(adapter)).merge_and_unload()
        self.model = model.eval()
        self.batch_size = batch_size

    def _nll(self, pairs: Sequence[Pair]) -> torch.Tensor:
        """Per pair, the mean negative log-likelihood of completion + EOS (with the graph, if enabled)."""
        import torch

        from tutorkd.students.pretrain import collate

        batch = collate(list(pairs), self.tokenizer)
        logits = self.model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
        labels = batch["labels"][:, 1:]
        per_token = torch.nn.functional.cross_entropy(
            logits[:, :-1].transpose(1, 2).float(), labels, ignore_index=-100, reduction="none"
        )
        mask = (labels != -100).float()
        return (per_token * mask).sum(1) / mask.sum(1)

    def learnability(self, pairs: Sequence[Pair]) -> list[float]:
        """PerSyn's r_l per pair: mean token log-likelihood of the completion and its EOS."""
        import torch

        from tutorkd.students.pretrain import torch_threads

        out: list[float] = []
        with torch_threads(), torch.no_grad():
            for start in range(0, len(pairs), self.batch_size):
                out += (-self._nll(pairs[start : start + self.batch_size])).tolist()
        return out

    def probe_loss(self, probe: Sequence[Pair]) -> float:
        """Mean over ``probe`` of the per-pair mean NLL."""
        import torch

        with torch.no_grad():
            return float(
                torch.cat(
                    [self._nll(probe[s : s + self.batch_size]) for s in range(0, len(probe), self.batch_size)]
                ).mean()
            )

    def probe_gain(self, candidates: Sequence[Pair], probe: Sequence[Pair], lr: float) -> list[float]:
        """Per candidate: probe loss before minus after one SGD step of size ``lr`` on that candidate."""
        import torch

        from tutorkd.students.pretrain import torch_threads

        if not probe:
            raise ValueError("probe_gain needs a non-empty probe set")
        params = [p for p in self.model.parameters()]
        saved = [p.detach().clone() for p in params]
        for p in params:
            p.requires_grad_(True)
        gains: list[float] = []
        with torch_threads():
            before = self.probe_loss(probe)
            for candidate in candidates:
                self.model.zero_grad(set_to_none=True)
                self._nll([candidate]).sum().backward()
                with torch.no_grad():
                    for p in params:
                        if p.grad is not None:
                            p.sub_(lr * p.grad)
                gains.append(before - self.probe_loss(probe))
                with torch.no_grad():
                    for p, s in zip(params, saved, strict=True):
                        p.copy_(s)
        self.model.zero_grad(set_to_none=True)
        return gains


class PreferenceSignal(Protocol):
    """ARTE's ŝ_r: how much the student gains from each candidate (question, completion), on a probe set."""

    name: str

    def scores(self, candidates: Sequence[Pair], probe: Sequence[Problem]) -> list[float]:
        """One score per candidate; higher means the student prefers it."""
        ...


class ProbeGain:
    """The learning signal of a trained student: ``StudentSignals.probe_gain`` on the probe problems'
    gold worked solutions (``rationale`` style).

    Why only the worked solution: it is the domain's definition of solving the problem, and a student
    that writes it gets the answer right. With answer-only completions in the probe as well, the
    measured signal was dominated by which format the step pushes the first token towards (an
    answer-only candidate lowers the loss of every answer-only probe completion by making ``A:`` likelier
    at once), not by what the candidate teaches about the skill."""

    name = "probe_gain"

    def __init__(self, signals: StudentSignals, domain: Domain, lr: float) -> None:
        self.signals, self.domain, self.lr = signals, domain, lr

    def scores(self, candidates: Sequence[Pair], probe: Sequence[Problem]) -> list[float]:
        """Probe-loss reduction after one SGD step on each candidate."""
        pairs = [(p.question, self.domain.completion(p, "rationale")) for p in probe]
        return self.signals.probe_gain(candidates, pairs, self.lr)


class ICLAccuracy:
    """The signal of a prompted student (ARTE eq. 3): its greedy accuracy on the probe problems with the
    candidate as a one-shot demonstration in front of each (``demo + separator + prompt``).

    For students that learn in context (pretrained LMs); the tiny character-level student was never
    shown two problems in one context, so for it ``ProbeGain`` is the signal."""

    name = "icl"

    def __init__(
        self,
        backend: Backend,
        domain: Domain,
        version: StudentVersion | None = None,
        separator: str = "\n\n",
        max_tokens: int = 48,
    ) -> None:
        self.backend, self.domain, self.version = backend, domain, version
        self.separator, self.max_tokens = separator, max_tokens

    def scores(self, candidates: Sequence[Pair], probe: Sequence[Problem]) -> list[float]:
        """Share of ``probe`` answered correctly after each candidate's demonstration."""
        prompts = [q + c + self.separator + self.domain.prompt(p) for q, c in candidates for p in probe]
        params = SamplingConfig(max_tokens=self.max_tokens, temperature=0.0, stop=(self.separator,))
        outputs = self.backend.generate(prompts, params, self.version)
        right = [
            self.domain.check(p, o.text)[1]
            for o, p in zip(outputs, list(probe) * len(candidates), strict=True)
        ]
        n = len(probe)
        return [sum(right[i * n : (i + 1) * n]) / n for i in range(len(candidates))]
