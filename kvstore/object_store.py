"""Tier 2: chunk KV in Ray's object store, shared by every replica in the cluster.

Named, detached :class:`ChunkDirectory` actors map key -> ObjectRef; each is the *owner* of the
objects of its keys (it ``ray.put``s them itself), so chunks outlive the replicas that wrote
them and die only with their directory. Keys are sharded over ``directory_shards`` directories
(by a hash of the key), each with its share of the budget; several shards are spread over the
cluster's nodes, so neither the directory calls nor the objects all land on one node. A
directory keeps an LRU by bytes; what it evicts it hands back to the putting caller, which
spills it to the persistent tier::

    replica A: put(key, kv) ──adopt(key, head, payload)──> ChunkDirectory ──ray.put──> object
    replica B: get(key)     ──lookup([key])──> [ref] ──ray.get (zero-copy)──> tensor view
    replica B: get(key)     (ref cached) ─────────────────ray.get (zero-copy)──> tensor view

Each client caches the refs it looked up (one cache per shard) (see :mod:`kvstore.cluster_index` for how the
directory's log of dropped keys keeps those caches coherent), so LRU recency from cache hits
reaches the directory with the client's next call: exact for one client, approximate across
clients. A cached ref keeps its object alive after the directory drops it, until the client
hears of the drop.

Tensors travel as numpy views (bf16 as int16), which Ray moves out-of-band without pickling
copies; a get returns a read-only view of shared memory. This is the only module that imports
Ray. A directory's objects live in the object store of the node its actor runs on; when that
node dies, they die with it and the directory comes back empty on another node (Ray restarts
it; one Ray will not restart, e.g. killed or pinned to the lost node, the client call that
meets it re-creates and then retries). Until the chunks are put again, clients see misses and the persistent tier answers.
"""

from __future__ import annotations

import logging
import threading
import warnings
import zlib
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import ray
import ray.exceptions
import torch

from kvstore import codec
from kvstore.cluster_index import ClusterIndex, RefCache
from kvstore.config import StoreConfig
from kvstore.errors import TierError
from kvstore.keys import ChunkKey
from kvstore.ray_connect import NoRayCluster, connect_ray
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

    def node_id(self) -> str:
        """The node whose object store holds this directory's objects."""
        return ray.get_runtime_context().get_node_id()


def shard_of(key: str, num_shards: int) -> int:
    """The directory shard that owns ``key`` (a stable hash: every process agrees)."""
    return zlib.crc32(key.encode()) % num_shards


def directory_names(config: StoreConfig) -> list[str]:
    """Actor names of the directory shards (one shard keeps the configured name as is)."""
    if config.directory_shards == 1:
        return [config.directory_actor_name]
    return [f"{config.directory_actor_name}-{i}" for i in range(config.directory_shards)]


def open_directories(config: StoreConfig, placements: Sequence | None = None) -> list[ray.actor.ActorHandle]:
    """Handles of the directory shards, creating those that do not exist yet.

    Args:
        config: names, namespace, shard count and the budget they split.
        placements: one Ray scheduling strategy per shard for the shards created now; default:
            Ray's default for one shard, spread over the nodes for several.
    """
    names = directory_names(config)
    if placements is None:
        placements = [None] if len(names) == 1 else ["SPREAD"] * len(names)
    if len(placements) != len(names):
        raise ValueError(f"{len(placements)} placements for {len(names)} directory shards")
    return [
        ChunkDirectory.options(
            name=name,
            namespace=config.directory_actor_namespace,
            lifetime="detached",
            get_if_exists=True,
            max_restarts=-1,  # a restarted directory is empty: its objects died with it
            **({"scheduling_strategy": placement} if placement is not None else {}),
        ).remote(config.object_store_bytes // config.directory_shards)
        for name, placement in zip(names, placements)
    ]


def ray_available() -> bool:
    """Whether this process is connected to Ray, connecting first when ``RAY_ADDRESS`` names a
    cluster. Never starts a new Ray instance."""
    try:
        connect_ray()
    except NoRayCluster:
        return False
    except ConnectionError as err:
        logger.warning("RAY_ADDRESS is set but Ray is not reachable (%s); running without the object-store tier", err)
        return False
    return True


@dataclass(slots=True)
class _Shard:
    """One directory actor and this process's cache of refs coherent with it."""

    directory: ray.actor.ActorHandle
    cache: RefCache[ray.ObjectRef]

    def outgoing(self) -> tuple[list[str], int]:
        """Touches to send with a call to this directory, and the seq the cache is coherent with."""
        return self.cache.drain_touches(), self.cache.since


class ObjectStoreTier(Tier):
    """The cluster tier: a client of the directory shards with a :class:`RefCache` per shard, so a
    repeated get is one zero-copy ``ray.get`` without a directory round trip."""

    name = "object_store"
    TOUCH_BATCH = 64  # cache hits sent to a directory at once when no other call carries them

    def __init__(self, config: StoreConfig, model_fingerprint: str) -> None:
        self.model_fingerprint = model_fingerprint
        self._config = config
        self._timeout_s = config.object_store_timeout_s
        self._verify_checksum = config.object_store_verify_checksum
        cache_bytes = config.object_store_ref_cache_bytes // config.directory_shards
        self._shards = [_Shard(d, RefCache(cache_bytes)) for d in open_directories(config)]
        self._lock = threading.Lock()  # guards the caches and the handles
        # Set when a directory died for good (killed, or pinned to a node that is gone): Ray
        # will not restart it, so the call that met it re-creates it (empty) and tries again.
        self._reopen = False

    def _healing(self, op, *args):
        """``op(*args)``, once more on fresh directories if a directory died for good under it."""
        try:
            return op(*args)
        except TierError:
            if not self._reopen:
                raise
        with self._lock:
            self._reopen = False
            for shard, directory in zip(self._shards, open_directories(self._config)):
                shard.directory = directory
                shard.cache.clear()
        logger.warning("object-store directory re-created after it died; its chunks are gone")
        return op(*args)

    def _shard_index(self, key: str) -> int:
        return shard_of(key, len(self._shards))

    def _shard(self, key: str) -> _Shard:
        return self._shards[self._shard_index(key)]

    def _by_shard(self, keys: Sequence[ChunkKey]) -> dict[int, list[int]]:
        """Positions of ``keys`` grouped by shard index."""
        groups: dict[int, list[int]] = {}
        for i, key in enumerate(keys):
            groups.setdefault(self._shard_index(key), []).append(i)
        return groups

    def _wait(self, refs):
        try:
            return ray.get(refs, timeout=self._timeout_s)
        except (ray.exceptions.ActorDiedError, ray.exceptions.ActorUnschedulableError) as err:
            self._reopen = True
            raise TierError(f"object store: directory died: {err}") from err
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
        return self._healing(self._get_many, keys)

    def _get_many(self, keys: Sequence[ChunkKey]) -> list[torch.Tensor | None]:
        with self._lock:
            refs: list[ray.ObjectRef | None] = [self._shard(k).cache.get(k) for k in keys]
            missing = [i for i, ref in enumerate(refs) if ref is None]
            lookups, touches = [], []  # (shard, positions) asked; shards with touches to send
            for s, positions in self._by_shard([keys[i] for i in missing]).items():
                lookups.append((self._shards[s], [missing[p] for p in positions]))
            asked = {id(shard) for shard, _ in lookups}
            for shard in self._shards:
                if id(shard) not in asked and shard.cache.pending_touches >= self.TOUCH_BATCH:
                    touches.append((shard, shard.outgoing()[0]))
            calls = [
                shard.directory.lookup.remote([keys[i] for i in positions], *shard.outgoing())
                for shard, positions in lookups
            ]
        for shard, touched in touches:
            shard.directory.touch.remote(touched)  # fire and forget
        if calls:
            replies = self._wait(calls)
            with self._lock:
                for (shard, positions), (entries, (seq, dropped)) in zip(lookups, replies):
                    shard.cache.apply(seq, dropped)
                    for i, entry in zip(positions, entries):
                        if entry is not None:
                            nbytes, (refs[i],) = entry
                            shard.cache.put(keys[i], nbytes, refs[i], seq)
        found = [i for i, ref in enumerate(refs) if ref is not None]
        try:
            values = self._wait([refs[i] for i in found])
        except TierError:
            with self._lock:  # a cached ref may have died with a restarted directory
                for shard in self._shards:
                    shard.cache.clear()
            raise
        out: list[torch.Tensor | None] = [None] * len(keys)
        for i, value in zip(found, values):
            out[i] = self._tensor(keys[i], value)
        return out

    def put(self, key: ChunkKey, kv: torch.Tensor) -> PutResult:
        return self.put_many([(key, kv)])[0]

    def put_many(self, items: Sequence[tuple[ChunkKey, torch.Tensor]]) -> list[PutResult]:
        return self._healing(self._put_many, items)

    def _put_many(self, items: Sequence[tuple[ChunkKey, torch.Tensor]]) -> list[PutResult]:
        calls = []
        for key, kv in items:
            payload = payload_view(kv)
            head = codec.encode_head(
                codec.make_header(key, self.model_fingerprint, dtype_name(kv), tuple(kv.shape), payload)
            )
            shard = self._shard(key)
            with self._lock:
                touched, since = shard.outgoing()
            calls.append((shard, shard.directory.adopt.remote(key, head, payload, touched, since)))
        results = []
        for (shard, _), (victims, (seq, dropped)) in zip(calls, self._wait([c for _, c in calls])):
            with self._lock:
                shard.cache.apply(seq, dropped)
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
        return self._healing(self._contains_many, keys)

    def _contains_many(self, keys: Sequence[ChunkKey]) -> list[bool]:
        groups = self._by_shard(keys)
        calls = [self._shards[s].directory.contains.remote([keys[i] for i in positions]) for s, positions in groups.items()]
        out = [False] * len(keys)
        for positions, found in zip(groups.values(), self._wait(calls)):
            for i, present in zip(positions, found):
                out[i] = present
        return out

    def delete(self, key: ChunkKey) -> None:
        self.delete_many([key])

    def delete_many(self, keys: Sequence[ChunkKey]) -> None:
        return self._healing(self._delete_many, keys)

    def _delete_many(self, keys: Sequence[ChunkKey]) -> None:
        calls = []
        for s, positions in self._by_shard(keys).items():
            shard, shard_keys = self._shards[s], [keys[i] for i in positions]
            with self._lock:
                shard.cache.drop(shard_keys)
            calls.append(shard.directory.remove.remote(shard_keys))
        self._wait(calls)

    def keys(self) -> list[ChunkKey]:
        """Keys resident cluster-wide: each shard's least recently used first, shard by shard."""
        lists = self._healing(lambda: self._wait([shard.directory.keys.remote() for shard in self._shards]))
        return [ChunkKey(k) for keys in lists for k in keys]

    def usage(self) -> tuple[int, int]:
        """(used bytes, budget bytes) of the whole cluster tier."""
        usages = self._healing(lambda: self._wait([shard.directory.usage.remote() for shard in self._shards]))
        return sum(u for u, _ in usages), sum(b for _, b in usages)

    def destroy_directory(self) -> None:
        """Kill the directory actors: every chunk in the cluster tier is dropped (a later call
        of any client re-creates them empty)."""
        with self._lock:
            for shard in self._shards:
                shard.cache.clear()
        for shard in self._shards:
            ray.kill(shard.directory)
