"""The document registry over a directory and over S3: round trip, odd ids, per-model scope,
restart safety (a new registry object over the same location), bad records and input."""

from __future__ import annotations

import pytest

from kvstore.config import StoreConfig
from documents.registry import DocumentRecord

from tests.support.store import FP, key, open_registry, s3_config

ODD_IDS = ["plain", "a/b/../c", "../../etc/passwd", ".", "ü ñ 😀 \n\t", "x" * 180, "-_=+"]


@pytest.fixture(params=["dir", "s3", "memory"])
def config(request, tmp_path):
    if request.param == "dir":
        return StoreConfig(persistent=f"dir://{tmp_path / 'store'}")
    if request.param == "s3":
        return s3_config(request.getfixturevalue("s3_server"), request.getfixturevalue("s3_bucket"))
    return StoreConfig(persistent="")


def _record(doc_id: str, n: int, fp: str = FP) -> DocumentRecord:
    return DocumentRecord(doc_id, [key(i) for i in range(n)], [10 + i for i in range(n)], fp, created_at=1700000000.5)


def test_round_trip_and_odd_ids(config):
    registry = open_registry(config, FP)
    assert registry.list_ids() == [] and registry.get("plain") is None and not registry.delete("plain")
    for i, doc_id in enumerate(ODD_IDS):
        registry.put(_record(doc_id, i + 1))
    assert registry.list_ids() == sorted(ODD_IDS)
    for i, doc_id in enumerate(ODD_IDS):
        assert registry.get(doc_id) == _record(doc_id, i + 1)
    assert registry.get("a/b/../c").num_tokens == 10 + 11
    registry.put(_record("plain", 5))  # replaces
    assert registry.get("plain") == _record("plain", 5)
    assert registry.delete("plain") and not registry.delete("plain")
    assert registry.get("plain") is None and "plain" not in registry.list_ids()


def test_restart_safe_and_scoped_by_model(config):
    if config.location.kind == "none":
        pytest.skip("nothing persists without a persistent location")
    open_registry(config, FP).put(_record("doc", 2))
    open_registry(config, "another-model").put(_record("doc", 1, fp="another-model"))
    again = open_registry(config, FP)  # a new object, new client or file handles
    assert again.get("doc") == _record("doc", 2)
    assert again.list_ids() == ["doc"]
    assert open_registry(config, "another-model").get("doc") == _record("doc", 1, fp="another-model")
    assert open_registry(config, "third-model").list_ids() == []


def test_unreadable_record_reads_as_absent(tmp_path):
    config = StoreConfig(persistent=str(tmp_path))
    registry = open_registry(config, FP)
    registry.put(_record("doc", 1))
    (path,) = [p for p in tmp_path.rglob("*.json")]
    path.write_text('{"version": 1, "doc_id": "doc"')
    assert registry.get("doc") is None
    path.write_text(path.read_text() + ', "chunk_keys": []}')  # valid JSON, missing fields
    assert registry.get("doc") is None


def test_bad_input_is_rejected(tmp_path):
    registry = open_registry(StoreConfig(persistent=str(tmp_path)), FP)
    with pytest.raises(ValueError, match="another-model"):
        registry.put(_record("doc", 1, fp="another-model"))
    with pytest.raises(ValueError, match="non-empty"):
        registry.get("")
    with pytest.raises(ValueError, match="180"):
        _record("x" * 181, 1)
    with pytest.raises(ValueError, match="token counts"):
        DocumentRecord("d", [key(0)], [1, 2], FP)
    with pytest.raises(ValueError, match="not a chunk key"):
        DocumentRecord("d", ["nope"], [1], FP)
    with pytest.raises(ValueError, match="positive"):
        DocumentRecord("d", [key(0)], [0], FP)
