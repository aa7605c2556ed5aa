"""What the ingress needs of the model without loading its weights: tokenizer and fingerprint."""

from __future__ import annotations

from engine.config import EngineConfig
from engine.fingerprint import fingerprint_of as dir_fingerprint
from engine.loader import load_tokenizer
from engine.model_source import resolve_model_dir


def fingerprint_of(config: EngineConfig) -> str:
    """The fingerprint the engine's loader attaches to ``config``'s model in its dtype (the same
    function, :func:`engine.fingerprint.fingerprint_of`), without loading the weights.

    Raises:
        ValueError: the model cannot be found or has no weights.
    """
    model_dir = resolve_model_dir(config.model, config.model_cache_dir)
    return dir_fingerprint(model_dir, config.dtype)


def tokenizer_of(config: EngineConfig):
    """``config``'s model's ``transformers`` tokenizer.

    Raises:
        ValueError: the model has no tokenizer files (the HTTP API needs text).
    """
    model_dir = resolve_model_dir(config.model, config.model_cache_dir)
    tokenizer = load_tokenizer(model_dir)
    if tokenizer is None:
        raise ValueError(f"{model_dir} has no tokenizer: the HTTP API needs one")
    return tokenizer
