"""Chunks compiled behind the prompt's prefix (the template head) instead of BOS alone."""

import random

import pytest

from engine import Engine, EngineConfig, LinkPolicy, SamplingParams, Segment
from engine.segments import compile_context
from kvstore.keys import chunk_key

GREEDY = SamplingParams(max_tokens=10, temperature=0.0, ignore_eos=True)
BEHIND = dict(chunk_context="prefix")


def test_compile_context_is_the_leading_prefix_segments():
    segs = [Segment.prefix([1, 2]), Segment.prefix([3]), Segment.chunk([4, 5]), Segment.prefix([6]),
            Segment.text([7])]
    assert compile_context(segs, LinkPolicy("naive", **BEHIND)) == (1, 2, 3)
    assert compile_context(segs, LinkPolicy("naive")) == ()
    assert compile_context(segs, LinkPolicy("full", **BEHIND)) == ()
    assert compile_context(segs[2:], LinkPolicy("naive", **BEHIND)) == ()
    assert LinkPolicy("legolink", k=4, **BEHIND).label() == "legolink-4+behind-prefix"
    with pytest.raises(ValueError, match="chunk_context must be one of bos, prefix"):
        LinkPolicy("naive", chunk_context="template")


def test_the_key_covers_the_context():
    fp = "model"
    assert chunk_key(fp, (4, 5)) == chunk_key(fp, (4, 5), ())
    assert chunk_key(fp, (4, 5), (1, 2)) not in (chunk_key(fp, (4, 5)), chunk_key(fp, (4, 5), (1, 3)),
                                                 chunk_key(fp, (1, 2, 4, 5)))


def rag_prompt(seed, sizes=(17, 9, 23)):
    rng = random.Random(seed)

    def ids(n):
        return [rng.randrange(3, 300) for _ in range(n)]

    return [Segment.prefix([1, *ids(6)]), *[Segment.chunk(ids(n)) for n in sizes], Segment.text(ids(6))]


@pytest.fixture
def engine(hf_model_dirs):
    return Engine(EngineConfig(model=str(hf_model_dirs["llama_gqa_llama3"]), num_blocks=512, block_size=4))


def test_one_chunk_behind_its_own_prefix_is_exactly_full(engine):
    """The only chunk, compiled behind the prompt's prefix, has the KV a plain prefill gives it."""
    prompt = rag_prompt(0, sizes=(21,))
    full = engine.generate([prompt], GREEDY, link_policy=LinkPolicy("full"))[0]
    out = engine.generate([prompt], GREEDY, link_policy=LinkPolicy("naive", **BEHIND))[0]
    assert out.token_ids == full.token_ids
    assert out.stats.compiled_tokens == 21
    assert out.stats.recomputed_tokens == 6 + 7 - out.stats.prefix_hit_tokens
    naive = engine.generate([prompt], GREEDY, link_policy=LinkPolicy("naive"))[0]
    assert naive.stats.compiled_tokens == 21  # behind BOS: another key, compiled again


@pytest.mark.parametrize("seed", [1, 2])
def test_unlimited_budgets_behind_the_prefix_equal_full(engine, seed):
    prompt = rag_prompt(seed)
    full = engine.generate([prompt], GREEDY, link_policy=LinkPolicy("full"))[0]
    for policy in (LinkPolicy("legolink", k=64, **BEHIND), LinkPolicy("naive", tail=1.0, **BEHIND)):
        assert engine.generate([prompt], GREEDY, link_policy=policy)[0].token_ids == full.token_ids, policy
