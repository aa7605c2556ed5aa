"""What the engine returns: per-request outputs and cache statistics."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

FinishReason = Literal["stop", "length", "abort"]


@dataclass(slots=True)
class RequestStats:
    """Per-request cache and latency statistics (written by engine.request_stats only; ARCHITECTURE.md §4).

    ``prompt_tokens`` = prefix_hit_tokens + chunk tokens linked from cache (chunk_hit_tokens)
    + tokens computed from scratch; ``recomputed_tokens`` counts every prompt position that ran
    through the model in this request (ordinary prefill included), ``compiled_tokens`` the chunk
    tokens this request had to compile because no tier held them.
    """

    prompt_tokens: int = 0
    prefix_hit_tokens: int = 0
    chunk_hit_tokens: int = 0
    chunk_hits_by_tier: dict[str, int] = field(default_factory=dict)
    compiled_tokens: int = 0
    recomputed_tokens: int = 0
    completion_tokens: int = 0
    ttft_s: float | None = None
    num_preemptions: int = 0
    shared_prompt: bool = False  # a sequence of an n > 1 request that reused sequence 0's prompt KV

    @property
    def cached_tokens(self) -> int:
        """All reused prompt tokens (OpenAI's ``prompt_tokens_details.cached_tokens``)."""
        return self.prefix_hit_tokens + self.chunk_hit_tokens


@dataclass(slots=True)
class RequestOutput:
    """One request's state after a step: cumulative tokens/text plus this step's delta.

    ``text`` is empty when the engine runs without a tokenizer.
    """

    request_id: str
    token_ids: list[int]
    text: str
    new_token_ids: list[int]
    new_text: str
    finished: bool
    finish_reason: FinishReason | None
    stats: RequestStats
    logprobs: list[float] | None = None
    top_logprobs: list[dict[int, float]] | None = None  # token id -> logprob, per output token
    index: int = 0  # which of the request's n sequences
    cumulative_logprob: float = 0.0  # sum of the chosen tokens' logprobs (best_of ranks by it)
    stop_reason: str | int | None = None  # the stop string or stop_token_ids entry that ended it
    prompt_logprobs: list | None = None  # engine.prompt_logprobs.PromptLogprob | None per prompt position
