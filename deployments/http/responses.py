"""Response bodies of the HTTP API in OpenAI's shapes, and Server-Sent Events framing.

Usage carries OpenAI's fields plus our ``cache`` split of the prompt (summed over the prompts of
a batch; a prompt shared by ``n`` sequences counts once, its completions ``n`` times)::

    "usage": {"prompt_tokens": 812, "completion_tokens": 16, "total_tokens": 828,
              "prompt_tokens_details": {"cached_tokens": 790},        # prefix + chunk hits
              "cache": {"prefix_hit_tokens": 14, "chunk_hit_tokens": 776,
                        "chunk_hits_by_tier": {"gpu": 512, "memory": 264},
                        "compiled_tokens": 0, "recomputed_tokens": 86}}

Logprobs: chat ``{"content": [{"token", "logprob", "bytes", "top_logprobs": [...]}]}``;
completions ``{"tokens", "token_logprobs", "top_logprobs": [{token: logprob}], "text_offset"}``.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from documents.registry import DocumentRecord
from engine.outputs import RequestStats

Endpoint = Literal["completions", "chat"]

SSE_DONE = b"data: [DONE]\n\n"


def sse(obj: dict[str, Any]) -> bytes:
    """One SSE event carrying a JSON object."""
    return b"data: " + json.dumps(obj, separators=(",", ":")).encode() + b"\n\n"


@dataclass(frozen=True, slots=True)
class TokenLogprob:
    """One token as the client sees it: its text, logprob and the top alternatives (a prompt's
    first token has neither: None)."""

    token: str
    logprob: float | None
    top: tuple[tuple[str, float], ...] | None = None


def usage(prompt_stats: Sequence[RequestStats], completion_tokens: int) -> dict[str, Any]:
    prompt = sum(s.prompt_tokens for s in prompt_stats)
    tiers: Counter[str] = Counter()
    for s in prompt_stats:
        tiers.update(s.chunk_hits_by_tier)
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt + completion_tokens,
        "prompt_tokens_details": {"cached_tokens": sum(s.cached_tokens for s in prompt_stats)},
        "cache": {
            "prefix_hit_tokens": sum(s.prefix_hit_tokens for s in prompt_stats),
            "chunk_hit_tokens": sum(s.chunk_hit_tokens for s in prompt_stats),
            "chunk_hits_by_tier": dict(tiers),
            "compiled_tokens": sum(s.compiled_tokens for s in prompt_stats),
            "recomputed_tokens": sum(s.recomputed_tokens for s in prompt_stats),
        },
    }


def running_usage(prompt_tokens: int, completion_tokens: int) -> dict[str, int]:
    """``stream_options.continuous_usage_stats``: the counts so far, on every event."""
    return {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens}


def chat_logprobs(tokens: Sequence[TokenLogprob]) -> dict[str, Any]:
    def entry(token: str, logprob: float) -> dict[str, Any]:
        return {"token": token, "logprob": logprob, "bytes": list(token.encode("utf-8"))}

    return {"content": [{**entry(t.token, t.logprob), "top_logprobs": [entry(s, lp) for s, lp in t.top or ()]}
                        for t in tokens], "refusal": None}


def completion_logprobs(tokens: Sequence[TokenLogprob], text_offset: int,
                        prompt: Sequence[TokenLogprob] = ()) -> dict[str, Any]:
    """``text_offset``: where the first token's text starts in the choice's text; ``prompt``:
    the echoed prompt's tokens, ahead of them (their offsets count from 0)."""
    offsets = list(_offsets(prompt, 0))
    tokens = [*prompt, *tokens]
    offsets += _offsets(tokens[len(prompt):], text_offset)
    return {"tokens": [t.token for t in tokens], "token_logprobs": [t.logprob for t in tokens],
            "top_logprobs": [_by_text(t.top) if t.top is not None else None for t in tokens], "text_offset": offsets}


def _offsets(tokens: Sequence[TokenLogprob], text_offset: int) -> list[int]:
    offsets = []
    for t in tokens:
        offsets.append(text_offset)
        text_offset += len(t.token)
    return offsets


def _by_text(top: Sequence[tuple[str, float]]) -> dict[str, float]:
    """Alternatives keyed by text; of tokens that share a text, the most likely one stays."""
    out: dict[str, float] = {}
    for text, logprob in top:
        out.setdefault(text, logprob)
    return out


def logprobs_body(endpoint: Endpoint, tokens: Sequence[TokenLogprob] | None, text_offset: int = 0,
                  prompt: Sequence[TokenLogprob] = ()) -> Any:
    if tokens is None:
        return None
    return chat_logprobs(tokens) if endpoint == "chat" else completion_logprobs(tokens, text_offset, prompt)


def _envelope(endpoint: Endpoint, request_id: str, created: int, model: str, chunk: bool) -> dict[str, Any]:
    if endpoint == "completions":
        kind = "text_completion"
    else:
        kind = "chat.completion.chunk" if chunk else "chat.completion"
    return {"id": request_id, "object": kind, "created": created, "model": model}


@dataclass(frozen=True, slots=True)
class Choice:
    index: int
    text: str
    finish_reason: str | None
    logprobs: Any = None  # the endpoint's logprobs body, or None
    stop_reason: str | int | None = None  # vLLM's: the stop string or token id that ended it
    prompt_logprobs: list | None = None  # vLLM's prompt_logprobs field, when asked for


def final_body(endpoint: Endpoint, request_id: str, created: int, model: str, choices: Sequence[Choice],
               usage_body: dict[str, Any], role: str = "assistant") -> dict[str, Any]:
    """The whole response of a non-streamed request (vLLM's ``prompt_logprobs``, when asked for:
    per choice in completions, at the top level in chat, whose choices share one prompt)."""
    extra = {}
    if endpoint == "completions":
        out = [{"index": c.index, "text": c.text, "logprobs": c.logprobs, "finish_reason": c.finish_reason,
                "stop_reason": c.stop_reason} for c in choices]
        for c, o in zip(choices, out):
            if c.prompt_logprobs is not None:
                o["prompt_logprobs"] = c.prompt_logprobs
    else:
        out = [{"index": c.index, "message": {"role": role, "content": c.text}, "logprobs": c.logprobs,
                "finish_reason": c.finish_reason, "stop_reason": c.stop_reason} for c in choices]
        if choices and choices[0].prompt_logprobs is not None:
            extra["prompt_logprobs"] = choices[0].prompt_logprobs
    return {**_envelope(endpoint, request_id, created, model, False), "choices": out, "usage": usage_body, **extra}


def chunk_body(endpoint: Endpoint, request_id: str, created: int, model: str, choice: Choice,
               include_usage: bool, usage_now: dict[str, int] | None = None, role: str | None = None) -> dict[str, Any]:
    """One streamed event with a text delta (``role``: a chat choice's opening event)."""
    if endpoint == "completions":
        out = {"index": choice.index, "text": choice.text, "logprobs": choice.logprobs,
               "finish_reason": choice.finish_reason, "stop_reason": choice.stop_reason}
    else:
        delta: dict[str, str] = {"role": role, "content": ""} if role else {}
        if choice.text:
            delta["content"] = choice.text
        out = {"index": choice.index, "delta": delta, "logprobs": choice.logprobs,
               "finish_reason": choice.finish_reason, "stop_reason": choice.stop_reason}
    body = {**_envelope(endpoint, request_id, created, model, True), "choices": [out]}
    if usage_now is not None:
        body["usage"] = usage_now
    elif include_usage:
        body["usage"] = None  # OpenAI: null on every event but the last
    return body


def usage_chunk(endpoint: Endpoint, request_id: str, created: int, model: str,
                usage_body: dict[str, Any]) -> dict[str, Any]:
    """The extra last event of ``stream_options.include_usage``: no choices, the usage."""
    return {**_envelope(endpoint, request_id, created, model, True), "choices": [], "usage": usage_body}

def document_body(record: DocumentRecord) -> dict[str, Any]:
    """A registered document as the API returns it."""
    return {
        "id": record.doc_id,
        "object": "document",
        "created": int(record.created_at),
        "chunk_keys": list(record.chunk_keys),
        "chunk_token_counts": list(record.chunk_token_counts),
        "num_tokens": record.num_tokens,
    }
