"""Run as a separate process with its own brand-new Ray instance: open stores over locations an
earlier process wrote and report, as JSON, what each chunk and document read back as.

Usage: python -m tests.kvstore.kv_restart_reader CONFIGS_JSON EXPECTED_PT DOC_ID
"""

from __future__ import annotations

import json
import shutil
import sys
import tempfile

import ray
import torch

from kvstore.builder import build_store
from kvstore.config import StoreConfig

from tests.support.store import FP, open_registry, same_bits


def main() -> None:
    configs = json.loads(sys.argv[1])
    expected: dict[str, torch.Tensor] = torch.load(sys.argv[2])
    doc_id = sys.argv[3]
    ray_dir = tempfile.mkdtemp(prefix="ray-r-", dir="/tmp")  # short: Ray's socket paths must fit
    ray.init(
        address="local",
        num_cpus=1,
        object_store_memory=100 * 1024 * 1024,
        include_dashboard=False,
        log_to_driver=False,
        _temp_dir=ray_dir,
    )
    report = {}
    for name, fields in configs.items():
        if name != "dir":  # one new cluster tier is enough (each costs an actor start)
            fields["object_store_bytes"] = 0
        store = build_store(StoreConfig(**fields), FP)
        first = {k: store.get_chunk(k) for k in expected}
        second = {k: store.get_chunk(k) for k in expected}
        record = open_registry(StoreConfig(**fields), FP).get(doc_id)
        report[name] = {
            "has_cluster_tier": store.cluster is not None,
            "first_tiers": sorted({h.tier if h else "miss" for h in first.values()}),
            "second_tiers": sorted({h.tier if h else "miss" for h in second.values()}),
            "bit_exact": all(h is not None and same_bits(h.kv, expected[k]) for k, h in first.items()),
            "doc_chunk_keys": record.chunk_keys if record else None,
        }
        store.close()
    ray.shutdown()
    shutil.rmtree(ray_dir, ignore_errors=True)
    print(json.dumps(report))


if __name__ == "__main__":
    main()
