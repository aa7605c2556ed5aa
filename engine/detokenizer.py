"""Incremental detokenization with stop strings.

Text is re-decoded from all output tokens (so multi-byte characters split across tokens come
out whole) and emitted as deltas. While a request runs, the last ``len(longest stop) - 1``
characters are held back, so a stream never emits a prefix of a stop string that is later cut.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(slots=True)
class TextState:
    emitted: str = ""  # text already handed out


class Detokenizer:
    def __init__(self, tokenizer):
        self.tokenizer = tokenizer

    def decode(self, token_ids: list[int], skip_special_tokens: bool = True) -> str:
        if self.tokenizer is None:
            return ""
        return self.tokenizer.decode(token_ids, skip_special_tokens=skip_special_tokens)

    def step(self, state: TextState, token_ids: list[int], stop: tuple[str, ...], finished: bool,
             skip_special_tokens: bool = True, include_stop: bool = False) -> tuple[str, str | None]:
        """New text to emit, and the stop string that ended the request (None if none did).

        Args:
            token_ids: all output tokens that belong in the text (stop tokens excluded).
            finished: the request ends now for another reason (flush everything).
            skip_special_tokens: leave special tokens out of the text.
            include_stop: keep the stop string that ends the request in the text.
        """
        text = self.decode(token_ids, skip_special_tokens)
        hit = None
        if stop:
            search_from = max(0, len(state.emitted) - max(len(s) for s in stop) + 1)
            cuts = [(i, s) for i, s in ((text.find(s, search_from), s) for s in stop) if i >= 0]
            if cuts:
                start, hit = min(cuts)
                text = text[: start + len(hit) if include_stop else start]
        if not (finished or hit):
            if text.endswith("\ufffd"):
                return "", None  # an incomplete multi-byte character: wait for the next token
            if stop:
                text = text[: max(len(state.emitted), len(text) - max(len(s) for s in stop) + 1)]
        new = text[len(state.emitted):] if text.startswith(state.emitted) else ""
        state.emitted += new
        return new, hit
