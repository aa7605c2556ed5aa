"""Helpers of the serving tests: the test app's names and config, free ports, a replica's routing
stats."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

APP_NAME = "epic-test"
ROUTE_PREFIX = "/epic-test"
SERVED_MODEL = "epic-tiny"  # the README's examples name it; they run against this app
CHUNK_TOKENS = 64


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def engine_section(model_dir: Path) -> dict:
    return {"model": str(model_dir), "chunk_tokens": CHUNK_TOKENS, "num_blocks": 192, "max_num_seqs": 16,
            "max_model_len": 1024, "chunk_pool_bytes": 8 * 1024 * 1024}


def app_config_dict(model_dir: Path, store_dir: Path, **replica) -> dict:
    """A test app: tiny model, 2 replicas sharing no CPUs, a private directory actor."""
    return {
        "engine": engine_section(model_dir),
        "store": {"memory_bytes": 16 * 1024 * 1024, "object_store_bytes": 16 * 1024 * 1024,
                  "persistent": f"dir://{store_dir}", "directory_actor_name": f"epic-kv-directory-{store_dir.name}"},
        "replica": {"num_replicas": 2, "num_cpus": 0, "max_ongoing_requests": 4, "max_queued_requests": 12,
                    "routing_stats_period_s": 0.5, **replica},
        "ingress": {"served_model_name": SERVED_MODEL, "max_body_bytes": 256 * 1024, "max_documents": 8},
    }


def replica_stats(replica_id: str) -> dict:
    """One engine replica's routing stats, asked of that replica's actor directly."""
    import ray

    names = [a["name"] for a in ray.util.list_named_actors(all_namespaces=True)
             if a["name"].startswith("SERVE_REPLICA::") and a["name"].endswith(f"#{replica_id}")]
    assert len(names) == 1, f"replica {replica_id} not found among named actors"
    return ray.get(ray.get_actor(names[0], namespace="serve").record_routing_stats.remote(), timeout=10)


def replica_actors(app_name: str, deployment: str = "EngineReplica") -> dict:
    """The live replica actors of one deployment: replica id -> actor handle."""
    import ray

    prefix = f"SERVE_REPLICA::{app_name}#{deployment}#"
    return {a["name"][len(prefix):]: ray.get_actor(a["name"], namespace="serve")
            for a in ray.util.list_named_actors(all_namespaces=True) if a["name"].startswith(prefix)}


def replica_load(actor) -> dict:
    """A replica's routing stats (KV blocks, queue, chunk pins) asked of its actor directly."""
    import ray

    return ray.get(actor.record_routing_stats.remote(), timeout=30)


def replica_pid(actor) -> int:
    """The process id of a replica actor."""
    import os

    import ray

    return ray.get(actor.__ray_call__.remote(lambda _: os.getpid()), timeout=30)


def replica_rss_bytes(actor) -> int:
    """The replica process's resident memory (VmRSS from /proc)."""
    for line in Path(f"/proc/{replica_pid(actor)}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS line in /proc/PID/status")


@contextmanager
def running_app(serve_url: str, raw: dict, name: str) -> Iterator[str]:
    """The app of config mapping ``raw`` on the session's Serve under ``/name``, deleted after;
    yields its URL."""
    from ray import serve

    from deployments.app import build
    from deployments.config import AppConfig

    serve.run(build(AppConfig.from_dict(raw)), name=name, route_prefix=f"/{name}")
    try:
        yield f"{serve_url}/{name}"
    finally:
        serve.delete(name)
