"""Wire a :class:`TieredStore` (and the blob store of its persistent location) from a :class:`StoreConfig`."""

from __future__ import annotations

import logging
import os
import sys

from kvstore.blobs import BlobStore
from kvstore.circuit import CircuitBreaker
from kvstore.config import StoreConfig
from kvstore.dir_budget import DirectoryBudget
from kvstore.directory import DirBlobs
from kvstore.memory import MemoryTier
from kvstore.persistent import BlobTier
from kvstore.tier import Tier
from kvstore.tiered import TieredStore

logger = logging.getLogger(__name__)


def open_blobs(config: StoreConfig) -> BlobStore | None:
    """The persistent location's BlobStore, or None when ``config.persistent`` is ""."""
    location = config.location
    if location.kind == "dir":
        return DirBlobs(location.path)
    if location.kind == "s3":
        from kvstore.s3 import S3Blobs, make_s3_client

        return S3Blobs(make_s3_client(config), location.bucket, location.prefix, config)
    return None


def build_store(config: StoreConfig, model_fingerprint: str) -> TieredStore:
    """The tiers ``config`` asks for, composed. The object-store tier joins only when
    ``object_store_bytes > 0`` and Ray is connected (or reachable through ``RAY_ADDRESS``)."""
    if not model_fingerprint:
        raise ValueError("model_fingerprint must be a non-empty string")
    memory = MemoryTier(config.memory_bytes) if config.memory_bytes > 0 else None
    cluster = _cluster_tier(config, model_fingerprint) if config.object_store_bytes > 0 else None
    blobs = open_blobs(config)
    budget = DirectoryBudget(config.location.path, config.persistent_max_bytes) if config.persistent_max_bytes else None
    persistent = BlobTier(config.location.kind, blobs, model_fingerprint, budget) if blobs is not None else None
    breakers = {t.name: CircuitBreaker(config.breaker_failures, config.breaker_cooldown_s, config.breaker_max_cooldown_s)
                for t in (cluster, persistent) if t is not None}
    return TieredStore(memory, cluster, persistent, config.write_queue_size, breakers)


def _cluster_tier(config: StoreConfig, model_fingerprint: str) -> Tier | None:
    # A process that never imported Ray is not connected to it (only RAY_ADDRESS could connect
    # it), so it need not pay for importing Ray just to find out.
    if "ray" in sys.modules or os.environ.get("RAY_ADDRESS"):
        from kvstore import object_store

        if object_store.ray_available():
            return object_store.ObjectStoreTier(config, model_fingerprint)
    logger.info("Ray is not running: the chunk store has no object-store tier")
    return None
