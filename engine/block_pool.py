"""The KV page pool: a free list, reference counts and exact-prefix block hashes.

A block's life:

    free (no hash) --allocate--> in use (ref >= 1) --register--> in use + cached (hash -> block)
          ^                                                          | free (ref -> 0)
          +---- evicted when allocated (hash dropped) <---- free + cached: still a prefix hit

Freed blocks join the back of the free queue and allocation takes from the front, so cached
blocks are evicted in least-recently-freed order (vLLM's policy). A prefix hit on a free cached
block takes it out of the free queue.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from typing import NewType

BlockHash = NewType("BlockHash", int)


def hash_block(parent: BlockHash | None, token_ids: Sequence[int]) -> BlockHash:
    """Chain hash of one full block: depends on every token before it (via ``parent``)."""
    return BlockHash(hash((parent, tuple(token_ids))))


class BlockPool:
    """Owns every KV block's reference count and prefix-cache hash."""

    def __init__(self, num_blocks: int):
        assert num_blocks > 0, "the KV pool needs at least one block"
        self.num_blocks = num_blocks
        self.ref_counts = [0] * num_blocks
        self._free: OrderedDict[int, None] = OrderedDict((b, None) for b in range(num_blocks))
        self._hash_of: dict[int, BlockHash] = {}
        self._block_of: dict[BlockHash, int] = {}

    @property
    def num_free(self) -> int:
        return len(self._free)

    def allocate(self, n: int) -> list[int] | None:
        """Take ``n`` blocks (ref 1 each), evicting cached ones if needed; None if too few."""
        if n > len(self._free):
            return None
        blocks = []
        for _ in range(n):
            block, _ = self._free.popitem(last=False)
            old = self._hash_of.pop(block, None)
            if old is not None:
                del self._block_of[old]
            self.ref_counts[block] = 1
            blocks.append(block)
        return blocks

    def free(self, blocks: Sequence[int]) -> None:
        """Drop one reference from each block; unreferenced blocks become reusable."""
        for block in blocks:
            assert self.ref_counts[block] > 0, f"double free of block {block}"
            self.ref_counts[block] -= 1
            if self.ref_counts[block] == 0:
                self._free[block] = None

    def lookup(self, block_hash: BlockHash) -> int | None:
        """The cached block holding exactly this prefix block, if any (no reference taken)."""
        return self._block_of.get(block_hash)

    def share(self, block: int) -> None:
        """Take a reference on a cached block found by :meth:`lookup`."""
        if self.ref_counts[block] == 0:
            del self._free[block]
        self.ref_counts[block] += 1

    def register(self, block: int, block_hash: BlockHash) -> None:
        """Publish a fully computed, exact block as a prefix-cache entry."""
        assert self.ref_counts[block] > 0, "only blocks in use can be registered"
        if block_hash in self._block_of or block in self._hash_of:
            return  # an identical block is already cached, or this one already is
        self._hash_of[block] = block_hash
        self._block_of[block_hash] = block

    def num_cached(self) -> int:
        return len(self._block_of)
