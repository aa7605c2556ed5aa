"""Restart safety: a brand-new process with a brand-new Ray instance, over the same directory or
bucket, finds every chunk and document written before."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import torch

from kvstore.builder import build_store
from kvstore.config import StoreConfig
from documents.registry import DocumentRecord

from tests.support.store import FP, key, make_kv, open_registry, s3_config

ROOT = Path(__file__).resolve().parents[2]


def test_new_process_and_ray_instance_find_everything(directory_actor, s3_server, s3_bucket, tmp_path):
    chunks = {
        key(i): make_kv(i, dtype, num_tokens=3 + i)
        for i, dtype in enumerate([torch.float32, torch.bfloat16, torch.float16, torch.bfloat16])
    }
    common = dict(memory_bytes=1 << 20, object_store_bytes=1 << 20, **directory_actor)
    configs = {
        "dir": StoreConfig(persistent=f"dir://{tmp_path / 'store'}", **common),
        "s3": s3_config(s3_server, s3_bucket, **common),
    }
    doc = DocumentRecord("doc/1 ü", list(chunks), [kv.shape[2] for kv in chunks.values()], FP)
    for config in configs.values():
        store = build_store(config, FP)
        assert store.cluster is not None  # the session's Ray holds them too, but dies with it
        for k, kv in chunks.items():
            store.put_chunk(k, kv)
        assert store.flush(30)
        open_registry(config, FP).put(doc)
        store.close()
    torch.save(chunks, tmp_path / "expected.pt")

    fields = {name: {f: getattr(c, f) for f in c.__dataclass_fields__} for name, c in configs.items()}
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "tests.kvstore.kv_restart_reader",
            json.dumps(fields),
            str(tmp_path / "expected.pt"),
            doc.doc_id,
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    for name in ("dir", "s3"):
        assert report[name] == {
            "has_cluster_tier": name == "dir",  # a new, empty object-store tier
            "first_tiers": [name],  # so every chunk comes from the persistent tier ...
            "second_tiers": ["memory"],  # ... and is promoted
            "bit_exact": True,
            "doc_chunk_keys": list(chunks),
        }, name
