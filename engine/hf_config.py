"""Parse a Hugging Face model directory's config into our :class:`ModelSpec`.

``transformers`` reads config.json (and generation_config.json); this file only decides what our
forward supports and says clearly what it does not.
"""

from __future__ import annotations

import json
from pathlib import Path

from engine.model_spec import SUPPORTED_MODEL_TYPES, ModelSpec, RopeScaling

SUPPORTED_ROPE_TYPES = ("default", "llama3")


def load_model_spec(model_dir: Path) -> ModelSpec:
    """Read ``model_dir``'s config.json (and generation_config.json when present).

    Raises:
        ValueError: no config.json, or a model feature our forward does not implement.
    """
    from transformers import AutoConfig, GenerationConfig

    config_path = model_dir / "config.json"
    if not config_path.is_file():
        raise ValueError(f"{model_dir} has no config.json: not a Hugging Face model directory")
    try:
        model_type = json.loads(config_path.read_text()).get("model_type")
    except (json.JSONDecodeError, UnicodeDecodeError, AttributeError) as e:
        raise ValueError(f"{config_path} is not a JSON object: {e}") from e
    # Check before transformers sees it: an unknown type should list ours, not transformers'.
    _check_model_type(model_type)
    try:
        config = AutoConfig.from_pretrained(model_dir)
    except (ValueError, KeyError, OSError) as e:
        raise ValueError(f"cannot parse {model_dir / 'config.json'}: {e}") from e
    generation_eos = None
    if (model_dir / "generation_config.json").is_file():
        generation_eos = GenerationConfig.from_pretrained(model_dir).eos_token_id
    return spec_from_config(config, generation_eos)


def spec_from_config(config, generation_eos: int | list[int] | None = None) -> ModelSpec:
    """Build a :class:`ModelSpec` from a ``transformers`` config object.

    Args:
        config: a ``PretrainedConfig`` of model_type llama, mistral, qwen2 or qwen3.
        generation_eos: ``eos_token_id`` of generation_config.json (int, list or None); its ids
            are added to the config's own.

    Raises:
        ValueError: an unsupported model type or feature, naming it.
    """
    model_type = getattr(config, "model_type", None)
    _check_model_type(model_type)
    act = getattr(config, "hidden_act", "silu")
    if act != "silu":
        raise ValueError(f"hidden_act {act!r} is not supported; supported: silu")
    if getattr(config, "mlp_bias", False):
        raise ValueError("mlp_bias=True is not supported (our MLP projections have no bias)")
    # Qwen2 always has q/k/v bias (and no o_proj bias); elsewhere attention_bias also adds an o_proj
    # bias, which our forward does not have.
    qkv_bias = model_type == "qwen2"
    if model_type != "qwen2" and getattr(config, "attention_bias", False):
        raise ValueError(f"attention_bias=True is not supported for {model_type} (it adds an o_proj bias)")

    num_heads = config.num_attention_heads
    num_kv_heads = getattr(config, "num_key_value_heads", None) or num_heads
    if num_heads % num_kv_heads:
        raise ValueError(f"num_attention_heads {num_heads} is not a multiple of num_key_value_heads {num_kv_heads}")
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // num_heads
    rope_theta, rope_scaling = _rope(config)
    return ModelSpec(
        model_type=model_type,
        vocab_size=config.vocab_size,
        hidden_size=config.hidden_size,
        intermediate_size=config.intermediate_size,
        num_layers=config.num_hidden_layers,
        num_heads=num_heads,
        num_kv_heads=num_kv_heads,
        head_dim=head_dim,
        rms_norm_eps=config.rms_norm_eps,
        rope_theta=rope_theta,
        max_position_embeddings=_context_length(config),
        tie_word_embeddings=bool(getattr(config, "tie_word_embeddings", False)),
        qkv_bias=qkv_bias,
        qk_norm=model_type == "qwen3",
        rope_scaling=rope_scaling,
        bos_token_id=getattr(config, "bos_token_id", None),
        eos_token_ids=_eos_ids(getattr(config, "eos_token_id", None), generation_eos),
    )


def _check_model_type(model_type: object) -> None:
    if model_type not in SUPPORTED_MODEL_TYPES:
        raise ValueError(f"model_type {model_type!r} is not supported; supported: {', '.join(SUPPORTED_MODEL_TYPES)}")


def _rope(config) -> tuple[float, RopeScaling | None]:
    """RoPE base and scaling; transformers 5 keeps both in ``rope_parameters``, 4.x in
    ``rope_theta`` + ``rope_scaling``."""
    params = dict(getattr(config, "rope_parameters", None) or getattr(config, "rope_scaling", None) or {})
    theta = params.get("rope_theta", getattr(config, "rope_theta", None))
    if theta is None:
        raise ValueError("config has no rope_theta (neither top-level nor in rope_parameters)")
    rope_type = params.get("rope_type", params.get("type")) or "default"
    if rope_type not in SUPPORTED_ROPE_TYPES:
        raise ValueError(f"rope_type {rope_type!r} is not supported; supported: {', '.join(SUPPORTED_ROPE_TYPES)}")
    if rope_type == "default":
        return float(theta), None
    return float(theta), RopeScaling(
        factor=float(params["factor"]),
        low_freq_factor=float(params["low_freq_factor"]),
        high_freq_factor=float(params["high_freq_factor"]),
        original_max_position_embeddings=int(params["original_max_position_embeddings"]),
    )


def _context_length(config) -> int:
    """The model's context length, capped at its sliding window when it has one.

    Our forward has full causal attention only. Sliding-window attention (row q sees KV
    positions > q - window) equals full attention for every sequence of at most ``window``
    tokens, so capping the context there keeps the forward exact (Mistral v0.1: 4096).
    """
    max_len = config.max_position_embeddings
    window = getattr(config, "sliding_window", None)
    layer_types = getattr(config, "layer_types", None)
    if layer_types is not None and "sliding_attention" not in layer_types:
        window = None  # Qwen2/3 keep a window value but use it only when a layer slides
    return min(max_len, window) if window else max_len


def _eos_ids(*values: int | list[int] | None) -> tuple[int, ...]:
    """Union of eos ids (each value an int, a list or None), in first-seen order."""
    ids: list[int] = []
    for value in values:
        for token_id in [value] if isinstance(value, int) else value or []:
            if token_id not in ids:
                ids.append(token_id)
    return tuple(ids)
