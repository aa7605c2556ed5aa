"""The sampler's obviously correct reference: one row at a time, the formulas written out.

:mod:`engine.sampler` must process logits exactly as this does (tests compare them on odd sizes),
and ``benchmarks/bench_sampler.py`` times both.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

import torch

from engine.sampling_params import SamplingParams


def reference_process(logits: torch.Tensor, params: SamplingParams, prompt_ids: Sequence[int],
                      output_ids: Sequence[int], eos_token_ids: Sequence[int] = (),
                      allowed: torch.Tensor | None = None) -> torch.Tensor:
    """Grammar mask, logit bias, min_tokens, penalties on one row.

    Args:
        logits: [vocab] float32.
        allowed: [vocab] bool, the grammar's permitted tokens (None: all).
    """
    x = logits.clone()
    if allowed is not None:
        x[~allowed] = float("-inf")
    for token, bias in params.logit_bias:
        x[token] += bias
    if len(output_ids) < params.min_tokens:
        for token in (*params.stop_token_ids, *(() if params.ignore_eos else eos_token_ids)):
            x[token] = float("-inf")
    if params.has_penalties:
        for token in set(prompt_ids) | set(output_ids):
            x[token] = x[token] / params.repetition_penalty if x[token] > 0 else x[token] * params.repetition_penalty
        for token, count in Counter(output_ids).items():
            x[token] -= params.frequency_penalty * count + params.presence_penalty
    return x


def reference_filter(logits: torch.Tensor, params: SamplingParams) -> torch.Tensor:
    """Temperature, top-k, top-p, min-p on one processed row [vocab] (temperature > 0)."""
    x = logits / params.temperature
    if params.top_k:
        kth = x.sort(descending=True).values[min(params.top_k, x.numel()) - 1]
        x = x.masked_fill(x < kth, float("-inf"))
    if params.top_p < 1.0:  # drop a token once the tokens more likely than it hold top_p
        probs, order = x.softmax(-1).sort(descending=True)
        mass_before = probs.cumsum(-1) - probs
        x[order[mass_before >= params.top_p]] = float("-inf")
    if params.min_p > 0.0:
        probs = x.softmax(-1)
        x = x.masked_fill(probs < params.min_p * probs.max(), float("-inf"))
    return x
