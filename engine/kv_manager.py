"""Page tables of requests: prefix-cache lookup, allocation, publishing exact blocks, freeing."""

from __future__ import annotations

from engine.block_pool import BlockHash, BlockPool, hash_block


class KVManager:
    """Maps requests' positions to blocks of the pool. The pool owns counts; this owns policy."""

    def __init__(self, pool: BlockPool, block_size: int, enable_prefix_caching: bool):
        self.pool = pool
        self.block_size = block_size
        self.enable_prefix_caching = enable_prefix_caching

    def blocks_for(self, num_tokens: int) -> int:
        return -(-num_tokens // self.block_size)

    def block_hashes(self, token_ids: list[int], num_tokens: int, salt: str | None = None) -> list[BlockHash]:
        """Chain hashes of the full blocks within the first ``num_tokens`` tokens (a salt starts
        the chain, so differently salted prompts never share blocks)."""
        hashes: list[BlockHash] = []
        parent = None if salt is None else BlockHash(hash(("cache_salt", salt)))
        for b in range(num_tokens // self.block_size):
            parent = hash_block(parent, token_ids[b * self.block_size : (b + 1) * self.block_size])
            hashes.append(parent)
        return hashes

    def allocate_prompt(self, token_ids: list[int], cacheable_len: int,
                        salt: str | None = None) -> tuple[list[int], int] | None:
        """Blocks for a whole prompt, reusing the longest cached exact prefix.

        Returns:
            (block_ids, prefix_hit_tokens), or None when the pool is short of blocks (nothing
            is held then).
        """
        shared: list[int] = []
        if self.enable_prefix_caching:
            for h in self.block_hashes(token_ids, cacheable_len, salt):
                block = self.pool.lookup(h)
                if block is None:
                    break
                shared.append(block)
        # A shared block that is free still counts as free; take it first, then allocate.
        for block in shared:
            self.pool.share(block)
        fresh = self.pool.allocate(self.blocks_for(len(token_ids)) - len(shared))
        if fresh is None:
            self.pool.free(shared)
            return None
        return shared + fresh, len(shared) * self.block_size

    def allocate_blocks(self, num_tokens: int) -> list[int] | None:
        """Fresh blocks for ``num_tokens`` positions (a compile job's pages); None when short."""
        return self.pool.allocate(self.blocks_for(num_tokens))

    def fork(self, block_ids: list[int], num_full: int) -> tuple[list[int], list[int]] | None:
        """A page table for a sequence that shares ``block_ids``' first ``num_full`` blocks and
        gets fresh copies of the rest (the caller copies their contents).

        Returns:
            (the new page table, the fresh blocks in it), or None when the pool is short.
        """
        copies = self.pool.allocate(len(block_ids) - num_full)
        if copies is None:
            return None
        for block in block_ids[:num_full]:
            self.pool.share(block)
        return block_ids[:num_full] + copies, copies

    def ensure_capacity(self, block_ids: list[int], num_tokens: int) -> bool:
        """Grow a page table to hold ``num_tokens``; False when the pool is empty."""
        need = self.blocks_for(num_tokens) - len(block_ids)
        if need <= 0:
            return True
        fresh = self.pool.allocate(need)
        if fresh is None:
            return False
        block_ids.extend(fresh)
        return True

    def publish(self, token_ids: list[int], block_ids: list[int], exact_len: int, salt: str | None = None) -> None:
        """Register the full blocks inside ``[0, exact_len)`` as prefix-cache entries."""
        if not self.enable_prefix_caching:
            return
        for block, h in zip(block_ids, self.block_hashes(token_ids, exact_len, salt)):
            self.pool.register(block, h)

    def free(self, block_ids: list[int]) -> None:
        self.pool.free(block_ids)
        block_ids.clear()
