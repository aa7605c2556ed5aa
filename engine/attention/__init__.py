"""Attention backends behind one interface; see ``base.py``."""

from __future__ import annotations

import torch

from engine.attention.base import AttentionBackend

BACKEND_NAMES = ("torch", "flashinfer")


def make_attention_backend(
    name: str,
    num_q_heads: int,
    num_kv_heads: int,
    head_dim: int,
    scale: float,
    device: torch.device,
    dtype: torch.dtype = torch.bfloat16,
) -> AttentionBackend:
    """The named backend; ``flashinfer`` is imported only when asked for (CUDA only).

    ``dtype`` is the Q/KV dtype the flashinfer kernels are planned for (float16 or bfloat16);
    the torch backend follows its inputs and ignores it.
    """
    if name == "torch":
        from engine.attention.torch_backend import TorchAttentionBackend

        return TorchAttentionBackend(num_q_heads, num_kv_heads, head_dim, scale)
    if name == "flashinfer":
        from engine.attention.flashinfer import FlashInferAttentionBackend

        return FlashInferAttentionBackend(num_q_heads, num_kv_heads, head_dim, scale, device, dtype=dtype)
    raise ValueError(f"unknown attention backend {name!r}; valid: {', '.join(BACKEND_NAMES)}")
