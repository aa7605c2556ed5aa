"""APE-style tempering of attention logits, for the torch backend (:class:`Tempering`).

For a query row at a position >= ``query_from`` and a KV slot inside ``runs``:

    logit = (q . k) * scale / temperature + log(context_scale)

every other visible pair keeps ``(q . k) * scale``; invisible pairs get -inf. Slot j of a
group's gathered KV is the sequence's position j (pages are in position order).
"""

from __future__ import annotations

import math

import torch

from engine.attention.base import Tempering


def tempering_terms(visible: torch.Tensor, row_positions: torch.Tensor,
                    temperings: list[Tempering | None]) -> tuple[torch.Tensor, torch.Tensor]:
    """Multiplier and additive bias of every (row, slot) logit.

    Args:
        visible: [B, R, L] bool, which slots each row sees.
        row_positions: [B, R] int64, each row's absolute position.
        temperings: [B], the tempering of each of the B sequences (None: plain attention).

    Returns:
        factor, bias: [B, R, L] float32; bias is -inf where ``visible`` is False.
    """
    factor = torch.ones(visible.shape, dtype=torch.float32)
    bias = torch.zeros(visible.shape, dtype=torch.float32).masked_fill(~visible, float("-inf"))
    for b, t in enumerate(temperings):
        if t is None:
            continue
        context = torch.zeros(visible.shape[2], dtype=torch.bool)  # [L]
        for s, e in t.runs:
            context[s:e] = True
        pair = (row_positions[b] >= t.query_from)[:, None] & context[None, :] & visible[b]  # [R, L]
        factor[b][pair] = 1.0 / t.temperature
        bias[b][pair] += math.log(t.scale)
    return factor, bias


def tempered_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, factor: torch.Tensor,
                       bias: torch.Tensor, scale: float) -> torch.Tensor:
    """Softmax attention with per-pair logit terms.

    Args:
        q: [B, Hq, R, D]; k, v: [B, Hkv, L, D]; factor, bias: [B, R, L].

    Returns:
        [B, Hq, R, D]
    """
    group = q.shape[1] // k.shape[1]
    k, v = k.repeat_interleave(group, dim=1), v.repeat_interleave(group, dim=1)
    logits = (q @ k.transpose(-1, -2)) * scale  # [B, Hq, R, L]
    probs = (logits * factor[:, None].to(q.dtype) + bias[:, None].to(q.dtype)).softmax(dim=-1)
    return probs @ v
