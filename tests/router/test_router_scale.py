"""A small configuration of the scale benchmark: ours against the oracle, the prefix tree and
power-of-two on a Zipf workload with 4-8 permuted documents per request (fixed seeds)."""

import random

import pytest

from router.config import RouterConfig
from router.policy import CacheAwarePolicy, PowerOfTwoPolicy
from sim.baselines import OraclePolicy, PrefixTreePolicy
from sim.cluster import SimConfig, simulate
from sim.workload import WorkloadConfig, make_documents, make_requests

pytestmark = pytest.mark.timeout(120)


def test_ours_near_the_oracle_well_above_the_prefix_tree_with_short_queues():
    cfg = WorkloadConfig(num_documents=2000, min_docs_per_request=4, max_docs_per_request=8,
                         num_requests=4000, zipf_s=0.8)
    rng = random.Random(0)
    requests = make_requests(cfg, make_documents(cfg, rng), rng)
    sim = SimConfig(num_replicas=16, cache_tokens=20_000, utilization=1.0, warmup_requests=1000)
    ours_config = RouterConfig(cluster_weight=0.0)  # the simulated replicas have no cluster tier
    ours = simulate(CacheAwarePolicy(ours_config), requests, sim, random.Random(1), ours_config)
    pow2 = simulate(PowerOfTwoPolicy(), requests, sim, random.Random(1), residency="none")
    prefix = simulate(PrefixTreePolicy(ours_config.imbalance_threshold), requests, sim, random.Random(1),
                      residency="none")
    oracle = simulate(OraclePolicy(ours_config.imbalance_threshold), requests, sim, random.Random(1),
                      residency="exact")
    rates = {n: r.hit_rate for n, r in [("ours", ours), ("pow2", pow2), ("prefix", prefix), ("oracle", oracle)]}
    assert rates["ours"] >= 0.9 * rates["oracle"], rates
    assert rates["ours"] >= 1.5 * rates["prefix"], rates
    assert ours.p99_queue_len <= 1.2 * pow2.p99_queue_len, (ours.p99_queue_len, pow2.p99_queue_len)
    assert len(ours.queue_lens) == 3000  # the warm-up is not measured
