"""A byte budget for the chunk files of a ``dir://`` store: least recently used chunks are
deleted instead of the disk filling up.

Several processes (every replica, the warm-up) may share one directory, so the budget keeps no
index of its own that could disagree with theirs: each process counts what it wrote since it
last looked, and when that estimate would pass the budget, or ``rescan_s`` have passed since it
last looked, it scans the directory (every process's files) and deletes the oldest chunk files,
by modification time, down to ``low_water`` of the budget. The directory can therefore exceed
the budget by what other processes wrote within the last ``rescan_s`` (0: scan on every write,
exact). A scan walks every chunk file, so the default keeps it to one per 30 s per process, in
the background writer, never on a request's path. A read refreshes its file's time, so "oldest" means least recently
used by any process. Only files under ``chunks/`` count and are ever deleted: document records
and chunk token ids (which recompile an evicted chunk) are kept.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path

CHUNK_DIR = "chunks"


class DirectoryBudget:
    def __init__(self, root: str | os.PathLike[str], max_bytes: int, low_water: float = 0.9,
                 rescan_s: float = 30.0, clock: Callable[[], float] = time.monotonic) -> None:
        if max_bytes < 1:
            raise ValueError(f"max_bytes must be >= 1, got {max_bytes}")
        if not 0 < low_water <= 1:
            raise ValueError(f"low_water must be in (0, 1], got {low_water}")
        self.root = Path(root).expanduser().absolute()
        self.max_bytes = max_bytes
        self.low_water = low_water
        self.rescan_s = rescan_s
        self._clock = clock
        self._lock = threading.Lock()
        self._used: int | None = None  # an estimate; None until the first scan
        self._scanned_at = 0.0

    def admit(self, nbytes: int) -> list[str]:
        """Make room for a new chunk file of ``nbytes``.

        Returns:
            the object names (``chunks/ab/<key>.kv``) deleted to make room, oldest first.
        """
        with self._lock:
            fresh = self._clock() - self._scanned_at < self.rescan_s
            if fresh and self._used is not None and self._used + nbytes <= self.max_bytes:
                self._used += nbytes
                return []
            self._scanned_at = self._clock()
            files = self._scan()
            used = sum(size for _, size, _ in files)
            target = self.low_water * self.max_bytes - nbytes
            evicted = []
            for _, size, path in files:  # oldest first
                if used <= target:
                    break
                with contextlib.suppress(FileNotFoundError):  # another process deleted it first
                    path.unlink()
                used -= size
                evicted.append(path.relative_to(self.root).as_posix())
            self._used = max(used, 0) + nbytes
            return evicted

    def touch(self, name: str) -> None:
        """Mark a chunk file just read as recently used (by every process's reckoning)."""
        with contextlib.suppress(OSError):
            os.utime(self.root / name)

    def _scan(self) -> list[tuple[int, int, Path]]:
        """(mtime_ns, size, path) of every chunk file, oldest first."""
        files = []
        for dirpath, _, names in os.walk(self.root / CHUNK_DIR):
            for name in names:
                if name.startswith("."):  # a write in progress
                    continue
                path = Path(dirpath) / name
                with contextlib.suppress(FileNotFoundError):
                    st = path.stat()
                    files.append((st.st_mtime_ns, st.st_size, path))
        files.sort()
        return files
