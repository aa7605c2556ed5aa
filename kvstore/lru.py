"""A byte-budgeted LRU index: which keys a bounded tier keeps and in what order it drops them.

Pure bookkeeping (no data, no locks): the memory tier and the object-store directory actor each
own one and guard it with their own lock.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import NamedTuple


class Victim(NamedTuple):
    key: str
    nbytes: int


class LruBytes:
    """Keys with sizes, least recently used first; ``used_bytes <= budget_bytes`` always holds."""

    def __init__(self, budget_bytes: int) -> None:
        if budget_bytes < 0:
            raise ValueError(f"budget_bytes must be >= 0, got {budget_bytes}")
        self.budget_bytes = budget_bytes
        self.used_bytes = 0
        self._sizes: OrderedDict[str, int] = OrderedDict()

    def __contains__(self, key: str) -> bool:
        return key in self._sizes

    def __len__(self) -> int:
        return len(self._sizes)

    def keys(self) -> list[str]:
        """Every key, least recently used first."""
        return list(self._sizes)

    def touch(self, key: str) -> bool:
        """Mark ``key`` most recently used; False if absent."""
        if key not in self._sizes:
            return False
        self._sizes.move_to_end(key)
        return True

    def admit(self, key: str, nbytes: int) -> list[Victim] | None:
        """Add ``key`` as most recently used, dropping the least recently used until it fits.

        Returns:
            The dropped keys, oldest first (empty if ``key`` was already present: it is only
            touched), or None if ``nbytes`` exceeds the whole budget (nothing changes).
        """
        if nbytes < 0:
            raise ValueError(f"nbytes must be >= 0, got {nbytes}")
        if self.touch(key):
            return []
        if nbytes > self.budget_bytes:
            return None
        victims: list[Victim] = []
        while self.used_bytes + nbytes > self.budget_bytes:
            old_key, old_bytes = self._sizes.popitem(last=False)
            self.used_bytes -= old_bytes
            victims.append(Victim(old_key, old_bytes))
        self._sizes[key] = nbytes
        self.used_bytes += nbytes
        return victims

    def remove(self, key: str) -> int | None:
        """Forget ``key``; return the bytes freed, or None if absent."""
        nbytes = self._sizes.pop(key, None)
        if nbytes is not None:
            self.used_bytes -= nbytes
        return nbytes


class LruBudgeted:
    """The budget of a class that keeps its keys in an :class:`LruBytes` at ``self._lru``."""

    _lru: LruBytes

    @property
    def used_bytes(self) -> int:
        return self._lru.used_bytes

    @property
    def budget_bytes(self) -> int:
        return self._lru.budget_bytes
