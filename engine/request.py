"""The engine's per-sequence state: user requests and chunk compile jobs."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

import torch

from engine.outputs import FinishReason, RequestStats
from engine.recompute import PromptPlan, Run
from engine.sampling_params import SamplingParams
from engine.segments import LinkPolicy, Segment
from kvstore.keys import ChunkKey


class RequestStatus(enum.Enum):
    WAITING = "waiting"  # queued (also after preemption); holds no KV blocks
    RUNNING = "running"  # holds its blocks; prefilling/recomputing or decoding
    FINISHED = "finished"


@dataclass(slots=True, eq=False)
class Request:
    """One generation request. Owned by the scheduler; the engine only appends outputs."""

    request_id: str
    segments: list[Segment]
    prompt_ids: list[int]
    sampling: SamplingParams
    policy: LinkPolicy
    arrival_s: float
    chunk_keys: list[ChunkKey]  # one per chunk segment, in prompt order
    generator: torch.Generator | None = None
    output_ids: list[int] = field(default_factory=list)
    logprobs: list[float] = field(default_factory=list)
    top_logprobs: list[dict[int, float]] = field(default_factory=list)
    status: RequestStatus = RequestStatus.WAITING
    block_ids: list[int] = field(default_factory=list)
    plan: PromptPlan | None = None
    pending: list[Run] = field(default_factory=list)  # prompt runs still to compute
    chunks_resolved: bool = False  # chunk sources looked up (and pinned / compile jobs joined)
    pinned: list[ChunkKey] = field(default_factory=list)  # chunk-pool pins held until linked
    finish_reason: FinishReason | None = None
    stop_reason: str | int | None = None  # the stop string or stop token id that ended it
    stats: RequestStats = field(default_factory=RequestStats)
    group_id: str = ""  # the request the client sent; "" means request_id (sequence 0)
    index: int = 0  # this sequence's place among the request's n
    forked: bool = False  # sequences 1..n-1 exist (they share this one's prompt KV)
    cache_salt: str | None = None  # isolates the prefix cache between salts
    grammar: object | None = None  # xgrammar CompiledGrammar of a structured-output request
    matcher: object | None = None  # this sequence's GrammarMatcher

    def __post_init__(self) -> None:
        if not self.group_id:
            self.group_id = self.request_id

    @property
    def num_tokens(self) -> int:
        return len(self.prompt_ids) + len(self.output_ids)

    def token_at(self, pos: int) -> int:
        n = len(self.prompt_ids)
        return self.prompt_ids[pos] if pos < n else self.output_ids[pos - n]

    def effective_segments(self) -> list[Segment]:
        """The prompt to materialise: after a preemption, generated tokens become plain text."""
        if not self.output_ids:
            return self.segments
        return [*self.segments, Segment.text(self.output_ids)]

    @property
    def in_prefill(self) -> bool:
        return bool(self.pending)


@dataclass(slots=True, eq=False)
class CompileJob:
    """Prefill of one chunk alone, behind BOS, capturing every layer's NoPE K and V.

    Rows ``[0, num_skip)`` (the BOS) are computed but not captured.
    """

    key: ChunkKey
    token_ids: list[int]  # [BOS] + chunk ids
    num_skip: int
    pending: list[Run]
    block_ids: list[int] = field(default_factory=list)
    parts: list[torch.Tensor] = field(default_factory=list)  # [num_layers, 2, n, Hkv, D] pieces

    @property
    def num_tokens(self) -> int:
        return len(self.token_ids)

    @property
    def num_chunk_tokens(self) -> int:
        return len(self.token_ids) - self.num_skip

    def token_at(self, pos: int) -> int:
        return self.token_ids[pos]
