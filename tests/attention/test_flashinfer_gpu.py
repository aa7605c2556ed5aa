"""The FlashInfer backend against the torch reference on CUDA (skipped without a GPU).

Kernel-level: mixed batches (decode, prefill, compile and link-recompute rows; ragged lengths,
GQA, partly filled pages, shuffled page tables) in bfloat16, each row compared with float32
attention over the same bfloat16 inputs.
Engine-level: greedy generation under every link policy gives the same tokens with both backends.
"""

from __future__ import annotations

import pytest
import torch

from engine.attention.torch_backend import TorchAttentionBackend

from tests.support.paged_batches import make_batch
from tests.support.tiny_hf_models import randomize_

pytestmark = pytest.mark.gpu

CUDA = torch.device("cuda")
BF16 = torch.bfloat16
# bfloat16 keeps 8 mantissa bits (relative step 2**-8 ~ 0.004); attention over bfloat16 inputs
# with float32 accumulation stays within a few steps per row.
ROW_REL_TOL = 2e-2

CASES = {
    # kinds, lengths: long KV (split-KV paths), ragged tails, one-token and full-page sequences
    "mixed_interleaved": (["decode", "prefill", "compile", "recompute", "decode"], [1037, 211, 160, 2045, 1]),
    "decodes_first": (["decode", "decode", "recompute", "prefill"], [3000, 17, 700, 64]),
    "decode_only": (["decode"] * 6, [5, 4096, 33, 2, 64, 999]),
    "no_decode": (["compile", "recompute", "prefill", "compile"], [512, 1500, 90, 2]),
}


def row_rel_error(out: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
    """Per row: ||out - ref|| / ||ref|| over heads and dims. [N]"""
    diff = (out.float() - ref.float()).flatten(1).norm(dim=1)
    return diff / ref.float().flatten(1).norm(dim=1).clamp_min(1e-6)


def reference(batch, num_q_heads: int, num_kv_heads: int, head_dim: int, scale: float) -> torch.Tensor:
    """The torch backend in float32 on the same (bfloat16-valued) inputs."""
    backend = TorchAttentionBackend(num_q_heads, num_kv_heads, head_dim, scale)
    backend.plan(batch.meta)
    return backend.forward(batch.q.float(), batch.kv_cache.float())


def flashinfer_backend(num_q_heads, num_kv_heads, head_dim, scale, kernel_backend="auto"):
    from engine.attention.flashinfer import FlashInferAttentionBackend

    return FlashInferAttentionBackend(
        num_q_heads, num_kv_heads, head_dim, scale, CUDA, dtype=BF16, kernel_backend=kernel_backend
    )


@pytest.mark.parametrize("case", sorted(CASES))
@pytest.mark.parametrize(
    "heads,head_dim", [((32, 8), 128), ((8, 8), 64), ((16, 2), 128)], ids=["gqa4-128", "mha-64", "gqa8-128"]
)
@pytest.mark.parametrize("block_size,kernel_backend", [(16, "auto"), (16, "fa2"), (7, "fa2")])
def test_matches_torch_backend_on_mixed_batches(case, heads, head_dim, block_size, kernel_backend):
    kinds, lengths = CASES[case]
    num_q_heads, num_kv_heads = heads
    batch = make_batch(kinds, lengths, block_size=block_size, num_q_heads=num_q_heads,
                       num_kv_heads=num_kv_heads, head_dim=head_dim, seed=3, dtype=BF16, device=CUDA)
    scale = head_dim**-0.5
    backend = flashinfer_backend(num_q_heads, num_kv_heads, head_dim, scale, kernel_backend)
    backend.plan(batch.meta)
    out = backend.forward(batch.q, batch.kv_cache)
    assert out.shape == batch.q.shape and out.dtype == BF16
    ref = reference(batch, num_q_heads, num_kv_heads, head_dim, scale)
    err = row_rel_error(out, ref)
    assert err.max().item() < ROW_REL_TOL, f"worst row {err.argmax().item()}: {err.max().item():.4f}"
    # The torch backend in bfloat16 is no closer to float32 than FlashInfer by more than 2x.
    torch_bf16 = TorchAttentionBackend(num_q_heads, num_kv_heads, head_dim, scale)
    torch_bf16.plan(batch.meta)
    base = row_rel_error(torch_bf16.forward(batch.q, batch.kv_cache), ref)
    assert err.mean().item() <= 2 * base.mean().item() + 1e-3


def test_replanning_reuses_the_backend_across_steps():
    backend = flashinfer_backend(8, 2, 128, 128**-0.5)
    for seed, case in enumerate(sorted(CASES)):
        kinds, lengths = CASES[case]
        batch = make_batch(kinds, lengths, block_size=16, num_q_heads=8, num_kv_heads=2, head_dim=128,
                           seed=seed, dtype=BF16, device=CUDA)
        backend.plan(batch.meta)
        out = backend.forward(batch.q, batch.kv_cache)
        assert row_rel_error(out, reference(batch, 8, 2, 128, 128**-0.5)).max().item() < ROW_REL_TOL, case


# ---- engine: greedy generation, both backends, every link policy ------------------------------


@pytest.fixture(scope="module")
def gpu_model_dir(tmp_path_factory):
    """A small random Llama (head_dim 64, GQA 2) with decisive logits, as a Hugging Face dir."""
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(
        vocab_size=512, hidden_size=256, intermediate_size=512, num_hidden_layers=3,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=4096,
        rms_norm_eps=1e-6, bos_token_id=1, eos_token_id=2, tie_word_embeddings=False,
    )
    torch.manual_seed(0)
    model = LlamaForCausalLM(config)
    randomize_(model, 0)
    path = tmp_path_factory.mktemp("gpu-llama")
    model.save_pretrained(path)
    return path


def pic_prompts():
    from engine import Segment

    gen = torch.Generator().manual_seed(5)

    def ids(n):
        return torch.randint(3, 512, (n,), generator=gen).tolist()

    system = ids(20)
    docs = [ids(n) for n in (40, 33, 70, 17)]
    return [
        [Segment.prefix(system), Segment.chunk(docs[0]), Segment.chunk(docs[1]), Segment.chunk(docs[2]),
         Segment.text(ids(12))],
        [Segment.prefix(system), Segment.chunk(docs[2]), Segment.chunk(docs[0]), Segment.text(ids(5))],
        [Segment.prefix(system), Segment.chunk(docs[3]), Segment.chunk(docs[1]), Segment.chunk(docs[0]),
         Segment.text(ids(9))],
    ]


POLICIES = [("full", {}), ("prefix", {}), ("naive", {}), ("legolink", {"k": 4}), ("cacheblend", {"ratio": 0.3})]


@pytest.mark.parametrize("policy,params", POLICIES, ids=[p for p, _ in POLICIES])
def test_greedy_generation_matches_torch_backend(gpu_model_dir, policy, params):
    from engine import Engine, EngineConfig, LinkPolicy, SamplingParams

    link = LinkPolicy(policy, **params)
    sampling = SamplingParams(max_tokens=12, temperature=0.0, ignore_eos=True)
    tokens = {}
    for backend in ("torch", "flashinfer"):
        engine = Engine(EngineConfig(model=str(gpu_model_dir), backend=backend, device="cuda", dtype="bfloat16",
                                     skip_tokenizer_init=True, kv_cache_bytes=64 * 1024 * 1024))
        # Twice: the first pass compiles the chunks, the second links them from the pool.
        first = engine.generate(pic_prompts(), sampling, link_policy=link)
        second = engine.generate(pic_prompts(), sampling, link_policy=link)
        tokens[backend] = [o.token_ids for o in first + second]
        del engine
        torch.cuda.empty_cache()
    assert all(len(t) == 12 for t in tokens["torch"])
    assert tokens["flashinfer"] == tokens["torch"]


def test_cuda_graph_decode_matches_eager_decode(gpu_model_dir):
    """Decode steps replay captured graphs (sizes 1..8, padded) and give the eager engine's tokens."""
    from engine import Engine, EngineConfig, SamplingParams

    gen = torch.Generator().manual_seed(9)
    prompts = [torch.randint(3, 512, (n,), generator=gen).tolist() for n in (5, 130, 37, 999, 64)]
    params = [SamplingParams(max_tokens=6 + 5 * i, temperature=0.0, ignore_eos=True) for i in range(5)]
    tokens = {}
    for eager in (True, False):
        engine = Engine(EngineConfig(model=str(gpu_model_dir), backend="flashinfer", device="cuda", dtype="bfloat16",
                                     skip_tokenizer_init=True, kv_cache_bytes=64 * 1024 * 1024, max_num_seqs=8,
                                     enforce_eager=eager))
        tokens[eager] = [o.token_ids for o in engine.generate(prompts, params)]
        graphs = engine.runner.graphs
        if eager:
            assert graphs is None
        else:
            assert graphs.captured == [1, 2, 4, 8]
            assert graphs.steps == max(p.max_tokens for p in params) - 1
        del engine
        torch.cuda.empty_cache()
    assert tokens[False] == tokens[True]
