"""Prompt logprobs: how likely the model finds each prompt token after the tokens before it
(vLLM's ``prompt_logprobs``; OpenAI's completions ``echo`` with ``logprobs``).

Row p's logits predict token p + 1, so a prompt of P tokens has P - 1 values and position 0
has none (null in the API)::

    prompt tokens   t0        t1           t2           t3        (P = 4)
    hidden rows     h0        h1           h2           h3 -> samples the first output token
    value at        -         lp(t1 | h0)  lp(t2 | h1)  lp(t3 | h2)

Every prompt position must run through the model: linked chunk positions and prefix-cache hits
have no hidden state. A request that asks for prompt logprobs is therefore served with the
``full`` link policy (no chunk or prefix reuse); see :func:`policy_for`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

from engine.request import Request
from engine.sampling_params import SamplingParams
from engine.segments import LinkPolicy

if TYPE_CHECKING:
    from engine.step_batch import StepBatch

FULL = LinkPolicy("full")
MAX_ROWS_PER_SLICE = 256  # bounds the [rows, vocab] float32 logits held at once


@dataclass(frozen=True, slots=True)
class PromptLogprob:
    """One prompt token's value.

    Attributes:
        logprob: the token's log-probability given the tokens before it.
        rank: its rank in that distribution (1 = the most likely token).
        top: the ``prompt_logprobs`` most likely tokens, id -> logprob, most likely first.
    """

    logprob: float
    rank: int
    top: dict[int, float]


@dataclass(slots=True)
class PromptRows:
    """The rows of one step's hidden states whose logits give prompt logprobs."""

    request: Request
    positions: list[int]  # prompt positions p (their logits predict prompt token p + 1)
    rows: list[int]  # their rows in the step's hidden states


@dataclass(slots=True)
class PromptValues:
    """Prompt logprobs computed in one step for one request: prompt position -> value."""

    request: Request
    values: dict[int, PromptLogprob]


def policy_for(sampling: SamplingParams, policy: LinkPolicy) -> LinkPolicy:
    """``full`` when the request needs prompt logprobs (every position computed), else ``policy``."""
    return FULL if sampling.prompt_logprobs is not None else policy


def select_rows(batch: StepBatch) -> list[PromptRows]:
    """The rows of a step batch that belong to prompt positions 0..P-2 of requests asking for
    prompt logprobs and not yet filled."""
    out = []
    for i, seq in enumerate(batch.seqs):
        if not isinstance(seq, Request) or seq.prompt_logprobs is None:
            continue
        last = len(seq.prompt_ids) - 1
        first = batch.row_offsets[i]
        picked = [(p, first + j) for j, p in enumerate(batch.positions_of(i))
                  if p < last and seq.prompt_logprobs[p + 1] is None]
        if picked:
            out.append(PromptRows(seq, [p for p, _ in picked], [r for _, r in picked]))
    return out


@torch.inference_mode()
def compute(compute_logits, h: torch.Tensor, selected: Sequence[PromptRows]) -> list[PromptValues]:
    """The selected rows' prompt logprobs, from the step's hidden states.

    Args:
        compute_logits: the model's final norm + LM head, [M, hidden] -> [M, vocab] float32.
        h: [num_rows, hidden], the last layer's output of the step.
        selected: from :func:`select_rows` on the same step batch.
    """
    out = []
    for sel in selected:
        values: dict[int, PromptLogprob] = {}
        req, k = sel.request, sel.request.sampling.prompt_logprobs
        for start in range(0, len(sel.rows), MAX_ROWS_PER_SLICE):
            rows = sel.rows[start : start + MAX_ROWS_PER_SLICE]
            positions = sel.positions[start : start + MAX_ROWS_PER_SLICE]
            logprobs = torch.log_softmax(compute_logits(h[rows]), dim=-1)  # [R, vocab]
            targets = torch.tensor([req.prompt_ids[p + 1] for p in positions], device=logprobs.device)
            chosen = logprobs.gather(1, targets[:, None])  # [R, 1]
            ranks = (logprobs > chosen).sum(dim=-1) + 1  # [R]
            if k:
                top_values, top_ids = logprobs.topk(k, dim=-1)  # [R, k]
                top_values, top_ids = top_values.tolist(), top_ids.tolist()
            for j, (p, lp, rank) in enumerate(zip(positions, chosen[:, 0].tolist(), ranks.tolist())):
                top = dict(zip(top_ids[j], top_values[j])) if k else {}
                values[p + 1] = PromptLogprob(lp, rank, top)
        out.append(PromptValues(req, values))
    return out


def record(results: Sequence[PromptValues]) -> None:
    """Store computed values in their requests (a value already there, e.g. computed before a
    preemption, is kept)."""
    for res in results:
        for pos, value in res.values.items():
            if res.request.prompt_logprobs[pos] is None:
                res.request.prompt_logprobs[pos] = value


def empty_prompt_logprobs(sampling: SamplingParams, num_prompt_tokens: int) -> list[PromptLogprob | None] | None:
    """A request's slots for its prompt logprobs (None when it asks for none)."""
    return None if sampling.prompt_logprobs is None else [None] * num_prompt_tokens
