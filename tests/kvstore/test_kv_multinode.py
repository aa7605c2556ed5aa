"""The object-store tier across nodes: three simulated Ray nodes on this machine (see
kv_multinode_driver.py, run in a fresh process per scenario, which starts and removes its own
cluster). A chunk put on one node is read on others from the object-store tier, bit-exact; the
directory's node dies and reads fall back to the persistent tier, without errors reaching the
caller, until the restarted directory serves chunks again."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.timeout(420)


def run_scenario(name: str, store_dir: Path) -> dict:
    proc = subprocess.run(
        [sys.executable, "-m", "tests.kvstore.kv_multinode_driver", name, str(store_dir)],
        cwd=ROOT, capture_output=True, text=True, timeout=360,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    print(json.dumps(report, indent=1))  # shown when an assertion below fails
    return report


def test_chunk_put_on_one_node_is_read_on_others_from_the_object_store(tmp_path):
    r = run_scenario("fetch", tmp_path / "store")
    ids = r["node_ids"]
    assert len(set(ids.values())) == 3
    assert r["nodes"] == {name: ids[name] for name in ("node_a", "node_b", "head")}  # placed as asked
    assert r["directory_node"] == ids["node_a"] and r["put_ok"]
    # Readers on the two other nodes: every chunk from the object-store tier (no recompute, no
    # persistent read), the same bytes.
    for reader in ("reader_b", "reader_head"):
        assert [(g["tier"], g["exact"]) for g in r[reader]] == [("object_store", True)] * 2, r[reader]
    assert r["errors"] == [{"object_store": 0, "dir": 0}] * 3


@pytest.mark.parametrize("scenario", ["failover", "failover_sharded"])
def test_directory_node_lost_reads_fall_back_then_the_directory_returns(scenario, tmp_path):
    # failover: the one directory on node_b; failover_sharded: shard 0 on node_b, shard 1 on node_a.
    r = run_scenario(scenario, tmp_path / "store")
    ids, lost = r["node_ids"], [shard == 0 for shard in r["shards"]]
    assert r["put_ok"] and any(lost) and (all(lost) if scenario == "failover" else not all(lost))
    for reader in ("cached_reader", "asking_reader"):
        assert [(g["tier"], g["exact"]) for g in r["before"][reader]] == [("object_store", True)] * 6
    # node_b removed: every read still answers, bit-exact. The reader that asks the directory
    # each time (and reads first) gets the lost shard's chunks from the persistent tier, the
    # other shard's from the object store; the reader with cached refs reads after it, so it may
    # find chunks promoted back into the object store, or a copy its own node kept.
    expected = [("dir" if is_lost else "object_store", True) for is_lost in lost]
    assert [(g["tier"], g["exact"]) for g in r["after_loss"]["asking_reader"]] == expected
    assert all(g["exact"] and g["tier"] in ("object_store", "dir") for g in r["after_loss"]["cached_reader"])
    assert r["after_loss_s"] < 120  # each read waits at most object_store_timeout_s (10 s)
    # The lost directory was re-created on a surviving node and serves what is put (or
    # promoted from the persistent tier) again.
    assert r["directory_node"] in (ids["head"], ids["node_a"]) and r["directory_back_s"] < 60
    assert r["put_again_ok"]
    for reader in ("cached_reader", "asking_reader"):
        new, old = r["recovered"][reader]
        assert (new["tier"], new["exact"]) == ("object_store", True)
        assert old["exact"] and old["tier"] in ("object_store", "dir")
        assert [(g["tier"], g["exact"]) for g in r["again"][reader]] == [("object_store", True)]
