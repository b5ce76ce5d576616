"""Pretrain the tiny base student from scratch on a skewed skill mix, cached by content hash.

The base is a small Llama with a character-level tokenizer, trained by a plain torch loop on a
stream of problems drawn from a domain: each skill by its ``mix`` weight, written with a rationale
or directly, plus a share whose prompt already holds (part of) the rationale, so the student learns to
use an explanation placed in its context. The result is saved under a folder named by a hash of
everything that determines the weights (a ``PretrainSpec``); a second call with the same spec reuses it.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import random
import time
from collections import Counter
from collections.abc import Callable, Collection, Container, Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from tutorkd import progress
from tutorkd.cache import cache_root, cached_build
from tutorkd.config import TinyStudentConfig
from tutorkd.environments.heldout import Reserved
from tutorkd.protocols import Domain
from tutorkd.schema import Problem, Record

if TYPE_CHECKING:
    from transformers import LlamaConfig, PreTrainedTokenizerFast

log = logging.getLogger(__name__)

SPEC_VERSION = 1
"""Bump when the training loop or data format changes, so stale cached bases are not reused."""
TORCH_THREADS = 2
"""Torch threads for pretraining, fixed rather than taken from the machine or ``OMP_NUM_THREADS``:
float sums depend on the thread count, and a cached base (keyed by its spec) must have the same
weights wherever it was built (measured: 1 and 2 threads give different weights)."""
MAX_LENGTH = 128
"""Longest training sequence and the model's ``max_position_embeddings``."""


class PretrainSpec(Record):
    """Everything that determines a pretrained base's weights; its hash (``key``) names the cache folder.

    Saved as ``SPEC_FILE`` (``recipe.json``) next to the weights, with the outcome (``final_loss``,
    ``seconds``).
    """

    recipe_version: int
    """``SPEC_VERSION``. Named before the rename to "spec" and kept: the field names are hashed into
    ``key``, so renaming one would orphan every cached base."""
    domain: str
    alphabet: str
    mix: dict[str, float]
    hidden_size: int
    layers: int
    heads: int
    steps: int
    batch: int
    lr: float
    rationale_share: float
    explained_share: float
    seed: int
    excluded: int
    """Number of questions kept out of the pretraining stream (-1: a ``Reserved`` partition)."""
    excluded_sha256: str
    final_loss: float | None = None
    seconds: float | None = None

    def key(self) -> str:
        """Short hash of the fields that determine the weights (not the outcome fields)."""
        fields = self.model_dump(exclude={"final_loss", "seconds"})
        return hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()[:16]


def make_spec(
    cfg: TinyStudentConfig, domain: Domain, mix: Mapping[str, float], exclude: Collection[str] | Reserved
) -> PretrainSpec:
    """The spec of ``pretrain_base`` for these arguments (validates ``mix`` against the domain)."""
    leaves = set(domain.tree.leaves())
    unknown = sorted(set(mix) - leaves)
    if unknown:
        raise ValueError(f"pretrain mix names unknown skills {unknown}; leaf skills are {sorted(leaves)}")
    if not any(w > 0 for w in mix.values()) or any(w < 0 for w in mix.values()):
        raise ValueError(f"pretrain mix weights must be >= 0 with at least one > 0, got {dict(mix)}")
    if isinstance(exclude, Reserved):
        # Why: a hash partition cannot be listed; its key names it exactly.
        excluded_count, excluded_sha = -1, hashlib.sha256(exclude.key.encode()).hexdigest()
    else:
        listed = sorted(exclude)
        excluded_count, excluded_sha = len(listed), hashlib.sha256("\n".join(listed).encode()).hexdigest()
    return PretrainSpec(
        recipe_version=SPEC_VERSION,
        domain=domain.name,
        alphabet=domain.alphabet,
        mix=dict(sorted(mix.items())),
        hidden_size=cfg.hidden_size,
        layers=cfg.layers,
        heads=cfg.heads,
        steps=cfg.pretrain_steps,
        batch=cfg.pretrain_batch,
        lr=cfg.pretrain_lr,
        rationale_share=cfg.pretrain_rationale_share,
        explained_share=cfg.pretrain_explained_share,
        seed=cfg.pretrain_seed,
        excluded=excluded_count,
        excluded_sha256=excluded_sha,
    )


def pretrain_base(
    cfg: TinyStudentConfig,
    domain: Domain,
    mix: Mapping[str, float],
    exclude: Collection[str] | Reserved = frozenset(),
) -> Path:
    """Folder of a base model pretrained to this spec, training it first unless it is cached.

    ``mix`` maps leaf skill ids to sampling weights (callers usually pass ``cfg.pretrain_mix`` or the
    domain's default mix); ``exclude`` holds the held-out questions, which never enter the stream.
    The cache folder is ``cfg.cache_dir``, else ``$TUTORKD_CACHE/students``, else
    ``~/.cache/tutorkd/students``; an interrupted run leaves nothing that a later call would reuse
    (see ``tutorkd.cache.cached_build``).
    """
    if not isinstance(exclude, Reserved):
        exclude = frozenset(exclude)  # Why: the domain tests membership once per drawn candidate.
    spec = make_spec(cfg, domain, mix, exclude)
    return cached_build(
        cache_root("students", cfg.cache_dir), spec.key(), lambda out: _build(spec, domain, exclude, out)
    )


def _build(spec: PretrainSpec, domain: Domain, exclude: Container[str], out: Path) -> PretrainSpec:
    """Train ``spec`` into ``out``; return it with its outcome filled in."""
    started = time.monotonic()
    final_loss = _train(spec, domain, exclude, out)
    done = spec.model_copy(update={"final_loss": final_loss, "seconds": time.monotonic() - started})
    log.info("pretrained base trained: loss %.3f, %.0f s", final_loss, done.seconds)
    return done


def llama_config(spec: PretrainSpec, tokenizer: PreTrainedTokenizerFast) -> LlamaConfig:
    """The tiny Llama architecture of a spec."""
    return tiny_llama_config(spec.hidden_size, spec.layers, spec.heads, tokenizer)


def tiny_llama_config(hidden: int, layers: int, heads: int,
                      tokenizer: PreTrainedTokenizerFast) -> LlamaConfig:
    """A tiny Llama over ``tokenizer``: intermediate size 4x hidden, tied embeddings, ``MAX_LENGTH``
    positions (the student's and the teacher LM's architecture)."""
    from transformers import LlamaConfig

    return LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=hidden,
        intermediate_size=4 * hidden,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        num_key_value_heads=heads,
        max_position_embeddings=MAX_LENGTH,
        tie_word_embeddings=True,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        # Why: at this size eager attention trains ~20 % faster on CPU than SDPA (measured).
        attn_implementation="eager",
    )


def pretrain_pair(
    domain: Domain, problem: Problem, spec: PretrainSpec, rng: random.Random
) -> tuple[str, str]:
    """One (prompt, completion) of the pretraining stream for ``problem``.

    With probability ``explained_share`` the prompt already holds the rationale's first k steps
    (k drawn uniformly, all steps included) and the completion continues with the rest and the answer;
    otherwise the completion is written with a rationale (``rationale_share``) or directly.
    """
    if problem.rationale is None:
        raise ValueError(f"problem {problem.id} has no rationale; pretraining needs one")
    if rng.random() < spec.explained_share:
        steps = problem.rationale.split(" ")
        k = rng.randint(1, len(steps))
        rest = " ".join(steps[k:])
        direct = domain.completion(problem, "direct")
        return domain.prompt(problem, " ".join(steps[:k])), f"{rest} {direct}" if rest else direct
    style = "rationale" if rng.random() < spec.rationale_share else "direct"
    return domain.prompt(problem), domain.completion(problem, style)


def _batch_pairs(
    domain: Domain, spec: PretrainSpec, exclude: Container[str], rng: random.Random
) -> list[tuple[str, str]]:
    skills = list(spec.mix)
    counts = Counter(rng.choices(skills, weights=[spec.mix[s] for s in skills], k=spec.batch))
    problems = [p for skill, n in sorted(counts.items()) for p in domain.sample(skill, n, rng, exclude)]
    return [pretrain_pair(domain, p, spec, rng) for p in problems]


@contextlib.contextmanager
def torch_threads(n: int = TORCH_THREADS) -> Iterator[None]:
    """Run the body with at most ``n`` torch threads (the machine's cores), then restore the setting.

    Calls ``torch.set_num_threads`` only when the count changes: an in-process vLLM CPU engine
    replaces it with a stub that logs a warning on every call.
    """
    import torch

    before = torch.get_num_threads()
    wanted = max(1, min(n, os.cpu_count() or 1))
    if wanted != before:
        torch.set_num_threads(wanted)
    try:
        yield
    finally:
        if wanted != before:
            torch.set_num_threads(before)


def _train(spec: PretrainSpec, domain: Domain, exclude: Container[str], out: Path) -> float:
    """Train a fresh model into ``out`` (weights, tokenizer); return the mean loss of the last 50 steps."""
    from tutorkd.students.tokenizer import build_char_tokenizer

    tokenizer = build_char_tokenizer(spec.alphabet)
    return train_char_lm(llama_config(spec, tokenizer), tokenizer,
                         lambda rng: _batch_pairs(domain, spec, exclude, rng), steps=spec.steps,
                         lr=spec.lr, seed=spec.seed, out=out, title="pretraining the base student")


def train_char_lm(config: LlamaConfig, tokenizer: PreTrainedTokenizerFast,
                  next_batch: Callable[[random.Random], list[tuple[str, str]]], *, steps: int, lr: float,
                  seed: int, out: Path, title: str) -> float:
    """Train a fresh Llama of ``config`` from scratch on ``next_batch(rng)`` (prompt, completion) pairs,
    loss on completions only, reporting each step (``tutorkd.progress``, as ``title``); save it and
    ``tokenizer`` into ``out``.

    AdamW, linear warmup over the first 5 % of ``steps``, then cosine decay to a tenth of ``lr``; both
    the model's init and the batches are seeded by ``seed``. Returns the mean loss of the last 50 steps.
    """
    import math

    import torch
    from transformers import LlamaForCausalLM

    with torch_threads():
        torch.manual_seed(seed)
        rng = random.Random(seed)
        model = LlamaForCausalLM(config)
        model.train()
        optim = torch.optim.AdamW(model.parameters(), lr=lr, betas=(0.9, 0.95), weight_decay=0.01)
        warmup = max(1, steps // 20)

        def lr_factor(step: int) -> float:
            if step < warmup:
                return (step + 1) / warmup
            done = (step - warmup) / max(1, steps - warmup)
            return 0.1 + 0.45 * (1 + math.cos(math.pi * done))

        sched = torch.optim.lr_scheduler.LambdaLR(optim, lr_factor)
        losses: list[float] = []
        with progress.task(title, total=steps) as bar:
            for step in range(steps):
                loss = model(**collate(next_batch(rng), tokenizer)).loss
                optim.zero_grad(set_to_none=True)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
                optim.step()
                sched.step()
                losses.append(loss.item())
                bar.advance(note=f"loss {losses[-1]:.3f}")
                if (step + 1) % 100 == 0:
                    log.info("%s: step %d/%d loss %.4f", title, step + 1, steps, losses[-1])
        model.eval()
        model.save_pretrained(out)
        tokenizer.save_pretrained(out)
    tail = losses[-50:]
    return sum(tail) / len(tail)


def collate(pairs: list[tuple[str, str]], tokenizer: PreTrainedTokenizerFast) -> dict:
    """Right-padded ``input_ids``/``attention_mask``/``labels``; labels cover completion and EOS only."""
    import torch

    prompts = tokenizer([p for p, _ in pairs])["input_ids"]
    fulls = tokenizer([p + c for p, c in pairs])["input_ids"]
    width = max(len(f) for f in fulls) + 1
    if width > MAX_LENGTH:
        raise ValueError(f"a pretraining example is {width} tokens, over the model's {MAX_LENGTH}")
    ids = torch.full((len(pairs), width), tokenizer.pad_token_id)
    labels = torch.full((len(pairs), width), -100)
    mask = torch.zeros((len(pairs), width), dtype=torch.long)
    for i, (prompt, full) in enumerate(zip(prompts, fulls, strict=True)):
        row = torch.tensor([*full, tokenizer.eos_token_id])
        ids[i, : len(row)] = row
        mask[i, : len(row)] = 1
        labels[i, len(prompt) : len(row)] = row[len(prompt) :]
    return {"input_ids": ids, "attention_mask": mask, "labels": labels}
