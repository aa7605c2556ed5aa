"""Our own Llama-family forward (Llama 2/3, Mistral, Qwen2, Qwen3).

The engine drives it layer by layer (so a link policy may drop rows mid-forward):

    h = model.embed(token_ids)                       # [N] -> [N, hidden]
    for layer in model.layers: h = layer(h, ctx)     # ctx: positions, attention, KV pages
    logits = model.compute_logits(h[rows])           # [M, vocab] float32

Parameter names equal the Hugging Face ones, so safetensors load by name.
Inside a layer, RoPE is its own step: K is captured before RoPE (for compiling chunks), then
rotated, written into the pages, and attention runs over the pages.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from engine.attention.base import AttentionBackend, write_kv
from engine.model_spec import ModelSpec
from engine.rope import apply_rope


class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float, dtype: torch.dtype, device: torch.device):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim, dtype=dtype, device=device))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        xf = x.float()
        xf = xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + self.eps)
        return self.weight * xf.to(x.dtype)


@dataclass(slots=True)
class KVCapture:
    """Collects pre-RoPE K and V of selected rows at every layer (compiling chunks, CacheBlend).

    ``out[layer, 0]`` is K before RoPE, ``out[layer, 1]`` is V.
    """

    rows: torch.Tensor  # [C] int64 row indices into the step's rows
    out: torch.Tensor  # [num_layers, 2, C, num_kv_heads, head_dim]


@dataclass(slots=True)
class ForwardContext:
    """What every layer needs for one step (or one row subset of it)."""

    cos: torch.Tensor  # [N, 1, head_dim] float32
    sin: torch.Tensor  # [N, 1, head_dim] float32
    slot_mapping: torch.Tensor  # [N] int64
    attention: AttentionBackend  # planned for these N rows
    kv_caches: torch.Tensor  # [num_layers, num_blocks, 2, block_size, num_kv_heads, head_dim]
    capture: KVCapture | None = None


class Attention(nn.Module):
    def __init__(self, spec: ModelSpec, layer_idx: int, dtype: torch.dtype, device: torch.device):
        super().__init__()
        self.layer_idx = layer_idx
        self.num_heads = spec.num_heads
        self.num_kv_heads = spec.num_kv_heads
        self.head_dim = spec.head_dim
        q_out, kv_out = spec.num_heads * spec.head_dim, spec.num_kv_heads * spec.head_dim
        kw = dict(dtype=dtype, device=device)
        self.q_proj = nn.Linear(spec.hidden_size, q_out, bias=spec.qkv_bias, **kw)
        self.k_proj = nn.Linear(spec.hidden_size, kv_out, bias=spec.qkv_bias, **kw)
        self.v_proj = nn.Linear(spec.hidden_size, kv_out, bias=spec.qkv_bias, **kw)
        self.o_proj = nn.Linear(q_out, spec.hidden_size, bias=False, **kw)
        if spec.qk_norm:
            self.q_norm = RMSNorm(spec.head_dim, spec.rms_norm_eps, dtype, device)
            self.k_norm = RMSNorm(spec.head_dim, spec.rms_norm_eps, dtype, device)
        self.qk_norm = spec.qk_norm

    def forward(self, x: torch.Tensor, ctx: ForwardContext) -> torch.Tensor:
        # x: [N, hidden]
        n = x.shape[0]
        q = self.q_proj(x).view(n, self.num_heads, self.head_dim)
        k = self.k_proj(x).view(n, self.num_kv_heads, self.head_dim)
        v = self.v_proj(x).view(n, self.num_kv_heads, self.head_dim)
        if self.qk_norm:
            q, k = self.q_norm(q), self.k_norm(k)
        if ctx.capture is not None:
            ctx.capture.out[self.layer_idx, 0] = k[ctx.capture.rows]
            ctx.capture.out[self.layer_idx, 1] = v[ctx.capture.rows]
        q, k = apply_rope(q, ctx.cos, ctx.sin), apply_rope(k, ctx.cos, ctx.sin)
        kv_cache = ctx.kv_caches[self.layer_idx]
        write_kv(kv_cache, ctx.slot_mapping, k, v)
        o = ctx.attention.forward(q, kv_cache)  # [N, Hq, D]
        return self.o_proj(o.reshape(n, self.num_heads * self.head_dim))


class MLP(nn.Module):
    def __init__(self, spec: ModelSpec, dtype: torch.dtype, device: torch.device):
        super().__init__()
        kw = dict(bias=False, dtype=dtype, device=device)
        self.gate_proj = nn.Linear(spec.hidden_size, spec.intermediate_size, **kw)
        self.up_proj = nn.Linear(spec.hidden_size, spec.intermediate_size, **kw)
        self.down_proj = nn.Linear(spec.intermediate_size, spec.hidden_size, **kw)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))


class DecoderLayer(nn.Module):
    def __init__(self, spec: ModelSpec, layer_idx: int, dtype: torch.dtype, device: torch.device):
        super().__init__()
        self.input_layernorm = RMSNorm(spec.hidden_size, spec.rms_norm_eps, dtype, device)
        self.self_attn = Attention(spec, layer_idx, dtype, device)
        self.post_attention_layernorm = RMSNorm(spec.hidden_size, spec.rms_norm_eps, dtype, device)
        self.mlp = MLP(spec, dtype, device)

    def forward(self, h: torch.Tensor, ctx: ForwardContext) -> torch.Tensor:
        h = h + self.self_attn(self.input_layernorm(h), ctx)
        return h + self.mlp(self.post_attention_layernorm(h))


class _Body(nn.Module):
    """Holds the ``model.*`` parameters under their Hugging Face names."""

    def __init__(self, spec: ModelSpec, dtype: torch.dtype, device: torch.device):
        super().__init__()
        self.embed_tokens = nn.Embedding(spec.vocab_size, spec.hidden_size, dtype=dtype, device=device)
        self.layers = nn.ModuleList(DecoderLayer(spec, i, dtype, device) for i in range(spec.num_layers))
        self.norm = RMSNorm(spec.hidden_size, spec.rms_norm_eps, dtype, device)


class Model(nn.Module):
    """A Llama-family decoder with parameters named as in Hugging Face checkpoints."""

    def __init__(self, spec: ModelSpec, dtype: torch.dtype, device: torch.device):
        super().__init__()
        self.spec = spec
        self.model = _Body(spec, dtype, device)
        if spec.tie_word_embeddings:
            self.lm_head = None
        else:
            self.lm_head = nn.Linear(spec.hidden_size, spec.vocab_size, bias=False, dtype=dtype, device=device)

    @property
    def layers(self) -> nn.ModuleList:
        return self.model.layers

    def embed(self, token_ids: torch.Tensor) -> torch.Tensor:
        """[N] int64 -> [N, hidden]."""
        return self.model.embed_tokens(token_ids)

    def compute_logits(self, h: torch.Tensor) -> torch.Tensor:
        """Final norm and LM head: [M, hidden] -> [M, vocab] float32."""
        h = self.model.norm(h)
        weight = self.model.embed_tokens.weight if self.lm_head is None else self.lm_head.weight
        return F.linear(h, weight).float()
