"""Model loading: config parsing into ModelSpec, strict weight loading, tokenizer, fingerprint."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from engine.hf_config import spec_from_config
from engine.loader import load_model
from engine.model_spec import RopeScaling

CPU = torch.device("cpu")
F32 = torch.float32


def copy_dir(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


def edit_config(model_dir: Path, **changes) -> None:
    config = json.loads((model_dir / "config.json").read_text())
    config.update(changes)
    (model_dir / "config.json").write_text(json.dumps(config))


def edit_weights(model_dir: Path, edit) -> None:
    path = model_dir / "model.safetensors"
    tensors = load_file(path)
    edit(tensors)
    save_file(tensors, path, metadata={"format": "pt"})


# --- spec -----------------------------------------------------------------------------------


def test_spec_of_each_variant(hf_model_dirs):
    specs = {v: load_model(str(d), F32, CPU).spec for v, d in hf_model_dirs.items()}
    mha, llama3, untied = specs["llama_mha"], specs["llama_gqa_llama3"], specs["llama_untied"]
    assert (mha.num_heads, mha.num_kv_heads, mha.head_dim, mha.tie_word_embeddings) == (4, 4, 16, True)
    assert (llama3.num_heads, llama3.num_kv_heads, llama3.num_layers) == (4, 2, 3)
    assert llama3.rope_scaling == RopeScaling(8.0, 1.0, 4.0, 32)
    assert mha.rope_scaling is None and mha.rope_theta == 10000.0
    assert (untied.num_kv_heads, untied.head_dim, untied.tie_word_embeddings) == (1, 32, False)
    assert specs["mistral"].max_position_embeddings == 64  # capped at the sliding window
    assert mha.max_position_embeddings == 128
    assert specs["qwen2"].qkv_bias and not specs["qwen2"].qk_norm
    assert specs["qwen3"].qk_norm and not specs["qwen3"].qkv_bias and specs["qwen3"].head_dim == 32
    for spec in specs.values():
        assert (spec.vocab_size, spec.hidden_size, spec.bos_token_id, spec.eos_token_ids) == (300, 64, 1, (2,))


@pytest.mark.filterwarnings("ignore:`rope_scaling` is deprecated:FutureWarning")
def test_rope_theta_from_old_and_new_config_layouts():
    from transformers import LlamaConfig

    new = LlamaConfig(rope_theta=500000.0, num_attention_heads=4, hidden_size=64)
    assert spec_from_config(new).rope_theta == 500000.0
    # transformers 4.x kept rope_theta top-level and rope_scaling separately.
    old = LlamaConfig(num_attention_heads=4, hidden_size=64)
    old.rope_parameters = None
    old.rope_theta = 123.0
    old.rope_scaling = {"rope_type": "llama3", "factor": 2.0, "low_freq_factor": 1.0, "high_freq_factor": 2.0,
                        "original_max_position_embeddings": 16}  # fmt: skip
    spec = spec_from_config(old)
    assert spec.rope_theta == 123.0 and spec.rope_scaling == RopeScaling(2.0, 1.0, 2.0, 16)


def test_sliding_window_only_caps_when_a_layer_slides():
    from transformers import MistralConfig, Qwen2Config

    assert spec_from_config(MistralConfig(sliding_window=None, max_position_embeddings=512)).max_position_embeddings == 512
    assert spec_from_config(MistralConfig(sliding_window=100, max_position_embeddings=512)).max_position_embeddings == 100
    # Qwen2 ships sliding_window values but slides only with use_sliding_window.
    off = Qwen2Config(sliding_window=100, use_sliding_window=False, max_position_embeddings=512)
    assert spec_from_config(off).max_position_embeddings == 512
    on = Qwen2Config(sliding_window=100, use_sliding_window=True, max_window_layers=0, max_position_embeddings=512)
    assert spec_from_config(on).max_position_embeddings == 100


def test_eos_ids_union_config_and_generation_config(hf_model_dirs, tmp_path):
    d = copy_dir(hf_model_dirs["qwen2"], tmp_path / "m")
    edit_config(d, eos_token_id=[2, 7])
    gen = json.loads((d / "generation_config.json").read_text())
    (d / "generation_config.json").write_text(json.dumps({**gen, "eos_token_id": [9, 2]}))
    assert load_model(str(d), F32, CPU).spec.eos_token_ids == (2, 7, 9)


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"model_type": "gpt2"}, r"model_type 'gpt2' is not supported; supported: llama, mistral, qwen2, qwen3"),
        ({"model_type": "no-such-model"}, r"model_type 'no-such-model' is not supported; supported: llama"),
        ({"rope_parameters": {"rope_type": "yarn", "factor": 4.0, "rope_theta": 1e4}},
         r"rope_type 'yarn' is not supported; supported: default, llama3"),
        ({"hidden_act": "gelu"}, r"hidden_act 'gelu' is not supported"),
        ({"attention_bias": True}, r"attention_bias=True is not supported for llama"),
        ({"mlp_bias": True}, r"mlp_bias=True is not supported"),
    ],
)  # fmt: skip
def test_unsupported_config_is_a_clear_error(hf_model_dirs, tmp_path, changes, message):
    d = copy_dir(hf_model_dirs["llama_mha"], tmp_path / "m")
    edit_config(d, **changes)
    with pytest.raises(ValueError, match=message):
        load_model(str(d), F32, CPU)


def test_missing_or_broken_config(tmp_path, hf_model_dirs):
    with pytest.raises(ValueError, match="has no config.json"):
        load_model(str(tmp_path), F32, CPU)
    d = copy_dir(hf_model_dirs["llama_mha"], tmp_path / "m")
    (d / "config.json").write_text("{not json")
    with pytest.raises(ValueError, match="is not a JSON object"):
        load_model(str(d), F32, CPU)


def test_unknown_path_or_unreachable_hub_id(tmp_path):
    # Tests run with HF_HUB_OFFLINE=1: a hub id that is not cached is an error, not a download.
    with pytest.raises(ValueError, match="a local model directory nor a reachable hub id"):
        load_model(str(tmp_path / "absent"), F32, CPU)
    with pytest.raises(ValueError, match="'nobody/no-such-model' is neither"):
        load_model("nobody/no-such-model", F32, CPU)


# --- weights --------------------------------------------------------------------------------


@pytest.mark.parametrize("variant", ["llama_mha", "llama_untied", "qwen2", "qwen3"])
def test_weights_land_by_name(hf_model_dirs, variant):
    d = hf_model_dirs[variant]
    loaded = load_model(str(d), F32, CPU)
    ours = dict(loaded.model.named_parameters())
    theirs = load_file(d / "model.safetensors")
    assert set(ours) == set(theirs) - ({"lm_head.weight"} if loaded.spec.tie_word_embeddings else set())
    for name, tensor in theirs.items():
        if name in ours:
            assert torch.equal(ours[name], tensor), name
    if loaded.spec.tie_word_embeddings:
        assert loaded.model.lm_head is None


def test_cast_to_requested_dtype(hf_model_dirs):
    loaded = load_model(str(hf_model_dirs["llama_mha"]), torch.bfloat16, CPU)
    assert {p.dtype for p in loaded.model.parameters()} == {torch.bfloat16}


def test_missing_tensor_is_named(hf_model_dirs, tmp_path):
    d = copy_dir(hf_model_dirs["qwen2"], tmp_path / "m")
    edit_weights(d, lambda t: t.pop("model.layers.1.self_attn.k_proj.bias"))
    with pytest.raises(ValueError, match=r"missing tensors: model\.layers\.1\.self_attn\.k_proj\.bias$"):
        load_model(str(d), F32, CPU)


def test_wrong_shape_is_named(hf_model_dirs, tmp_path):
    d = copy_dir(hf_model_dirs["llama_mha"], tmp_path / "m")
    edit_weights(d, lambda t: t.update({"model.norm.weight": torch.ones(63)}))
    with pytest.raises(ValueError, match=r"wrongly shaped tensors: model\.norm\.weight \(63,\) \(expected \(64,\)\)$"):
        load_model(str(d), F32, CPU)


def test_unexpected_tensor_is_named_and_inv_freq_ignored(hf_model_dirs, tmp_path):
    d = copy_dir(hf_model_dirs["llama_mha"], tmp_path / "m")
    edit_weights(d, lambda t: t.update({"model.layers.0.self_attn.rotary_emb.inv_freq": torch.ones(8)}))
    load_model(str(d), F32, CPU)
    edit_weights(d, lambda t: t.update({"model.layers.0.mlp.extra.weight": torch.ones(2)}))
    with pytest.raises(ValueError, match=r"unexpected tensors: model\.layers\.0\.mlp\.extra\.weight$"):
        load_model(str(d), F32, CPU)


def test_untied_model_needs_its_lm_head(hf_model_dirs, tmp_path):
    d = copy_dir(hf_model_dirs["llama_untied"], tmp_path / "m")
    edit_weights(d, lambda t: t.pop("lm_head.weight"))
    with pytest.raises(ValueError, match=r"missing tensors: lm_head\.weight"):
        load_model(str(d), F32, CPU)


def test_sharded_checkpoint_loads_the_same_weights(hf_model_dirs, tmp_path):
    from engine.loader import weight_files

    from tests.support.tiny_hf_models import build_hf_model

    d = tmp_path / "sharded"
    build_hf_model("llama_gqa_llama3").save_pretrained(d, max_shard_size="40KB")
    assert not (d / "model.safetensors").exists() and len(weight_files(d)) > 2
    # A stray file outside the index (some hub repos carry a second copy of the weights) is not read.
    save_file({"junk": torch.ones(1)}, d / "consolidated.safetensors")
    sharded = dict(load_model(str(d), F32, CPU).model.named_parameters())
    single = dict(load_model(str(hf_model_dirs["llama_gqa_llama3"]), F32, CPU).model.named_parameters())
    assert sharded.keys() == single.keys()
    assert all(torch.equal(sharded[n], single[n]) for n in single)
    (d / weight_files(d)[1].name).unlink()
    with pytest.raises(ValueError, match="names missing shard files"):
        load_model(str(d), F32, CPU)


def test_no_weights_or_corrupt_weights(hf_model_dirs, tmp_path):
    d = copy_dir(hf_model_dirs["llama_mha"], tmp_path / "m")
    (d / "model.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{broken header}")
    with pytest.raises(ValueError, match="cannot read .*model.safetensors"):
        load_model(str(d), F32, CPU)
    (d / "model.safetensors").unlink()
    with pytest.raises(ValueError, match="has neither model.safetensors nor model.safetensors.index.json"):
        load_model(str(d), F32, CPU)


# --- tokenizer ------------------------------------------------------------------------------


def save_word_tokenizer(model_dir: Path) -> None:
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {"<unk>": 0, "<s>": 1, "</s>": 2, "hello": 3, "world": 4}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    wrapped = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>", unk_token="<unk>")
    wrapped.save_pretrained(model_dir)


def test_tokenizer_loaded_when_present_else_none(hf_model_dirs, tmp_path):
    assert load_model(str(hf_model_dirs["llama_mha"]), F32, CPU).tokenizer is None
    d = copy_dir(hf_model_dirs["llama_mha"], tmp_path / "m")
    save_word_tokenizer(d)
    tokenizer = load_model(str(d), F32, CPU).tokenizer
    assert tokenizer("hello world hello").input_ids == [3, 4, 3]
    assert load_model(str(d), F32, CPU, skip_tokenizer_init=True).tokenizer is None


# --- fingerprint ----------------------------------------------------------------------------


def test_fingerprint_stable_and_sensitive(hf_model_dirs, tmp_path):
    from tests.support.tiny_hf_models import WEIGHT_SEED, build_hf_model

    src = hf_model_dirs["llama_mha"]
    fp = load_model(str(src), F32, CPU).fingerprint
    assert len(fp) == 32 and int(fp, 16) >= 0
    assert load_model(str(src), F32, CPU).fingerprint == fp
    # Same files elsewhere, re-serialised config, a tokenizer added: same model, same fingerprint.
    d = copy_dir(src, tmp_path / "copy")
    edit_config(d, transformers_version="0.0.0")
    save_word_tokenizer(d)
    assert load_model(str(d), F32, CPU).fingerprint == fp

    assert load_model(str(src), torch.bfloat16, CPU).fingerprint != fp
    other = tmp_path / "other-weights"
    build_hf_model("llama_mha", seed=WEIGHT_SEED + 1).save_pretrained(other)
    assert load_model(str(other), F32, CPU).fingerprint != fp
    edit_config(d, rms_norm_eps=1e-5)
    assert load_model(str(d), F32, CPU).fingerprint != fp


def test_fingerprint_of_large_files_samples_header_and_ends(tmp_path, monkeypatch):
    import engine.fingerprint as fpm

    d = tmp_path / "m"
    d.mkdir()
    (d / "config.json").write_text("{}")
    path = d / "model.safetensors"
    save_file({"a": torch.zeros(64, 64), "b": torch.zeros(64, 64), "c": torch.zeros(64, 64)}, path)
    raw = bytearray(path.read_bytes())

    def fingerprint(data: bytes) -> str:
        path.write_bytes(bytes(data))
        return fpm.model_fingerprint(d / "config.json", [path], "float32")

    # Shrink the thresholds so this small file counts as large: header + both 4 KiB ends are read.
    monkeypatch.setattr(fpm, "FULL_HASH_MAX_BYTES", 1024)
    monkeypatch.setattr(fpm, "SAMPLE_BYTES", 4096)
    base = fingerprint(raw)
    middle = bytearray(raw)
    middle[len(raw) // 2] ^= 1
    assert fingerprint(middle) == base  # documented blind spot of sampling
    for pos in (200, len(raw) - 5):
        edited = bytearray(raw)
        edited[pos] ^= 1
        assert fingerprint(edited) != base
    monkeypatch.setattr(fpm, "FULL_HASH_MAX_BYTES", 2 * 1024**3)
    assert fingerprint(middle) != fingerprint(raw)
