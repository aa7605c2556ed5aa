"""The simulation's reference policies: exact decisions of the prefix tree and the oracle."""

import random

from router.hint import RoutingHint
from router.index import TierTokens
from router.policy import ReplicaLoad
from sim.baselines import OraclePolicy, PrefixTreePolicy


def hint(*chunks: tuple[str, int], prefix: int = 10, question: int = 10) -> RoutingHint:
    return RoutingHint(chunk_keys=tuple(k for k, _ in chunks), chunk_tokens=tuple(n for _, n in chunks),
                       prefix_tokens=prefix, prefix_key="sys" if prefix else None,
                       total_tokens=prefix + sum(n for _, n in chunks) + question)


def load(rid, queue=0, gpu=0, max_queue=8):
    return ReplicaLoad(rid, queue_len=queue, max_queue_len=max_queue, held=TierTokens(gpu=gpu))


def test_prefix_tree_follows_the_longest_matched_prefix_and_counts_what_it_sent():
    policy = PrefixTreePolicy(imbalance_threshold=2, match_rate_threshold=0.1)
    rng = random.Random(0)
    replicas = [load("a"), load("b"), load("c")]
    # Nothing sent yet: every replica has 0 tokens, the least loaded (first) of them wins.
    assert policy.choose(hint(("d1", 100), ("d2", 100)), replicas, rng).replica_id == "a"
    # Only the shared prefix matches (10 of 130 tokens, 7.7%): the replicas sent fewest tokens.
    d = policy.choose(hint(("d3", 100), ("d4", 10)), replicas, rng)
    assert (d.replica_id, d.reason) == ("b", "affinity")
    # d1 first: "a" owns prefix + d1 (110 of 220 tokens) and wins although "c" sent nothing.
    assert policy.choose(hint(("d1", 100), ("d9", 100)), replicas, rng).replica_id == "a"
    # The same documents in another order match only the prefix: "c" has sent fewest.
    assert policy.choose(hint(("d2", 100), ("d1", 100)), replicas, rng).replica_id == "c"
    # "c" owns prefix + d2; a request starting with d2 follows it even when "c" is busier.
    d = policy.choose(hint(("d2", 100)), [load("a"), load("b"), load("c", queue=2)], rng)
    assert (d.replica_id, d.reason) == ("c", "affinity")


def test_prefix_tree_uses_power_of_two_when_queues_are_imbalanced_or_the_group_is_full():
    for replicas in ([load("a", queue=3), load("b", queue=0)], [load("a", queue=2, max_queue=2), load("b", queue=1)]):
        policy = PrefixTreePolicy(imbalance_threshold=2)
        assert policy.choose(hint(("d1", 100)), [load("a"), load("b")], random.Random(0)).replica_id == "a"
        d = policy.choose(hint(("d1", 100)), replicas, random.Random(0))
        assert (d.replica_id, d.reason) == ("b", "load")


def test_oracle_takes_the_biggest_holder_within_the_load_bound():
    oracle = OraclePolicy(imbalance_threshold=2)
    rng = random.Random(0)
    h = hint(("d1", 100), ("d2", 100))
    d = oracle.choose(h, [load("a", queue=2, gpu=200), load("b", queue=0, gpu=100), load("c", queue=1)], rng)
    assert (d.replica_id, d.reason) == ("a", "affinity")
    # Past the bound (3 > 0 + 2) the holder of more is not eligible.
    d = oracle.choose(h, [load("a", queue=3, gpu=200), load("b", queue=0, gpu=100)], rng)
    assert d.replica_id == "b"
    # Equal holdings: the shorter queue.
    d = oracle.choose(h, [load("a", queue=1, gpu=100), load("b", queue=0, gpu=100)], rng)
    assert d.replica_id == "b"
    # A saturated replica is never chosen while another is open.
    d = oracle.choose(h, [load("a", queue=8, gpu=200), load("b", queue=7)], rng)
    assert (d.replica_id, d.reason) == ("b", "random")
