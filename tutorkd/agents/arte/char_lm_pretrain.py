"""Pretrain the tiny teacher LM from scratch on a deliberately varied stream, cached by content hash.

The stream (``pretrain_example``): a skill tag, a branch (the teacher then picks the leaf) or a leaf;
operands from the lower half, the upper half or the whole of the skill's range; a solution with or
without its rationale. Problems come from outside the evaluation partition, like the student's.
"""

from __future__ import annotations

import hashlib
import json
import logging
import random
import time
from collections.abc import Container
from pathlib import Path

from tutorkd.agents.arte.char_lm import spots, tag
from tutorkd.cache import cache_root, cached_build
from tutorkd.config import TeacherLMConfig
from tutorkd.environments.arithmetic import ArithmeticDomain
from tutorkd.environments.heldout import Reserved
from tutorkd.schema import Record

log = logging.getLogger(__name__)

SPEC_VERSION = 1
"""Bump when the training loop or stream changes, so stale cached teachers are not reused."""
TAG_CHARS = "#abcdefghijklmnopqrstuvwxyz._"
"""Characters of the skill tags, added to the domain's alphabet."""


class TeacherSpec(Record):
    """Everything that determines a pretrained teacher's weights; its hash (``key``) names the cache
    folder, and it is saved there as ``SPEC_FILE`` (``recipe.json``) with the outcome."""

    recipe_version: int
    """``SPEC_VERSION``. Named before the rename to "spec" and kept: the field names are hashed into
    ``key``, so renaming one would orphan every cached teacher."""
    domain: str
    alphabet: str
    config: TeacherLMConfig
    reserved: str
    """Key of the evaluation partition kept out of the pretraining stream."""
    final_loss: float | None = None
    seconds: float | None = None

    def key(self) -> str:
        """Short hash of the fields that determine the weights (sampling temperature excluded)."""
        cfg = self.config.model_dump(exclude={"temperature", "cache_dir"})
        fields = {**self.model_dump(exclude={"final_loss", "seconds", "config"}), "config": cfg}
        return hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()[:16]


def _fits(question: str, kind: str) -> bool:
    """Whether every operand lies in the lower (``small``) or upper (``large``) half; ``any`` always fits."""
    if kind == "small":
        return all(s < 0.5 for s in spots(question))
    if kind == "large":
        return all(s >= 0.5 for s in spots(question))
    return True


def pretrain_example(
    domain: ArithmeticDomain, cfg: TeacherLMConfig, exclude: Container[str], rng: random.Random
) -> tuple[str, str]:
    """One (prompt, completion) of the teacher's pretraining stream (see the module docstring)."""
    tree = domain.tree
    if rng.random() < cfg.branch_share:
        node = rng.choice(tree.children(None))
    else:
        node = rng.choice(tree.leaves())
    leaf = rng.choice(tree.leaves_under(node))
    r = rng.random()
    kind = "small" if r < cfg.small_share else "large" if r < cfg.small_share + cfg.large_share else "any"
    # Why a bounded search: some skills have no problem of a size (``add.no_carry`` cannot have two
    # large operands, its sum stays below 100); those draws keep the last problem, of any size.
    for _ in range(200):
        (problem,) = domain.sample(leaf, 1, rng, exclude)
        if _fits(problem.question, kind):
            break
    style = "rationale" if rng.random() < cfg.rationale_share else "direct"
    return tag(node), problem.question + domain.completion(problem, style)


def pretrain_teacher(cfg: TeacherLMConfig, domain: ArithmeticDomain, reserved: Reserved) -> Path:
    """Folder of a teacher pretrained to this spec (weights, tokenizer, ``recipe.json``); trains it
    first unless it is cached. Problems in ``reserved`` never enter the stream.

    The cache folder is ``cfg.cache_dir``, else ``$TUTORKD_CACHE/teachers``, else
    ``~/.cache/tutorkd/teachers`` (see ``tutorkd.cache.cached_build``).
    """
    spec = TeacherSpec(
        recipe_version=SPEC_VERSION,
        domain=domain.name,
        alphabet=domain.alphabet + TAG_CHARS,
        config=cfg,
        reserved=reserved.key,
    )
    return cached_build(cache_root("teachers", cfg.cache_dir), spec.key(),
                        lambda out: _build(spec, domain, reserved, out))


def _build(spec: TeacherSpec, domain: ArithmeticDomain, reserved: Reserved, out: Path) -> TeacherSpec:
    """Train ``spec`` into ``out``; return it with its outcome filled in."""
    started = time.monotonic()
    loss = _train(spec, domain, reserved, out)
    log.info("teacher LM pretrained: loss %.3f", loss)
    return spec.model_copy(update={"final_loss": loss, "seconds": time.monotonic() - started})


def _train(spec: TeacherSpec, domain: ArithmeticDomain, reserved: Reserved, out: Path) -> float:
    """The student's pretraining loop (``train_char_lm``) on the teacher's varied example stream;
    returns the mean loss of the last 50 steps."""
    from tutorkd.students.pretrain import tiny_llama_config, train_char_lm
    from tutorkd.students.tokenizer import build_char_tokenizer

    cfg = spec.config
    tokenizer = build_char_tokenizer(spec.alphabet)
    return train_char_lm(tiny_llama_config(cfg.hidden_size, cfg.layers, cfg.heads, tokenizer), tokenizer,
                         lambda rng: [pretrain_example(domain, cfg, reserved, rng)
                                      for _ in range(cfg.pretrain_batch)],
                         steps=cfg.pretrain_steps, lr=cfg.pretrain_lr, seed=cfg.pretrain_seed, out=out,
                         title="pretraining the teacher LM")
