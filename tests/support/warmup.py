"""The warm-up tests' corpus and config builders."""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from tests.support.tiny_chat_model import document

CHUNK_TOKENS = 48


def corpus_documents(n: int, seed: int = 0) -> list[dict]:
    """``n`` short, distinct documents ``{"id", "text"}`` (one or two chunks each)."""
    return [{"id": f"doc-{seed}-{i:04d}", "text": document(10_000 * seed + i, num_sentences=3 + i % 4)}
            for i in range(n)]


def write_jsonl(path: Path, records: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


def app_config_dict(model_dir: Path, persistent: str, **store) -> dict:
    """A serving config for the tiny model with the given persistent store (no cluster tier)."""
    return {
        "engine": {"model": str(model_dir), "chunk_tokens": CHUNK_TOKENS, "num_blocks": 256, "max_num_seqs": 16,
                   "max_model_len": 1024, "max_num_batched_tokens": 1024, "chunk_pool_bytes": 8 * 1024 * 1024},
        "store": {"memory_bytes": 16 * 1024 * 1024, "object_store_bytes": 0, "persistent": persistent, **store},
        "replica": {"num_replicas": 1, "num_cpus": 0, "max_ongoing_requests": 8},
        "ingress": {"served_model_name": "epic-tiny", "max_documents": 64},
        "ray": {"num_cpus": 2, "object_store_memory": 100 * 1024 * 1024},
    }


def write_config(path: Path, config: dict) -> Path:
    path.write_text(yaml.safe_dump(config))
    return path
