"""Token selection: greedy, temperature, top-k, top-p, per-request seeds, chosen-token logprobs."""

from __future__ import annotations

from typing import NamedTuple

import torch

from engine.sampling_params import SamplingParams


def make_generator(params: SamplingParams) -> torch.Generator | None:
    """A per-request host generator when the request is seeded (same seed -> same tokens)."""
    if params.seed is None:
        return None
    return torch.Generator(device="cpu").manual_seed(params.seed)


def filter_logits(logits: torch.Tensor, params: SamplingParams) -> torch.Tensor:
    """Temperature, top-k and top-p applied to one row [vocab] (float32)."""
    logits = logits / params.temperature
    if params.top_k and params.top_k < logits.numel():
        kth = torch.topk(logits, params.top_k).values[-1]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if params.top_p < 1.0:
        sorted_logits, order = torch.sort(logits, descending=True)
        cum = sorted_logits.softmax(-1).cumsum(-1)
        # Drop a token when the mass before it already reaches top_p (the first always stays).
        remove = (cum - sorted_logits.softmax(-1)) >= params.top_p
        logits = logits.masked_fill(remove.scatter(0, order, remove), float("-inf"))
    return logits


class Sampled(NamedTuple):
    token_ids: list[int]
    logprobs: list[float]  # of each chosen token, under the unfiltered distribution
    top_logprobs: list[dict[int, float] | None]  # per row, when the request asks for them


def sample(
    logits: torch.Tensor,
    params: list[SamplingParams],
    generators: list[torch.Generator | None],
    default_generator: torch.Generator,
) -> Sampled:
    """Choose one token per row.

    Args:
        logits: [M, vocab] float32, one row per request.
        params, generators: per row.
        default_generator: host generator for unseeded requests.

    """
    logprobs_all = torch.log_softmax(logits, dim=-1)
    chosen = logits.argmax(dim=-1).tolist()
    for i, p in enumerate(params):
        if p.greedy:
            continue
        probs = filter_logits(logits[i].cpu(), p).softmax(-1)
        gen = generators[i] if generators[i] is not None else default_generator
        chosen[i] = int(torch.multinomial(probs, 1, generator=gen).item())
    index = torch.tensor(chosen, device=logits.device)[:, None]
    top: list[dict[int, float] | None] = [None] * len(params)
    for i, p in enumerate(params):
        if p.top_logprobs:
            values, ids = logprobs_all[i].topk(min(p.top_logprobs, logits.shape[-1]))
            top[i] = dict(zip(ids.tolist(), values.tolist()))
    return Sampled(chosen, logprobs_all.gather(1, index)[:, 0].tolist(), top)
