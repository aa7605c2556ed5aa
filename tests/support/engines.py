"""Engines on the tiny test models: toy paging (block size 4), greedy sampling, leak checks."""

from __future__ import annotations

from engine import Engine, EngineConfig, SamplingParams

GREEDY = SamplingParams(max_tokens=12, temperature=0.0, ignore_eos=True)


def make_engine(model_dir, **overrides) -> Engine:
    """An engine over ``model_dir`` with 256 KV pages of 4 tokens; ``overrides`` are
    :class:`EngineConfig` fields."""
    fields = {"num_blocks": 256, "block_size": 4, **overrides}
    return Engine(EngineConfig(model=str(model_dir), **fields))


def assert_no_leaks(engine: Engine) -> None:
    """Nothing left running, every KV page free and unreferenced, no chunk pinned."""
    pool = engine.block_pool
    assert not engine.has_unfinished()
    assert all(c == 0 for c in pool.ref_counts), "a block is still referenced"
    assert pool.num_free == pool.num_blocks
    assert engine.chunk_pool.num_pins == 0, "a chunk is still pinned"
