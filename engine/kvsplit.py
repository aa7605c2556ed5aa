"""KVSplit: cut a document into chunks of at most ``chunk_tokens`` tokens.

Cuts fall at paragraph boundaries first, then sentence boundaries, then between words; a word
is cut only when it alone is longer than a chunk (then at character boundaries). Every piece
keeps its trailing separator, so ``"".join(c.text for c in chunks) == text``. Each chunk is
tokenized on its own (no special tokens), so the same text always gives the same ids, wherever
the document later appears. No torch import.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

# Each pattern matches the separator a piece ends with; the cut falls after it.
_PARAGRAPH = re.compile(r"\n\s*\n+")  # a blank line
_SENTENCE = re.compile(r"(?<=[.!?。！？])\s+(?=\S)")
_WORD = re.compile(r"\s+")

Encode = Callable[[str], list[int]]


@dataclass(frozen=True, slots=True)
class DocChunk:
    text: str
    token_ids: tuple[int, ...]


def _split_keep(text: str, pattern: re.Pattern) -> list[str]:
    pieces, start = [], 0
    for m in pattern.finditer(text):
        if m.end() > start:
            pieces.append(text[start : m.end()])
            start = m.end()
    pieces.append(text[start:])
    return [p for p in pieces if p]


def kvsplit(text: str, encode: Encode, chunk_tokens: int = 512) -> list[DocChunk]:
    """Chunk a document.

    Args:
        text: the document (non-empty).
        encode: text -> token ids without special tokens (e.g.
            ``lambda s: tokenizer.encode(s, add_special_tokens=False)``).
        chunk_tokens: the largest chunk, in tokens.
    """
    if chunk_tokens <= 0:
        raise ValueError(f"chunk_tokens must be > 0, got {chunk_tokens}")
    if not text or not text.strip():
        raise ValueError("a document needs non-blank text")
    pieces = _pieces(text, encode, chunk_tokens, levels=(_PARAGRAPH, _SENTENCE, _WORD))
    chunks: list[DocChunk] = []
    current = ""
    current_ids: list[int] = []
    for piece in pieces:
        candidate = current + piece
        ids = encode(candidate)
        if current and len(ids) > chunk_tokens:
            chunks.append(DocChunk(current, tuple(current_ids)))
            candidate, ids = piece, encode(piece)
        current, current_ids = candidate, ids
    chunks.append(DocChunk(current, tuple(current_ids)))
    return [c for c in chunks if c.token_ids]


def _pieces(text: str, encode: Encode, limit: int, levels: tuple[re.Pattern, ...]) -> list[str]:
    """Split recursively until every piece fits in ``limit`` tokens on its own."""
    if len(encode(text)) <= limit:
        return [text]
    if not levels:
        return _by_characters(text, encode, limit)
    return [p for part in _split_keep(text, levels[0]) for p in _pieces(part, encode, limit, levels[1:])]


def _by_characters(text: str, encode: Encode, limit: int) -> list[str]:
    # Only for a single "word" longer than a chunk (e.g. a base64 blob).
    out, start = [], 0
    while start < len(text):
        lo, hi = start + 1, len(text)
        while lo < hi:  # the longest prefix that fits
            mid = (lo + hi + 1) // 2
            if len(encode(text[start:mid])) <= limit:
                lo = mid
            else:
                hi = mid - 1
        out.append(text[start:lo])
        start = lo
    return out
