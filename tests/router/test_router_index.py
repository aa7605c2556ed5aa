"""ChunkResidencyIndex: learns from decisions, corrected by stats, bounded."""

from router.hint import RoutingHint
from router.index import ChunkResidencyIndex, TierTokens
from router.stats import ReplicaStats, make_routing_stats


def key(i: int) -> str:
    return f"{i:016x}" * 2


def hint(*chunks: tuple[int, int], prefix: tuple[int, int] | None = None) -> RoutingHint:
    keys = tuple(key(i) for i, _ in chunks)
    tokens = tuple(n for _, n in chunks)
    prefix_key, prefix_tokens = (key(prefix[0]), prefix[1]) if prefix else (None, 0)
    return RoutingHint(chunk_keys=keys, chunk_tokens=tokens, prefix_key=prefix_key,
                       prefix_tokens=prefix_tokens, total_tokens=sum(tokens) + prefix_tokens + 5)


def stats(gpu=(), host=(), cap=1024) -> ReplicaStats:
    return ReplicaStats.from_dict(make_routing_stats(
        queue_len=0, running_tokens=0, free_blocks=0, total_blocks=0,
        gpu_keys=[key(i) for i in gpu], host_keys=[key(i) for i in host], max_keys_per_tier=cap))


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_decision_is_learned_at_once_and_others_see_it_as_cluster():
    index = ChunkResidencyIndex(clock=FakeClock())
    index.record_decision("a", hint((1, 100), (2, 50), prefix=(9, 20)))
    request = hint((2, 50), (3, 30), prefix=(9, 20))
    assert index.held_tokens("a", request) == TierTokens(gpu=70, host=0, cluster=0)
    assert index.held_tokens("b", request) == TierTokens(gpu=0, host=0, cluster=70)
    assert index.held_tokens("a", request).local == 70


def test_stats_set_tiers_and_drop_what_the_replica_evicted():
    clock = FakeClock()
    index = ChunkResidencyIndex(decision_grace_s=5.0, clock=clock)
    index.record_decision("a", hint((1, 10), (2, 10)))
    index.apply_stats("a", stats(gpu=[3], host=[2, 4, 5]))
    # Keys 1 and 2 were learned a moment ago: stats that may predate the decision keep them
    # (as the newest), and the replica's reported 4 keys bound the rest: 5, its least recent, goes.
    assert [index.tier_of("a", key(i)) for i in (1, 2, 3, 4, 5)] == ["gpu", "gpu", "gpu", "host", None]
    clock.now += 6.0
    index.apply_stats("a", stats(gpu=[3], host=[2, 4, 5]))
    assert [index.tier_of("a", key(i)) for i in (1, 2, 3, 4, 5)] == [None, "host", "gpu", "host", "host"]
    assert index.held_tokens("a", hint((1, 10), (2, 10), (3, 7))) == TierTokens(7, 10, 0)
    # A key known only from stats goes as soon as a complete record omits it.
    index.apply_stats("a", stats(gpu=[], host=[2]))
    assert index.tier_of("a", key(3)) is None and index.num_keys("a") == 1


def test_learned_keys_push_out_the_least_recent_once_capacity_is_known():
    clock = FakeClock()
    index = ChunkResidencyIndex(decision_grace_s=0.0, clock=clock)
    # Before any stats nothing but max_keys_per_replica bounds the replica.
    index.record_decision("a", hint(*((i, 10) for i in range(6))))
    assert index.num_keys("a") == 6
    clock.now += 1.0
    index.apply_stats("a", stats(gpu=[12, 11, 10]))  # a full cache of 3 keys
    assert [i for i in range(13) if index.tier_of("a", key(i))] == [10, 11, 12]
    index.record_decision("a", hint((20, 10), (21, 10)))  # the replica's LRU evicts 10 and 11
    assert [i for i in range(22) if index.tier_of("a", key(i))] == [12, 20, 21]


def test_capped_stats_upgrade_but_never_drop():
    clock = FakeClock()
    index = ChunkResidencyIndex(decision_grace_s=0.0, clock=clock)
    index.record_decision("a", hint((1, 10), (2, 10)))
    clock.now += 1.0
    index.apply_stats("a", stats(host=[5, 6, 7, 8, 9], cap=2))  # lists 5 and 6, counts 5
    assert [index.tier_of("a", key(i)) for i in (1, 2, 5, 6, 7)] == ["gpu", "gpu", "host", "host", None]


def test_unreported_stats_change_nothing():
    index = ChunkResidencyIndex(decision_grace_s=0.0, clock=FakeClock())
    index.record_decision("a", hint((1, 10)))
    index.apply_stats("a", ReplicaStats.from_dict({}))
    assert index.tier_of("a", key(1)) == "gpu"


def test_index_is_bounded_per_replica_and_evicts_least_recent():
    index = ChunkResidencyIndex(max_keys_per_replica=3, clock=FakeClock())
    for i in range(10):
        index.record_decision("a", hint((i, 1)))
    index.record_decision("a", hint((7, 1)))  # refresh 7
    index.record_decision("a", hint((10, 1)))
    assert index.num_keys("a") == 3
    assert [i for i in range(11) if index.tier_of("a", key(i))] == [7, 9, 10]
    # Evicted keys no longer count as held anywhere (cluster tier included).
    assert index.held_tokens("b", hint((0, 5), (9, 4))) == TierTokens(0, 0, 4)


def test_removing_a_replica_releases_its_keys():
    index = ChunkResidencyIndex(clock=FakeClock())
    index.record_decision("a", hint((1, 10)))
    index.record_decision("b", hint((1, 10), (2, 5)))
    index.remove_replica("b")
    assert index.replica_ids() == ["a"]
    assert index.held_tokens("c", hint((1, 10), (2, 5))) == TierTokens(0, 0, 10)
    index.retain_replicas(["c"])
    assert index.replica_ids() == []
    assert index.held_tokens("c", hint((1, 10))) == TierTokens(0, 0, 0)
    # A decision or stats report about a replica that left, arriving late, does not revive it.
    index.record_decision("b", hint((1, 10)))
    index.apply_stats("b", stats(gpu=[1]))
    assert index.replica_ids() == []
    assert index.held_tokens("c", hint((1, 10))) == TierTokens(0, 0, 0)


def test_a_replica_seen_evicting_is_bounded_by_its_reported_capacity():
    index = ChunkResidencyIndex(decision_grace_s=5.0, clock=FakeClock())
    for replica in ("growing", "full"):
        index.apply_stats(replica, stats(gpu=[2, 1]))
    index.apply_stats("full", stats(gpu=[3, 2]))  # it dropped 1: it evicts at 2 keys
    for replica in ("growing", "full"):
        index.record_decision(replica, hint((4, 10), (5, 10), (6, 10)))
    # Not seen evicting: the keys learned since its stats all stay (it may hold more than 2).
    assert [i for i in range(7) if index.tier_of("growing", key(i))] == [4, 5, 6]
    assert [i for i in range(7) if index.tier_of("full", key(i))] == [5, 6]


def test_unlisted_keys_learned_before_listed_ones_go_first():
    clock = FakeClock()
    index = ChunkResidencyIndex(decision_grace_s=5.0, clock=clock)
    index.apply_stats("a", stats(gpu=[1, 0]))
    index.apply_stats("a", stats(gpu=[1]))  # 0 dropped: a full replica of (at most) 2 keys
    for i in (2, 3, 4):
        clock.now += 0.1
        index.record_decision("a", hint((i, 10)))
    # The stats saw 3 (learned after 2) but not 2: with room for 2 keys, 2 is the one to go.
    index.apply_stats("a", stats(gpu=[3, 1]))
    assert [i for i in range(5) if index.tier_of("a", key(i))] == [3, 4]


def test_stats_that_list_a_newer_key_drop_older_unlisted_ones_within_the_grace():
    clock = FakeClock()
    index = ChunkResidencyIndex(decision_grace_s=30.0, clock=clock)
    index.apply_stats("a", stats(gpu=[2, 1, 7, 8]))  # complete: a key the index lacks, "a" lacks
    clock.now += 0.1
    index.record_decision("a", hint((3, 10), (4, 10)))  # both new to "a"
    clock.now += 0.1
    index.record_decision("a", hint((5, 10)))
    # Taken after the first decision (4 is listed) and before the second: 3 came with 4 but was
    # evicted since; 5 may still be on its way; 1 is gone; with room for 4 keys, 8 goes next.
    index.apply_stats("a", stats(gpu=[4, 2, 7, 8]))
    assert [i for i in range(9) if index.tier_of("a", key(i))] == [2, 4, 5, 7]
    # A key the index had already proves nothing about when stats were taken: 2 routed again
    # with the new 6, then stats listing 2 (but not 6) may predate that decision: 6 stays.
    clock.now += 0.1
    index.record_decision("a", hint((2, 10), (6, 10)))
    index.apply_stats("a", stats(gpu=[2, 4, 5, 7]))
    assert [i for i in range(9) if index.tier_of("a", key(i))] == [2, 4, 5, 6]
