"""Query-aware selection: the pure choice of positions, its plan, and the engine under it."""

import random

import pytest

from engine import Engine, EngineConfig, LinkPolicy, SamplingParams, Segment
from engine.query_select import select_positions
from engine.recompute import ChunkSpan, plan_prompt

GREEDY = SamplingParams(max_tokens=10, temperature=0.0, ignore_eos=True)
# prefix 4 | chunk A 6 | chunk B 6 | text 3  (positions 0-3, 4-9, 10-15, 16-18)
SEGS = [Segment.prefix(range(4)), Segment.chunk(range(6)), Segment.chunk(range(6)), Segment.text(range(3))]
SPANS = [ChunkSpan(0, 4, 6), ChunkSpan(1, 10, 6)]
POSITIONS = list(range(4, 16))
#         A: 4    5    6    7    8    9  | B: 10   11   12   13   14   15
SCORES = [0.1, 0.9, 0.0, 0.8, 0.1, 0.1, 0.3, 0.3, 0.2, 0.2, 0.2, 0.3]


def test_query_plan_candidates_are_the_chunk_tokens_outside_the_tail():
    plan = plan_prompt(SEGS, LinkPolicy("query", ratio=0.2, tail=0.25), 4)
    assert plan.runs == ((4, 19),)
    assert plan.blend_candidates == ((4, 13),)
    assert plan.blend_ratio == 0.2
    assert plan.exact_len == 4


@pytest.mark.parametrize("ratio, kept", [
    (0.0, set()),
    (0.5, {4, 5, 6, 7, 8, 9}),  # A's mean 0.333 > B's 0.25
    (0.75, {4, 5, 6, 7, 8, 9, 13, 14, 15}),  # then B's last 3
    (0.25, {7, 8, 9}),  # A's last 3
    (1.0, set(POSITIONS)),
])
def test_select_positions(ratio, kept):
    assert select_positions(SCORES, POSITIONS, SPANS, ratio) == kept


def test_equal_chunk_scores_keep_the_later_chunk():
    assert select_positions([0.5] * 12, POSITIONS, SPANS, 0.5) == set(range(10, 16))


def test_query_policy_label_and_validation():
    assert LinkPolicy("query", ratio=0.1).label() == "query-10"
    assert LinkPolicy("query", ratio=0.2, tail=0.1).label() == "query-20+tail-10"
    with pytest.raises(ValueError, match="ratio must be a number in"):
        LinkPolicy("query", ratio=1.5)


def make_engine(model_dir, **kw):
    return Engine(EngineConfig(model=str(model_dir), num_blocks=512, block_size=4, **kw))


def rag_prompt(seed):
    rng = random.Random(seed)

    def ids(n):
        return [rng.randrange(3, 300) for _ in range(n)]

    return [Segment.prefix([1, *ids(4)]), *[Segment.chunk(ids(n)) for n in (17, 9, 23)], Segment.text(ids(6))]


@pytest.mark.parametrize("seed", [0, 1])
def test_unlimited_query_budgets_equal_full(hf_model_dirs, seed):
    engine = make_engine(hf_model_dirs["llama_gqa_llama3"])
    prompt = rag_prompt(seed)
    full = engine.generate([prompt], GREEDY, link_policy=LinkPolicy("full"))[0]
    for policy in (LinkPolicy("query", ratio=1.0),
                   LinkPolicy("query", ratio=0.1, tail=1.0)):
        out = engine.generate([prompt], GREEDY, link_policy=policy)[0]
        assert out.token_ids == full.token_ids, policy
        assert out.stats.recomputed_tokens == out.stats.prompt_tokens - out.stats.prefix_hit_tokens, policy


def test_query_budget_counts_the_kept_candidates(hf_model_dirs):
    engine = make_engine(hf_model_dirs["llama_gqa_llama3"])
    prompt = rag_prompt(2)  # 5 + 49 chunk tokens + 6; the last position is never a candidate
    out = engine.generate([prompt], GREEDY, link_policy=LinkPolicy("query", ratio=0.25))[0]
    # the prefix's uncached part + question 6 + ceil(0.25 * 49) = 13 candidates kept
    assert out.stats.recomputed_tokens == 6 + 13 + (5 - out.stats.prefix_hit_tokens)


def test_a_prompt_split_over_steps_is_scored_with_its_question_in_every_step(hf_model_dirs):
    """With 16 tokens a step, the 49 candidates and the question of the prompt span several steps."""
    engine = make_engine(hf_model_dirs["llama_gqa_llama3"], max_num_batched_tokens=16)
    prompt = rag_prompt(3)
    full = engine.generate([prompt], GREEDY, link_policy=LinkPolicy("full"))[0]
    out = engine.generate([prompt], GREEDY, link_policy=LinkPolicy("query", ratio=1.0))[0]
    assert out.token_ids == full.token_ids
    part = engine.generate([prompt], GREEDY, link_policy=LinkPolicy("query", ratio=0.25))[0]
    # Every step keeps a quarter of its own candidates (rounded up), never all of them.
    assert part.stats.recomputed_tokens - 6 - (5 - part.stats.prefix_hit_tokens) < 49 // 2
