"""GGUF files as cached Hugging Face directories: dequantize once, read safetensors after.

Dequantizing a GGUF through ``transformers`` takes seconds to minutes; the result is written as
a plain model directory (config.json, model.safetensors, tokenizer files with the chat template)
in a cache keyed by the GGUF file's content hash, so every later load, in any process, reads
the same bytes and computes the same model fingerprint::

    <cache_dir>/<content digest of the .gguf>/
        config.json  generation_config.json  model.safetensors  tokenizer.json ...
        epic-manifest.json      written last: the source's hash and every file's size + hash

A directory is served only when its manifest matches every file byte for byte; a partial or
corrupted one (a crash mid-write, a flipped bit, a deleted file) is removed and rebuilt.
Writers build in a temporary directory and rename it into place, under a file lock, so
concurrent processes (ingress and engine replicas) convert a file once.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import NamedTuple

from engine.fingerprint import file_digest
from engine.gguf_file import inspect_gguf

MANIFEST = "epic-manifest.json"
LAYOUT_VERSION = 1  # bump when the directory's contents change meaning
_BLOCK = 8 * 1024 * 1024


class CachedModel(NamedTuple):
    """A GGUF file's cache directory and how it was found."""

    model_dir: Path
    from_cache: bool  # True: read as it was; False: converted by this call


def default_cache_dir() -> Path:
    """The user's cache for converted models."""
    return Path.home() / ".cache" / "epic-serve" / "models"


def cached_gguf_model(gguf_path: Path, cache_dir: Path) -> CachedModel:
    """The verified Hugging Face directory for ``gguf_path``, converting it when needed.

    Raises:
        ValueError: the GGUF file is missing, malformed or unsupported (named), or the cache
            directory cannot be written.
    """
    gguf_path = gguf_path.expanduser().resolve()
    if not gguf_path.is_file():
        raise ValueError(f"model file {gguf_path} does not exist")
    target = cache_dir.expanduser() / source_digest(gguf_path)
    if verify_model_dir(target):  # the same bytes passed inspection when they were converted
        return CachedModel(target, True)
    inspect_gguf(gguf_path)
    try:
        cache_dir.expanduser().mkdir(parents=True, exist_ok=True)
        with _locked(target.with_name(target.name + ".lock")):
            if verify_model_dir(target):  # another process finished it while we waited
                return CachedModel(target, True)
            _convert_into(gguf_path, target)
    except OSError as e:
        raise ValueError(f"cannot write the converted model for {gguf_path} under {cache_dir}: {e}") from e
    return CachedModel(target, False)


def verify_model_dir(model_dir: Path) -> bool:
    """True when ``model_dir`` holds exactly the files its manifest lists, with their sizes and
    digests (:func:`digest_hex`: every byte of a file up to 2 GiB, header and ends above)."""
    try:
        manifest = json.loads((model_dir / MANIFEST).read_text())
        files = manifest["files"]
        if manifest.get("layout") != LAYOUT_VERSION or not files:
            return False
        for name, want in files.items():
            path = model_dir / name
            if path.stat().st_size != want["size"] or digest_hex(path) != want["digest"]:
                return False
    except (OSError, ValueError, KeyError, TypeError):
        return False
    return True


def source_digest(path: Path) -> str:
    """blake2b (128-bit) of every byte of a GGUF file, streamed, as hex: the cache key.
    (Not :func:`digest_hex`: its sampling of files over 2 GiB reads a safetensors header.)"""
    h = hashlib.blake2b(digest_size=16)
    with path.open("rb") as f:
        while block := f.read(_BLOCK):
            h.update(block)
    return h.hexdigest()


def digest_hex(path: Path) -> str:
    """The file's content digest (:func:`engine.fingerprint.file_digest`, which the model
    fingerprint reuses, so a verified directory is hashed once), as 32 hex characters."""
    return file_digest(path).hex()[:32]


def _convert_into(gguf_path: Path, target: Path) -> None:
    """Dequantize ``gguf_path`` into a fresh directory and move it to ``target``."""
    tmp = Path(tempfile.mkdtemp(prefix=target.name + ".tmp-", dir=target.parent))
    try:
        _write_hf_dir(gguf_path, tmp)
        files = {p.name: {"size": p.stat().st_size, "digest": digest_hex(p)}
                 for p in sorted(tmp.iterdir()) if p.is_file()}
        manifest = {"layout": LAYOUT_VERSION, "source": gguf_path.name,
                    "source_digest": target.name, "files": files}
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=1, sort_keys=True))
        if target.exists():
            shutil.rmtree(target)  # partial or corrupted: never served, rebuilt
        os.replace(tmp, target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _write_hf_dir(gguf_path: Path, out: Path) -> None:
    """config.json, generation_config.json, model.safetensors and the tokenizer, from the GGUF."""
    import torch
    from safetensors.torch import save_file
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder, name = str(gguf_path.parent), gguf_path.name
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name)
    net = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, dtype=torch.float32)
    config = net.config.to_dict()
    # The weights are written dequantized: the result is a plain float checkpoint.
    for key in ("quantization_config", "_name_or_path", "_model_name_or_path", "transformers_version"):
        config.pop(key, None)
    config["architectures"] = [type(net).__name__]
    config["dtype"] = "float32"
    (out / "config.json").write_text(json.dumps(config, indent=2, sort_keys=True))
    net.generation_config.save_pretrained(out)
    tied = bool(config.get("tie_word_embeddings"))
    tensors = {k: v.detach().contiguous() for k, v in net.state_dict().items()
               if not (tied and k == "lm_head.weight")}
    # One metadata key: safetensors orders several in no fixed way, and the bytes must repeat.
    save_file(tensors, str(out / "model.safetensors"), metadata={"format": "pt"})
    tokenizer.save_pretrained(out)


class _locked:
    """An exclusive ``flock`` on a lock file for the duration of a ``with`` block."""

    def __init__(self, path: Path):
        self.path = path

    def __enter__(self) -> None:
        self._f = self.path.open("a")
        fcntl.flock(self._f, fcntl.LOCK_EX)

    def __exit__(self, *exc) -> None:
        fcntl.flock(self._f, fcntl.LOCK_UN)
        self._f.close()
