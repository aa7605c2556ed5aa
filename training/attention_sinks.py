"""Attention-sink statistics of a Llama model, measured with transformers' eager attention.

All statistics are per head: the mean, over the chosen query rows and over prompts, of the
attention weight those rows put on one key position; a head "sinks" on that position when the
mean exceeds ``threshold`` (0.3). Only layers >= 1 count (layer 0 attends by content).

    prompt_bos     rows 1..T-1 of full prompts -> position 0 (BOS)
    chunk_in_full  rows of a mid-prompt document, except its first -> that document's first token
    chunk_behind_bos   the same document compiled alone as [BOS, doc] (what the engine stores and
                   links): rows of the document except its first -> the document's first token
    chunk_alone    the document computed alone with no BOS ([doc], its first token at
                   position 0, the paper's compile): rows 1.. -> position 0
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from training.data import Example
from training.prompt import build_prompt


@dataclass(frozen=True)
class SinkStats:
    """Fraction of heads (layers >= 1) that sink, and the mean attention mass, per statistic."""

    fraction: dict[str, float]
    mean_mass: dict[str, float]
    num_heads: int
    num_prompts: int


@torch.inference_mode()
def _attn(model, ids: list[int]) -> torch.Tensor:
    """Attention weights ``[layers, heads, T, T]`` of one sequence."""
    out = model(torch.tensor([ids]), output_attentions=True)
    return torch.stack([a[0] for a in out.attentions])


def _mass(attn: torch.Tensor, rows: slice, key: int) -> torch.Tensor:
    """Per-head mean attention of ``rows`` to ``key``, layers >= 1: ``[layers - 1, heads]``."""
    return attn[1:, :, rows, key].mean(dim=-1)


def sink_stats(model, tokenizer, examples: Sequence[Example], threshold: float = 0.3) -> SinkStats:
    """Measure the four statistics of the module docstring over ``examples``.

    The document measured is the second one of each prompt (a chunk that is linked
    mid-prompt); examples with fewer than two documents are skipped.
    """
    if model.config._attn_implementation != "eager":
        raise ValueError("sink statistics need attention weights: load the model with attn_implementation='eager'")
    sums: dict[str, torch.Tensor] = {}
    n = 0
    for ex in examples:
        if len(ex.documents) < 2:
            continue
        prompt = build_prompt(tokenizer, ex.documents, ex.question)
        doc = prompt.chunk_ids[1]
        start = prompt.chunk_starts()[1]
        full = _attn(model, prompt.flat())
        behind_bos = _attn(model, [tokenizer.bos_token_id, *doc])
        alone = _attn(model, doc)
        masses = {
            "prompt_bos": _mass(full, slice(1, None), 0),
            "chunk_in_full": _mass(full, slice(start + 1, start + len(doc)), start),
            "chunk_behind_bos": _mass(behind_bos, slice(2, None), 1),
            "chunk_alone": _mass(alone, slice(1, None), 0),
        }
        for name, m in masses.items():
            sums[name] = sums.get(name, 0) + m
        n += 1
    if n == 0:
        raise ValueError("no example has two or more documents")
    means = {k: v / n for k, v in sums.items()}
    return SinkStats(
        fraction={k: float((v > threshold).float().mean()) for k, v in means.items()},
        mean_mass={k: float(v.mean()) for k, v in means.items()},
        num_heads=int(next(iter(means.values())).numel()),
        num_prompts=n,
    )
