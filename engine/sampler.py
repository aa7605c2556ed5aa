"""Token selection for a whole step at once: every row's logits processed with tensor ops.

Per step, on ``logits`` [M, vocab] (one row per sequence that samples):

    raw logprobs (returned) <- log_softmax(logits)
    grammar bitmask -> logit_bias -> min_tokens (stop tokens masked) -> repetition, frequency
      and presence penalties -> greedy argmax | temperature -> top-k -> top-p -> min-p -> draw

Draws use the exponential race (argmax of probs / Exp(1) noise), which equals sampling from
``probs``; the noise of a seeded row comes from its own generator, so a seeded request draws the
same tokens whatever it is batched with. Only per-row setup (building index tensors, one noise
draw per seeded row) loops over rows; nothing loops over the vocabulary.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import torch

from engine.sampling_params import SamplingParams


def make_generator(params: SamplingParams, offset: int = 0) -> torch.Generator | None:
    """A per-sequence host generator when the request is seeded (sequence ``offset`` of an n > 1
    request draws from ``seed + offset``)."""
    if params.seed is None:
        return None
    return torch.Generator(device="cpu").manual_seed(params.seed + offset)


class SampleRow(NamedTuple):
    """What the sampler needs of one sequence."""

    params: SamplingParams
    generator: torch.Generator | None
    prompt_ids: Sequence[int]
    output_ids: Sequence[int]


class Sampled(NamedTuple):
    token_ids: list[int]
    logprobs: list[float]  # of each chosen token, under the unprocessed distribution
    top_logprobs: list[dict[int, float] | None]  # per row, when the request asks for them


def filter_logits(logits: torch.Tensor, top_k: torch.Tensor, top_p: torch.Tensor,
                  min_p: torch.Tensor) -> torch.Tensor:
    """Top-k, then top-p, then min-p, per row.

    Args:
        logits: [M, vocab] float32, already divided by the temperature.
        top_k: [M] int64, 0 keeps every token (on the host: which filters apply is decided
            there, with no device sync).
        top_p: [M] float32 in (0, 1], on the host.
        min_p: [M] float32 in [0, 1], on the host.

    Returns:
        [M, vocab] with filtered-out tokens at -inf.
    """
    vocab = logits.shape[-1]
    use_k_or_p, use_min_p = bool((top_k > 0).any()) or bool((top_p < 1.0).any()), bool((min_p > 0).any())
    top_k, top_p, min_p = (t.to(logits.device) for t in (top_k, top_p, min_p))
    if use_k_or_p:
        sorted_logits, order = logits.sort(dim=-1, descending=True)
        rank = torch.arange(vocab, device=logits.device)[None, :]
        k = torch.where(top_k > 0, top_k.clamp(max=vocab), vocab)[:, None]
        sorted_logits = sorted_logits.masked_fill(rank >= k, float("-inf"))
        probs = sorted_logits.softmax(-1)
        # Drop a token when the mass before it already reaches top_p (the first always stays).
        remove = (probs.cumsum(-1) - probs) >= top_p[:, None]
        sorted_logits = sorted_logits.masked_fill(remove, float("-inf"))
        logits = torch.empty_like(logits).scatter_(1, order, sorted_logits)
    if use_min_p:
        probs = logits.softmax(-1)
        logits = logits.masked_fill(probs < min_p[:, None] * probs.max(-1, keepdim=True).values, float("-inf"))
    return logits


def apply_penalties(logits: torch.Tensor, prompt_ids: Sequence[Sequence[int]], output_ids: Sequence[Sequence[int]],
                    presence: torch.Tensor, frequency: torch.Tensor, repetition: torch.Tensor) -> torch.Tensor:
    """vLLM's penalties: repetition over prompt and output tokens, then frequency and presence
    over output tokens.

    Args:
        logits: [M, vocab] float32.
        prompt_ids, output_ids: per row.
        presence, frequency, repetition: [M] float32.
    """
    vocab = logits.shape[-1]
    out_counts = _token_counts(output_ids, vocab, logits.device)  # [M, vocab]
    seen = (_token_counts(prompt_ids, vocab, logits.device) > 0) | (out_counts > 0)
    rep = repetition[:, None]
    logits = torch.where(seen, torch.where(logits > 0, logits / rep, logits * rep), logits)
    return logits - frequency[:, None] * out_counts - presence[:, None] * (out_counts > 0)


def _token_counts(ids: Sequence[Sequence[int]], vocab: int, device: torch.device) -> torch.Tensor:
    """[M, vocab] float32 occurrences, from rows padded with an extra column ``vocab``."""
    width = max((len(r) for r in ids), default=0)
    padded = torch.full((len(ids), max(width, 1)), vocab, dtype=torch.int64)
    for i, r in enumerate(ids):
        padded[i, : len(r)] = torch.as_tensor(r, dtype=torch.int64)
    counts = torch.zeros(len(ids), vocab + 1, dtype=torch.float32)
    counts.scatter_add_(1, padded, torch.ones_like(padded, dtype=torch.float32))
    return counts[:, :vocab].to(device)


def _fill(logits: torch.Tensor, pairs: list[tuple[int, int]], value: float | list[float], accumulate: bool) -> None:
    if not pairs:
        return
    rows = torch.tensor([r for r, _ in pairs], device=logits.device)
    cols = torch.tensor([c for _, c in pairs], device=logits.device)
    values = torch.as_tensor(value, dtype=logits.dtype, device=logits.device).expand(len(pairs))
    logits.index_put_((rows, cols), values, accumulate=accumulate)


def sample(logits: torch.Tensor, rows: Sequence[SampleRow], default_generator: torch.Generator,
           eos_token_ids: Sequence[int] = (), bitmask: torch.Tensor | None = None,
           masked_rows: Sequence[int] = ()) -> Sampled:
    """Choose one token per row.

    Args:
        logits: [M, vocab] float32, one row per sequence.
        rows: per row.
        default_generator: host generator for unseeded rows.
        eos_token_ids: the model's EOS ids (masked with ``stop_token_ids`` under ``min_tokens``).
        bitmask: [M, ceil(vocab / 32)] int32 grammar masks (xgrammar's layout), or None.
        masked_rows: the rows ``bitmask`` applies to.
    """
    num_rows, vocab = logits.shape
    params = [r.params for r in rows]
    x = process_logits(logits, rows, eos_token_ids, bitmask, masked_rows)
    chosen = x.argmax(dim=-1)
    drawn = [i for i, p in enumerate(params) if not p.greedy]
    if drawn:
        chosen[drawn] = _draw(x[drawn], [rows[i] for i in drawn], default_generator)
    chosen_cpu = chosen.tolist()
    top: list[dict[int, float] | None] = [None] * num_rows
    max_top = max((p.top_logprobs for p in params), default=0)
    if max_top:
        logprobs_all = torch.log_softmax(logits, dim=-1)
        values, ids = logprobs_all.topk(min(max_top, vocab), dim=-1)
        values, ids = values.tolist(), ids.tolist()
        for i, p in enumerate(params):
            if p.top_logprobs:
                top[i] = dict(zip(ids[i][: p.top_logprobs], values[i][: p.top_logprobs]))
        chosen_logprobs = logprobs_all.gather(1, chosen[:, None])[:, 0].tolist()
    else:  # the chosen logprob alone: one read of each row, no [M, vocab] output
        chosen_logprobs = (logits.gather(1, chosen[:, None])[:, 0] - torch.logsumexp(logits, dim=-1)).tolist()
    return Sampled(chosen_cpu, chosen_logprobs, top)


def process_logits(logits: torch.Tensor, rows: Sequence[SampleRow], eos_token_ids: Sequence[int] = (),
                   bitmask: torch.Tensor | None = None, masked_rows: Sequence[int] = ()) -> torch.Tensor:
    """Grammar mask, logit bias, min_tokens and penalties on every row (a new tensor; ``logits``
    itself when no row has any).

    Args:
        logits: [M, vocab] float32.
        rows, eos_token_ids, bitmask, masked_rows: as for :func:`sample`.

    Returns:
        [M, vocab] float32: the logits greedy rows take the argmax of.
    """
    params = [r.params for r in rows]
    min_token_rows = [i for i, r in enumerate(rows) if len(r.output_ids) < r.params.min_tokens]
    if not (masked_rows or min_token_rows or any(p.logit_bias or p.has_penalties for p in params)):
        return logits  # nothing to apply: no copy
    x = logits.clone()
    if bitmask is not None and masked_rows:
        import xgrammar

        xgrammar.apply_token_bitmask_inplace(x, bitmask.to(x.device), vocab_size=x.shape[-1],
                                             indices=list(masked_rows))
    _fill(x, [(i, t) for i, p in enumerate(params) for t, _ in p.logit_bias],
          [b for p in params for _, b in p.logit_bias], accumulate=True)
    _fill(x, [(i, t) for i in min_token_rows
              for t in {*rows[i].params.stop_token_ids, *(() if rows[i].params.ignore_eos else eos_token_ids)}],
          float("-inf"), accumulate=False)
    penalized = [i for i, p in enumerate(params) if p.has_penalties]
    if penalized:
        sub = [rows[i] for i in penalized]
        idx = torch.tensor(penalized, device=x.device)
        x[idx] = apply_penalties(
            x[idx], [r.prompt_ids for r in sub], [r.output_ids for r in sub],
            *(torch.tensor([getattr(r.params, f) for r in sub], device=x.device)
              for f in ("presence_penalty", "frequency_penalty", "repetition_penalty")))
    return x


def sampling_logits(logits: torch.Tensor, params: Sequence[SamplingParams]) -> torch.Tensor:
    """Temperature, then top-k, top-p and min-p, for rows that draw (temperature > 0).

    Args:
        logits: [D, vocab] float32, processed (:func:`process_logits`).
    """
    temps = torch.tensor([p.temperature for p in params], dtype=torch.float32, device=logits.device)
    return filter_logits(
        logits / temps[:, None],
        torch.tensor([p.top_k for p in params], dtype=torch.int64),
        torch.tensor([p.top_p for p in params], dtype=torch.float32),
        torch.tensor([p.min_p for p in params], dtype=torch.float32))


def _draw(logits: torch.Tensor, rows: Sequence[SampleRow], default_generator: torch.Generator) -> torch.Tensor:
    """Random draws for rows of [D, vocab] processed logits (their temperatures > 0)."""
    probs = sampling_logits(logits, [r.params for r in rows]).softmax(-1)
    noise = torch.empty(probs.shape, dtype=torch.float32).exponential_(generator=default_generator)
    for i, r in enumerate(rows):
        if r.generator is not None:
            noise[i].exponential_(generator=r.generator)
    return (probs / noise.to(probs.device)).argmax(dim=-1)
