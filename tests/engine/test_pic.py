"""Position-independent caching: compile, link, recompute, and the five link policies."""

import os
import random
import subprocess
import sys
from functools import partial

import pytest
import torch

from engine import LinkPolicy, Segment
from engine.chunk_source import ChunkHit
from engine.rope import apply_rope, rope_cos_sin
from engine.step_batch import build_step_batch
from kvstore.keys import chunk_key

from tests.support.engines import GREEDY, make_engine

VARIANT = "llama_gqa_llama3"
make_engine = partial(make_engine, num_blocks=512)  # room for every case of a batch at once
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.fixture(scope="module")
def model_dir(hf_model_dirs):
    return hf_model_dirs[VARIANT]


def ids(rng, n):
    return [rng.randrange(3, 300) for _ in range(n)]


def rag_prompt(rng, docs, prefix_len=5, question_len=6):
    return [Segment.prefix([1] + ids(rng, prefix_len - 1)), *[Segment.chunk(d) for d in docs],
            Segment.text(ids(rng, question_len))]


def our_forward(engine, token_ids, first_pos):
    """Run token_ids at positions first_pos.. through our model in fresh pages (positions
    before first_pos are not written: only first_pos == 0 is a complete computation).

    Returns logits [T, vocab] and the pages' K (after RoPE) and V: [num_layers, 2, T, Hkv, D].
    """
    n = len(token_ids)
    blocks = engine.block_pool.allocate(engine.scheduler.kv.blocks_for(first_pos + n))

    class Seq:  # a request's token and page fields (positions before first_pos are never read)
        block_ids = blocks
        prompt_ids = [0] * first_pos + list(token_ids)
        output_ids: list[int] = []

    runner = engine.runner
    with torch.inference_mode():
        batch = build_step_batch([Seq], [[(first_pos, first_pos + n)]], runner.block_size, runner.device)
        ctx = runner.forward_context(batch, None)
        h = runner.model.embed(batch.token_ids)
        for layer in runner.model.layers:
            h = layer(h, ctx)
        logits = runner.model.compute_logits(h)
        slots = batch.slots
        kv = runner.kv_caches[:, slots // runner.block_size, :, slots % runner.block_size]  # [T, L, 2, H, D]
    engine.block_pool.free(blocks)
    return logits, kv.permute(1, 2, 0, 3, 4)


@pytest.mark.parametrize("offset", [1, 7, 100])
def test_nope_storage_is_exact_under_rope_relativity(model_dir, offset):
    """A chunk compiled alone (behind BOS at 0) and re-rotated to start at ``offset`` has the K/V
    that ``transformers`` computes for BOS + chunk placed directly at positions offset-1..,
    and the same logits as our own computation at 0.."""
    from transformers import AutoModelForCausalLM

    engine = make_engine(model_dir)
    chunk = ids(random.Random(offset), 13)
    (key,) = engine.compile_chunks([chunk])
    nope = engine.chunk_pool.get(key)  # [L, 2, 13, Hkv, D]
    spec = engine.spec
    assert nope.shape == (spec.num_layers, 2, 13, spec.num_kv_heads, spec.head_dim)

    hf = AutoModelForCausalLM.from_pretrained(model_dir, attn_implementation="eager").eval()
    with torch.no_grad():
        out = hf(torch.tensor([[1] + chunk]), position_ids=torch.arange(offset - 1, offset + 13)[None], use_cache=True)
    cos, sin = rope_cos_sin(torch.arange(offset, offset + 13), engine.runner.inv_freq)
    for layer in range(spec.num_layers):
        hf_k = out.past_key_values.layers[layer].keys[0, :, 1:].transpose(0, 1)  # [T, Hkv, D]
        hf_v = out.past_key_values.layers[layer].values[0, :, 1:].transpose(0, 1)
        torch.testing.assert_close(apply_rope(nope[layer, 0], cos, sin), hf_k, rtol=1e-4, atol=1e-4)
        torch.testing.assert_close(nope[layer, 1], hf_v, rtol=1e-4, atol=1e-4)
    ours, kv_at_0 = our_forward(engine, [1] + chunk, 0)
    torch.testing.assert_close(ours, out.logits[0], rtol=1e-4, atol=1e-4)
    # What the compile stored is exactly the K of the plain computation, un-rotated.
    cos0, sin0 = rope_cos_sin(torch.arange(1, 14), engine.runner.inv_freq)
    torch.testing.assert_close(apply_rope(nope[:, 0], cos0, sin0), kv_at_0[:, 0, 1:], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(nope[:, 1], kv_at_0[:, 1, 1:], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_unlimited_budgets_equal_full(model_dir, seed):
    rng = random.Random(seed)
    docs = [ids(rng, n) for n in (17, 9, 23)]
    prompt = rag_prompt(rng, docs)
    engine = make_engine(model_dir)
    full = engine.generate([prompt], GREEDY, link_policy=LinkPolicy("full"))[0]
    assert full.stats.chunk_hit_tokens == 0 and full.stats.recomputed_tokens == full.stats.prompt_tokens
    for policy in (LinkPolicy("legolink", k=64), LinkPolicy("cacheblend", ratio=1.0), LinkPolicy("naive", tail=1.0),
                   LinkPolicy("legolink", k=2, tail=1.0), LinkPolicy("cacheblend", ratio=0.15, tail=1.0)):
        out = engine.generate([prompt], GREEDY, link_policy=policy)[0]
        assert out.token_ids == full.token_ids, policy
        assert out.stats.recomputed_tokens == out.stats.prompt_tokens - out.stats.prefix_hit_tokens, policy


def test_reordered_documents_after_another_prefix_reuse_every_chunk(model_dir):
    rng = random.Random(3)
    docs = [ids(rng, n) for n in (20, 11, 15, 8)]
    engine = make_engine(model_dir)
    first = engine.generate([rag_prompt(rng, docs)], GREEDY, link_policy=LinkPolicy("legolink", k=4))[0]
    assert first.stats.compiled_tokens == sum(map(len, docs)) and first.stats.chunk_hit_tokens == 0
    shuffled = [docs[i] for i in (2, 0, 3, 1)]
    for policy in (LinkPolicy("legolink", k=4), LinkPolicy("naive"), LinkPolicy("cacheblend")):
        out = engine.generate([rag_prompt(rng, shuffled, prefix_len=9)], GREEDY, link_policy=policy)[0]
        assert out.stats.compiled_tokens == 0
        assert out.stats.chunk_hit_tokens == sum(map(len, docs)) == out.stats.chunk_hits_by_tier["gpu"]
        assert out.stats.cached_tokens >= out.stats.chunk_hit_tokens


def test_recomputed_tokens_per_policy(model_dir):
    rng = random.Random(4)
    docs = [ids(rng, 20), ids(rng, 12)]
    prompt = rag_prompt(rng, docs, prefix_len=5, question_len=6)  # 5 + 32 + 6 = 43
    engine = make_engine(model_dir, enable_prefix_caching=False)
    engine.compile_chunks(docs)
    counts = {
        p.label(): engine.generate([prompt], GREEDY, link_policy=p)[0].stats.recomputed_tokens
        for p in (LinkPolicy("full"), LinkPolicy("naive"), LinkPolicy("legolink", k=4), LinkPolicy("cacheblend", ratio=0.25))
    }
    assert counts["full"] == 43
    assert counts["naive"] == 5 + 6
    assert counts["legolink-4"] == 5 + 4 + 4 + 6
    assert counts["cacheblend-25"] == 5 + 6 + 5 + 3  # ceil(0.25 * 20) + ceil(0.25 * 12)


def test_ten_concurrent_mixed_policies_equal_each_alone(model_dir):
    rng = random.Random(5)
    pool = [ids(rng, rng.randrange(5, 25)) for _ in range(6)]
    policies = [LinkPolicy("full"), LinkPolicy("prefix"), LinkPolicy("naive"), LinkPolicy("legolink", k=3),
                LinkPolicy("cacheblend", ratio=0.3)]
    cases = [(rag_prompt(rng, rng.sample(pool, rng.randrange(1, 4))), policies[i % 5]) for i in range(10)]
    alone = []
    for prompt, policy in cases:
        engine = make_engine(model_dir)  # fresh: no chunk or prefix reuse at all
        alone.append(engine.generate([prompt], GREEDY, link_policy=policy)[0].token_ids)
    engine = make_engine(model_dir, max_num_batched_tokens=48)
    reqs = [engine.add_request(prompt, GREEDY, policy) for prompt, policy in cases]
    final = {}
    while engine.has_unfinished():
        for out in engine.step():
            if out.finished:
                final[out.request_id] = out.token_ids
    assert [final[r] for r in reqs] == alone
    assert all(c == 0 for c in engine.block_pool.ref_counts) and engine.chunk_pool.num_pins == 0


class DictSource:
    """A minimal in-process ChunkSource (the tiered store plugs in the same way)."""

    def __init__(self):
        self.data, self.gets = {}, 0

    def get_chunk(self, key):
        self.gets += 1
        kv = self.data.get(key)
        return None if kv is None else ChunkHit(kv.clone(), "memory")

    def put_chunk(self, key, kv):
        self.data[key] = kv.clone()


def test_chunk_source_serves_a_second_engine(model_dir):
    rng = random.Random(6)
    docs = [ids(rng, 14), ids(rng, 10)]
    source = DictSource()
    first = make_engine(model_dir, chunk_pool_bytes=0)
    prompt = rag_prompt(rng, docs)
    a = first.generate([prompt], GREEDY)[0]
    assert set(source.data) == set() and a.stats.compiled_tokens == 24
    first = make_engine(model_dir)
    first.chunks.source = source
    first.generate([prompt], GREEDY)
    assert len(source.data) == 2
    second = make_engine(model_dir)
    second.chunks.source = source
    b = second.generate([prompt], GREEDY)[0]
    assert b.token_ids == a.token_ids
    assert b.stats.compiled_tokens == 0 and b.stats.chunk_hits_by_tier == {"memory": 24}


def test_chunk_keys_are_stable_across_processes():
    code = "from kvstore.keys import chunk_key; print(chunk_key('fp-1', [1, 2, 3, 500, 70000]))"
    keys = {
        subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT,
                       env={**os.environ, "PYTHONHASHSEED": seed}).stdout.strip()
        for seed in ("0", "1", "12345")
    }
    assert keys == {chunk_key("fp-1", [1, 2, 3, 500, 70000])}
    assert chunk_key("fp-1", [1, 2, 3]) != chunk_key("fp-2", [1, 2, 3]) != chunk_key("fp-1", [1, 2, 4])
