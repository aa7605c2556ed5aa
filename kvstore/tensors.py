"""Zero-copy moves between chunk KV tensors and the raw bytes the tiers store.

numpy has no bfloat16, so a bf16 tensor travels as an int16 view of the same memory.
"""

from __future__ import annotations

import numpy as np
import torch

from kvstore.codec import DTYPE_ITEMSIZE, check_shape

_TORCH_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
# The same-width dtype numpy can hold each torch dtype as.
_CARRIER = {"float32": torch.float32, "bfloat16": torch.int16, "float16": torch.float16}
_NUMPY_CARRIER = {"float32": np.float32, "bfloat16": np.int16, "float16": np.float16}
_NAMES = {v: k for k, v in _TORCH_DTYPES.items()}
assert set(_TORCH_DTYPES) == set(DTYPE_ITEMSIZE)


def host_kv(kv: torch.Tensor) -> torch.Tensor:
    """``kv`` as a contiguous CPU tensor that owns exactly its bytes (safe to keep in a cache).

    Raises:
        ValueError: if ``kv`` is not a 5-d chunk KV tensor of a supported dtype.
    """
    if kv.dtype not in _NAMES:
        raise ValueError(f"KV dtype {kv.dtype} is not one of {', '.join(_TORCH_DTYPES)}")
    check_shape(_NAMES[kv.dtype], tuple(kv.shape))
    kv = kv.detach().to("cpu").contiguous()
    # A contiguous slice of a bigger tensor would keep the whole base alive in the cache.
    if kv.untyped_storage().nbytes() != kv.nbytes:
        kv = kv.clone()
    return kv


def dtype_name(kv: torch.Tensor) -> str:
    return _NAMES[kv.dtype]


def payload_view(kv: torch.Tensor) -> np.ndarray:
    """The bytes of a contiguous CPU ``kv``: ``[kv.nbytes]`` uint8, sharing its memory."""
    assert kv.is_contiguous() and kv.device.type == "cpu", "payload_view needs a contiguous CPU tensor"
    return kv.view(_CARRIER[_NAMES[kv.dtype]]).numpy().reshape(-1).view(np.uint8)


def tensor_from_payload(payload: np.ndarray, dtype: str, shape: tuple[int, ...]) -> torch.Tensor:
    """View raw bytes as a KV tensor ``shape`` of ``dtype`` without copying.

    A read-only ``payload`` (a Ray object) gives a tensor that must not be written in place.
    """
    flat = payload.view(_NUMPY_CARRIER[dtype])
    return torch.from_numpy(flat).view(_TORCH_DTYPES[dtype]).reshape(shape)
