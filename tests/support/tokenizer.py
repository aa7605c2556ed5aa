"""Byte-level BPE tokenizers trained offline on small texts, for the tiny test models."""

from __future__ import annotations

STORY_CORPUS = [
    "Once upon a time there was a small red fox. The fox lived in a quiet forest near the river.",
    "Every morning the fox ran to the river to drink. One day it met a grey rabbit who was lost.",
    "The rabbit said hello. The fox said hello back, and they became good friends forever.",
] * 20


def train_bpe(corpus: list[str], vocab_size: int, special_tokens: list[str]):
    """A ``tokenizers.Tokenizer``: byte-level BPE (no prefix space) trained on ``corpus``, the
    special tokens taking the first ids in the order given."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=special_tokens,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(corpus, trainer=trainer)
    return tok
