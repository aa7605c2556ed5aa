"""Compiling chunks on their own (warm-up, the documents API), alone and next to requests."""

import asyncio

import pytest

from engine import AsyncEngine, LinkPolicy, Segment
from kvstore.keys import chunk_key

from tests.support.engines import GREEDY, make_engine



@pytest.fixture
def engine(hf_model_dirs):
    return make_engine(hf_model_dirs["llama_gqa_llama3"], max_num_batched_tokens=16)


def test_compile_chunks_keys_and_residency(engine):
    chunks = [[5, 6, 7, 8, 9], [10, 11, 12], [5, 6, 7, 8, 9]]
    keys = engine.compile_chunks(chunks)
    assert keys == [chunk_key(engine.model_fingerprint, c) for c in chunks]
    assert all(k in engine.chunk_pool for k in keys) and len(engine.chunk_pool) == 2
    assert engine.chunk_pool.get(keys[0]).shape[2] == 5
    out = engine.generate([[Segment.prefix([1]), Segment.chunk(chunks[1]), Segment.text([3, 4])]], GREEDY,
                          link_policy=LinkPolicy("legolink", k=1))[0]
    assert out.stats.compiled_tokens == 0 and out.stats.chunk_hit_tokens == 3
    with pytest.raises(ValueError, match="at least one token"):
        engine.compile_chunks([[]])
    with pytest.raises(ValueError, match="vocabulary"):
        engine.compile_chunks([[1, 100000]])


def test_sync_compile_refuses_while_requests_run(engine):
    engine.add_request([1, 2, 3], GREEDY)
    with pytest.raises(ValueError, match="AsyncEngine.compile_chunks"):
        engine.compile_chunks([[4, 5]])


def test_async_compile_runs_next_to_a_streaming_request(engine):
    prompt = [1] + list(range(20, 60))
    expected = engine.generate([prompt], GREEDY)[0].token_ids
    front = AsyncEngine(engine)

    async def stream():
        tokens = []
        async for out in await front.add_request(prompt, GREEDY):
            tokens += out.new_token_ids
        return tokens

    async def main():
        task = asyncio.create_task(stream())
        await asyncio.sleep(0)
        keys = await front.compile_chunks([list(range(100, 140)), list(range(140, 150))])
        return await task, keys

    try:
        tokens, keys = asyncio.run(main())
    finally:
        front.shutdown()
    assert tokens == expected  # the request's outputs were not lost to the compile
    assert all(k in engine.chunk_pool for k in keys)
