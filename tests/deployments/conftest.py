"""Serving-layer fixtures: a tiny model with a chat template, one shared Serve application
with two CPU engine replicas on the session's Ray, and a reference engine in this process."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
from tiny_model import build_tiny_model

APP_NAME = "epic-test"
ROUTE_PREFIX = "/epic-test"
SERVED_MODEL = "epic-tiny"  # the README's examples name it; they run against this app
CHUNK_TOKENS = 64


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    return build_tiny_model(tmp_path_factory.mktemp("tiny-chat-llama"))


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
        "ingress": {"served_model_name": SERVED_MODEL, "max_body_bytes": 256 * 1024, "max_documents": 8,
                    "default_max_tokens": 32},
    }


@pytest.fixture(scope="session")
def serve_url(ray_session) -> str:
    """Serve's HTTP proxy on 127.0.0.1 (a free port, unless Serve already runs in this Ray)."""
    from ray import serve
    from ray.serve.context import _get_global_client

    serve.start(http_options={"host": "127.0.0.1", "port": free_port()})
    http = _get_global_client().http_config
    assert http.host == "127.0.0.1", f"Serve's proxy listens on {http.host}, not 127.0.0.1"
    return f"http://127.0.0.1:{http.port}"


@pytest.fixture(scope="session")
def app_config(tiny_model_dir, tmp_path_factory):
    from deployments.config import AppConfig

    return AppConfig.from_dict(app_config_dict(tiny_model_dir, tmp_path_factory.mktemp("store")))


@pytest.fixture(scope="session")
def base_url(serve_url, app_config) -> str:
    """The shared application's URL (OpenAI clients take ``base_url + "/v1"``)."""
    from ray import serve

    from deployments.app import build

    serve.run(build(app_config), name=APP_NAME, route_prefix=ROUTE_PREFIX)
    yield serve_url + ROUTE_PREFIX
    serve.delete(APP_NAME)


@pytest.fixture(scope="session")
def reference_engine(tiny_model_dir, app_config):
    """The same model and engine settings, driven directly in this process."""
    from engine import Engine

    return Engine(app_config.engine)


@pytest.fixture(scope="session")
def builder(tiny_model_dir, reference_engine):
    from deployments.prompting import PromptBuilder

    return PromptBuilder(reference_engine.tokenizer, reference_engine.model_fingerprint, CHUNK_TOKENS)


def replica_stats(replica_id: str) -> dict:
    """One engine replica's routing stats, asked of that replica's actor directly."""
    import ray

    names = [a["name"] for a in ray.util.list_named_actors(all_namespaces=True)
             if a["name"].startswith("SERVE_REPLICA::") and a["name"].endswith(f"#{replica_id}")]
    assert len(names) == 1, f"replica {replica_id} not found among named actors"
    return ray.get(ray.get_actor(names[0], namespace="serve").record_routing_stats.remote(), timeout=10)
