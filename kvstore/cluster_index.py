"""Bookkeeping of the object-store tier, on both sides of the directory actor (no Ray here).

The directory keeps a :class:`ClusterIndex`: key -> (nbytes, ref), LRU by bytes, and a numbered
log of the keys it dropped (evicted or deleted). Each client keeps a :class:`RefCache` of refs it
looked up, so a repeated get needs no round trip; its hits become "touches" that ride along on
the client's next directory call. Every directory reply carries the log entries the client has
not seen, and the client forgets those keys::

    client                                    directory (seq 41, log ... 40:k7 41:k2)
      get k2 (cached, touch queued)
      get k9 ─ lookup([k9], touched=[k2], since=39) ─>  touch k2, find k9
             <─ ([entry k9], seq=41, dropped=[k7, k2]) ─
      forget k7, k2; cache k9
"""

from __future__ import annotations

from typing import Generic, NamedTuple, TypeVar

from kvstore.lru import LruBudgeted, LruBytes

V = TypeVar("V")


class Entry(NamedTuple):
    nbytes: int
    value: object  # the directory's ObjectRef


class ClusterIndex(LruBudgeted, Generic[V]):
    """The directory's state: entries under a byte budget plus the log of dropped keys."""

    def __init__(self, budget_bytes: int, log_size: int = 65536) -> None:
        self._lru = LruBytes(budget_bytes)
        self._entries: dict[str, Entry] = {}
        self._log: list[str] = []  # dropped keys; the last one has number ``seq``
        self._log_size = log_size
        self.seq = 0

    def __contains__(self, key: str) -> bool:
        return key in self._entries

    def keys(self) -> list[str]:
        """Keys, least recently used first."""
        return self._lru.keys()

    def touch(self, keys: list[str]) -> None:
        for key in keys:
            self._lru.touch(key)

    def lookup(self, key: str) -> Entry | None:
        """The entry of ``key`` (marked most recently used), or None."""
        return self._entries[key] if self._lru.touch(key) else None

    def admit(self, key: str, nbytes: int, value: V) -> list[tuple[str, Entry]] | None:
        """Add an entry, evicting least recently used ones; returns them, oldest first.

        None (and no change) if ``nbytes`` exceeds the whole budget; a present key is only
        touched and keeps its old value.
        """
        victims = self._lru.admit(key, nbytes)
        if victims is None:
            return None
        self._entries.setdefault(key, Entry(nbytes, value))
        evicted = [(v.key, self._entries.pop(v.key)) for v in victims]
        for victim_key, _ in evicted:
            self._log_drop(victim_key)
        return evicted

    def remove(self, key: str) -> bool:
        if self._lru.remove(key) is None:
            return False
        del self._entries[key]
        self._log_drop(key)
        return True

    def changes_since(self, since: int) -> tuple[int, list[str] | None]:
        """(seq, keys dropped after number ``since``), or (seq, None) when the log no longer
        reaches back that far, or ``since`` is from before a restart: drop everything."""
        first = self.seq - len(self._log)  # number of the entry before the oldest kept
        if since > self.seq or since < first:
            return self.seq, None
        return self.seq, self._log[since - first :]

    def _log_drop(self, key: str) -> None:
        self.seq += 1
        self._log.append(key)
        if len(self._log) > 2 * self._log_size:  # trim in bulk: amortized O(1)
            del self._log[: len(self._log) - self._log_size]


class RefCache(Generic[V]):
    """A client's cache of directory entries, coherent with the directory as of ``since``."""

    def __init__(self, budget_bytes: int) -> None:
        self._lru = LruBytes(budget_bytes)
        self._values: dict[str, V] = {}
        self._touched: list[str] = []
        self.since = -1  # before any reply: the first one resets the cache instead of replaying the log

    def __len__(self) -> int:
        return len(self._values)

    @property
    def pending_touches(self) -> int:
        return len(self._touched)

    def get(self, key: str) -> V | None:
        """The cached value (and a touch queued for the directory), or None."""
        value = self._values.get(key)
        if value is not None:
            self._lru.touch(key)
            self._touched.append(key)
        return value

    def drain_touches(self) -> list[str]:
        touched, self._touched = self._touched, []
        return touched

    def apply(self, seq: int, dropped: list[str] | None) -> None:
        """Take in a directory reply's log entries (older replies than seen are ignored)."""
        if dropped is None:
            self.clear()
        elif seq > self.since:
            self.drop(dropped)
        else:
            return
        self.since = seq

    def put(self, key: str, nbytes: int, value: V, seq: int) -> None:
        """Cache an entry from a reply numbered ``seq`` (after :meth:`apply` of that reply).

        A reply older than what the cache has seen may describe a key dropped since: skipped.
        """
        if seq < self.since:
            return
        victims = self._lru.admit(key, nbytes)
        if victims is None:
            return
        self._values.setdefault(key, value)
        for victim in victims:
            del self._values[victim.key]

    def drop(self, keys: list[str]) -> None:
        for key in keys:
            if self._lru.remove(key) is not None:
                del self._values[key]

    def clear(self) -> None:
        self.drop(list(self._values))
