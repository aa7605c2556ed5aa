"""The llama2.c converter: a checkpoint written in llama2.c's layout, run by ``transformers`` from
the converted directory, computes what llama2.c's own forward (interleaved RoPE) computes."""

from __future__ import annotations

import struct

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from training.llama2c import convert_llama2c, hf_rotary_rows, main
from engine.loader import load_model
from engine.rope import apply_rope

HEADER = dict(dim=32, hidden_dim=48, n_layers=2, n_heads=4, n_kv_heads=2, vocab_size=40, seq_len=16)


def interleaved_rope(x: torch.Tensor, positions: torch.Tensor, theta: float = 10000.0) -> torch.Tensor:
    """llama2.c's RoPE: rotate pairs (x[2i], x[2i+1]) of [T, H, D] by position * theta^(-2i/D)."""
    t, h, d = x.shape
    freqs = theta ** (-torch.arange(0, d, 2, dtype=torch.float64) / d)
    turn = torch.polar(torch.ones(t, d // 2, dtype=torch.float64), positions[:, None].double() * freqs)
    pairs = torch.view_as_complex(x.double().reshape(t, h, d // 2, 2).contiguous())
    return torch.view_as_real(pairs * turn[:, None]).reshape(t, h, d).float()


def llama2c_logits(w: dict[str, torch.Tensor], tokens: list[int]) -> torch.Tensor:
    """llama2.c's forward (run.c), written plainly: [T] token ids -> [T, vocab] logits."""
    n_heads, n_kv = HEADER["n_heads"], HEADER["n_kv_heads"]
    t, hd = len(tokens), HEADER["dim"] // n_heads
    pos = torch.arange(t)

    def rmsnorm(x, weight):
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + 1e-5) * weight

    x = w["tok_emb"][tokens]
    for i in range(HEADER["n_layers"]):
        xb = rmsnorm(x, w["rms_att"][i])
        q = interleaved_rope((xb @ w["wq"][i].T).view(t, n_heads, hd), pos)
        k = interleaved_rope((xb @ w["wk"][i].T).view(t, n_kv, hd), pos).repeat_interleave(n_heads // n_kv, 1)
        v = (xb @ w["wv"][i].T).view(t, n_kv, hd).repeat_interleave(n_heads // n_kv, 1)
        scores = torch.einsum("qhd,khd->hqk", q, k) / hd**0.5
        scores = scores.masked_fill(~torch.ones(t, t, dtype=torch.bool).tril(), float("-inf"))
        x = x + torch.einsum("hqk,khd->qhd", scores.softmax(-1), v).reshape(t, -1) @ w["wo"][i].T
        xb = rmsnorm(x, w["rms_ffn"][i])
        x = x + (F.silu(xb @ w["w1"][i].T) * (xb @ w["w3"][i].T)) @ w["w2"][i].T
    return rmsnorm(x, w["rms_final"]) @ w["wcls"].T


def write_llama2c(path, tied: bool, seed: int = 0) -> dict[str, torch.Tensor]:
    """A random checkpoint in the legacy layout; returns its tensors by llama2.c name."""
    h = HEADER
    dim, hidden, layers, vocab = h["dim"], h["hidden_dim"], h["n_layers"], h["vocab_size"]
    kv_dim = h["n_kv_heads"] * dim // h["n_heads"]
    shapes = {
        "tok_emb": (vocab, dim), "rms_att": (layers, dim), "wq": (layers, dim, dim), "wk": (layers, kv_dim, dim),
        "wv": (layers, kv_dim, dim), "wo": (layers, dim, dim), "rms_ffn": (layers, dim),
        "w1": (layers, hidden, dim), "w2": (layers, dim, hidden), "w3": (layers, hidden, dim),
        "rms_final": (dim,), "freq_cis": (2, h["seq_len"], dim // h["n_heads"] // 2),
    }  # fmt: skip
    if not tied:
        shapes["wcls"] = (vocab, dim)
    gen = torch.Generator().manual_seed(seed)
    w = {name: torch.randn(shape, generator=gen) * 0.3 for name, shape in shapes.items()}
    for name in ("rms_att", "rms_ffn", "rms_final"):
        w[name] = 1.0 + w[name]
    header = [dim, hidden, layers, h["n_heads"], h["n_kv_heads"], vocab if tied else -vocab, h["seq_len"]]
    with open(path, "wb") as f:
        f.write(struct.pack("<7i", *header))
        for name in shapes:
            f.write(w[name].numpy().astype("<f4").tobytes())
    if tied:
        w["wcls"] = w["tok_emb"]
    return w


def test_row_permutation_turns_interleaved_rope_into_rotate_half():
    gen = torch.Generator().manual_seed(0)
    n_heads, head_dim, dim, t = 3, 8, 16, 5
    w = torch.randn(n_heads * head_dim, dim, generator=gen)
    x = torch.randn(t, dim, generator=gen)
    pos = torch.tensor([0, 1, 5, 17, 300])
    llama2c = interleaved_rope((x @ w.T).view(t, n_heads, head_dim), pos)
    freqs = 10000.0 ** (-torch.arange(0, head_dim, 2, dtype=torch.float32) / head_dim)
    angles = torch.cat([pos[:, None] * freqs] * 2, dim=-1)[:, None, :]
    hf = apply_rope((x @ hf_rotary_rows(w, n_heads).T).view(t, n_heads, head_dim), angles.cos(), angles.sin())
    # Same rotated vectors, with each head's pair members moved from (2i, 2i+1) to (i, i + D/2).
    torch.testing.assert_close(hf, hf_rotary_rows(llama2c.reshape(t, -1).T, n_heads).T.reshape(t, n_heads, -1))


@pytest.mark.parametrize("tied", [True, False])
def test_converted_checkpoint_computes_llama2c_forward(tmp_path, tied):
    from transformers import LlamaForCausalLM

    w = write_llama2c(tmp_path / "model.bin", tied)
    out = convert_llama2c(tmp_path / "model.bin", tmp_path / "hf")
    assert sorted(p.name for p in out.iterdir()) == ["config.json", "model.safetensors"]
    tokens = [1, 7, 39, 0, 12, 12, 5, 30, 2, 11, 18]
    hf = LlamaForCausalLM.from_pretrained(out, attn_implementation="eager").eval()
    with torch.no_grad():
        got = hf(torch.tensor([tokens])).logits[0]
    torch.testing.assert_close(got, llama2c_logits(w, tokens), atol=1e-4, rtol=1e-4)
    loaded = load_model(str(out), torch.float32, torch.device("cpu"))
    assert loaded.spec.tie_word_embeddings == tied and loaded.tokenizer is None
    assert (loaded.spec.bos_token_id, loaded.spec.eos_token_ids, loaded.spec.max_position_embeddings) == (1, (2,), 16)


def test_bad_checkpoints_are_clear_errors(tmp_path):
    path = tmp_path / "model.bin"
    path.write_bytes(b"\x01\x00")
    with pytest.raises(ValueError, match="starts with 28 header bytes"):
        convert_llama2c(path, tmp_path / "out")
    write_llama2c(path, tied=True)
    path.write_bytes(path.read_bytes()[:-4])
    with pytest.raises(ValueError, match=r"bytes, but its header .* implies"):
        convert_llama2c(path, tmp_path / "out")
    path.write_bytes(struct.pack("<7i", 32, 48, 2, 5, 2, 40, 16))
    with pytest.raises(ValueError, match="inconsistent head sizes"):
        convert_llama2c(path, tmp_path / "out")


def read_llama2c_vocab(path) -> list[bytes]:
    """llama2.c tokenizer.bin: int32 max_token_len, then per token float32 score, int32 length, bytes."""
    raw = path.read_bytes()
    pieces, offset = [], 4
    while offset < len(raw):
        _, length = struct.unpack_from("<fi", raw, offset)
        pieces.append(raw[offset + 8 : offset + 8 + length])
        offset += 8 + length
    return pieces


def test_stories260k_tells_its_story(stories260k_bin, stories260k_dir, tmp_path):
    """The converted model's greedy continuation of BOS is the model's well-known opening line:
    a wrong RoPE row order or tensor mapping would produce gibberish."""
    from transformers import LlamaForCausalLM

    vocab = read_llama2c_vocab(stories260k_bin.parent / "tok512.bin")
    model = LlamaForCausalLM.from_pretrained(stories260k_dir).eval()
    ids = model.generate(torch.tensor([[1]]), max_new_tokens=24, do_sample=False, pad_token_id=0)[0, 1:]
    text = b"".join(vocab[i] for i in ids.tolist()).decode()
    assert text.startswith(" Once upon a time, there was a little girl named Lily."), text
    # The command line writes the same directory.
    main([str(stories260k_bin), str(tmp_path / "cli")])
    assert (tmp_path / "cli" / "model.safetensors").read_bytes() == (stories260k_dir / "model.safetensors").read_bytes()
    assert np.frombuffer(stories260k_bin.read_bytes()[:28], "<i4").tolist() == [64, 172, 5, 8, 4, 512, 512]
