"""Engine test fixtures: tiny random-weight Hugging Face models of every supported variant,
written with ``transformers.save_pretrained``, and the stories260K llama2.c model converted to
a Hugging Face directory. All session-scoped: built once, read by many tests."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.support.tiny_hf_models import VARIANTS, build_hf_model
from tests.support.tokenizer import STORY_CORPUS, train_bpe


@pytest.fixture(scope="session")
def hf_model_dirs(tmp_path_factory) -> dict[str, Path]:
    """variant name -> a saved Hugging Face directory (config.json, generation_config.json,
    model.safetensors; no tokenizer)."""
    root = tmp_path_factory.mktemp("hf-models")
    dirs = {}
    for variant in VARIANTS:
        build_hf_model(variant).save_pretrained(root / variant)
        dirs[variant] = root / variant
    return dirs


@pytest.fixture(scope="session")
def text_model_dir(hf_model_dirs, tmp_path_factory):
    """The tiny Llama plus a real byte-level BPE tokenizer (vocab <= the model's 300)."""
    from transformers import PreTrainedTokenizerFast

    tok = train_bpe(STORY_CORPUS, vocab_size=300, special_tokens=["<unk>", "<s>", "</s>"])
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>", unk_token="<unk>")
    path = tmp_path_factory.mktemp("text-model") / "m"
    shutil.copytree(hf_model_dirs["llama_gqa_llama3"], path)
    fast.save_pretrained(path)
    return path


@pytest.fixture(scope="session")
def stories260k_dir(stories260k_bin, tmp_path_factory) -> Path:
    """stories260K converted to a Hugging Face Llama directory (no tokenizer)."""
    from training.llama2c import convert_llama2c

    return convert_llama2c(stories260k_bin, tmp_path_factory.mktemp("stories260k"))


@pytest.fixture(scope="session")
def smollm2_dir(tmp_path_factory) -> Path:
    """SmolLM2-135M-Instruct (the packaged GGUF) dequantized into a session cache (~20 s)."""
    from engine.model_source import resolve_gguf

    cached = resolve_gguf("smollm2-135m-instruct", str(tmp_path_factory.mktemp("model-cache")))
    return cached.model_dir
