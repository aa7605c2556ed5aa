"""Query-aware selection: recompute the chunks the question attends to most.

Before the step's forward, a cheap pass runs only the rows that are surely recomputed (the
question, the text around the chunks, ``tail`` positions) through the first ``SCORE_LAYERS``
fraction of the layers, over the linked KV of the chunks. At each of those layers the question
rows' attention probabilities are summed over heads and rows; their mean over the layers
scores each candidate position; a chunk's score is the mean of its candidates'. Whole chunks,
best first, are kept up to ``ratio`` of the step's candidates, the rest keep their linked KV
(ranking single tokens instead lost answers on SmolLM2: README, "Link policy accuracy"):

    prompt      [ prefix ][ chunk A      ][ chunk B      ][ question ]
    pass 1                  linked KV       linked KV      computed, layers 0..M-1: scores
    forward     prefix ..   kept A rows     kept B rows    question (every layer)

The question is the text after the last chunk. When a prompt is split over several steps (it
does not fit what is left of a step's token budget), each step's pass runs every sure row from
that step's first position to the end of the prompt, the question included, and the step keeps
the top ``ratio`` of its own candidates. The pass writes those rows' KV at layers 0..M-1; the
forward (of this step or a later one) recomputes the same rows through every layer before any
row after them reads it, so the pass leaves no trace.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from engine.attention.base import AttentionBackend
from engine.model import ForwardContext, Model
from engine.recompute import ChunkSpan
from engine.rope import apply_rope, rope_cos_sin
from engine.step_batch import StepBatch, build_step_batch, runs_of, slots_of

SCORE_LAYERS = 0.5  # the pass runs the first half of the layers


def select_positions(scores: Sequence[float], positions: Sequence[int], spans: Sequence[ChunkSpan],
                     ratio: float) -> set[int]:
    """The candidate positions to keep: ``ceil(ratio * len(positions))`` of them, by chunk.

    Args:
        scores: one per candidate position.
        positions: the candidate positions (ascending).
        spans: the prompt's chunks (each candidate lies in one).
        ratio: fraction of the candidates kept: chunks by the mean score of their candidates,
            best first (ties: the later chunk), each taken whole, the last one from its end
            when only part of it fits.
    """
    budget = math.ceil(ratio * len(positions) - 1e-9)
    members: dict[int, list[int]] = {}
    for j, p in enumerate(positions):
        (c,) = [c.index for c in spans if c.start <= p < c.end]
        members.setdefault(c, []).append(j)
    ranked = sorted(members, key=lambda c: (-sum(scores[j] for j in members[c]) / len(members[c]), -c))
    keep: set[int] = set()
    for c in ranked:
        take = [positions[j] for j in members[c]][-budget:] if budget > 0 else []
        keep.update(take)
        budget -= len(take)
    return keep


def question_attention(model: Model, batch: StepBatch, ctx: ForwardContext, question_start: list[int],
                       num_layers: int) -> list[torch.Tensor]:
    """Run ``batch`` through the first ``num_layers`` layers; per sequence, the attention of
    its rows at positions >= ``question_start[i]`` over every position up to its last row.

    Returns:
        per sequence i: [last position of seq i + 1] float32, the mean over layers of the
        probabilities summed over heads and question rows.
    """
    attn0 = model.layers[0].self_attn
    group = attn0.num_heads // attn0.num_kv_heads
    scale = attn0.head_dim**-0.5
    bs = ctx.kv_caches.shape[3]
    qrows, seen, pages = [], [], []
    for i, seq in enumerate(batch.seqs):
        positions = batch.positions_of(i)
        rows = [r for r, p in zip(batch.rows_of(i), positions) if p >= question_start[i]]
        qrows.append(torch.tensor(rows, dtype=torch.int64, device=ctx.slot_mapping.device))
        end = positions[-1] + 1
        slots = slots_of(seq.block_ids, torch.arange(end), bs).to(qrows[-1].device)
        pages.append((slots // bs, slots % bs))
        pos = torch.tensor([positions[r - batch.row_offsets[i]] for r in rows], device=qrows[-1].device)
        seen.append(torch.arange(end, device=pos.device)[None, :] <= pos[:, None])  # [Rq, end] causal
    totals = [torch.zeros(len(s[0]), dtype=torch.float32, device=s[0].device) for s in pages]
    h = model.embed(batch.token_ids)  # [N, hidden]
    for layer in model.layers[:num_layers]:
        attn = layer.self_attn
        x = layer.input_layernorm(h)
        q = attn.q_proj(x).view(-1, attn.num_heads, attn.head_dim)  # [N, Hq, D]
        if attn.qk_norm:
            q = attn.q_norm(q)
        q = apply_rope(q, ctx.cos, ctx.sin)
        h = layer(h, ctx)  # writes these rows' fresh K/V; the chunks keep their linked K/V
        cache = ctx.kv_caches[attn.layer_idx]
        for i, (blocks, offsets) in enumerate(pages):
            k = cache[blocks, 0, offsets].float().repeat_interleave(group, dim=1)  # [P, Hq, D]
            logits = torch.einsum("rhd,phd->hrp", q[qrows[i]].float(), k) * scale  # [Hq, Rq, P]
            probs = logits.masked_fill(~seen[i][None], float("-inf")).softmax(dim=-1)
            totals[i] += probs.sum(dim=(0, 1)) / num_layers
    return totals


def select_rows(model: Model, attention: AttentionBackend, kv_caches: torch.Tensor, inv_freq: torch.Tensor,
                batch: StepBatch, works: list, querying: list[int]) -> tuple[list[list[int]], dict[str, int]]:
    """Per work, the rows of ``batch`` to compute: every row, but of each querying work only
    its non-candidate rows and the candidates :func:`select_positions` keeps.

    Args:
        kv_caches: [num_layers, num_blocks, 2, block_size, num_kv_heads, head_dim], chunks linked.
        inv_freq: [head_dim // 2] float32 RoPE inverse frequencies.
        works: the step's scheduled works (``ScheduledWork``), one per sequence of ``batch``.
        querying: indices of the works under the ``query`` policy with candidates in this step.

    Returns:
        (kept rows per work, request_id -> candidate rows dropped).
    """
    keep = [list(batch.rows_of(i)) for i in range(len(works))]

    def is_candidate(i: int, p: int) -> bool:
        return any(s <= p < e for s, e in works[i].seq.plan.blend_candidates)

    # This step's rows and those of the prompt's later steps (the scheduler's remaining runs).
    rest = [[*batch.positions_of(i), *(p for s, e in works[i].seq.pending for p in range(s, e))] for i in querying]
    sure = [runs_of([p for p in positions if not is_candidate(i, p)]) for i, positions in zip(querying, rest)]
    sub = build_step_batch([works[i].seq for i in querying], sure, batch.meta.block_size, kv_caches.device)
    attention.plan(sub.meta)
    cos, sin = rope_cos_sin(sub.meta.positions, inv_freq)
    ctx = ForwardContext(cos, sin, sub.meta.slot_mapping, attention, kv_caches)
    starts = [works[i].seq.plan.linked[-1].end for i in querying]
    num_layers = max(1, round(SCORE_LAYERS * len(model.layers)))
    totals = question_attention(model, sub, ctx, starts, num_layers)
    dropped: dict[str, int] = {}
    for i, total in zip(querying, totals):
        rows = [(r, p) for r, p in zip(batch.rows_of(i), batch.positions_of(i)) if is_candidate(i, p)]
        positions = [p for _, p in rows]
        kept = select_positions(total[positions].tolist(), positions, works[i].seq.plan.linked,
                                works[i].seq.policy.ratio)
        drop = {r for r, p in rows if p not in kept}
        keep[i] = [r for r in keep[i] if r not in drop]
        dropped[works[i].seq.request_id] = len(drop)
    return keep, dropped
