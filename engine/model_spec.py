"""The model shape our forward needs, parsed from a Hugging Face config."""

from __future__ import annotations

from dataclasses import dataclass

SUPPORTED_MODEL_TYPES = ("llama", "mistral", "qwen2", "qwen3")


@dataclass(frozen=True)
class RopeScaling:
    """Llama 3 style frequency scaling (``rope_type: llama3``)."""

    factor: float
    low_freq_factor: float
    high_freq_factor: float
    original_max_position_embeddings: int


@dataclass(frozen=True)
class ModelSpec:
    """Everything :class:`engine.model.Model` is built from.

    Attributes:
        model_type: one of SUPPORTED_MODEL_TYPES.
        vocab_size, hidden_size, intermediate_size, num_layers: the usual.
        num_heads, num_kv_heads, head_dim: attention shape (GQA when num_kv_heads < num_heads).
        rms_norm_eps: RMSNorm epsilon.
        rope_theta: RoPE base.
        rope_scaling: llama3 scaling, or None.
        max_position_embeddings: the model's context length.
        tie_word_embeddings: the LM head shares the embedding matrix.
        qkv_bias: q/k/v projections have a bias (Qwen2).
        qk_norm: per-head RMSNorm on q and k before RoPE (Qwen3).
        bos_token_id, eos_token_ids: special tokens (eos may be several).
    """

    model_type: str
    vocab_size: int
    hidden_size: int
    intermediate_size: int
    num_layers: int
    num_heads: int
    num_kv_heads: int
    head_dim: int
    rms_norm_eps: float
    rope_theta: float
    max_position_embeddings: int
    tie_word_embeddings: bool
    qkv_bias: bool = False
    qk_norm: bool = False
    rope_scaling: RopeScaling | None = None
    bos_token_id: int | None = None
    eos_token_ids: tuple[int, ...] = ()
