"""Rotary position embeddings, applied as a separate step so K can be kept before RoPE.

Hugging Face convention ("rotate half"): the head dimension is split into two halves
``x = [x1, x2]`` and rotated as ``[x1 cos - x2 sin, x2 cos + x1 sin]`` with one frequency per
pair ``(x1[i], x2[i])``. Rotation by position ``p`` composes: rope(rope(x, a), b) == rope(x, a+b),
which is why a chunk's NoPE K can be placed at any offset.
"""

from __future__ import annotations

import math

import torch

from engine.model_spec import ModelSpec, RopeScaling


def inverse_frequencies(spec: ModelSpec) -> torch.Tensor:
    """[head_dim // 2] float32 inverse frequencies, with llama3 scaling when configured."""
    dim = spec.head_dim
    inv_freq = 1.0 / (spec.rope_theta ** (torch.arange(0, dim, 2, dtype=torch.float64) / dim))
    if spec.rope_scaling is not None:
        inv_freq = _llama3_scale(inv_freq, spec.rope_scaling)
    return inv_freq.to(torch.float32)


def _llama3_scale(inv_freq: torch.Tensor, s: RopeScaling) -> torch.Tensor:
    # Long wavelengths are slowed by `factor`, short ones kept, the band between interpolated.
    low_freq_wavelen = s.original_max_position_embeddings / s.low_freq_factor
    high_freq_wavelen = s.original_max_position_embeddings / s.high_freq_factor
    wavelen = 2 * math.pi / inv_freq
    scaled = torch.where(wavelen > low_freq_wavelen, inv_freq / s.factor, inv_freq)
    smooth = (s.original_max_position_embeddings / wavelen - s.low_freq_factor) / (
        s.high_freq_factor - s.low_freq_factor
    )
    interpolated = (1 - smooth) * scaled / s.factor + smooth * scaled
    is_medium = (wavelen >= high_freq_wavelen) & (wavelen <= low_freq_wavelen)
    return torch.where(is_medium, interpolated, scaled)


def rope_cos_sin(positions: torch.Tensor, inv_freq: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """cos, sin tables for ``positions``.

    Args:
        positions: [N] int64 absolute positions.
        inv_freq: [head_dim // 2] float32.

    Returns:
        cos, sin: [N, 1, head_dim] float32 (broadcast over heads).
    """
    freqs = positions.to(torch.float32)[:, None] * inv_freq.to(positions.device)[None, :]
    emb = torch.cat((freqs, freqs), dim=-1)[:, None, :]
    return emb.cos(), emb.sin()


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate ``x`` [..., N, H, D] by cos/sin [N, 1, D]; computed in float32, returned in x.dtype."""
    xf = x.float()
    half = xf.shape[-1] // 2
    rotated = torch.cat((-xf[..., half:], xf[..., :half]), dim=-1)
    return (xf * cos + rotated * sin).to(x.dtype)
