"""What the ingress and the engine replicas say to each other through Serve handles.

    ingress ── generate(EngineRequest) ──> replica          (a streaming handle call)
            <── Accepted | Rejected, then StreamDelta ... (the last has finished=True) | Failed

    ingress ── compile(CompileRequest) ──> replica ──> CompileResult

The first positional argument of every call carries ``routing_hint`` (read by the cache-aware
router) and ``prompt`` (read by Ray's text-prefix router, a benchmark baseline). Only small
records cross the boundary: deltas, never the cumulative token list of every step.
"""

from __future__ import annotations

from dataclasses import dataclass

from engine.outputs import FinishReason, RequestStats
from engine.sampling_params import SamplingParams
from engine.segments import LinkPolicy, Segment
from router.hint import RoutingHint


@dataclass(frozen=True, slots=True)
class EngineRequest:
    """One generation request, ready for the engine.

    Attributes:
        request_id: unique id (also the engine's request id).
        segments: the prompt: prefix, one chunk per KVSplit chunk, text.
        sampling: sampling parameters.
        link_policy: the request's link policy; None takes the engine's default.
        routing_hint: the request's reusable spans, for the router.
        prompt: the prompt as text, for text-prefix routers.
        cache_scope: the request's cache scope (:func:`kvstore.keys.cache_scope` of its tenant
            and ``cache_salt``): chunk keys and prefix-cache blocks apart from other scopes'.
    """

    request_id: str
    segments: tuple[Segment, ...]
    sampling: SamplingParams
    link_policy: LinkPolicy | None
    routing_hint: RoutingHint
    prompt: str
    cache_scope: str | None = None


@dataclass(frozen=True, slots=True)
class CompileRequest:
    """Compile chunks into the store (the documents API)."""

    chunk_token_ids: tuple[tuple[int, ...], ...]
    routing_hint: RoutingHint
    prompt: str
    cache_scope: str | None = None  # the tenant's (documents are registered per tenant)


@dataclass(frozen=True, slots=True)
class CompileResult:
    replica_id: str
    persisted: bool  # the persistent tier's background writes finished in time


@dataclass(frozen=True, slots=True)
class Accepted:
    """The replica validated the request and queued it."""

    replica_id: str
    kv_usage: float = 0.0  # fraction of the replica's KV pages in use at acceptance


@dataclass(frozen=True, slots=True)
class ModelInfo:
    """What the ingress needs of the served model that only the engine knows."""

    max_model_len: int
    vocab_size: int
    kv_capacity_tokens: int  # tokens one replica's KV pool holds (prompt + max_tokens must fit)


@dataclass(frozen=True, slots=True)
class Rejected:
    """The engine refused the request (bad prompt or parameters): a 400 for the client."""

    message: str


@dataclass(frozen=True, slots=True)
class Failed:
    """The engine failed while running the request (a 500; the replica goes on)."""

    message: str


@dataclass(frozen=True, slots=True)
class StreamDelta:
    """New tokens of one of a request's sequences (``index``) since its last delta.

    ``stats``, ``finish_reason`` and ``cumulative_logprob`` are set on a sequence's last delta
    only; the logprobs fields when the request asked for logprobs; ``prompt_logprobs`` on a
    sequence's first delta, when the request asked for them.
    """

    new_token_ids: tuple[int, ...]
    new_text: str
    finished: bool
    finish_reason: FinishReason | None = None
    stats: RequestStats | None = None
    index: int = 0
    new_logprobs: tuple[float, ...] | None = None
    new_top_logprobs: tuple[dict[int, float], ...] | None = None
    cumulative_logprob: float | None = None
    stop_reason: str | int | None = None
    prompt_logprobs: tuple | None = None  # engine.prompt_logprobs.PromptLogprob | None per prompt position
