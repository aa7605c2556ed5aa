"""Answer generated QA examples with a transformers model and score them by exact match."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from training.data import Example
from training.prompt import build_prompt

MAX_ANSWER_TOKENS = 16


def normalize(text: str) -> str:
    """Exact match ignores surrounding whitespace and nothing else."""
    return text.strip()


@torch.inference_mode()
def answer(model, tokenizer, example: Example) -> str:
    """Greedy answer to one example with full prefill (plain transformers generation)."""
    ids = build_prompt(tokenizer, example.documents, example.question).flat()
    input_ids = torch.tensor([ids], dtype=torch.long)
    out = model.generate(
        input_ids,
        attention_mask=torch.ones_like(input_ids),
        max_new_tokens=MAX_ANSWER_TOKENS,
        do_sample=False,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    return tokenizer.decode(out[0, len(ids):], skip_special_tokens=True)


def exact_match_accuracy(model, tokenizer, examples: Sequence[Example]) -> dict[str, float]:
    """Exact-match accuracy overall and per question kind (``single``, ``two_hop``)."""
    hits: dict[str, list[bool]] = {}
    for ex in examples:
        ok = normalize(answer(model, tokenizer, ex)) == normalize(ex.answer)
        hits.setdefault("all", []).append(ok)
        hits.setdefault(ex.kind, []).append(ok)
    return {k: sum(v) / len(v) for k, v in sorted(hits.items())}
