"""The bundled family's tokenizer: a byte-level BPE trained with Hugging Face `tokenizers` on the
training chapters, saved as a `PreTrainedTokenizerFast` so `AutoTokenizer.from_pretrained` loads it.

Byte-level means any text (held-out or foreign) encodes without unknown tokens. One special token,
`<|endoftext|>`, separates documents in training and serves as BOS, EOS and padding.
"""

from __future__ import annotations

from collections.abc import Iterable

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast

EOS = "<|endoftext|>"


def train_tokenizer(texts: Iterable[str], vocab_size: int, max_length: int) -> PreTrainedTokenizerFast:
    """A byte-level BPE of `vocab_size` tokens (the 256 bytes, EOS, and learned merges)."""
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=[EOS],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer=trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token=EOS, eos_token=EOS, pad_token=EOS, model_max_length=max_length
    )
