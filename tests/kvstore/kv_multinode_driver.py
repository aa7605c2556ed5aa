"""Multi-node scenarios of the chunk store on a simulated Ray cluster (run by test_kv_multinode.py
in a fresh process, since a driver connects to one Ray instance for its life).

    python -m tests.kvstore.kv_multinode_driver {fetch|failover|failover_sharded} STORE_DIR

Three nodes on this machine (``ray.cluster_utils.Cluster``), each with 1 CPU, 100 MiB of object
store and a custom resource naming it; "replicas" are actors pinned to a node, each with its own
TieredStore (object-store tier + the persistent directory STORE_DIR, which every node sees).
Prints one JSON report as the last line of stdout; the test asserts on it.
"""

from __future__ import annotations

import json
import signal
import sys
import time
import uuid
from pathlib import Path

import ray
import torch
from ray.cluster_utils import Cluster
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from kvstore.builder import build_store
from kvstore.config import StoreConfig
from kvstore.object_store import directory_names, open_directories, shard_of

from tests.support.store import FP, key, make_kv, same_bits

ROOT = Path(__file__).resolve().parents[2]

MiB = 1024 * 1024
NAMESPACE = "epic-multinode"
NODES = ("head", "node_a", "node_b")
DEADLINE_S = 240  # the whole scenario, cluster start and shutdown included


def kv_of(i: int) -> torch.Tensor:
    return make_kv(i, torch.bfloat16, num_tokens=256, num_kv_heads=2, head_dim=64)  # 256 KiB


@ray.remote(num_cpus=0)
class StoreReplica:
    """Stands for an engine replica: its own TieredStore, on the node it was placed on."""

    def __init__(self, fields: dict) -> None:
        self.store = build_store(StoreConfig(**fields), FP)

    def node_id(self) -> str:
        return ray.get_runtime_context().get_node_id()

    def put(self, seeds: list[int]) -> bool:
        for i in seeds:
            self.store.put_chunk(key(i), kv_of(i))
        return self.store.flush(60)

    def get(self, seeds: list[int]) -> list[dict]:
        """Per chunk: the tier that answered (None: a miss), bit-exactness, seconds taken."""
        out = []
        for i in seeds:
            start = time.perf_counter()
            hit = self.store.get_chunk(key(i))  # never raises: a failing tier reads as a miss
            out.append({
                "tier": None if hit is None else hit.tier,
                "exact": hit is not None and same_bits(hit.kv, kv_of(i)),
                "seconds": round(time.perf_counter() - start, 3),
            })
        return out

    def errors(self) -> dict:
        return {name: t["errors"] for name, t in self.store.stats()["tiers"].items()}


def start_cluster() -> tuple[Cluster, dict]:
    cluster = Cluster(initialize_head=True, head_node_args={
        "num_cpus": 1, "object_store_memory": 100 * MiB, "resources": {"head": 1}})
    nodes = {"head": cluster.head_node}
    for name in NODES[1:]:
        nodes[name] = cluster.add_node(num_cpus=1, object_store_memory=100 * MiB, resources={name: 1})
    cluster.wait_for_nodes(timeout=120)
    ray.init(address=cluster.address, namespace=NAMESPACE, log_to_driver=False,
             runtime_env={"env_vars": {"PYTHONPATH": str(ROOT)}})
    return cluster, nodes


def replica(node: str, fields: dict):
    return StoreReplica.options(resources={node: 0.01}).remote(fields)


def directories_on(config: StoreConfig, node_ids: list[str]) -> list:
    """Create directory shard i pinned to node ``node_ids[i]`` (so Ray will not restart it
    elsewhere when that node dies: the clients re-create it)."""
    directories = open_directories(config, [NodeAffinitySchedulingStrategy(n, soft=False) for n in node_ids])
    assert ray.get([d.node_id.remote() for d in directories], timeout=120) == node_ids
    return directories


def fetch(store_dir: str, nodes: dict) -> dict:
    """A chunk put on node_a (directory there too) is read on node_b and on the head."""
    fields = dict(memory_bytes=0, object_store_bytes=32 * MiB, persistent=f"dir://{store_dir}",
                  object_store_timeout_s=20.0, directory_actor_name=f"dir-{uuid.uuid4().hex[:6]}",
                  directory_actor_namespace=NAMESPACE)
    config = StoreConfig(**fields)
    (directory,) = directories_on(config, [nodes["node_a"].node_id])
    writer, reader_b, reader_head = (replica(n, fields) for n in ("node_a", "node_b", "head"))
    put_ok = ray.get(writer.put.remote([1, 2]), timeout=120)
    report = {
        "directory_node": ray.get(directory.node_id.remote(), timeout=30),
        "nodes": {n: ray.get(r.node_id.remote(), timeout=30)
                  for n, r in (("node_a", writer), ("node_b", reader_b), ("head", reader_head))},
        "node_ids": {n: nodes[n].node_id for n in NODES},
        "put_ok": put_ok,
        "reader_b": ray.get(reader_b.get.remote([1, 2]), timeout=120),
        "reader_head": ray.get(reader_head.get.remote([2, 1]), timeout=120),
        "errors": [ray.get(r.errors.remote(), timeout=30) for r in (writer, reader_b, reader_head)],
    }
    return report


def failover(store_dir: str, cluster: Cluster, nodes: dict, shard_nodes: list[str]) -> dict:
    """The node of directory shard 0 dies: gets of its keys fall back to the persistent tier (the
    other shards' keys stay in the object store); the shard restarts on another node and serves
    chunks put again."""
    fields = dict(memory_bytes=0, object_store_bytes=32 * MiB, persistent=f"dir://{store_dir}",
                  object_store_timeout_s=10.0, directory_actor_name=f"dir-{uuid.uuid4().hex[:6]}",
                  directory_actor_namespace=NAMESPACE, directory_shards=len(shard_nodes))
    config = StoreConfig(**fields)
    directories_on(config, [nodes[n].node_id for n in shard_nodes])
    lost_name = directory_names(config)[0]
    seeds = [1, 2, 3, 4, 5, 6]
    writer = replica("node_a", fields)
    cached_reader = replica("head", fields)  # keeps the refs it looked up
    asking_reader = replica("node_a", {**fields, "object_store_ref_cache_bytes": 0})  # asks every time
    # The asking reader reads first after the loss: a reader that falls back to the persistent
    # tier promotes what it read into the re-created directory, where later readers find it.
    readers = {"asking_reader": asking_reader, "cached_reader": cached_reader}
    report: dict = {"shards": [shard_of(key(i), config.directory_shards) for i in seeds]}
    report["put_ok"] = ray.get(writer.put.remote(seeds), timeout=120)
    report["before"] = {n: ray.get(r.get.remote(seeds), timeout=120) for n, r in readers.items()}

    cluster.remove_node(nodes[shard_nodes[0]])
    removed_at = time.monotonic()
    report["after_loss"] = {n: ray.get(r.get.remote(seeds), timeout=120) for n, r in readers.items()}
    report["after_loss_s"] = round(time.monotonic() - removed_at, 1)

    # The clients' calls above met the dead directory; their next one re-creates it.
    new_node = None
    while new_node is None and time.monotonic() - removed_at < 120:
        ray.get(asking_reader.get.remote([1]), timeout=120)
        try:
            new_node = ray.get(ray.get_actor(lost_name, namespace=NAMESPACE).node_id.remote(), timeout=10)
        except (ValueError, ray.exceptions.RayActorError, ray.exceptions.GetTimeoutError):
            time.sleep(1.0)
    report["directory_back_s"] = round(time.monotonic() - removed_at, 1)
    report["directory_node"] = new_node
    report["node_ids"] = {n: nodes[n].node_id for n in NODES}

    report["put_again_ok"] = ray.get(writer.put.remote([7]), timeout=120)
    report["recovered"] = {n: ray.get(r.get.remote([7, 1]), timeout=120) for n, r in readers.items()}
    report["again"] = {n: ray.get(r.get.remote([1]), timeout=120) for n, r in readers.items()}
    report["errors"] = {n: ray.get(r.errors.remote(), timeout=30) for n, r in readers.items()}
    return report


def _deadline(signum, frame):
    raise TimeoutError(f"multi-node scenario ran past {DEADLINE_S} s")


def main() -> None:
    scenario, store_dir = sys.argv[1], sys.argv[2]
    signal.signal(signal.SIGALRM, _deadline)
    signal.alarm(DEADLINE_S)
    cluster, nodes = start_cluster()
    try:
        if scenario == "fetch":
            report = fetch(store_dir, nodes)
        elif scenario == "failover":
            report = failover(store_dir, cluster, nodes, ["node_b"])
        elif scenario == "failover_sharded":
            report = failover(store_dir, cluster, nodes, ["node_b", "node_a"])
        else:
            raise ValueError(f"unknown scenario {scenario!r}; valid: fetch, failover, failover_sharded")
    finally:
        signal.alarm(0)
        ray.shutdown()
        cluster.shutdown()
    print(json.dumps(report))


if __name__ == "__main__":
    main()
