"""A prompt's logprobs as the client sees them, in both shapes the API gives them.

- vLLM's ``prompt_logprobs`` field (per completions choice; top level of a chat response): one
  entry per prompt token, the first null; each maps token ids to ``{"logprob", "rank",
  "decoded_token"}``, the prompt token's own entry first, then the most likely tokens::

      [null, {"1587": {"logprob": -3.2, "rank": 4, "decoded_token": " the"},
              "262": {"logprob": -1.1, "rank": 1, "decoded_token": " a"}}, ...]

- completions ``echo`` with ``logprobs``: the prompt's tokens lead ``tokens`` /
  ``token_logprobs`` / ``top_logprobs``, the first with null logprob and alternatives.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

from deployments.http.responses import TokenLogprob
from engine.prompt_logprobs import PromptLogprob

Decode = Callable[[list[int]], Awaitable[list[str]]]  # token ids -> each token's text


@dataclass(frozen=True, slots=True)
class PromptLogprobs:
    tokens: tuple[TokenLogprob, ...]  # one per prompt token, for echo
    by_id: list[dict[str, dict[str, Any]] | None]  # vLLM's prompt_logprobs field


async def prompt_logprobs(prompt_ids: Sequence[int], values: Sequence[PromptLogprob | None],
                          decode: Decode) -> PromptLogprobs:
    """``values`` (the engine's, one per prompt position) with every token's text."""
    assert len(values) == len(prompt_ids), f"{len(values)} prompt logprobs for {len(prompt_ids)} prompt tokens"
    ids = list(prompt_ids) + [t for v in values if v is not None for t in v.top]
    texts = iter(await decode(ids))
    token_texts = [next(texts) for _ in prompt_ids]
    tokens, by_id = [], []
    for token_id, text, value in zip(prompt_ids, token_texts, values):
        if value is None:
            tokens.append(TokenLogprob(text, None, None))
            by_id.append(None)
            continue
        top = tuple((next(texts), lp) for lp in value.top.values())
        tokens.append(TokenLogprob(text, value.logprob, top))
        entry = {str(token_id): {"logprob": value.logprob, "rank": value.rank, "decoded_token": text}}
        for rank, (top_id, (top_text, lp)) in enumerate(zip(value.top, top), start=1):
            entry.setdefault(str(top_id), {"logprob": lp, "rank": rank, "decoded_token": top_text})
        by_id.append(entry)
    return PromptLogprobs(tuple(tokens), by_id)
