"""Fixtures of the chunk-store tests: a directory-actor name, the actor cleaned up after."""

from __future__ import annotations

import uuid

import pytest


@pytest.fixture
def directory_actor(ray_session):
    """A fresh directory-actor name; the actor is killed after the test."""
    name = f"kv-dir-{uuid.uuid4().hex[:8]}"
    yield {"directory_actor_name": name, "directory_actor_namespace": "epic-tests"}
    try:
        ray_session.kill(ray_session.get_actor(name, namespace="epic-tests"))
    except ValueError:
        pass  # never created
