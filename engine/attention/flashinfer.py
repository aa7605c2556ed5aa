"""The FlashInfer attention backend: paged-KV prefill and decode kernels on CUDA.

Planned once per step (:mod:`engine.attention.flashinfer_plan` builds the arrays), run per
layer with no host work. One-row segments go to ``BatchDecodeWithPagedKVCacheWrapper``, the
rest (prefill pieces, compile sequences, link-recompute runs) to
``BatchPrefillWithPagedKVCacheWrapper`` with ``causal=True``, whose bottom-right causal
alignment is exactly the query-segment contract of :mod:`engine.attention.base`. RoPE is never
applied in the kernels (``pos_encoding_mode="NONE"``): the model rotates Q and K before they
reach the pages.

CUDA graphs (opt-in, :meth:`FlashInferAttentionBackend.enable_cuda_graphs`): a pure-decode step
with at most the largest bucket's segments is planned on a fixed-size decode wrapper whose
metadata lives in persistent device buffers, so a model forward captured at that batch size
replays with the new step's page tables. ``flashinfer`` is imported only when this backend is
built (it is the optional ``gpu`` extra and needs CUDA for every kernel).
"""

from __future__ import annotations

import torch

from engine.attention.base import AttentionBackend, AttentionMetadata
from engine.attention.flashinfer_plan import (
    FLOAT_WORKSPACE_BYTES,
    PagedPlan,
    RowSelection,
    StepPlan,
    pad_decode_plan,
    pick_graph_batch_size,
    plan_step,
    use_tensor_cores,
)

KV_DTYPES = (torch.float16, torch.bfloat16)


def require_cuda(device: torch.device) -> None:
    """Raise a RuntimeError unless ``device`` is a usable CUDA device."""
    if device.type != "cuda" or not torch.cuda.is_available():
        raise RuntimeError(
            f"attention backend 'flashinfer' runs on CUDA only (asked for device {device}, "
            f"CUDA available: {torch.cuda.is_available()}); use backend 'torch' on CPU"
        )


def import_flashinfer():
    """The ``flashinfer`` module, or a RuntimeError that says how to install it."""
    try:
        import flashinfer
    except ImportError as exc:
        raise RuntimeError(
            "attention backend 'flashinfer' needs the flashinfer-python package: install the "
            "project's gpu extra (pip install -e '.[gpu]') on a CUDA machine, or use backend 'torch'"
        ) from exc
    return flashinfer


class FlashInferAttentionBackend(AttentionBackend):
    """Paged attention with FlashInfer's batch prefill/decode wrappers.

    Args:
        num_q_heads, num_kv_heads, head_dim, scale: the attention shape (GQA when heads differ).
        device: a CUDA device.
        dtype: Q, K/V and output dtype (float16 or bfloat16).
        kernel_backend: FlashInfer's implementation choice (``auto``, ``fa2``, ``fa3``).
        workspace_bytes: float scratch space shared by all wrappers.
    """

    def __init__(
        self,
        num_q_heads: int,
        num_kv_heads: int,
        head_dim: int,
        scale: float,
        device: torch.device | str,
        *,
        dtype: torch.dtype = torch.bfloat16,
        kernel_backend: str = "auto",
        workspace_bytes: int = FLOAT_WORKSPACE_BYTES,
    ):
        super().__init__(num_q_heads, num_kv_heads, head_dim, scale)
        device = torch.device(device)
        require_cuda(device)
        if dtype not in KV_DTYPES:
            raise ValueError(f"flashinfer backend dtype {dtype} is not one of float16, bfloat16")
        self._flashinfer = import_flashinfer()
        self.device = device
        self.dtype = dtype
        self._kernel_backend = kernel_backend
        self._tensor_cores = use_tensor_cores(num_q_heads, num_kv_heads)
        # One float workspace for every wrapper: their kernels run one after another on one stream.
        self._workspace = torch.zeros(workspace_bytes, dtype=torch.uint8, device=device)
        self._prefill = self._flashinfer.BatchPrefillWithPagedKVCacheWrapper(
            self._workspace, "NHD", backend=kernel_backend
        )
        self._decode = self._flashinfer.BatchDecodeWithPagedKVCacheWrapper(
            self._workspace, "NHD", use_tensor_cores=self._tensor_cores, backend=kernel_backend
        )
        self._graph_decode: dict[int, object] = {}  # batch size -> graph-mode decode wrapper
        self._max_graph_pages_per_request = 0
        self._step: StepPlan | None = None
        self.graph_batch_size: int | None = None

    def enable_cuda_graphs(self, batch_sizes: tuple[int, ...], max_pages_per_request: int) -> None:
        """Allocate a fixed-size decode wrapper per batch size, for CUDA-graph capture.

        After this, :meth:`plan` of a pure-decode step with ``S <= max(batch_sizes)`` segments
        pads it to the smallest bucket ``B >= S`` and sets :attr:`graph_batch_size` to ``B``;
        :meth:`forward` then takes ``q`` with ``B`` rows (rows ``S..B-1`` are padding whose
        outputs are garbage). A model runner captures one graph per bucket after a first plan
        and replays it after every later plan of the same bucket.

        Args:
            batch_sizes: the buckets, e.g. :func:`engine.attention.flashinfer_plan.graph_batch_sizes`.
            max_pages_per_request: most pages one sequence can hold (ceil(max_model_len / block)).
        """
        if not batch_sizes or min(batch_sizes) < 1:
            raise ValueError(f"CUDA-graph batch sizes must be >= 1, got {batch_sizes!r}")
        if max_pages_per_request < 1:
            raise ValueError(f"max_pages_per_request must be >= 1, got {max_pages_per_request}")
        self._max_graph_pages_per_request = max_pages_per_request
        for b in sorted(set(batch_sizes)):
            self._graph_decode[b] = self._flashinfer.BatchDecodeWithPagedKVCacheWrapper(
                self._workspace,
                "NHD",
                use_cuda_graph=True,
                use_tensor_cores=self._tensor_cores,
                paged_kv_indptr_buffer=torch.zeros(b + 1, dtype=torch.int32, device=self.device),
                paged_kv_indices_buffer=torch.zeros(
                    b * max_pages_per_request, dtype=torch.int32, device=self.device
                ),
                paged_kv_last_page_len_buffer=torch.zeros(b, dtype=torch.int32, device=self.device),
                backend=self._kernel_backend,
            )

    def plan(self, meta: AttentionMetadata) -> None:
        assert meta.num_segments > 0, "nothing to plan"
        step = plan_step(meta)
        self._step = step
        self.graph_batch_size = None
        if step.prefill is None and self._graph_decode:
            b = pick_graph_batch_size(step.decode.batch_size, tuple(self._graph_decode))
            pages = max(int(n) for n in step.decode.kv_page_indptr.diff())
            if b is not None and pages <= self._max_graph_pages_per_request:
                self._plan_decode(self._graph_decode[b], pad_decode_plan(step.decode, b))
                self.graph_batch_size = b
                return
        if step.decode is not None:
            self._plan_decode(self._decode, step.decode)
        if step.prefill is not None:
            self._plan_prefill(step.prefill)

    def _plan_decode(self, wrapper, plan: PagedPlan) -> None:
        wrapper.plan(
            plan.kv_page_indptr,
            plan.kv_page_indices,
            plan.kv_last_page_len,
            self.num_q_heads,
            self.num_kv_heads,
            self.head_dim,
            plan.page_size,
            q_data_type=self.dtype,
            kv_data_type=self.dtype,
            sm_scale=self.scale,
        )

    def _plan_prefill(self, plan: PagedPlan) -> None:
        self._prefill.plan(
            plan.qo_indptr,
            plan.kv_page_indptr,
            plan.kv_page_indices,
            plan.kv_last_page_len,
            self.num_q_heads,
            self.num_kv_heads,
            self.head_dim,
            plan.page_size,
            causal=True,
            sm_scale=self.scale,
            q_data_type=self.dtype,
            kv_data_type=self.dtype,
        )

    def forward(self, q: torch.Tensor, kv_cache: torch.Tensor) -> torch.Tensor:
        # q: [N, Hq, D] (or [B, Hq, D] under a CUDA graph); kv_cache: [num_blocks, 2, bs, Hkv, D]
        step = self._step
        assert step is not None, "plan() before forward()"
        assert q.dtype == self.dtype and kv_cache.dtype == self.dtype, (
            f"flashinfer backend planned for {self.dtype}, got q {q.dtype} and KV {kv_cache.dtype}"
        )
        if self.graph_batch_size is not None:
            assert q.shape[0] == self.graph_batch_size, (
                f"graph-planned decode takes {self.graph_batch_size} padded rows, got {q.shape[0]}"
            )
            return self._graph_decode[self.graph_batch_size].run(q, kv_cache)
        assert q.shape[0] == step.num_rows, f"planned {step.num_rows} rows, got {q.shape[0]}"
        if step.prefill is None:
            return self._decode.run(q, kv_cache)
        if step.decode is None:
            return self._prefill.run(q, kv_cache)
        out = torch.empty_like(q)
        _run_part(self._decode, q, kv_cache, step.decode_rows, out)
        _run_part(self._prefill, q, kv_cache, step.prefill_rows, out)
        return out


def _run_part(wrapper, q: torch.Tensor, kv_cache: torch.Tensor, rows: RowSelection, out: torch.Tensor) -> None:
    """Run one wrapper on its rows of the batch, writing into ``out`` (a view when contiguous)."""
    if isinstance(rows, slice):
        wrapper.run(q[rows], kv_cache, out=out[rows])
    else:
        out.index_copy_(0, rows, wrapper.run(q.index_select(0, rows), kv_cache))
