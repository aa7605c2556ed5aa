"""Tier 2: chunk KV in Ray's object store, shared by every replica in the cluster.

One named, detached :class:`ChunkDirectory` actor maps key -> ObjectRef and is the *owner* of
every object (it ``ray.put``s them itself), so chunks outlive the replicas that wrote them and
die only with the directory. It keeps an LRU by bytes; what it evicts it hands back to the
putting caller, which spills it to the persistent tier::

    replica A: put(key, kv) ──adopt(key, head, payload)──> ChunkDirectory ──ray.put──> object
    replica B: get(key)     ──lookup([key])──> [ref] ──ray.get (zero-copy)──> tensor view

Tensors travel as numpy views (bf16 as int16), which Ray moves out-of-band without pickling
copies; a get returns a read-only view of shared memory. This is the only module that imports
Ray. The directory's objects live in the object store of the node its actor runs on.
"""

from __future__ import annotations

import logging
import os
import threading
import warnings
from collections.abc import Sequence

import numpy as np
import ray
import ray.exceptions
import torch

from kvstore import codec
from kvstore.config import StoreConfig
from kvstore.errors import TierError
from kvstore.keys import ChunkKey
from kvstore.lru import LruBytes
from kvstore.tensors import dtype_name, payload_view, tensor_from_payload
from kvstore.tier import Evicted, PutResult, Tier

logger = logging.getLogger(__name__)

# Views of sealed Ray objects are read-only by design; torch warns about that once per process.
warnings.filterwarnings("ignore", message="The given NumPy array is not writable", category=UserWarning)


@ray.remote(num_cpus=0, max_concurrency=4)
class ChunkDirectory:
    """key -> ObjectRef for the whole cluster; owns the objects; LRU under a byte budget."""

    def __init__(self, budget_bytes: int) -> None:
        self._lru = LruBytes(budget_bytes)
        self._refs: dict[str, ray.ObjectRef] = {}
        self._lock = threading.Lock()

    def adopt(self, key: str, head: bytes, payload: np.ndarray) -> list[tuple[str, int, list[ray.ObjectRef]]] | None:
        """Own a copy of one chunk. Returns the evicted entries (each ref wrapped in a list so
        Ray passes the ref, not its value), or None if the chunk exceeds the whole budget."""
        nbytes = len(head) + payload.nbytes
        with self._lock:
            if self._lru.touch(key):
                return []
            if nbytes > self._lru.budget_bytes:
                return None
        ref = ray.put((head, payload))  # copy into an object this actor owns
        with self._lock:
            victims = self._lru.admit(key, nbytes)
            assert victims is not None, "a chunk within the budget is always admitted"
            self._refs.setdefault(key, ref)
            return [(v.key, v.nbytes, [self._refs.pop(v.key)]) for v in victims]

    def lookup(self, keys: list[str]) -> list[list[ray.ObjectRef] | None]:
        """The refs of ``keys`` (None where absent); marks them most recently used."""
        with self._lock:
            return [[self._refs[k]] if self._lru.touch(k) else None for k in keys]

    def contains(self, keys: list[str]) -> list[bool]:
        with self._lock:
            return [k in self._lru for k in keys]

    def remove(self, keys: list[str]) -> None:
        with self._lock:
            for k in keys:
                if self._lru.remove(k) is not None:
                    del self._refs[k]

    def keys(self) -> list[str]:
        """Resident keys, least recently used first."""
        with self._lock:
            return self._lru.keys()

    def usage(self) -> tuple[int, int]:
        """(used bytes, budget bytes)."""
        with self._lock:
            return self._lru.used_bytes, self._lru.budget_bytes


def ray_available() -> bool:
    """Whether this process is connected to Ray, connecting first when ``RAY_ADDRESS`` names a
    cluster. Never starts a new Ray instance."""
    if ray.is_initialized():
        return True
    if not os.environ.get("RAY_ADDRESS"):
        return False
    try:
        ray.init(log_to_driver=False)
    except ConnectionError as err:
        logger.warning("RAY_ADDRESS is set but Ray is not reachable (%s); running without the object-store tier", err)
        return False
    return True


class ObjectStoreTier(Tier):
    """The cluster tier, a thin client of the directory actor."""

    name = "object_store"

    def __init__(self, config: StoreConfig, model_fingerprint: str) -> None:
        self.model_fingerprint = model_fingerprint
        self._timeout_s = config.object_store_timeout_s
        self._verify_checksum = config.object_store_verify_checksum
        self._directory = ChunkDirectory.options(
            name=config.directory_actor_name,
            namespace=config.directory_actor_namespace,
            lifetime="detached",
            get_if_exists=True,
            max_restarts=-1,  # a restarted directory is empty: its objects died with it
        ).remote(config.object_store_bytes)

    def _wait(self, refs):
        try:
            return ray.get(refs, timeout=self._timeout_s)
        except ray.exceptions.RayError as err:
            raise TierError(f"object store: {type(err).__name__}: {err}") from err

    def _tensor(self, key: ChunkKey, value: tuple[bytes, np.ndarray]) -> torch.Tensor:
        head, payload = value
        header = codec.decode_head(head, key, self.model_fingerprint)
        codec.check_payload(header, payload, self._verify_checksum)
        return tensor_from_payload(payload, header.dtype, header.shape)

    def get(self, key: ChunkKey) -> torch.Tensor | None:
        return self.get_many([key])[0]

    def get_many(self, keys: Sequence[ChunkKey]) -> list[torch.Tensor | None]:
        entries = self._wait(self._directory.lookup.remote(list(keys)))
        found = [(i, entry[0]) for i, entry in enumerate(entries) if entry is not None]
        values = self._wait([ref for _, ref in found])
        out: list[torch.Tensor | None] = [None] * len(keys)
        for (i, _), value in zip(found, values):
            out[i] = self._tensor(keys[i], value)
        return out

    def put(self, key: ChunkKey, kv: torch.Tensor) -> PutResult:
        return self.put_many([(key, kv)])[0]

    def put_many(self, items: Sequence[tuple[ChunkKey, torch.Tensor]]) -> list[PutResult]:
        calls = []
        for key, kv in items:
            payload = payload_view(kv)
            head = codec.encode_head(codec.make_header(key, self.model_fingerprint, dtype_name(kv), tuple(kv.shape), payload))
            calls.append(self._directory.adopt.remote(key, head, payload))
        return [self._put_result(victims) for victims in self._wait(calls)]

    def _put_result(self, victims: list[tuple[str, int, list[ray.ObjectRef]]] | None) -> PutResult:
        if victims is None:
            return PutResult(False, [])
        evicted = []
        for key, nbytes, (ref,) in victims:
            try:
                kv = self._tensor(ChunkKey(key), self._wait(ref))
            except TierError as err:
                logger.warning("evicted chunk %s could not be read for spilling: %s", key, err)
                kv = None
            evicted.append(Evicted(ChunkKey(key), nbytes, kv))
        return PutResult(True, evicted)

    def contains(self, key: ChunkKey) -> bool:
        return self.contains_many([key])[0]

    def contains_many(self, keys: Sequence[ChunkKey]) -> list[bool]:
        return self._wait(self._directory.contains.remote(list(keys)))

    def delete(self, key: ChunkKey) -> None:
        self.delete_many([key])

    def delete_many(self, keys: Sequence[ChunkKey]) -> None:
        self._wait(self._directory.remove.remote(list(keys)))

    def keys(self) -> list[ChunkKey]:
        """Keys resident cluster-wide, least recently used first."""
        return [ChunkKey(k) for k in self._wait(self._directory.keys.remote())]

    def usage(self) -> tuple[int, int]:
        """(used bytes, budget bytes) of the whole cluster tier."""
        return self._wait(self._directory.usage.remote())

    def destroy_directory(self) -> None:
        """Kill the directory actor: every chunk in the cluster tier is dropped."""
        ray.kill(self._directory)
