"""The routing hint: what the router knows about a request's reusable KV.

The ingress tokenizes and KVSplits the prompt, computes each chunk's key with
:func:`kvstore.keys.chunk_key`, and attaches a :class:`RoutingHint` to the object it passes as
the first positional argument of the engine replica's handle call::

    [ prefix (prefix_key, prefix_tokens) ][ chunk 0 ][ chunk 1 ] ... [ text ]
                                            chunk_keys[i], chunk_tokens[i]
    |<------------------------------ total_tokens ------------------------->|

The prefix is treated like one more reusable span keyed by ``prefix_key`` (a hash of the
prefix segment's tokens): a replica whose prefix cache holds it serves those tokens for free.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass


@dataclass(frozen=True, slots=True, kw_only=True)
class RoutingHint:
    """A request's reusable spans, as the router sees them.

    Attributes:
        chunk_keys: the chunk key of every ``chunk`` segment, in prompt order (repeats allowed).
        chunk_tokens: token count of each chunk, parallel to ``chunk_keys``.
        prefix_tokens: tokens in the ``prefix`` segment (0 when there is none).
        prefix_key: hash of the prefix segment (prefix affinity); None when there is none.
        total_tokens: every prompt token (prefix + chunks + text).
    """

    chunk_keys: tuple[str, ...] = ()
    chunk_tokens: tuple[int, ...] = ()
    prefix_tokens: int = 0
    prefix_key: str | None = None
    total_tokens: int

    def __post_init__(self) -> None:
        object.__setattr__(self, "chunk_keys", tuple(self.chunk_keys))
        object.__setattr__(self, "chunk_tokens", tuple(int(n) for n in self.chunk_tokens))
        if len(self.chunk_keys) != len(self.chunk_tokens):
            raise ValueError(
                f"chunk_keys has {len(self.chunk_keys)} entries but chunk_tokens has "
                f"{len(self.chunk_tokens)}; they must be parallel"
            )
        if any(not key for key in self.chunk_keys):
            raise ValueError("every chunk key must be a non-empty string")
        if any(n < 1 for n in self.chunk_tokens):
            raise ValueError(f"every chunk needs at least one token, got {self.chunk_tokens}")
        if self.prefix_tokens < 0:
            raise ValueError(f"prefix_tokens must be >= 0, got {self.prefix_tokens}")
        if self.prefix_key is not None and (not self.prefix_key or self.prefix_tokens == 0):
            raise ValueError("prefix_key needs a non-empty key and prefix_tokens > 0")
        if self.total_tokens < self.prefix_tokens + self.num_chunk_tokens:
            raise ValueError(
                f"total_tokens {self.total_tokens} is less than prefix + chunk tokens "
                f"({self.prefix_tokens} + {self.num_chunk_tokens})"
            )

    @property
    def num_chunk_tokens(self) -> int:
        """Tokens in all chunk segments."""
        return sum(self.chunk_tokens)

    def spans(self) -> Iterator[tuple[str, int]]:
        """Every reusable span as ``(key, num_tokens)``: the keyed prefix first, then chunks."""
        if self.prefix_key is not None:
            yield self.prefix_key, self.prefix_tokens
        yield from zip(self.chunk_keys, self.chunk_tokens)
