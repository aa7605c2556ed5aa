"""Response bodies of the HTTP API in OpenAI's shapes, and Server-Sent Events framing.

Usage carries OpenAI's fields plus our ``cache`` split of the prompt::

    "usage": {"prompt_tokens": 812, "completion_tokens": 16, "total_tokens": 828,
              "prompt_tokens_details": {"cached_tokens": 790},        # prefix + chunk hits
              "cache": {"prefix_hit_tokens": 14, "chunk_hit_tokens": 776,
                        "chunk_hits_by_tier": {"gpu": 512, "memory": 264},
                        "compiled_tokens": 0, "recomputed_tokens": 86}}
"""

from __future__ import annotations

import json
from typing import Any, Literal

from engine.outputs import RequestStats

Endpoint = Literal["completions", "chat"]

SSE_DONE = b"data: [DONE]\n\n"


def sse(obj: dict[str, Any]) -> bytes:
    """One SSE event carrying a JSON object."""
    return b"data: " + json.dumps(obj, separators=(",", ":")).encode() + b"\n\n"


def usage(stats: RequestStats) -> dict[str, Any]:
    return {
        "prompt_tokens": stats.prompt_tokens,
        "completion_tokens": stats.completion_tokens,
        "total_tokens": stats.prompt_tokens + stats.completion_tokens,
        "prompt_tokens_details": {"cached_tokens": stats.cached_tokens},
        "cache": {
            "prefix_hit_tokens": stats.prefix_hit_tokens,
            "chunk_hit_tokens": stats.chunk_hit_tokens,
            "chunk_hits_by_tier": dict(stats.chunk_hits_by_tier),
            "compiled_tokens": stats.compiled_tokens,
            "recomputed_tokens": stats.recomputed_tokens,
        },
    }


def _envelope(endpoint: Endpoint, request_id: str, created: int, model: str, chunk: bool) -> dict[str, Any]:
    if endpoint == "completions":
        kind = "text_completion"
    else:
        kind = "chat.completion.chunk" if chunk else "chat.completion"
    return {"id": request_id, "object": kind, "created": created, "model": model}


def final_body(endpoint: Endpoint, request_id: str, created: int, model: str, text: str,
               finish_reason: str | None, stats: RequestStats) -> dict[str, Any]:
    """The whole response of a non-streamed request."""
    if endpoint == "completions":
        choice = {"index": 0, "text": text, "logprobs": None, "finish_reason": finish_reason}
    else:
        choice = {"index": 0, "message": {"role": "assistant", "content": text}, "logprobs": None,
                  "finish_reason": finish_reason}
    return {**_envelope(endpoint, request_id, created, model, False), "choices": [choice], "usage": usage(stats)}


def chunk_body(endpoint: Endpoint, request_id: str, created: int, model: str, text: str | None,
               finish_reason: str | None, include_usage: bool, role: bool = False) -> dict[str, Any]:
    """One streamed event with a text delta (``role``: the chat stream's opening event)."""
    if endpoint == "completions":
        choice = {"index": 0, "text": text or "", "logprobs": None, "finish_reason": finish_reason}
    else:
        delta: dict[str, str] = {"role": "assistant", "content": ""} if role else {}
        if text:
            delta["content"] = text
        choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}
    body = {**_envelope(endpoint, request_id, created, model, True), "choices": [choice]}
    if include_usage:
        body["usage"] = None  # OpenAI: null on every event but the last
    return body


def usage_chunk(endpoint: Endpoint, request_id: str, created: int, model: str, stats: RequestStats) -> dict[str, Any]:
    """The extra last event of ``stream_options.include_usage``: no choices, the usage."""
    return {**_envelope(endpoint, request_id, created, model, True), "choices": [], "usage": usage(stats)}
