"""APE-style tempering as a link policy: its plan, the engine under it, backends that refuse it."""

import random

import pytest

from engine import Engine, EngineConfig, LinkPolicy, SamplingParams, Segment
from engine.recompute import plan_prompt

GREEDY = SamplingParams(max_tokens=10, temperature=0.0, ignore_eos=True, logprobs=5)
# prefix 4 | chunk A 6 | chunk B 6 | text 3  (positions 0-3, 4-9, 10-15, 16-18)
SEGS = [Segment.prefix(range(4)), Segment.chunk(range(6)), Segment.chunk(range(6)), Segment.text(range(3))]


@pytest.mark.parametrize("policy, runs", [
    (LinkPolicy("naive", temperature=0.8), ((4, 16),)),
    (LinkPolicy("naive", temperature=0.8, tail=0.25), ((4, 13),)),
    (LinkPolicy("legolink", k=2, context_scale=0.5), ((6, 10), (12, 16))),
    (LinkPolicy("naive", temperature=0.8, tail=1.0), None),
    (LinkPolicy("naive"), None),
])
def test_tempered_positions_are_the_linked_chunk_tokens(policy, runs):
    plan = plan_prompt(SEGS, policy, 4)
    if runs is None:
        assert plan.tempering is None
    else:
        t = plan.tempering
        assert (t.runs, t.query_from, t.temperature, t.scale) == (runs, 16, policy.temperature, policy.context_scale)


def test_ape_policy_fields_are_validated_and_labelled():
    assert LinkPolicy("naive", tail=0.15, temperature=0.8).label() == "naive+tail-15+ape-0.8-1"
    assert not LinkPolicy("full", temperature=0.5).tempers
    with pytest.raises(ValueError, match=r"temperature must be a number in \(0, 10\]"):
        LinkPolicy("naive", temperature=0.0)
    with pytest.raises(ValueError, match="use naive or legolink"):
        LinkPolicy("cacheblend", context_scale=0.5)


def rag_prompt(seed):
    rng = random.Random(seed)

    def ids(n):
        return [rng.randrange(3, 300) for _ in range(n)]

    return [Segment.prefix([1, *ids(4)]), *[Segment.chunk(ids(n)) for n in (17, 9, 23)], Segment.text(ids(6))]


@pytest.fixture
def engine(hf_model_dirs):
    return Engine(EngineConfig(model=str(hf_model_dirs["llama_gqa_llama3"]), num_blocks=512, block_size=4))


@pytest.mark.parametrize("seed", [0, 1])
def test_unlimited_budget_with_tempering_equals_full(engine, seed):
    prompt = rag_prompt(seed)
    full = engine.generate([prompt], GREEDY, link_policy=LinkPolicy("full"))[0]
    for policy in (LinkPolicy("naive", tail=1.0, temperature=0.5, context_scale=0.5),
                   LinkPolicy("legolink", k=64, temperature=2.0)):
        assert engine.generate([prompt], GREEDY, link_policy=policy)[0].token_ids == full.token_ids, policy


def test_tempering_changes_every_step_of_a_linked_prompt(engine):
    prompt = rag_prompt(2)
    naive = engine.generate([prompt], GREEDY, link_policy=LinkPolicy("naive"))[0]
    ape = engine.generate([prompt], GREEDY, link_policy=LinkPolicy("naive", temperature=0.5, context_scale=0.5))[0]
    assert (ape.stats.recomputed_tokens + ape.stats.prefix_hit_tokens
            == naive.stats.recomputed_tokens + naive.stats.prefix_hit_tokens)
    # Teacher-forced on naive's tokens, each step's distribution moves: decode rows are tempered too.
    forced = engine.generate([[*prompt, Segment.text(naive.token_ids[:3])]], GREEDY,
                             link_policy=LinkPolicy("naive", temperature=0.5, context_scale=0.5))[0]
    base = engine.generate([[*prompt, Segment.text(naive.token_ids[:3])]], GREEDY,
                           link_policy=LinkPolicy("naive"))[0]
    assert ape.logprobs[0] != naive.logprobs[0]
    assert forced.logprobs[0] != base.logprobs[0]


def test_engine_rejects_tempering_on_a_backend_that_cannot_apply_it(engine):
    engine.runner.attention.supports_tempering = False
    with pytest.raises(ValueError, match="backend cannot apply temperature or context_scale"):
        engine.make_request(rag_prompt(0), GREEDY, LinkPolicy("naive", temperature=0.8))
    engine.make_request(rag_prompt(0), GREEDY, LinkPolicy("naive"))
