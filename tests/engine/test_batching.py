"""Continuous batching, chunked prefill, prefix caching, preemption and abort: every batched
result must equal the same request run alone, and no KV block may leak."""

import random

import pytest

from engine import SamplingParams

from tests.support.engines import GREEDY, assert_no_leaks, make_engine

VARIANT = "llama_gqa_llama3"


def random_prompts(n, seed, lo=3, hi=60, vocab=300):
    rng = random.Random(seed)
    return [[1] + [rng.randrange(3, vocab) for _ in range(rng.randrange(lo, hi))] for _ in range(n)]


@pytest.fixture(scope="module")
def model_dir(hf_model_dirs):
    return hf_model_dirs[VARIANT]


@pytest.fixture(scope="module")
def alone(model_dir):
    """Reference: each prompt generated on its own, in a fresh engine."""
    engine = make_engine(model_dir, enable_prefix_caching=False)
    cache = {}

    def run(prompt, params=GREEDY):
        key = (tuple(prompt), params)
        if key not in cache:
            cache[key] = engine.generate([prompt], params)[0].token_ids
        return cache[key]

    return run


def test_sixteen_concurrent_requests_equal_each_alone(model_dir, alone):
    prompts = random_prompts(16, seed=1)
    engine = make_engine(model_dir, max_num_batched_tokens=64)  # forces chunked prefill
    outs = engine.generate(prompts, GREEDY)
    for prompt, out in zip(prompts, outs):
        assert out.token_ids == alone(prompt)
        assert out.finish_reason == "length" and out.stats.prompt_tokens == len(prompt)
    assert_no_leaks(engine)


def test_request_added_mid_decode_matches(model_dir, alone):
    first, late = random_prompts(2, seed=2)
    engine = make_engine(model_dir)
    rid = engine.add_request(first, GREEDY)
    done = {}
    for _ in range(4):
        for out in engine.step():
            done[out.request_id] = out
    assert len(done[rid].token_ids) == 4 and not done[rid].finished  # mid-decode
    late_id = engine.add_request(late, GREEDY)
    while engine.has_unfinished():
        for out in engine.step():
            if out.finished:
                done[out.request_id] = out
    assert done[rid].token_ids == alone(first)
    assert done[late_id].token_ids == alone(late)
    assert_no_leaks(engine)


def test_prefix_cache_hits_give_identical_outputs(model_dir, alone):
    shared = random_prompts(1, seed=3, lo=40, hi=41)[0]
    a, b = shared + [7, 8, 9], shared + [10, 11]
    engine = make_engine(model_dir)
    out_a = engine.generate([a], GREEDY)[0]
    out_b = engine.generate([b], GREEDY)[0]  # the default policy reuses only `prefix` segments...
    assert out_b.stats.prefix_hit_tokens == 0
    from engine import LinkPolicy

    out_b = engine.generate([b], GREEDY, link_policy=LinkPolicy("prefix"))[0]  # ...`prefix` reuses any exact prefix
    assert out_a.token_ids == alone(a) and out_b.token_ids == alone(b)
    assert out_b.stats.prefix_hit_tokens == (len(shared) // 4) * 4
    assert out_b.stats.recomputed_tokens == len(b) - out_b.stats.prefix_hit_tokens
    assert_no_leaks(engine)


def test_preemption_recomputes_exactly_and_frees_everything(model_dir, alone):
    prompts = random_prompts(6, seed=4, lo=20, hi=30)
    params = SamplingParams(max_tokens=30, temperature=0.0, ignore_eos=True)
    # 6 requests need ~6 * 15 blocks at the end; 40 blocks force preemptions.
    engine = make_engine(model_dir, num_blocks=40, enable_prefix_caching=False)
    outs = engine.generate(prompts, params)
    assert sum(o.stats.num_preemptions for o in outs) > 0
    for prompt, out in zip(prompts, outs):
        assert out.token_ids == alone(prompt, params)
        assert len(out.token_ids) == 30
    assert_no_leaks(engine)


def test_abort_frees_blocks_and_others_continue(model_dir, alone):
    a, b = random_prompts(2, seed=5)
    engine = make_engine(model_dir)
    ra = engine.add_request(a, GREEDY)
    rb = engine.add_request(b, GREEDY)
    engine.step()
    engine.step()
    (out,) = engine.abort(ra)
    assert out.finished and out.finish_reason == "abort"
    assert engine.abort(ra) == []  # already gone
    final = None
    while engine.has_unfinished():
        for o in engine.step():
            if o.request_id == rb and o.finished:
                final = o
    assert final.token_ids == alone(b)
    assert_no_leaks(engine)


def test_streamed_deltas_add_up(model_dir):
    engine = make_engine(model_dir)
    rid = engine.add_request(random_prompts(1, seed=6)[0], SamplingParams(max_tokens=5, temperature=0.0, ignore_eos=True))
    deltas, last = [], None
    while engine.has_unfinished():
        for out in engine.step():
            deltas += out.new_token_ids
            last = out
    assert last.request_id == rid and last.finished and deltas == last.token_ids and len(deltas) == 5
    assert last.stats.ttft_s is not None and last.stats.ttft_s >= 0
