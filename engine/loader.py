"""Load a Hugging Face model directory (or hub id) into our :class:`engine.model.Model`.

Strict by design: every parameter of our model must come from the checkpoint with its exact
shape, and every tensor in the checkpoint must land somewhere (a silently ignored tensor means
the forward is not the model the user asked for).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, NamedTuple

import torch

from engine.fingerprint import fingerprint_of
from engine.hf_config import load_model_spec
from engine.model import Model
from engine.model_source import resolve_model_dir
from engine.model_spec import ModelSpec

SINGLE_FILE = "model.safetensors"
SHARD_INDEX = "model.safetensors.index.json"
# Any one of these makes the directory's tokenizer loadable by AutoTokenizer.
TOKENIZER_FILES = ("tokenizer.json", "tokenizer.model", "tokenizer_config.json", "vocab.json")
# Checkpoint tensors that are derived buffers, not weights (older exports carry them).
_IGNORED_SUFFIXES = ("rotary_emb.inv_freq",)


class LoadedModel(NamedTuple):
    """A model ready to serve."""

    model: Model
    spec: ModelSpec
    tokenizer: Any  # a transformers tokenizer, or None (token-id prompts only)
    fingerprint: str  # goes into chunk keys: weights + config + dtype


def load_model(
    model: str, dtype: torch.dtype, device: torch.device, skip_tokenizer_init: bool = False,
    cache_dir: str = "",
) -> LoadedModel:
    """Load config, weights and tokenizer.

    Args:
        model: a packaged model's short name, a ``.gguf`` file (dequantized once into
            ``cache_dir``), a local Hugging Face directory (config.json + *.safetensors, sharded
            or not) or a hub id (see :mod:`engine.model_source`).
        dtype: weight (and KV) dtype; checkpoint tensors are cast to it.
        device: where the weights live.
        skip_tokenizer_init: never load a tokenizer (serve token-id prompts only).
        cache_dir: where converted GGUF models are kept ("" -> the user's cache directory).

    Raises:
        ValueError: the model cannot be found, is unsupported, or its weights do not match.
    """
    model_dir = resolve_model_dir(model, cache_dir)
    spec = load_model_spec(model_dir)
    files = weight_files(model_dir)
    # Built without storage, then allocated uninitialised: every parameter is overwritten by
    # load_weights (which fails on any missing one), so random initialisation would be wasted.
    net = Model(spec, dtype, torch.device("meta")).to_empty(device=device)
    load_weights(net, files)
    net.eval()
    tokenizer = None if skip_tokenizer_init else load_tokenizer(model_dir)
    fingerprint = fingerprint_of(model_dir, str(dtype).removeprefix("torch."))
    return LoadedModel(model=net, spec=spec, tokenizer=tokenizer, fingerprint=fingerprint)


def weight_files(model_dir: Path) -> list[Path]:
    """The checkpoint's safetensors files, found as ``transformers`` finds them: model.safetensors,
    else the shards named by model.safetensors.index.json.

    Raises:
        ValueError: neither exists, or the index names a missing shard.
    """
    if (model_dir / SINGLE_FILE).is_file():
        return [model_dir / SINGLE_FILE]
    index = model_dir / SHARD_INDEX
    if not index.is_file():
        raise ValueError(f"{model_dir} has neither {SINGLE_FILE} nor {SHARD_INDEX}")
    try:
        weight_map = json.loads(index.read_text())["weight_map"]
    except (json.JSONDecodeError, KeyError, TypeError) as e:
        raise ValueError(f"{index} is not a safetensors shard index: {e}") from e
    files = [model_dir / name for name in sorted(set(weight_map.values()))]
    absent = [f.name for f in files if not f.is_file()]
    if absent:
        raise ValueError(f"{index} names missing shard files: {', '.join(absent)}")
    return files


def load_weights(net: Model, files: list[Path]) -> None:
    """Copy every tensor of the safetensors ``files`` into ``net``'s parameter of that name.

    A tied LM head is the embedding itself, so a checkpoint's ``lm_head.weight`` is then ignored
    (some exports store the copy).

    Raises:
        ValueError: missing, unexpected, duplicated or wrongly shaped tensors (named).
    """
    from safetensors import SafetensorError, safe_open

    params = dict(net.named_parameters())
    ignored = _IGNORED_SUFFIXES + (("lm_head.weight",) if net.spec.tie_word_embeddings else ())
    seen: set[str] = set()
    unexpected: list[str] = []
    wrong_shape: list[str] = []
    with torch.no_grad():
        for path in files:
            try:
                with safe_open(path, framework="pt") as f:
                    for name in f.keys():
                        if name in seen:
                            unexpected.append(f"{name} (again in {path.name})")
                        elif name in params:
                            seen.add(name)
                            shape, expected = tuple(f.get_slice(name).get_shape()), tuple(params[name].shape)
                            if shape == expected:
                                params[name].copy_(f.get_tensor(name))  # casts to the model's dtype
                            else:
                                wrong_shape.append(f"{name} {shape} (expected {expected})")
                        elif not name.endswith(ignored):
                            unexpected.append(name)
            except SafetensorError as e:
                raise ValueError(f"cannot read {path}: {e}") from e
    missing = sorted(set(params) - seen)
    problems = []
    if missing:
        problems.append(f"missing tensors: {', '.join(missing)}")
    if unexpected:
        problems.append(f"unexpected tensors: {', '.join(sorted(unexpected))}")
    if wrong_shape:
        problems.append(f"wrongly shaped tensors: {', '.join(wrong_shape)}")
    if problems:
        where = files[0].parent
        raise ValueError(f"weights in {where} do not match its config.json: " + "; ".join(problems))


def load_tokenizer(model_dir: Path):
    """``AutoTokenizer`` of the directory, or None when it has no tokenizer files."""
    if not any((model_dir / name).is_file() for name in TOKENIZER_FILES):
        return None
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(model_dir)
