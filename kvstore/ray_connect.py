"""Connecting a process to Ray: the one place that decides between joining a cluster and
starting a local instance.

    already connected                      -> nothing to do
    address given, or RAY_ADDRESS set      -> join that cluster (Ray's own convention)
    neither, with local resources given    -> start a local Ray with them (this call owns it)
    neither, without                       -> ConnectionError
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import ray


class NoRayCluster(ConnectionError):
    """Not connected, no cluster address, and no local instance asked for."""


@dataclass(frozen=True)
class LocalRay:
    """Resources of a local Ray instance a process starts for itself."""

    num_cpus: int
    object_store_memory: int


def connect_ray(address: str | None = None, local: LocalRay | None = None) -> bool:
    """Connect this process to Ray; True when this call started a local instance (the caller
    then shuts it down).

    Raises:
        NoRayCluster: no cluster to join and no local resources given.
        ConnectionError: the cluster named by ``address`` / ``RAY_ADDRESS`` is unreachable.
    """
    if ray.is_initialized():
        return False
    if address or os.environ.get("RAY_ADDRESS"):
        ray.init(address=address, log_to_driver=False)
        return False
    if local is None:
        raise NoRayCluster("not connected to Ray and no cluster address (RAY_ADDRESS) is set")
    ray.init(address="local", num_cpus=local.num_cpus, object_store_memory=local.object_store_memory,
             include_dashboard=False, log_to_driver=False)
    return True
