"""Faults degrade to misses and dropped writes, never exceptions: S3 stopped and restarted,
an unwritable directory, a full disk (a file-size limit makes real writes fail with EFBIG)."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import time
from pathlib import Path

from kvstore.builder import build_store
from kvstore.config import StoreConfig

from tests.support.store import FP, key, make_kv, same_bits, s3_config

ROOT = Path(__file__).resolve().parents[2]


def test_s3_server_stops_and_comes_back(s3_server, s3_bucket):
    store = build_store(s3_config(s3_server, s3_bucket, memory_bytes=0, breaker_failures=10), FP)
    a, b, c = make_kv(1), make_kv(2), make_kv(3)
    store.put_chunk(key(1), a)
    assert store.flush(10)

    s3_server.stop()
    try:
        assert store.get_chunk(key(1)) is None  # a miss, not an exception
        store.put_chunk(key(2), b)  # the background write fails after its retries
        assert store.flush(30)
        assert store.contains(key(1)) is None
        store.delete(key(1))  # fails quietly
        errors = store.stats()["tiers"]["s3"]["errors"]
        assert errors == 4  # get, put, contains, delete
    finally:
        s3_server.restart()

    hit = store.get_chunk(key(1))
    assert hit is not None and hit.tier == "s3" and same_bits(hit.kv, a)  # the delete never happened
    assert store.get_chunk(key(2)) is None  # dropped while S3 was down: a plain miss now
    store.put_chunk(key(3), c)
    assert store.flush(10)
    assert same_bits(store.get_chunk(key(3)).kv, c)
    stats = store.stats()["tiers"]["s3"]
    assert stats["errors"] == errors and stats["hits"] == 2 and stats["misses"] == 1
    assert not stats["failing"]
    store.close()


def test_s3_outage_opens_the_circuit_breaker_and_a_probe_closes_it(s3_server, s3_bucket):
    """While S3 is down, calls stop paying S3's timeouts and retries: after two failures the
    breaker skips every call at once (the backend is not called: no more errors) until the
    cooldown ends; then one probe finds S3 back and the tier serves again."""
    store = build_store(s3_config(s3_server, s3_bucket, memory_bytes=0, breaker_failures=2,
                                  breaker_cooldown_s=0.5, breaker_max_cooldown_s=0.5), FP)
    a = make_kv(1)
    store.put_chunk(key(1), a)
    assert store.flush(10)
    s3_server.stop()
    try:
        for _ in range(2):
            assert store.get_chunk(key(1)) is None  # each pays its retries
        assert store.stats()["tiers"]["s3"]["circuit"] == "open"
        start = time.perf_counter()
        for _ in range(50):
            assert store.get_chunk(key(1)) is None
        skipping_s = time.perf_counter() - start
        store.put_chunk(key(2), make_kv(2))
        assert store.flush(10)
        stats = store.stats()["tiers"]["s3"]
        assert (stats["errors"], stats["skipped"]) == (2, 51)  # 50 gets and the background put
        assert skipping_s < 0.25, f"50 skipped gets took {skipping_s:.3f} s"
    finally:
        s3_server.restart()
    time.sleep(0.5)  # the cooldown: the next call is the probe
    hit = store.get_chunk(key(1))
    assert hit is not None and hit.tier == "s3" and same_bits(hit.kv, a)
    stats = store.stats()["tiers"]["s3"]
    assert stats["circuit"] == "closed" and stats["errors"] == 2 and not stats["failing"]
    store.close()


def test_unwritable_directory_degrades_and_recovers(tmp_path):
    root = tmp_path / "store"
    store = build_store(StoreConfig(persistent=str(root), memory_bytes=0, object_store_bytes=0), FP)
    kv = make_kv(4)
    store.put_chunk(key(4), kv)
    assert store.flush(10)
    moved = tmp_path / "moved"
    root.rename(moved)
    root.write_text("a file where the store's directory was")

    assert store.get_chunk(key(4)) is None
    store.put_chunk(key(5), make_kv(5))
    assert store.flush(10)
    assert store.stats()["tiers"]["dir"]["errors"] == 2  # the get and the background put

    root.unlink()
    moved.rename(root)
    assert same_bits(store.get_chunk(key(4)).kv, kv)
    store.put_chunk(key(5), make_kv(5))
    assert store.flush(10)
    assert same_bits(store.get_chunk(key(5)).kv, make_kv(5))
    store.close()


FULL_DISK_SCRIPT = textwrap.dedent(
    """
    import json, resource, signal, sys
    from tests.support.store import FP, key, make_kv, same_bits
    from kvstore.builder import build_store
    from kvstore.config import StoreConfig

    root = sys.argv[1]
    # The default object_store_bytes asks for a Ray tier, but no Ray runs in this process.
    store = build_store(StoreConfig(persistent=root, memory_bytes=0), FP)
    assert [t.name for t in store.tiers] == ["dir"]
    small, big = make_kv(1, num_tokens=2), make_kv(2, num_tokens=2000)  # 1 KiB and 1 MiB of KV
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # writes past the limit fail with EFBIG
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (256 * 1024, hard))
    store.put_chunk(key(1), small)
    store.put_chunk(key(2), big)
    store.flush(10)
    out = {"errors_full": store.stats()["tiers"]["dir"]["errors"],
           "small_ok": same_bits(getattr(store.get_chunk(key(1)), "kv", None), small),
           "big_missing": store.get_chunk(key(2)) is None}
    resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
    store.put_chunk(key(2), big)
    store.flush(10)
    out["big_ok"] = same_bits(getattr(store.get_chunk(key(2)), "kv", None), big)
    out["errors_after"] = store.stats()["tiers"]["dir"]["errors"]
    store.close()
    print(json.dumps(out))
    """
)


def test_full_disk_degrades_and_recovers(tmp_path):
    root = tmp_path / "store"
    proc = subprocess.run(
        [sys.executable, "-c", FULL_DISK_SCRIPT, str(root)], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out == {"errors_full": 1, "small_ok": True, "big_missing": True, "big_ok": True, "errors_after": 1}
    assert not [p for p in root.rglob("*") if p.name.endswith(".tmp")]  # no temp file left behind
