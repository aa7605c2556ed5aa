"""How many tokens a generation request may produce: its own ``max_tokens`` or the endpoint's
default, checked against the context (vLLM's and OpenAI's rules)."""

from __future__ import annotations

from deployments.http.errors import context_length_exceeded
from deployments.protocol import ModelInfo

COMPLETIONS_DEFAULT_MAX_TOKENS = 16  # OpenAI's default for /v1/completions


def resolve_max_tokens(endpoint: str, requested: int | None, prompt_tokens: int, info: ModelInfo,
                       chat_default_cap: int | None) -> int:
    """The request's max_tokens, or its default: 16 for completions, the rest of the context for
    chat (capped by ``chat_default_cap`` when set, and by what a replica's KV pool holds, since
    the engine reserves prompt + max_tokens).

    Raises:
        APIError: 400 ``context_length_exceeded`` when prompt + max_tokens exceeds the context.
    """
    param = "messages" if endpoint == "chat" else "prompt"
    remaining = info.max_model_len - prompt_tokens
    if requested is None:
        cap = COMPLETIONS_DEFAULT_MAX_TOKENS if endpoint == "completions" else chat_default_cap
        requested = min(remaining, info.kv_capacity_tokens - prompt_tokens, cap or remaining)
        if requested < 1:
            raise context_length_exceeded(info.max_model_len, prompt_tokens, 1, param)
    if requested > remaining:
        raise context_length_exceeded(info.max_model_len, prompt_tokens, requested, param)
    return requested

