"""Routing-stats record: compact, capped with true counts, parsed tolerantly."""

import pytest

from router.stats import ReplicaStats, make_routing_stats

KEYS = [f"{i:016x}" * 2 for i in range(10)]


def test_make_routing_stats_is_compact_capped_and_counted():
    d = make_routing_stats(
        queue_len=3, running_tokens=900, free_blocks=10, total_blocks=40,
        gpu_keys=KEYS[:4] + KEYS[:2], host_keys=KEYS, max_keys_per_tier=5,
    )
    assert d == {
        "v": 1, "queue_len": 3, "running_tokens": 900, "free_blocks": 10, "total_blocks": 40,
        "gpu": [k[:16] for k in KEYS[:4]], "gpu_count": 4,
        "host": [k[:16] for k in KEYS[:5]], "host_count": 10,
    }
    stats = ReplicaStats.from_dict(d)
    assert stats.reported and not stats.complete
    assert stats.gpu_keys == tuple(k[:16] for k in KEYS[:4])
    assert stats.kv_free_fraction == 0.25


def test_uncapped_stats_are_complete():
    d = make_routing_stats(queue_len=0, running_tokens=0, free_blocks=0, total_blocks=0,
                           gpu_keys=KEYS[:2], host_keys=())
    stats = ReplicaStats.from_dict(d)
    assert stats.complete and stats.host_keys == () and stats.kv_free_fraction is None


@pytest.mark.parametrize("raw", [None, {}])
def test_missing_stats_parse_as_unreported(raw):
    assert ReplicaStats.from_dict(raw) == ReplicaStats(reported=False)


def test_foreign_fields_are_ignored():
    d = make_routing_stats(queue_len=1, running_tokens=2, free_blocks=3, total_blocks=4,
                           gpu_keys=(), host_keys=())
    assert ReplicaStats.from_dict({**d, "other_team": [1, 2]}).queue_len == 1


@pytest.mark.parametrize(
    "patch, message",
    [({"v": 2}, "version"), ({"queue_len": -1}, "queue_len"), ({"gpu": "abc"}, "'gpu'"),
     ({"host_count": 0, "host": ["x"]}, "longer"), ({"free_blocks": True}, "free_blocks")],
)
def test_malformed_stats_raise_value_error(patch, message):
    d = make_routing_stats(queue_len=1, running_tokens=2, free_blocks=3, total_blocks=4,
                           gpu_keys=(), host_keys=())
    with pytest.raises(ValueError, match=message):
        ReplicaStats.from_dict({**d, **patch})


def test_make_routing_stats_rejects_impossible_counts():
    with pytest.raises(ValueError, match="free_blocks"):
        make_routing_stats(queue_len=0, running_tokens=0, free_blocks=5, total_blocks=4,
                           gpu_keys=(), host_keys=())
    with pytest.raises(ValueError, match="queue_len"):
        make_routing_stats(queue_len=-1, running_tokens=0, free_blocks=0, total_blocks=0,
                           gpu_keys=(), host_keys=())
