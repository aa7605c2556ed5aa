"""Shared test fixtures: one local Ray for the session, a real S3 protocol server, the tiny
pretrained Llama from ../shared when present. Everything listens on 127.0.0.1 only."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest

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
            include_dashboard=False,
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


class S3Server:
    """A real S3 protocol server (moto's server mode) on 127.0.0.1; stop/start keep its data."""

    def __init__(self) -> None:
        from moto.server import ThreadedMotoServer

        self._server = ThreadedMotoServer(ip_address="127.0.0.1", port=0)
        self._server.start()
        host, port = self._server.get_host_and_port()
        self.port = port
        self.endpoint_url = f"http://{host}:{port}"

    def client(self):
        import boto3

        return boto3.client("s3", endpoint_url=self.endpoint_url, region_name="us-east-1")

    def stop(self) -> None:
        self._server.stop()

    def restart(self) -> None:
        """Start again on the same port (moto's in-memory backend keeps the buckets)."""
        from moto.server import ThreadedMotoServer

        self._server = ThreadedMotoServer(ip_address="127.0.0.1", port=self.port)
        self._server.start()


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
