"""GGUF models: checked at startup, dequantized once into a content-keyed cache, read after.

Uses a tiny Llama GGUF written by the ``gguf`` package (seconds to convert); SmolLM2 itself is
tested in test_smollm2.py.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from deployments.model_files import fingerprint_of
from engine import Engine, EngineConfig, SamplingParams
from engine.gguf_cache import MANIFEST, cached_gguf_model, digest_hex, source_digest, verify_model_dir
from engine.model_source import packaged_model_file, resolve_model_dir

from tests.support.tiny_gguf import write_tiny_gguf

GREEDY = SamplingParams(max_tokens=6, temperature=0.0)


@pytest.fixture(scope="module")
def tiny_gguf(tmp_path_factory) -> Path:
    return write_tiny_gguf(tmp_path_factory.mktemp("gguf") / "tiny.gguf")


def test_first_load_converts_and_later_loads_read_the_cache(tiny_gguf, tmp_path):
    cache = tmp_path / "cache"
    first = cached_gguf_model(tiny_gguf, cache)
    assert not first.from_cache and first.model_dir == cache / source_digest(tiny_gguf)
    files = json.loads((first.model_dir / MANIFEST).read_text())["files"]
    assert {"config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json"} <= set(files)
    second = cached_gguf_model(tiny_gguf, cache)
    assert second.from_cache and second.model_dir == first.model_dir
    config = EngineConfig(model=str(tiny_gguf), model_cache_dir=str(cache))
    engine = Engine(config)
    # The fingerprint (so every chunk key) is the same in the ingress, the engine and a new process.
    code = ("from deployments.model_files import fingerprint_of; from engine import EngineConfig; "
            f"print(fingerprint_of(EngineConfig(model={str(tiny_gguf)!r}, model_cache_dir={str(cache)!r})))")
    other = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert engine.model_fingerprint == fingerprint_of(config) == other
    # Tokenizer and chat template come from the GGUF.
    tok = engine.tokenizer
    assert tok.encode("hello", add_special_tokens=False)[:2] == [259, 260]  # the file's two merges
    rendered = tok.apply_chat_template([{"role": "user", "content": "hi"}], tokenize=False, add_generation_prompt=True)
    assert rendered == "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n"
    out = engine.generate([[1, 40, 41]], GREEDY)[0]
    assert len(out.token_ids) >= 1 and out.finish_reason in ("length", "stop")


def test_the_cache_key_hashes_every_byte_of_the_gguf(tiny_gguf, tmp_path, monkeypatch):
    import hashlib

    from engine import fingerprint

    # Weight-file digests sample files above a size (reading a safetensors header); a GGUF key
    # must not, whatever the file's size.
    monkeypatch.setattr(fingerprint, "FULL_HASH_MAX_BYTES", 1024)
    monkeypatch.setattr(fingerprint, "SAMPLE_BYTES", 256)
    data = tiny_gguf.read_bytes()
    assert source_digest(tiny_gguf) == hashlib.blake2b(data, digest_size=16).hexdigest()
    middle = bytearray(data)
    middle[len(data) // 2] ^= 0xFF
    (tmp_path / "middle.gguf").write_bytes(bytes(middle))
    assert source_digest(tmp_path / "middle.gguf") != source_digest(tiny_gguf)


def test_the_same_bytes_give_the_same_directory_and_fingerprint(tiny_gguf, tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    fa = fingerprint_of(EngineConfig(model=str(tiny_gguf), model_cache_dir=str(a)))
    fb = fingerprint_of(EngineConfig(model=str(tiny_gguf), model_cache_dir=str(b)))
    assert fa == fb  # two independent conversions write identical files
    other = write_tiny_gguf(tmp_path / "other.gguf", seed=1)
    assert fingerprint_of(EngineConfig(model=str(other), model_cache_dir=str(a))) != fa


@pytest.mark.parametrize("damage", ["flip_byte", "truncate", "delete_file", "no_manifest", "bad_manifest"])
def test_a_corrupted_or_partial_cache_is_rebuilt_never_served(tiny_gguf, tmp_path, damage):
    cache = tmp_path / "cache"
    model_dir = cached_gguf_model(tiny_gguf, cache).model_dir
    weights = model_dir / "model.safetensors"
    good = digest_hex(weights)
    if damage == "flip_byte":
        data = bytearray(weights.read_bytes())
        data[len(data) // 2] ^= 0xFF
        weights.write_bytes(bytes(data))
    elif damage == "truncate":
        weights.write_bytes(weights.read_bytes()[:-100])
    elif damage == "delete_file":
        (model_dir / "tokenizer.json").unlink()
    elif damage == "no_manifest":
        (model_dir / MANIFEST).unlink()
    else:
        (model_dir / MANIFEST).write_text("{not json")
    assert not verify_model_dir(model_dir)
    again = cached_gguf_model(tiny_gguf, cache)
    assert not again.from_cache and again.model_dir == model_dir
    assert verify_model_dir(model_dir) and digest_hex(weights) == good
    assert [p.name for p in cache.iterdir() if p.is_dir()] == [model_dir.name]  # no temporary left


def _truncated(tiny_gguf: Path, tmp_path: Path) -> Path:
    path = tmp_path / "truncated.gguf"
    path.write_bytes(tiny_gguf.read_bytes()[: tiny_gguf.stat().st_size // 2])
    return path


@pytest.mark.parametrize("make,says", [
    (lambda g, t: t / "absent.gguf", "does not exist"),
    (lambda g, t: (t / "text.gguf").write_text("hello") and t / "text.gguf", "is not a GGUF file"),
    (_truncated, "truncated or malformed GGUF"),
    (lambda g, t: write_tiny_gguf(t / "falcon.gguf", architecture="falcon"), "architecture 'falcon' is not supported"),
    (lambda g, t: write_tiny_gguf(t / "int8.gguf", tensor_type="I8"), "tensor type.* I8 are not supported"),
])
def test_bad_model_files_are_clear_startup_errors(tiny_gguf, tmp_path, make, says):
    path = make(tiny_gguf, tmp_path)
    cache = tmp_path / "cache"
    with pytest.raises(ValueError, match=says) as e:
        Engine(EngineConfig(model=str(path), model_cache_dir=str(cache)))
    assert path.name in str(e.value)
    assert not cache.exists() or not any(p.is_dir() for p in cache.iterdir())  # nothing half-written


def test_model_names_resolve(tmp_path):
    assert packaged_model_file("smollm2-135m-instruct").name == "SmolLM2-135M-Instruct.Q4_1.gguf"
    with pytest.raises(ValueError, match="not a packaged model; packaged: smollm2-135m-instruct"):
        packaged_model_file("smollm3")
    (tmp_path / "weights.bin").write_bytes(b"x")
    with pytest.raises(ValueError, match="is a file but not a .gguf file"):
        resolve_model_dir(str(tmp_path / "weights.bin"))
