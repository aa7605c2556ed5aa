"""Shared test fixtures: one local Ray for the session, Serve on it, a real S3 protocol server,
the tiny chat model, the tiny pretrained Llama from ../shared when present. Everything listens
on 127.0.0.1 only."""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

import pytest

from tests.support.s3 import S3Server
from tests.support.serving import free_port
from tests.support.tiny_chat_model import build_tiny_model

ROOT = Path(__file__).resolve().parents[1]
SHARED_MODELS = ROOT.parent / "shared" / "models"

# Keep every file that libraries write outside the project inside one temporary directory.
_SCRATCH = Path(tempfile.mkdtemp(prefix="epic-tests-"))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HOME", str(_SCRATCH / "hf"))
os.environ.setdefault("TORCHINDUCTOR_CACHE_DIR", str(_SCRATCH / "inductor"))
os.environ.setdefault("FLASHINFER_WORKSPACE_BASE", str(_SCRATCH / "flashinfer"))
os.environ.setdefault("RAY_TMPDIR", "/tmp/ray-epic-tests")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("AWS_ACCESS_KEY_ID", "testing")
os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "testing")
os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")

RAY_NUM_CPUS = 4
RAY_OBJECT_STORE_BYTES = 256 * 1024 * 1024


def pytest_collection_modifyitems(config, items):
    import torch

    if torch.cuda.is_available():
        return
    skip_gpu = pytest.mark.skip(reason="needs CUDA")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip_gpu)


@pytest.fixture(scope="session")
def ray_session():
    """One local Ray instance shared by the whole test session."""
    import ray

    if not ray.is_initialized():
        ray.init(
            address="local",  # always a fresh instance of our own, never someone else's cluster
            num_cpus=RAY_NUM_CPUS,
            object_store_memory=RAY_OBJECT_STORE_BYTES,
            # The dashboard serves Ray's public state API (ray.util.state), which tests read.
            include_dashboard=True,
            dashboard_host="127.0.0.1",
            dashboard_port=free_port(),
            namespace="epic-tests",
            runtime_env={"env_vars": {"PYTHONPATH": str(ROOT)}},
            log_to_driver=False,
        )
    yield ray
    try:
        from ray import serve

        serve.shutdown()
    finally:
        ray.shutdown()


@pytest.fixture(scope="session")
def serve_url(ray_session) -> str:
    """Serve on the session's Ray, its HTTP proxy on 127.0.0.1 at a free port. Every test that runs
    a Serve application asks for this fixture, so Serve is started here and listens on this port."""
    import httpx
    from ray import serve

    port = free_port()
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:  # the proxy answers its health route once it listens (503 until an app is routed)
        try:
            if httpx.get(url + "/-/healthz", timeout=5).status_code in (200, 503):
                return url
        except httpx.TransportError:
            pass
        assert time.monotonic() < deadline, f"Serve's proxy does not answer on {url}"
        time.sleep(0.2)


@pytest.fixture(scope="session")
def s3_server():
    server = S3Server()
    yield server
    server.stop()


@pytest.fixture
def s3_bucket(s3_server, request):
    """A fresh bucket on the session's S3 server."""
    name = "t-" + request.node.name.lower().replace("_", "-").replace("[", "-").replace("]", "")[:40]
    client = s3_server.client()
    client.create_bucket(Bucket=name)
    return name


@pytest.fixture(scope="session")
def stories260k_bin() -> Path:
    path = SHARED_MODELS / "stories260K" / "stories260K.bin"
    if not path.exists():
        pytest.skip("../shared/models/stories260K is not present")
    return path


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    """The tiny random-weight chat Llama (real tokenizer and chat template) of the serving tests."""
    return build_tiny_model(tmp_path_factory.mktemp("tiny-chat-llama"))
