"""The one writer of every :class:`~engine.outputs.RequestStats` field.

The scheduler, the chunk lifecycle and the engine report what happened; only these functions
turn it into counts, so each count has one definition:

    created           prompt_tokens
    chunks_found      chunk_hit_tokens (+ by tier), compiled_tokens   first lookup only
    admitted          prefix_hit_tokens, recomputed_tokens            first admission only
    preempted         num_preemptions
    blend_dropped     recomputed_tokens -= CacheBlend rows kept linked after layer 1
    first_token       ttft_s
    shares_prompt     a sequence of an n > 1 request took sequence 0's prompt KV
    emitted           completion_tokens
"""

from __future__ import annotations

from collections.abc import Sequence

from engine.outputs import RequestStats

COMPILED = None  # the tier of a chunk no tier held: this request compiles it


def created(prompt_tokens: int) -> RequestStats:
    return RequestStats(prompt_tokens=prompt_tokens)


def chunks_found(stats: RequestStats, finds: Sequence[tuple[str | None, int]]) -> None:
    """``finds``: (tier the chunk was found in, or COMPILED; its tokens) per chunk. Counted
    on the first lookup only (a preempted request looks its chunks up again)."""
    if stats.num_preemptions:
        return
    for tier, tokens in finds:
        if tier is COMPILED:
            stats.compiled_tokens += tokens
        else:
            stats.chunk_hit_tokens += tokens
            stats.chunk_hits_by_tier[tier] = stats.chunk_hits_by_tier.get(tier, 0) + tokens


def admitted(stats: RequestStats, prefix_hit_tokens: int, computed_tokens: int) -> None:
    """The prompt's plan at its first admission (a readmission recomputes, uncounted)."""
    if stats.num_preemptions:
        return
    stats.prefix_hit_tokens = prefix_hit_tokens
    stats.recomputed_tokens = computed_tokens


def preempted(stats: RequestStats) -> None:
    stats.num_preemptions += 1


def blend_dropped(stats: RequestStats, rows: int) -> None:
    stats.recomputed_tokens -= rows


def first_token(stats: RequestStats, ttft_s: float) -> None:
    if stats.ttft_s is None:
        stats.ttft_s = ttft_s


def shares_prompt(stats: RequestStats) -> None:
    stats.shared_prompt = True


def emitted(stats: RequestStats, completion_tokens: int) -> None:
    stats.completion_tokens = completion_tokens
