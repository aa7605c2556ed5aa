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
    """

    request_id: str
    segments: tuple[Segment, ...]
    sampling: SamplingParams
    link_policy: LinkPolicy | None
    routing_hint: RoutingHint
    prompt: str


@dataclass(frozen=True, slots=True)
class CompileRequest:
    """Compile chunks into the store (the documents API)."""

    chunk_token_ids: tuple[tuple[int, ...], ...]
    routing_hint: RoutingHint
    prompt: str


@dataclass(frozen=True, slots=True)
class CompileResult:
    chunk_keys: tuple[str, ...]
    replica_id: str
    persisted: bool  # the persistent tier's background writes finished in time


@dataclass(frozen=True, slots=True)
class Accepted:
    """The replica validated the request and queued it."""

    replica_id: str


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
    """New tokens of one request since the last delta.

    ``stats`` and ``finish_reason`` are set on the last delta only.
    """

    new_token_ids: tuple[int, ...]
    new_text: str
    finished: bool
    finish_reason: FinishReason | None = None
    stats: RequestStats | None = None
