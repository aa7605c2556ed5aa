"""Tiny random-weight Hugging Face models of every variant our forward supports.

Built with ``transformers`` itself (the reference implementation in every parity test).
"""

from __future__ import annotations

import torch

COMMON_CONFIG = dict(
    vocab_size=300,
    hidden_size=64,
    intermediate_size=128,
    num_hidden_layers=2,
    max_position_embeddings=128,
    rms_norm_eps=1e-6,
    bos_token_id=1,
    eos_token_id=2,
)

# name -> (model_type, config overrides). Each covers a feature of our forward.
VARIANTS: dict[str, tuple[str, dict]] = {
    "llama_mha": ("llama", dict(num_attention_heads=4, num_key_value_heads=4, tie_word_embeddings=True)),
    # head_dim 16, theta 1e4, original context 32: one RoPE wavelength (~20) falls in llama3's
    # interpolated band (8..32), longer ones are slowed, the shortest kept.
    "llama_gqa_llama3": (
        "llama",
        dict(
            num_attention_heads=4,
            num_key_value_heads=2,
            num_hidden_layers=3,
            tie_word_embeddings=False,
            rope_scaling=dict(
                rope_type="llama3",
                factor=8.0,
                low_freq_factor=1.0,
                high_freq_factor=4.0,
                original_max_position_embeddings=32,
            ),
        ),
    ),
    "llama_untied": ("llama", dict(num_attention_heads=2, num_key_value_heads=1, tie_word_embeddings=False)),
    # A sliding window the prompts stay inside: the loader caps the context at it.
    "mistral": ("mistral", dict(num_attention_heads=4, num_key_value_heads=2, sliding_window=64, head_dim=16)),
    "qwen2": ("qwen2", dict(num_attention_heads=4, num_key_value_heads=2, tie_word_embeddings=True)),
    # head_dim 32 != hidden / heads: the projections are wider than the residual stream.
    "qwen3": ("qwen3", dict(num_attention_heads=4, num_key_value_heads=2, head_dim=32, tie_word_embeddings=True)),
}

WEIGHT_SEED = 1234


def hf_config(variant: str):
    """The ``transformers`` config of a variant."""
    from transformers import AutoConfig

    model_type, overrides = VARIANTS[variant]
    return AutoConfig.for_model(model_type, **{**COMMON_CONFIG, **overrides})


def randomize_(model: torch.nn.Module, seed: int) -> None:
    """Give every weight a scale that makes logits decisive (Hugging Face's init is near-uniform
    and zeroes biases, which would hide a missing bias); norms near 1."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            noise = torch.randn(p.shape, generator=gen)
            if name.endswith("norm.weight"):
                p.copy_(1.0 + 0.2 * noise)
            elif name.endswith(".bias"):
                p.copy_(0.5 * noise)
            elif "embed_tokens" in name or "lm_head" in name:
                p.copy_(0.5 * noise)
            else:
                p.copy_(2.0 * noise / p.shape[-1] ** 0.5)


def build_hf_model(variant: str, seed: int = WEIGHT_SEED):
    """A random-weight ``*ForCausalLM`` of a variant, float32, eval mode, eager attention."""
    from transformers import AutoModelForCausalLM

    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(hf_config(variant), dtype=torch.float32, attn_implementation="eager")
    randomize_(model, seed)
    return model.eval()
