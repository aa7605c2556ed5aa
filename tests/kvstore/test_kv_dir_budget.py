"""A bounded directory store: chunk files stay under the byte budget by deleting the least
recently used (a read counts as a use, whichever process made it); document records and chunk
token ids are never deleted; two processes sharing the directory keep it under one budget."""

from __future__ import annotations

import time

from tests.support.store import FP, key, make_kv, same_bits

from kvstore.builder import build_store
from kvstore.config import StoreConfig
from kvstore.dir_budget import DirectoryBudget
from kvstore.keys import chunk_object_name

NUM_TOKENS = 64  # each chunk: 2 layers x 2 x 64 tokens x 2 heads x 8 dims x 4 B = 8 KiB + header


def chunk_bytes(root) -> dict[str, int]:
    return {p.name: p.stat().st_size for p in (root / "chunks").rglob("*.kv")}


def test_least_recently_used_chunks_are_deleted_and_other_files_kept(tmp_path):
    root = tmp_path / "store"
    one = None
    kvs = {i: make_kv(i, num_tokens=NUM_TOKENS) for i in range(8)}
    config = StoreConfig(memory_bytes=0, object_store_bytes=0, persistent=f"dir://{root}", persistent_max_bytes=1)
    probe = build_store(config, FP)  # one chunk to learn a file's size
    probe.put_chunk(key(100), kvs[0])
    assert probe.flush(10)
    one = chunk_bytes(root)[chunk_object_name(key(100)).split("/")[-1]]
    probe.delete(key(100))
    probe.close()
    (root / "docs" / "scope").mkdir(parents=True)
    (root / "docs" / "scope" / "doc.json").write_text("{}")
    (root / "chunk-ids" / "ab").mkdir(parents=True)
    (root / "chunk-ids" / "ab" / "x.ids").write_bytes(b"\0" * 4 * one)  # larger than the budget

    budget = int(3.5 * one)
    store = build_store(StoreConfig(memory_bytes=0, object_store_bytes=0, persistent=f"dir://{root}",
                                    persistent_max_bytes=budget), FP)
    for i in range(3):
        store.put_chunk(key(i), kvs[i])
        assert store.flush(10)
        time.sleep(0.02)  # distinct modification times
    assert same_bits(store.get_chunk(key(0)).kv, kvs[0])  # chunk 0 is now the most recently used
    time.sleep(0.02)
    store.put_chunk(key(3), kvs[3])  # over the budget: the oldest unread chunks go, down to 90%
    assert store.flush(10)
    held = {i for i in range(4) if store.contains(key(i))}
    assert held == {0, 3} or held == {0, 2, 3}
    assert 2 in held, "one deletion makes room here (3 x size <= 0.9 x 3.5 x size)"
    assert sum(chunk_bytes(root).values()) <= budget
    for i in range(4, 8):
        store.put_chunk(key(i), kvs[i])
        assert store.flush(10)
        assert sum(chunk_bytes(root).values()) <= budget
    assert same_bits(store.get_chunk(key(7)).kv, kvs[7])
    assert store.stats()["tiers"]["dir"]["evictions"] == 8 - len([i for i in range(8) if store.contains(key(i))])
    assert (root / "docs" / "scope" / "doc.json").read_text() == "{}"
    assert (root / "chunk-ids" / "ab" / "x.ids").stat().st_size == 4 * one
    store.close()


def test_two_processes_share_one_budget(tmp_path):
    """Two budgets over one directory (two replicas) that look before every write: each sees
    the other's files, so the directory never passes the budget."""
    root = tmp_path / "store"
    a, b = DirectoryBudget(root, max_bytes=1000, rescan_s=0), DirectoryBudget(root, max_bytes=1000, rescan_s=0)
    written = []
    for i in range(12):
        budget = a if i % 2 else b
        for name in budget.admit(300):
            written.remove(name)
        name = f"chunks/{i:02x}/{i:02x}.kv"
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(b"x" * 300)
        written.append(name)
        time.sleep(0.01)
        on_disk = sorted(p.relative_to(root).as_posix() for p in (root / "chunks").rglob("*.kv"))
        assert on_disk == sorted(written) and 300 * len(on_disk) <= 1000
    # The newest three: each admit deletes down to 0.9 x 1000 - 300, then writes one more.
    assert written == ["chunks/09/09.kv", "chunks/0a/0a.kv", "chunks/0b/0b.kv"]


def test_between_scans_a_process_counts_only_its_own_writes(tmp_path):
    """With rescan_s > 0 the estimate is trusted until it would pass the budget or goes stale:
    another process's writes can push the directory over the budget until the next scan."""
    now = [0.0]
    budget = DirectoryBudget(tmp_path, max_bytes=1000, rescan_s=5.0, clock=lambda: now[0])

    def write(name: str, nbytes: int) -> None:
        path = tmp_path / "chunks" / "aa" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"x" * nbytes)
        time.sleep(0.01)  # distinct modification times

    assert budget.admit(300) == []  # the first call scans: nothing there
    write("own-1.kv", 300)
    write("other.kv", 600)  # another process's file
    assert budget.admit(300) == []  # 600 by its own count: no scan
    write("own-2.kv", 300)  # 1200 on disk now
    now[0] = 5.0  # stale: this admit scans, sees 1200, and deletes the oldest down to 600
    assert budget.admit(300) == ["chunks/aa/own-1.kv", "chunks/aa/other.kv"]
    assert sorted(p.name for p in (tmp_path / "chunks" / "aa").iterdir()) == ["own-2.kv"]
