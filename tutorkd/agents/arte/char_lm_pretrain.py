"""Pretrain the tiny teacher LM from scratch on a deliberately varied stream, cached by recipe hash.

The stream (``pretrain_example``): a skill tag, a branch (the teacher then picks the leaf) or a leaf;
operands from the lower half, the upper half or the whole of the skill's range; a solution with or
without its rationale. Problems come from outside the evaluation partition, like the student's.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import random
import shutil
import tempfile
import time
from collections.abc import Container
from pathlib import Path

from tutorkd.agents.arte.char_lm import spots, tag
from tutorkd.environments.arithmetic import ArithmeticDomain
from tutorkd.environments.heldout import Reserved
from tutorkd.generate_config import TeacherLMConfig
from tutorkd.io import write_json
from tutorkd.schema import Record

log = logging.getLogger(__name__)

RECIPE_VERSION = 1
TAG_CHARS = "#abcdefghijklmnopqrstuvwxyz._"
"""Characters of the skill tags, added to the domain's alphabet."""


class TeacherRecipe(Record):
    """Everything that determines a pretrained teacher's weights; its hash names the cache folder."""

    recipe_version: int
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


def cache_root(cfg: TeacherLMConfig) -> Path:
    """``cfg.cache_dir``, else ``$TUTORKD_CACHE/teachers``, else ``~/.cache/tutorkd/teachers``."""
    import os

    if cfg.cache_dir is not None:
        return Path(cfg.cache_dir).expanduser()
    env = os.environ.get("TUTORKD_CACHE")
    return Path(env).expanduser() / "teachers" if env else Path.home() / ".cache" / "tutorkd" / "teachers"


def pretrain_teacher(cfg: TeacherLMConfig, domain: ArithmeticDomain, reserved: Reserved) -> Path:
    """Folder of a teacher pretrained with this recipe (weights, tokenizer, ``recipe.json``); trains it
    first unless it is cached. Problems in ``reserved`` never enter the stream."""
    recipe = TeacherRecipe(
        recipe_version=RECIPE_VERSION,
        domain=domain.name,
        alphabet=domain.alphabet + TAG_CHARS,
        config=cfg,
        reserved=reserved.key,
    )
    root = cache_root(cfg)
    final = root / recipe.key()
    if (final / "recipe.json").is_file():
        return final
    root.mkdir(parents=True, exist_ok=True)
    # Why a lock: parallel benchmarks asking for the same teacher would train it twice.
    with open(root / f".lock-{recipe.key()}", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if (final / "recipe.json").is_file():
            return final
        tmp = Path(tempfile.mkdtemp(dir=root, prefix=f".tmp-{recipe.key()}-"))
        try:
            started = time.monotonic()
            loss = _train(recipe, domain, reserved, tmp)
            write_json(
                tmp / "recipe.json",
                recipe.model_copy(update={"final_loss": loss, "seconds": time.monotonic() - started}),
            )
            tmp.rename(final)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    log.info("teacher LM pretrained: %s (loss %.3f)", final, loss)
    return final


def _train(recipe: TeacherRecipe, domain: ArithmeticDomain, reserved: Reserved, out: Path) -> float:
    """The student's pretraining loop (``train_char_lm``) on the teacher's varied example stream;
    returns the mean loss of the last 50 steps."""
    from tutorkd.students.pretrain import tiny_llama_config, train_char_lm
    from tutorkd.students.tokenizer import build_char_tokenizer

    cfg = recipe.config
    tokenizer = build_char_tokenizer(recipe.alphabet)
    return train_char_lm(tiny_llama_config(cfg.hidden_size, cfg.layers, cfg.heads, tokenizer), tokenizer,
                         lambda rng: [pretrain_example(domain, cfg, reserved, rng)
                                      for _ in range(cfg.pretrain_batch)],
                         steps=cfg.pretrain_steps, lr=cfg.pretrain_lr, seed=cfg.pretrain_seed, out=out,
                         title="pretraining tiny teacher LM")
