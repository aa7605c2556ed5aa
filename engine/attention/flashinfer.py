"""The FlashInfer attention backend: paged-KV prefill and decode kernels on CUDA.

Planned once per step (:mod:`engine.attention.flashinfer_plan` builds the arrays), run per
layer with no host work; :class:`GraphDecoder` is the fixed-size decode wrapper CUDA-graph
decode captures (:mod:`engine.decode_graphs`). One-row segments go to ``BatchDecodeWithPagedKVCacheWrapper``, the
rest (prefill pieces, compile sequences, link-recompute runs) to
``BatchPrefillWithPagedKVCacheWrapper`` with ``causal=True``, whose bottom-right causal
alignment is exactly the query-segment contract of :mod:`engine.attention.base`. RoPE is never
applied in the kernels (``pos_encoding_mode="NONE"``): the model rotates Q and K before they
reach the pages.

``flashinfer`` is imported only when this backend is
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
    paged_plan,
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
        self._step: StepPlan | None = None

    def plan(self, meta: AttentionMetadata) -> None:
        assert meta.num_segments > 0, "nothing to plan"
        step = plan_step(meta)
        self._step = step
        if step.decode is not None:
            self._plan_decode(self._decode, step.decode)
        if step.prefill is not None:
            self._plan_prefill(step.prefill)

    def _paged_args(self, plan: PagedPlan) -> tuple:
        """The page-table and head arguments both wrappers' ``plan`` take, in their order."""
        return (plan.kv_page_indptr, plan.kv_page_indices, plan.kv_last_page_len,
                self.num_q_heads, self.num_kv_heads, self.head_dim, plan.page_size)

    def _plan_decode(self, wrapper, plan: PagedPlan) -> None:
        wrapper.plan(
            *self._paged_args(plan),
            q_data_type=self.dtype,
            kv_data_type=self.dtype,
            sm_scale=self.scale,
        )

    def _plan_prefill(self, plan: PagedPlan) -> None:
        self._prefill.plan(
            plan.qo_indptr,
            *self._paged_args(plan),
            causal=True,
            sm_scale=self.scale,
            q_data_type=self.dtype,
            kv_data_type=self.dtype,
        )

    def graph_decoder(self, batch_size: int, max_pages: int) -> GraphDecoder:
        return GraphDecoder(self, batch_size, max_pages)

    def forward(self, q: torch.Tensor, kv_cache: torch.Tensor) -> torch.Tensor:
        # q: [N, Hq, D]; kv_cache: [num_blocks, 2, bs, Hkv, D]
        step = self._step
        assert step is not None, "plan() before forward()"
        assert q.dtype == self.dtype and kv_cache.dtype == self.dtype, (
            f"flashinfer backend planned for {self.dtype}, got q {q.dtype} and KV {kv_cache.dtype}"
        )
        assert q.shape[0] == step.num_rows, f"planned {step.num_rows} rows, got {q.shape[0]}"
        if step.prefill is None:
            return self._decode.run(q, kv_cache)
        if step.decode is None:
            return self._prefill.run(q, kv_cache)
        out = torch.empty_like(q)
        _run_part(self._decode, q, kv_cache, step.decode_rows, out)
        _run_part(self._prefill, q, kv_cache, step.prefill_rows, out)
        return out


class GraphDecoder(AttentionBackend):
    """A decode wrapper in FlashInfer's CUDA-graph mode: ``batch_size`` one-row segments whose
    page arrays are copied into fixed device buffers at :meth:`plan`, so a graph captured over
    :meth:`forward` replays with every later step's pages."""

    def __init__(self, parent: FlashInferAttentionBackend, batch_size: int, max_pages: int):
        super().__init__(parent.num_q_heads, parent.num_kv_heads, parent.head_dim, parent.scale)
        self.batch_size = batch_size
        self._parent = parent

        def buffer(n: int) -> torch.Tensor:
            return torch.zeros(n, dtype=torch.int32, device=parent.device)

        self._wrapper = parent._flashinfer.BatchDecodeWithPagedKVCacheWrapper(
            parent._workspace, "NHD", use_cuda_graph=True, use_tensor_cores=parent._tensor_cores,
            paged_kv_indptr_buffer=buffer(batch_size + 1), paged_kv_indices_buffer=buffer(max_pages),
            paged_kv_last_page_len_buffer=buffer(batch_size), backend=parent._kernel_backend)

    def plan(self, meta: AttentionMetadata) -> None:
        plan = paged_plan(meta, list(range(meta.num_segments)))
        assert plan.is_decode and plan.batch_size == self.batch_size, (
            f"graph decoder for {self.batch_size} rows planned with {plan.batch_size} segments")
        self._parent._plan_decode(self._wrapper, plan)

    def graph_decoder(self, batch_size: int, max_pages: int) -> GraphDecoder:
        return self._parent.graph_decoder(batch_size, max_pages)

    def forward(self, q: torch.Tensor, kv_cache: torch.Tensor) -> torch.Tensor:
        return self._wrapper.run(q, kv_cache)


def _run_part(wrapper, q: torch.Tensor, kv_cache: torch.Tensor, rows: RowSelection, out: torch.Tensor) -> None:
    """Run one wrapper on its rows of the batch, writing into ``out`` (a view when contiguous)."""
    if isinstance(rows, slice):
        wrapper.run(q[rows], kv_cache, out=out[rows])
    else:
        out.index_copy_(0, rows, wrapper.run(q.index_select(0, rows), kv_cache))
