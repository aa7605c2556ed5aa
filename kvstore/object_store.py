"""Tier 2: chunk KV in Ray's object store, shared by every replica in the cluster.

One named, detached :class:`ChunkDirectory` actor maps key -> ObjectRef and is the *owner* of
every object (it ``ray.put``s them itself), so chunks outlive the replicas that wrote them and
die only with the directory. It keeps an LRU by bytes; what it evicts it hands back to the
putting caller, which spills it to the persistent tier::

    replica A: put(key, kv) ──adopt(key, head, payload)──> ChunkDirectory ──ray.put──> object
    replica B: get(key)     ──lookup([key])──> [ref] ──ray.get (zero-copy)──> tensor view
    replica B: get(key)     (ref cached) ─────────────────ray.get (zero-copy)──> tensor view

Each client caches the refs it looked up (see :mod:`kvstore.cluster_index` for how the
directory's log of dropped keys keeps those caches coherent), so LRU recency from cache hits
reaches the directory with the client's next call: exact for one client, approximate across
clients. A cached ref keeps its object alive after the directory drops it, until the client
hears of the drop.

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
from kvstore.cluster_index import ClusterIndex, RefCache
from kvstore.config import StoreConfig
from kvstore.errors import TierError
from kvstore.keys import ChunkKey
from kvstore.tensors import dtype_name, payload_view, tensor_from_payload
from kvstore.tier import Evicted, PutResult, Tier

logger = logging.getLogger(__name__)

# Views of sealed Ray objects are read-only by design; torch warns about that once per process.
warnings.filterwarnings("ignore", message="The given NumPy array is not writable", category=UserWarning)


Changes = tuple[int, list[str] | None]  # (directory seq, keys dropped since the caller's seq)
Victims = list[tuple[str, int, list[ray.ObjectRef]]]


@ray.remote(num_cpus=0, max_concurrency=4)
class ChunkDirectory:
    """key -> ObjectRef for the whole cluster; owns the objects; a thin actor around
    :class:`ClusterIndex`. Refs travel wrapped in lists so Ray passes refs, not values."""

    def __init__(self, budget_bytes: int) -> None:
        self._index: ClusterIndex[ray.ObjectRef] = ClusterIndex(budget_bytes)
        self._lock = threading.Lock()

    def adopt(
        self, key: str, head: bytes, payload: np.ndarray, touched: list[str], since: int
    ) -> tuple[Victims | None, Changes]:
        """Own a copy of one chunk (after applying the caller's touches). Returns the evicted
        entries (None if the chunk exceeds the whole budget) and the caller's log catch-up."""
        nbytes = len(head) + payload.nbytes
        with self._lock:
            self._index.touch([*touched, key])
            if key in self._index:  # same key, same bytes: keep the copy we have
                return [], self._index.changes_since(since)
            if nbytes > self._index.budget_bytes:
                return None, self._index.changes_since(since)
        ref = ray.put((head, payload))  # the copy this actor owns
        with self._lock:
            evicted = self._index.admit(key, nbytes, ref)
            assert evicted is not None, "a chunk within the budget is always admitted"
            victims = [(k, e.nbytes, [e.value]) for k, e in evicted]
            return victims, self._index.changes_since(since)

    def lookup(
        self, keys: list[str], touched: list[str], since: int
    ) -> tuple[list[tuple[int, list[ray.ObjectRef]] | None], Changes]:
        """(nbytes, [ref]) of each key (None where absent), marking them most recently used."""
        with self._lock:
            self._index.touch(touched)
            found = [self._index.lookup(k) for k in keys]
            entries = [None if e is None else (e.nbytes, [e.value]) for e in found]
            return entries, self._index.changes_since(since)

    def touch(self, keys: list[str]) -> None:
        with self._lock:
            self._index.touch(keys)

    def contains(self, keys: list[str]) -> list[bool]:
        with self._lock:
            return [k in self._index for k in keys]

    def remove(self, keys: list[str]) -> None:
        with self._lock:
            for k in keys:
                self._index.remove(k)

    def keys(self) -> list[str]:
        """Resident keys, least recently used first."""
        with self._lock:
            return self._index.keys()

    def usage(self) -> tuple[int, int]:
        """(used bytes, budget bytes)."""
        with self._lock:
            return self._index.used_bytes, self._index.budget_bytes


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
    """The cluster tier: a client of the directory actor with a :class:`RefCache`, so a
    repeated get is one zero-copy ``ray.get`` without a directory round trip."""

    name = "object_store"
    TOUCH_BATCH = 64  # cache hits sent to the directory at once when no other call carries them

    def __init__(self, config: StoreConfig, model_fingerprint: str) -> None:
        self.model_fingerprint = model_fingerprint
        self._timeout_s = config.object_store_timeout_s
        self._verify_checksum = config.object_store_verify_checksum
        self._cache: RefCache[ray.ObjectRef] = RefCache(config.object_store_ref_cache_bytes)
        self._lock = threading.Lock()  # guards the cache
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

    def _outgoing(self) -> tuple[list[str], int]:
        """Touches to send with a directory call, and the seq the cache is coherent with."""
        with self._lock:
            return self._cache.drain_touches(), self._cache.since

    def get(self, key: ChunkKey) -> torch.Tensor | None:
        return self.get_many([key])[0]

    def get_many(self, keys: Sequence[ChunkKey]) -> list[torch.Tensor | None]:
        with self._lock:
            refs: list[ray.ObjectRef | None] = [self._cache.get(k) for k in keys]
            send_touches = self._cache.pending_touches >= self.TOUCH_BATCH
        missing = [i for i, ref in enumerate(refs) if ref is None]
        if missing:
            touched, since = self._outgoing()
            entries, (seq, dropped) = self._wait(
                self._directory.lookup.remote([keys[i] for i in missing], touched, since)
            )
            with self._lock:
                self._cache.apply(seq, dropped)
                for i, entry in zip(missing, entries):
                    if entry is not None:
                        nbytes, (refs[i],) = entry
                        self._cache.put(keys[i], nbytes, refs[i], seq)
        elif send_touches:
            self._directory.touch.remote(self._outgoing()[0])  # fire and forget
        found = [i for i, ref in enumerate(refs) if ref is not None]
        try:
            values = self._wait([refs[i] for i in found])
        except TierError:
            with self._lock:  # a cached ref may have died with a restarted directory
                self._cache.clear()
            raise
        out: list[torch.Tensor | None] = [None] * len(keys)
        for i, value in zip(found, values):
            out[i] = self._tensor(keys[i], value)
        return out

    def put(self, key: ChunkKey, kv: torch.Tensor) -> PutResult:
        return self.put_many([(key, kv)])[0]

    def put_many(self, items: Sequence[tuple[ChunkKey, torch.Tensor]]) -> list[PutResult]:
        touched, since = self._outgoing()
        calls = []
        for key, kv in items:
            payload = payload_view(kv)
            head = codec.encode_head(
                codec.make_header(key, self.model_fingerprint, dtype_name(kv), tuple(kv.shape), payload)
            )
            calls.append(self._directory.adopt.remote(key, head, payload, touched, since))
            touched = []
        results = []
        for victims, (seq, dropped) in self._wait(calls):
            with self._lock:
                self._cache.apply(seq, dropped)
            results.append(self._put_result(victims))
        return results

    def _put_result(self, victims: Victims | None) -> PutResult:
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
        with self._lock:
            self._cache.drop(list(keys))
        self._wait(self._directory.remove.remote(list(keys)))

    def keys(self) -> list[ChunkKey]:
        """Keys resident cluster-wide, least recently used first."""
        return [ChunkKey(k) for k in self._wait(self._directory.keys.remote())]

    def usage(self) -> tuple[int, int]:
        """(used bytes, budget bytes) of the whole cluster tier."""
        return self._wait(self._directory.usage.remote())

    def destroy_directory(self) -> None:
        """Kill the directory actor: every chunk in the cluster tier is dropped."""
        with self._lock:
            self._cache.clear()
        ray.kill(self._directory)
