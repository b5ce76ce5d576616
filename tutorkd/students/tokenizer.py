"""A character-level tokenizer for tiny students: one token per character of a domain's alphabet.

The tokenizer is built with ``tokenizers`` (a ``WordLevel`` model over single characters, a
pre-tokenizer that isolates every character, a ``Fuse`` decoder that joins tokens without spaces)
and wrapped as a ``PreTrainedTokenizerFast`` so that transformers, TRL and vLLM all load it from the
same saved folder. It carries a chat template so TRL never has to add one (adding tokens would make
TRL put ``modules_to_save`` into the LoRA, which vLLM rejects).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerFast

PAD, BOS, EOS = "<pad>", "<bos>", "<eos>"
SPECIAL_TOKENS = (PAD, BOS, EOS)
"""Ids 0, 1, 2 in this order; characters follow in alphabet order."""

# Why a template at all: TRL clones a default template (adding tokens) only when asked to, but other
# tools call ``apply_chat_template``; a plain concatenation keeps every path token-for-token equal to
# the raw prompt/completion format the student is trained and evaluated on.
CHAT_TEMPLATE = (
    "{% for message in messages %}{{ message['content'] }}"
    "{% if message['role'] == 'assistant' %}{{ eos_token }}{% endif %}{% endfor %}"
)


def build_char_tokenizer(alphabet: str) -> PreTrainedTokenizerFast:
    """A tokenizer with one id per distinct character of ``alphabet`` plus ``<pad>``, ``<bos>``, ``<eos>``.

    Encoding prepends ``<bos>`` (added by the post-processor, so TRL, transformers and vLLM all see
    the same ids); ``decode`` of an encoding returns the original string exactly. A character outside
    the alphabet is an error, not an unknown token.
    """
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    chars = list(dict.fromkeys(alphabet))
    if not chars:
        raise ValueError("alphabet is empty; a char tokenizer needs at least one character")
    vocab = {tok: i for i, tok in enumerate((*SPECIAL_TOKENS, *chars))}
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token=None))
    tok.pre_tokenizer = pre_tokenizers.Split(Regex(r"[\s\S]"), behavior="isolated")
    tok.decoder = decoders.Fuse()
    tok.add_special_tokens(list(SPECIAL_TOKENS))
    tok.post_processor = processors.TemplateProcessing(
        single=f"{BOS} $A", pair=f"{BOS} $A $B", special_tokens=[(BOS, vocab[BOS])]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        pad_token=PAD,
        bos_token=BOS,
        eos_token=EOS,
        chat_template=CHAT_TEMPLATE,
        padding_side="left",
        clean_up_tokenization_spaces=False,
        model_max_length=128,
    )
