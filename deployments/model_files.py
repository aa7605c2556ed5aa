"""What the ingress needs of the model without loading its weights: tokenizer and fingerprint."""

from __future__ import annotations

from engine.fingerprint import model_fingerprint
from engine.loader import load_tokenizer, resolve_model_dir, weight_files


def fingerprint_of(model: str, dtype: str) -> str:
    """The fingerprint the engine computes for ``model`` loaded in ``dtype`` (chunk keys use it).

    Raises:
        ValueError: the model directory cannot be found or has no weights.
    """
    model_dir = resolve_model_dir(model)
    return model_fingerprint(model_dir / "config.json", weight_files(model_dir), dtype)


def tokenizer_of(model: str):
    """The model's ``transformers`` tokenizer.

    Raises:
        ValueError: the model has no tokenizer files (the HTTP API needs text).
    """
    model_dir = resolve_model_dir(model)
    tokenizer = load_tokenizer(model_dir)
    if tokenizer is None:
        raise ValueError(f"{model_dir} has no tokenizer: the HTTP API needs one")
    return tokenizer
