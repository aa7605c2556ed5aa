"""EPIC's LegoLink variant: a BOS at the head of every chunk, compiled and linked with it."""

import random

import pytest
import torch

from engine import Engine, EngineConfig, LinkPolicy, SamplingParams, Segment
from engine.recompute import plan_prompt
from engine.segments import with_chunk_bos
from kvstore.keys import chunk_key

GREEDY = SamplingParams(max_tokens=10, temperature=0.0, ignore_eos=True)
BOS = 1


def test_with_chunk_bos_heads_every_chunk_once():
    segs = [Segment.prefix([BOS, 7]), Segment.chunk([5, 6]), Segment.chunk([BOS, 8]), Segment.text([9])]
    assert with_chunk_bos(segs, BOS) == [Segment.prefix([BOS, 7]), Segment.chunk([BOS, 5, 6]),
                                         Segment.chunk([BOS, 8]), Segment.text([9])]


def test_legolink_with_chunk_bos_recomputes_the_bos_and_the_next_k_minus_1():
    # prefix 4 | BOS + chunk A 6 | BOS + chunk B 6 | text 3  (0-3, 4-10, 11-17, 18-20)
    segs = with_chunk_bos([Segment.prefix([BOS, 2, 3, 4]), Segment.chunk(range(10, 16)),
                           Segment.chunk(range(20, 26)), Segment.text([7, 8, 9])], BOS)
    plan = plan_prompt(segs, LinkPolicy("legolink", k=3, chunk_bos=True), 4)
    assert plan.runs == ((4, 7), (11, 14), (18, 21))
    assert [(c.start, c.num_tokens) for c in plan.linked] == [(4, 7), (11, 7)]
    assert LinkPolicy("legolink", k=16, chunk_bos=True).label() == "legolink-16+bos"


def rag_prompt(seed):
    rng = random.Random(seed)

    def ids(n):
        return [rng.randrange(3, 300) for _ in range(n)]

    return [Segment.prefix([BOS, *ids(4)]), *[Segment.chunk(ids(n)) for n in (17, 9, 23)], Segment.text(ids(6))]


@pytest.fixture
def engine(hf_model_dirs):
    engine = Engine(EngineConfig(model=str(hf_model_dirs["llama_gqa_llama3"]), num_blocks=512, block_size=4))
    assert engine.spec.bos_token_id == BOS
    return engine


@pytest.mark.parametrize("seed", [0, 1])
def test_unlimited_chunk_bos_equals_full_of_the_same_prompt(engine, seed):
    prompt = rag_prompt(seed)
    full = engine.generate([prompt], GREEDY, link_policy=LinkPolicy("full", chunk_bos=True))[0]
    assert full.stats.prompt_tokens == sum(map(len, prompt)) + 3
    assert full.token_ids == engine.generate([with_chunk_bos(prompt, BOS)], GREEDY,
                                             link_policy=LinkPolicy("full"))[0].token_ids
    for policy in (LinkPolicy("legolink", k=64, chunk_bos=True), LinkPolicy("naive", tail=1.0, chunk_bos=True)):
        out = engine.generate([prompt], GREEDY, link_policy=policy)[0]
        assert out.token_ids == full.token_ids, policy
        assert out.stats.chunk_hit_tokens + out.stats.compiled_tokens == 49 + 3


def test_a_chunk_headed_by_bos_is_compiled_with_it_under_its_own_key(engine):
    chunk = [BOS, *range(40, 52)]
    (key,) = engine.compile_chunks([chunk])
    assert key == chunk_key(engine.model_fingerprint, tuple(chunk)) != chunk_key(engine.model_fingerprint,
                                                                                  tuple(chunk[1:]))
    kv = engine.chunk_pool.get(key)  # [L, 2, 13, Hkv, D]: the BOS row is kept
    assert kv.shape[2] == len(chunk)
    (plain,) = engine.compile_chunks([chunk[1:]])  # compiled behind a BOS that is not kept
    torch.testing.assert_close(engine.chunk_pool.get(plain), kv[:, :, 1:], rtol=1e-5, atol=1e-5)
