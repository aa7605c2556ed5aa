"""Convert a llama2.c legacy checkpoint into a Hugging Face Llama directory.

The legacy (v0) ``.bin`` layout, all little-endian::

    header   7 x int32: dim, hidden_dim, n_layers, n_heads, n_kv_heads, vocab_size, seq_len
             (vocab_size < 0 means the classifier is not tied to the embedding)
    float32  tok_emb [vocab, dim]
             rms_att [L, dim]
             wq [L, dim, dim]   wk [L, kv_dim, dim]   wv [L, kv_dim, dim]   wo [L, dim, dim]
             rms_ffn [L, dim]
             w1 [L, hidden, dim] (gate)   w2 [L, dim, hidden] (down)   w3 [L, hidden, dim] (up)
             rms_final [dim]
             freq_cis_real, freq_cis_imag [seq_len, head_dim / 2] each (skipped)
             wcls [vocab, dim] (only when untied)

Matrices are in ``nn.Linear`` (out, in) order already. llama2.c rotates interleaved pairs
``(x[2i], x[2i+1])`` while Hugging Face rotates halves ``(x[i], x[i + head_dim/2])``, so the
rows of wq and wk are permuted per head to turn one convention into the other.

Usage: ``python -m training.llama2c model.bin out_dir``.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch

HEADER_INTS = 7
BOS_TOKEN_ID = 1
EOS_TOKEN_ID = 2


class Llama2cHeader(NamedTuple):
    dim: int
    hidden_dim: int
    n_layers: int
    n_heads: int
    n_kv_heads: int
    vocab_size: int
    seq_len: int
    tied: bool

    @property
    def head_dim(self) -> int:
        return self.dim // self.n_heads


def read_header(raw: bytes) -> Llama2cHeader:
    """Parse and validate the 7-int32 header."""
    if len(raw) < 4 * HEADER_INTS:
        raise ValueError(f"a llama2.c checkpoint starts with {4 * HEADER_INTS} header bytes; got {len(raw)} bytes")
    dim, hidden, layers, heads, kv_heads, vocab, seq_len = np.frombuffer(raw, "<i4", HEADER_INTS).tolist()
    header = Llama2cHeader(dim, hidden, layers, heads, kv_heads, abs(vocab), seq_len, tied=vocab > 0)
    if min(dim, hidden, layers, heads, kv_heads, abs(vocab), seq_len) <= 0:
        raise ValueError(f"not a llama2.c checkpoint: header has non-positive sizes {header}")
    if dim % heads or heads % kv_heads or (dim // heads) % 2:
        raise ValueError(f"not a llama2.c checkpoint: inconsistent head sizes {header}")
    return header


def hf_rotary_rows(w: torch.Tensor, n_heads: int) -> torch.Tensor:
    """Reorder q/k projection rows from interleaved-pair RoPE to rotate-half RoPE.

    Args:
        w: [n_heads * head_dim, dim]; within a head, rows (2i, 2i+1) form rotation pair i.

    Returns:
        [n_heads * head_dim, dim]; within a head, rows (i, i + head_dim / 2) form pair i.
    """
    rows, dim = w.shape
    head_dim = rows // n_heads
    return w.reshape(n_heads, head_dim // 2, 2, dim).transpose(1, 2).reshape(rows, dim)


def read_llama2c(path: Path) -> tuple[Llama2cHeader, dict[str, torch.Tensor]]:
    """Read a legacy checkpoint into Hugging Face tensor names (q/k rows already permuted).

    Raises:
        ValueError: the file's size does not match its header.
    """
    raw = Path(path).read_bytes()
    h = read_header(raw)
    kv_dim = h.n_kv_heads * h.head_dim
    L, dim, hidden = h.n_layers, h.dim, h.hidden_dim
    shapes = {
        "tok_emb": (h.vocab_size, dim),
        "rms_att": (L, dim),
        "wq": (L, dim, dim),
        "wk": (L, kv_dim, dim),
        "wv": (L, kv_dim, dim),
        "wo": (L, dim, dim),
        "rms_ffn": (L, dim),
        "w1": (L, hidden, dim),
        "w2": (L, dim, hidden),
        "w3": (L, hidden, dim),
        "rms_final": (dim,),
        "freq_cis": (2, h.seq_len, h.head_dim // 2),
    }
    if not h.tied:
        shapes["wcls"] = (h.vocab_size, dim)
    expected = 4 * (HEADER_INTS + sum(int(np.prod(s)) for s in shapes.values()))
    if len(raw) != expected:
        raise ValueError(f"{path}: {len(raw)} bytes, but its header {h} implies {expected} (legacy v0 layout)")
    flat = torch.from_numpy(np.frombuffer(raw, "<f4", offset=4 * HEADER_INTS).copy())
    parts, offset = {}, 0
    for name, shape in shapes.items():
        count = int(np.prod(shape))
        parts[name] = flat[offset : offset + count].reshape(shape)
        offset += count

    tensors = {"model.embed_tokens.weight": parts["tok_emb"], "model.norm.weight": parts["rms_final"]}
    if not h.tied:
        tensors["lm_head.weight"] = parts["wcls"]
    for i in range(L):
        p = f"model.layers.{i}."
        tensors[p + "input_layernorm.weight"] = parts["rms_att"][i]
        tensors[p + "self_attn.q_proj.weight"] = hf_rotary_rows(parts["wq"][i], h.n_heads)
        tensors[p + "self_attn.k_proj.weight"] = hf_rotary_rows(parts["wk"][i], h.n_kv_heads)
        tensors[p + "self_attn.v_proj.weight"] = parts["wv"][i]
        tensors[p + "self_attn.o_proj.weight"] = parts["wo"][i]
        tensors[p + "post_attention_layernorm.weight"] = parts["rms_ffn"][i]
        tensors[p + "mlp.gate_proj.weight"] = parts["w1"][i]
        tensors[p + "mlp.down_proj.weight"] = parts["w2"][i]
        tensors[p + "mlp.up_proj.weight"] = parts["w3"][i]
    return h, {name: t.clone() for name, t in tensors.items()}  # own storage each: no shared views


def convert_llama2c(bin_path: Path, out_dir: Path) -> Path:
    """Write ``bin_path`` as a Hugging Face Llama directory (config.json + model.safetensors).

    No tokenizer is written: the result serves token-id prompts.

    Returns:
        ``out_dir``.
    """
    from safetensors.torch import save_file
    from transformers import LlamaConfig

    h, tensors = read_llama2c(Path(bin_path))
    config = LlamaConfig(
        vocab_size=h.vocab_size,
        hidden_size=h.dim,
        intermediate_size=h.hidden_dim,
        num_hidden_layers=h.n_layers,
        num_attention_heads=h.n_heads,
        num_key_value_heads=h.n_kv_heads,
        head_dim=h.head_dim,
        max_position_embeddings=h.seq_len,
        rms_norm_eps=1e-5,
        rope_theta=10000.0,
        tie_word_embeddings=h.tied,
        bos_token_id=BOS_TOKEN_ID,
        eos_token_id=EOS_TOKEN_ID,
        architectures=["LlamaForCausalLM"],
    )
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    config.save_pretrained(out_dir)
    save_file(tensors, str(out_dir / "model.safetensors"), metadata={"format": "pt"})
    return out_dir


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Convert a llama2.c legacy checkpoint to a Hugging Face directory.")
    parser.add_argument("checkpoint", type=Path, help="llama2.c .bin file (legacy v0 layout)")
    parser.add_argument("out_dir", type=Path, help="directory to write config.json and model.safetensors into")
    args = parser.parse_args(argv)
    print(convert_llama2c(args.checkpoint, args.out_dir))


if __name__ == "__main__":
    main()
