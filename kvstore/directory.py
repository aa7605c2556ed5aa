"""Byte objects as files under one local directory: the embedded default persistent tier.

Writes go to a temporary file in the destination folder and are renamed into place, so a reader
sees the whole old object or the whole new one, never a torn file; a crash leaves at most a
stray ``.*.tmp`` file. There is no fsync: after a power loss a file may be short or empty, and
the codec's checks turn that into a miss.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from kvstore.blobs import Buffer, check_name
from kvstore.errors import TierError


class DirBlobs:
    """A BlobStore over files under ``root`` (created on first write)."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root).expanduser().absolute()

    def _path(self, name: str) -> Path:
        return self.root / check_name(name)

    def put(self, name: str, parts: Sequence[Buffer]) -> None:
        path = self._path(name)
        tmp = path.parent / f".{uuid.uuid4().hex}.tmp"  # short: the final name may be near NAME_MAX
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            with open(tmp, "wb") as f:
                for part in parts:
                    f.write(part)
            os.replace(tmp, path)
        except OSError as err:
            with contextlib.suppress(OSError):
                tmp.unlink(missing_ok=True)
            raise TierError(f"cannot write {path}: {err}") from err

    def get(self, name: str) -> np.ndarray | None:
        path = self._path(name)
        try:
            with open(path, "rb", buffering=0) as f:
                size = os.fstat(f.fileno()).st_size
                buf = np.empty(size, dtype=np.uint8)
                view = memoryview(buf)
                got = 0
                while got < size:
                    n = f.readinto(view[got:])
                    if not n:
                        break
                    got += n
        except FileNotFoundError:
            return None
        except OSError as err:
            raise TierError(f"cannot read {path}: {err}") from err
        if got != size:
            raise TierError(f"{path} shrank while being read ({got} of {size} bytes)")
        return buf

    def exists(self, name: str) -> bool:
        try:
            return self._path(name).is_file()
        except OSError as err:
            raise TierError(f"cannot stat {self._path(name)}: {err}") from err

    def delete(self, name: str) -> None:
        try:
            self._path(name).unlink(missing_ok=True)
        except OSError as err:
            raise TierError(f"cannot delete {self._path(name)}: {err}") from err

    def delete_many(self, names: Sequence[str]) -> None:
        for name in names:
            self.delete(name)

    def list(self, prefix: str) -> list[str]:
        names = []
        folder = prefix.rpartition("/")[0]  # walk only below the prefix's folder
        try:
            for dirpath, dirnames, filenames in os.walk(self.root / folder if folder else self.root):
                dirnames[:] = [d for d in dirnames if not d.startswith(".")]
                rel = Path(dirpath).relative_to(self.root)
                for filename in filenames:
                    name = (rel / filename).as_posix()
                    if not filename.startswith(".") and name.startswith(prefix):
                        names.append(name)
        except OSError as err:
            raise TierError(f"cannot list {self.root}: {err}") from err
        return sorted(names)
