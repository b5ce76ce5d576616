"""A tiny random Llama over printable ASCII: a stand-in teacher LLM for tests of LLM-driven code.

Its outputs are garbage by design. Tests that use it check mechanics (prompting, structured-output
parsing, validation, counting invalid outputs, fallbacks), never the quality of what it says.
"""

from __future__ import annotations

import string
from pathlib import Path

ALPHABET = "".join(c for c in string.printable if c not in "\t\x0b\x0c\r")
"""Printable ASCII plus space and newline: enough for any prompt or JSON a test sends (no tab, so
structured decoding of a random model pads JSON with less whitespace)."""
MAX_LEN = 2048
"""Positions of the model (prompts are character-tokenized, so they are long)."""


def build_tiny_llm(out: Path, seed: int = 0) -> Path:
    """Save a randomly initialised 2-layer Llama and its char tokenizer to ``out``.

    Hidden size 64 with 2 heads: vLLM's CPU attention needs a head dimension of at least 32.
    """
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from tutorkd.students.tokenizer import build_char_tokenizer

    tokenizer = build_char_tokenizer(ALPHABET)
    tokenizer.model_max_length = MAX_LEN
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=2,
        max_position_embeddings=MAX_LEN,
        tie_word_embeddings=True,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


def imitate(model_dir: Path, texts: list[str], steps: int = 60, batch: int = 16, seed: int = 0) -> Path:
    """Train the model at ``model_dir`` in place, briefly, to write texts like ``texts`` (whole-sequence
    loss). A few hundred steps teach a tiny model a format's surface, e.g. compact JSON, not sense."""
    import random

    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from tutorkd.students.pretrain import torch_threads

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir)
    rng = random.Random(seed)
    # Why one thread: on a loaded 2-core machine two OpenMP threads spin against each other and a step
    # of this tiny model takes seconds instead of tens of milliseconds (measured: 20x).
    with torch_threads(1):
        torch.manual_seed(seed)
        optim = torch.optim.AdamW(model.parameters(), lr=1e-2)
        model.train()
        for _ in range(steps):
            chunk = [t + tokenizer.eos_token for t in rng.choices(texts, k=batch)]
            enc = tokenizer(chunk, return_tensors="pt", padding=True)
            labels = enc["input_ids"].masked_fill(enc["attention_mask"] == 0, -100)
            loss = model(**enc, labels=labels).loss
            optim.zero_grad()
            loss.backward()
            optim.step()
    model.save_pretrained(model_dir)
    return model_dir
