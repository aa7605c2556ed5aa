"""Random-weight Llama checkpoints in Hugging Face layout, for benchmarks that need a model's
shape but not its knowledge (speed does not depend on the weights' values).

``config.json`` comes from ``transformers.LlamaConfig``; the weights are seeded normal noise
(std 0.02, norms 1) written as safetensors shards with the usual index, so the engine loads the
directory exactly like a downloaded model.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

# Llama-3.1-8B's architecture (config.json of meta-llama/Llama-3.1-8B).
LLAMA_3_1_8B = dict(
    vocab_size=128256,
    hidden_size=4096,
    intermediate_size=14336,
    num_hidden_layers=32,
    num_attention_heads=32,
    num_key_value_heads=8,
    max_position_embeddings=131072,
    rope_theta=500000.0,
    rope_scaling=dict(
        rope_type="llama3", factor=8.0, low_freq_factor=1.0, high_freq_factor=4.0,
        original_max_position_embeddings=8192,
    ),
    rms_norm_eps=1e-5,
    bos_token_id=128000,
    eos_token_id=[128001, 128008, 128009],
    tie_word_embeddings=False,
)

# A tiny model of the same family, for CPU smoke runs of the benchmarks.
TINY_LLAMA = dict(
    LLAMA_3_1_8B,
    vocab_size=512,
    hidden_size=128,
    intermediate_size=256,
    num_hidden_layers=2,
    num_attention_heads=4,
    num_key_value_heads=2,
    max_position_embeddings=8192,
    rope_scaling=dict(LLAMA_3_1_8B["rope_scaling"], original_max_position_embeddings=1024),
    bos_token_id=1,
    eos_token_id=2,
)

LAYERS_PER_SHARD = 4
DONE_MARKER = "random-weights-complete.json"


def weight_shapes(cfg: dict) -> dict[str, tuple[int, ...]]:
    """Every tensor of a Llama checkpoint, by its Hugging Face name, in shard order."""
    h, inter, v = cfg["hidden_size"], cfg["intermediate_size"], cfg["vocab_size"]
    head_dim = h // cfg["num_attention_heads"]
    q, kv = cfg["num_attention_heads"] * head_dim, cfg["num_key_value_heads"] * head_dim
    shapes: dict[str, tuple[int, ...]] = {"model.embed_tokens.weight": (v, h)}
    for i in range(cfg["num_hidden_layers"]):
        p = f"model.layers.{i}."
        shapes |= {
            p + "self_attn.q_proj.weight": (q, h),
            p + "self_attn.k_proj.weight": (kv, h),
            p + "self_attn.v_proj.weight": (kv, h),
            p + "self_attn.o_proj.weight": (h, q),
            p + "mlp.gate_proj.weight": (inter, h),
            p + "mlp.up_proj.weight": (inter, h),
            p + "mlp.down_proj.weight": (h, inter),
            p + "input_layernorm.weight": (h,),
            p + "post_attention_layernorm.weight": (h,),
        }
    shapes["model.norm.weight"] = (h,)
    if not cfg["tie_word_embeddings"]:
        shapes["lm_head.weight"] = (v, h)
    return shapes


def _shard_of(name: str) -> int:
    if name.startswith("model.layers."):
        return 1 + int(name.split(".")[2]) // LAYERS_PER_SHARD
    return 0 if name == "model.embed_tokens.weight" else 10**6  # final norm and head go last


def write_random_llama(path: Path, cfg: dict, seed: int = 0, device: str = "cpu") -> Path:
    """Write (or reuse, when an identical one is there) a random bfloat16 Llama directory.

    Args:
        path: the model directory.
        cfg: ``transformers.LlamaConfig`` keyword arguments.
        seed: weight seed.
        device: where the noise is drawn (a GPU draws 8B numbers in about a second).
    """
    from safetensors.torch import save_file
    from transformers import LlamaConfig

    path.mkdir(parents=True, exist_ok=True)
    recipe = {"config": cfg, "seed": seed}
    marker = path / DONE_MARKER
    if marker.is_file() and json.loads(marker.read_text()) == recipe:
        return path
    LlamaConfig(**cfg, dtype="bfloat16").save_pretrained(path)
    gen = torch.Generator(device=device).manual_seed(seed)
    shards: dict[int, list[str]] = {}
    shapes = weight_shapes(cfg)
    for name in shapes:
        shards.setdefault(_shard_of(name), []).append(name)
    weight_map, total = {}, 0
    for n, key in enumerate(sorted(shards)):
        fname = f"model-{n + 1:05d}-of-{len(shards):05d}.safetensors"
        tensors = {}
        for name in shards[key]:
            if name.endswith("norm.weight"):
                t = torch.ones(shapes[name], dtype=torch.bfloat16)
            else:
                t = (0.02 * torch.randn(shapes[name], generator=gen, device=device)).to(torch.bfloat16).cpu()
            tensors[name] = t
            weight_map[name] = fname
            total += t.numel() * t.element_size()
        save_file(tensors, str(path / fname), metadata={"format": "pt"})
    index = {"metadata": {"total_size": total}, "weight_map": weight_map}
    (path / "model.safetensors.index.json").write_text(json.dumps(index, indent=2))
    marker.write_text(json.dumps(recipe))
    return path


def parameter_bytes_per_decode_step(cfg: dict, dtype_bytes: int = 2) -> int:
    """Weight bytes a decode step reads: every matrix once, the embedding only by row (ignored)."""
    shapes = weight_shapes(cfg)
    read = [s for name, s in shapes.items() if name != "model.embed_tokens.weight"]
    if cfg["tie_word_embeddings"]:
        read.append(shapes["model.embed_tokens.weight"])
    return sum(torch.Size(s).numel() for s in read) * dtype_bytes


def kv_bytes_per_token(cfg: dict, dtype_bytes: int = 2) -> int:
    """K and V of one token over all layers."""
    head_dim = cfg["hidden_size"] // cfg["num_attention_heads"]
    return cfg["num_hidden_layers"] * 2 * cfg["num_key_value_heads"] * head_dim * dtype_bytes
