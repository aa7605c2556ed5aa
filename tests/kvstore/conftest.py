"""Fixtures of the chunk-store tests: one factory per tier, Ray directory actors cleaned up."""

from __future__ import annotations

import uuid

import pytest

from kvstore.config import StoreConfig

S3_FAST = dict(s3_region="us-east-1", s3_connect_timeout_s=1.0, s3_read_timeout_s=5.0, s3_max_attempts=2)


def s3_config(s3_server, bucket: str, **overrides) -> StoreConfig:
    """A store config over ``s3://bucket/store`` on the test S3 server, no Ray tier."""
    fields = dict(
        persistent=f"s3://{bucket}/store", s3_endpoint_url=s3_server.endpoint_url, object_store_bytes=0, **S3_FAST
    )
    fields.update(overrides)
    return StoreConfig(**fields)


@pytest.fixture
def directory_actor(ray_session):
    """A fresh directory-actor name; the actor is killed after the test."""
    name = f"kv-dir-{uuid.uuid4().hex[:8]}"
    yield {"directory_actor_name": name, "directory_actor_namespace": "epic-tests"}
    try:
        ray_session.kill(ray_session.get_actor(name, namespace="epic-tests"))
    except ValueError:
        pass  # never created
