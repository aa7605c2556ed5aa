"""A GGUF file, checked before anything loads it: magic, structure, architecture, tensor types.

``transformers`` (with the ``gguf`` package) does the dequantizing; this file only decides
whether we can serve the file and says clearly why not, naming the file, so a bad model path is
a startup error and never a half-loaded replica.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

GGUF_MAGIC = b"GGUF"
# GGUF architectures whose transformers conversion lands on a model type our forward runs.
SUPPORTED_ARCHITECTURES = ("llama", "mistral", "qwen2", "qwen3")
# Tensor types stored as plain floats; quantized types are those gguf can dequantize.
_FLOAT_TYPES = ("F32", "F16", "BF16", "F64")


@dataclass(frozen=True, slots=True)
class GGUFInfo:
    """What the check learned of a GGUF file."""

    path: Path
    architecture: str
    tensor_types: tuple[str, ...]  # distinct ggml type names, sorted
    num_tensors: int


def supported_tensor_types() -> tuple[str, ...]:
    """The ggml tensor types the installed ``gguf`` package can turn into floats."""
    from gguf import quants

    return _FLOAT_TYPES + tuple(t.name for t in quants._type_traits)


def inspect_gguf(path: Path) -> GGUFInfo:
    """Read ``path``'s header and tensor table (memory-mapped, no tensor data is decoded).

    Raises:
        ValueError: the file is missing, is not a GGUF file, is truncated or malformed, or holds
            an architecture or tensor type we do not support; the message names the file.
    """
    if not path.is_file():
        raise ValueError(f"model file {path} does not exist")
    with path.open("rb") as f:
        magic = f.read(4)
    if magic != GGUF_MAGIC:
        raise ValueError(f"{path} is not a GGUF file (it starts with {magic!r}, not {GGUF_MAGIC!r})")
    from gguf import GGUFReader

    try:
        reader = GGUFReader(path)
    except (ValueError, IndexError, OSError) as e:
        raise ValueError(f"{path} is a truncated or malformed GGUF file: {e}") from e
    field = reader.get_field("general.architecture")
    if field is None:
        raise ValueError(f"{path} has no general.architecture: cannot tell which model it holds")
    architecture = str(field.contents())
    if architecture not in SUPPORTED_ARCHITECTURES:
        raise ValueError(f"{path}: architecture {architecture!r} is not supported; "
                         f"supported: {', '.join(SUPPORTED_ARCHITECTURES)}")
    types = tuple(sorted({t.tensor_type.name for t in reader.tensors}))
    supported = supported_tensor_types()
    unsupported = [t for t in types if t not in supported]
    if unsupported:
        raise ValueError(f"{path}: tensor type(s) {', '.join(unsupported)} are not supported; "
                         f"supported: {', '.join(supported)}")
    return GGUFInfo(path=path, architecture=architecture, tensor_types=types, num_tensors=len(reader.tensors))
