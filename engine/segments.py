"""Prompt segments and link policies: the request-side vocabulary of position-independent caching.

A prompt is a list of segments, each with one caching rule:

    [ prefix: system prompt ][ chunk: doc 1 ][ chunk: doc 2 ][ text: question ]
      reused by exact-prefix    reused at any position, from    never cached
      block hashing             the chunk store

The concatenation of all segments' token ids is exactly the prompt the model sees; under the
``full`` policy the engine serves it as plain text.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

SegmentKind = Literal["prefix", "chunk", "text"]
SEGMENT_KINDS: tuple[str, ...] = ("prefix", "chunk", "text")

LinkPolicyName = Literal["full", "prefix", "naive", "legolink", "cacheblend", "query"]
LINK_POLICY_NAMES: tuple[str, ...] = ("full", "prefix", "naive", "legolink", "cacheblend", "query")


@dataclass(frozen=True, slots=True)
class Segment:
    """A span of a prompt with one caching rule."""

    kind: SegmentKind
    token_ids: tuple[int, ...]

    def __post_init__(self) -> None:
        if self.kind not in SEGMENT_KINDS:
            raise ValueError(f"unknown segment kind {self.kind!r}; valid: {', '.join(SEGMENT_KINDS)}")
        if not isinstance(self.token_ids, tuple):
            object.__setattr__(self, "token_ids", tuple(int(t) for t in self.token_ids))
        if self.kind == "chunk" and not self.token_ids:
            raise ValueError("a chunk segment needs at least one token")

    @classmethod
    def prefix(cls, token_ids: Sequence[int]) -> Segment:
        return cls("prefix", tuple(int(t) for t in token_ids))

    @classmethod
    def chunk(cls, token_ids: Sequence[int]) -> Segment:
        return cls("chunk", tuple(int(t) for t in token_ids))

    @classmethod
    def text(cls, token_ids: Sequence[int]) -> Segment:
        return cls("text", tuple(int(t) for t in token_ids))

    def __len__(self) -> int:
        return len(self.token_ids)


def with_chunk_bos(segments: Sequence[Segment], bos_token_id: int) -> list[Segment]:
    """``segments`` with ``bos_token_id`` at the head of every chunk that does not start with it."""
    return [Segment.chunk((bos_token_id, *s.token_ids)) if s.kind == "chunk" and s.token_ids[0] != bos_token_id
            else s for s in segments]


def prompt_token_ids(segments: Sequence[Segment]) -> list[int]:
    """The flat prompt the model sees: all segments' tokens in order."""
    return [t for seg in segments for t in seg.token_ids]


@dataclass(frozen=True, slots=True)
class LinkPolicy:
    """How a request's cached chunks are linked (the recompute sets: :mod:`engine.recompute`).

    Args:
        name: ``full``, ``prefix``, ``naive``, ``legolink``, ``cacheblend`` or ``query``.
        k: LegoLink: leading tokens of each chunk recomputed (ignored by other policies).
        ratio: CacheBlend, query: fraction of chunk tokens recomputed (ignored by other policies).
            CacheBlend picks tokens by KV deviation, ``query`` whole chunks by the question's
            attention over the linked prompt (:mod:`engine.query_select`).
        chunk_bos: EPIC's LegoLink variant: the model's BOS is put at the head of every chunk
            segment (it changes the prompt, under any policy), compiled and linked with the
            chunk, so LegoLink's first k recomputed tokens are that BOS and the next k-1.
        tail: naive, LegoLink, CacheBlend, query: fraction of the chunk tokens, counted back from the
            last chunk (the documents closest to the question), recomputed through every
            layer, so they attend to every document before them (0: none, 1: all).
    """

    name: LinkPolicyName = "legolink"
    k: int = 16
    ratio: float = 0.15
    tail: float = 0.0
    chunk_bos: bool = False

    def __post_init__(self) -> None:
        if self.name not in LINK_POLICY_NAMES:
            raise ValueError(
                f"unknown link policy {self.name!r}; valid: {', '.join(LINK_POLICY_NAMES)}"
            )
        if isinstance(self.k, bool) or not isinstance(self.k, int) or self.k < 0:
            raise ValueError(f"link policy k must be an integer >= 0, got {self.k!r}")
        if not isinstance(self.chunk_bos, bool):
            raise ValueError(f"link policy chunk_bos must be true or false, got {self.chunk_bos!r}")
        for name in ("ratio", "tail"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value <= 1.0:
                raise ValueError(f"link policy {name} must be a number in [0, 1], got {value!r}")

    @property
    def reuses_chunks(self) -> bool:
        return self.name in ("naive", "legolink", "cacheblend", "query")

    @property
    def selects_rows(self) -> bool:
        """Recomputes a ``ratio`` of its chunk tokens, chosen on the device as the step runs."""
        return self.name in ("cacheblend", "query")

    @property
    def reuses_prefix(self) -> bool:
        return self.name != "full"

    @classmethod
    def default(cls) -> LinkPolicy:
        """The engine's default: ``cacheblend`` with ``ratio`` 0.15, which kept the most of
        full prefill's answers on SmolLM2-135M-Instruct in the client's document order without
        changing the prompt, at a TTFT still 3x below full's (README, "Link policy accuracy")."""
        return cls("cacheblend", ratio=0.15)

    def label(self) -> str:
        if self.name == "legolink":
            base = f"legolink-{self.k}"
        elif self.name == "cacheblend":
            base = f"cacheblend-{round(self.ratio * 100)}"
        elif self.name == "query":
            base = f"query-{round(self.ratio * 100)}"
        else:
            base = self.name
        if self.chunk_bos:
            base += "+bos"
        if self.tail and self.reuses_chunks:
            base += f"+tail-{round(self.tail * 100)}"
        return base
