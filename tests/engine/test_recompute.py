import pytest

from engine.recompute import merge_runs, plan_prompt, prefix_cacheable_len, subtract_runs
from engine.segments import LinkPolicy, Segment

# prefix 4 | chunk A 6 | chunk B 6 | text 3  (positions 0-3, 4-9, 10-15, 16-18)
SEGS = [Segment.prefix(range(4)), Segment.chunk(range(6)), Segment.chunk(range(6)), Segment.text(range(3))]


@pytest.mark.parametrize(
    "policy, hit, runs, exact",
    [
        (LinkPolicy("full"), 0, ((0, 19),), 19),
        (LinkPolicy("prefix"), 16, ((16, 19),), 19),
        (LinkPolicy("naive"), 0, ((0, 4), (16, 19)), 4),
        (LinkPolicy("naive"), 4, ((16, 19),), 4),
        (LinkPolicy("legolink", k=2), 0, ((0, 6), (10, 12), (16, 19)), 6),
        (LinkPolicy("legolink", k=6), 0, ((0, 19),), 19),
        (LinkPolicy("cacheblend", ratio=0.15), 0, ((0, 19),), 4),
        (LinkPolicy("cacheblend", ratio=1.0), 0, ((0, 19),), 19),
        # tail: the last chunk tokens, walking back from the end of chunk B (3, 6, 9, 12 of 12).
        (LinkPolicy("naive", tail=0.25), 0, ((0, 4), (13, 19)), 4),
        (LinkPolicy("legolink", k=2, tail=0.25), 0, ((0, 6), (10, 12), (13, 19)), 6),
        (LinkPolicy("naive", tail=0.5), 0, ((0, 4), (10, 19)), 4),
        (LinkPolicy("naive", tail=0.75), 4, ((7, 19),), 4),
        (LinkPolicy("naive", tail=1.0), 0, ((0, 19),), 19),
        (LinkPolicy("full", tail=0.5), 0, ((0, 19),), 19),
    ],
)
def test_recompute_sets(policy, hit, runs, exact):
    plan = plan_prompt(SEGS, policy, hit)
    assert plan.runs == runs
    assert plan.exact_len == exact
    assert [(c.start, c.num_tokens) for c in plan.linked] == ([(4, 6), (10, 6)] if policy.reuses_chunks else [])


def test_cacheblend_candidates_are_chunk_tokens_but_never_the_last_position():
    plan = plan_prompt([Segment.prefix([1]), Segment.chunk(range(5))], LinkPolicy("cacheblend"), 0)
    assert plan.blend_candidates == ((1, 5),)
    assert plan.runs == ((0, 6),)


def test_tail_positions_are_never_cacheblend_candidates():
    plan = plan_prompt(SEGS, LinkPolicy("cacheblend", ratio=0.15, tail=0.5), 0)
    assert plan.blend_candidates == ((4, 10),)
    assert plan.runs == ((0, 19),)
    assert LinkPolicy("cacheblend", tail=0.5).label() == "cacheblend-15+tail-50"
    assert LinkPolicy("full", tail=0.5).label() == "full"
    with pytest.raises(ValueError, match="tail must be a number in"):
        LinkPolicy("naive", tail=1.5)


def test_legolink_skips_a_chunk_at_position_zero_but_keeps_the_last_token():
    plan = plan_prompt([Segment.chunk(range(6)), Segment.chunk(range(4))], LinkPolicy("legolink", k=2), 0)
    assert plan.runs == ((6, 8), (9, 10))
    assert plan.exact_len == 0


def test_prefix_cacheable_len():
    assert prefix_cacheable_len(SEGS, LinkPolicy("full")) == 0
    assert prefix_cacheable_len(SEGS, LinkPolicy("prefix")) == 18
    assert prefix_cacheable_len(SEGS, LinkPolicy("legolink")) == 4
    assert prefix_cacheable_len([Segment.prefix(range(3))], LinkPolicy("naive")) == 2


def test_run_arithmetic():
    assert merge_runs([(5, 7), (0, 2), (2, 3), (6, 9), (4, 4)]) == ((0, 3), (5, 9))
    assert subtract_runs([(0, 10)], [(2, 4), (6, 7)]) == ((0, 2), (4, 6), (7, 10))
