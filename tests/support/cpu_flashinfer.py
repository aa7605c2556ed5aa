"""A CPU stand-in for the two FlashInfer wrappers the backend uses (the kernels need CUDA).

Same constructor, ``plan`` and ``run`` signatures as flashinfer 0.7's
``BatchPrefillWithPagedKVCacheWrapper`` and ``BatchDecodeWithPagedKVCacheWrapper`` (the
arguments the backend passes), with the documented semantics: plan arrays on the host, causal
masks aligned bottom-right, the decode wrapper's CUDA-graph mode reading its metadata from the
caller's fixed buffers at run time. It checks what the real wrappers require (dtypes, lengths,
buffer sizes) and computes attention densely from the planned slots.
"""

from __future__ import annotations

import torch

from tests.support.paged_batches import attend_slots, paged_visible_slots


class _Planned:
    """What a plan() call fixed, read back by run()."""

    def __init__(self, qo_indptr, kv_page_indptr, kv_page_indices, kv_last_page_len, num_qo_heads, num_kv_heads,
                 head_dim, page_size, sm_scale, q_data_type, kv_data_type):
        for name, t in (("qo_indptr", qo_indptr), ("paged_kv_indptr", kv_page_indptr),
                        ("paged_kv_indices", kv_page_indices), ("paged_kv_last_page_len", kv_last_page_len)):
            assert t.dtype == torch.int32, f"{name} must be int32, got {t.dtype}"
        assert len(qo_indptr) == len(kv_page_indptr) == len(kv_last_page_len) + 1
        assert int(kv_page_indptr[-1]) <= len(kv_page_indices)
        assert num_qo_heads % num_kv_heads == 0 and sm_scale is not None
        # Kept by reference: in CUDA-graph mode these are the caller's buffers, read at run time.
        self.qo_indptr, self.kv_page_indptr = qo_indptr, kv_page_indptr
        self.kv_page_indices, self.kv_last_page_len = kv_page_indices, kv_last_page_len
        self.shape = (num_qo_heads, num_kv_heads, head_dim)
        self.page_size, self.sm_scale = page_size, sm_scale
        self.dtypes = (q_data_type, kv_data_type)

    def run(self, q: torch.Tensor, kv_cache: torch.Tensor, out: torch.Tensor | None) -> torch.Tensor:
        assert (q.dtype, kv_cache.dtype) == self.dtypes, "run dtypes differ from the planned ones"
        assert q.shape[0] == int(self.qo_indptr[-1]) and tuple(q.shape[1:]) == (self.shape[0], self.shape[2])
        assert kv_cache.shape[1] == 2 and kv_cache.shape[2] == self.page_size, "NHD [pages, 2, page, H, D]"
        rows = paged_visible_slots(self.qo_indptr, self.kv_page_indptr, self.kv_page_indices[: int(self.kv_page_indptr[-1])],
                                   self.kv_last_page_len, self.page_size)
        o = attend_slots(q, kv_cache, rows, self.sm_scale).to(q.dtype)
        if out is None:
            return o
        assert out.shape == q.shape and out.is_contiguous()
        out.copy_(o)
        return out


class BatchPrefillWithPagedKVCacheWrapper:
    def __init__(self, float_workspace_buffer, kv_layout="NHD", backend="auto"):
        assert kv_layout == "NHD"
        self._planned: _Planned | None = None

    def plan(self, qo_indptr, paged_kv_indptr, paged_kv_indices, paged_kv_last_page_len, num_qo_heads, num_kv_heads,
             head_dim_qk, page_size, *, causal=False, sm_scale=None, q_data_type="float16", kv_data_type=None):
        assert causal, "the backend relies on the causal mask"
        for t in (qo_indptr, paged_kv_indptr, paged_kv_last_page_len):
            assert t.device.type == "cpu", "host arrays keep plan() free of device syncs"
        self._planned = _Planned(qo_indptr, paged_kv_indptr, paged_kv_indices, paged_kv_last_page_len, num_qo_heads,
                                 num_kv_heads, head_dim_qk, page_size, sm_scale, q_data_type, kv_data_type)

    def run(self, q, paged_kv_cache, *, out=None):
        return self._planned.run(q, paged_kv_cache, out)


class BatchDecodeWithPagedKVCacheWrapper:
    def __init__(self, float_workspace_buffer, kv_layout="NHD", use_cuda_graph=False, use_tensor_cores=False,
                 paged_kv_indptr_buffer=None, paged_kv_indices_buffer=None, paged_kv_last_page_len_buffer=None,
                 backend="auto"):
        assert kv_layout == "NHD"
        self.use_cuda_graph = use_cuda_graph
        if use_cuda_graph:
            assert len(paged_kv_indptr_buffer) == len(paged_kv_last_page_len_buffer) + 1
            self._buffers = (paged_kv_indptr_buffer, paged_kv_indices_buffer, paged_kv_last_page_len_buffer)
        self._planned: _Planned | None = None

    def plan(self, indptr, indices, last_page_len, num_qo_heads, num_kv_heads, head_dim, page_size, *,
             q_data_type="float16", kv_data_type=None, sm_scale=None):
        batch_size = len(last_page_len)
        if self.use_cuda_graph:
            indptr_buf, indices_buf, last_buf = self._buffers
            assert batch_size == len(last_buf), "CUDA-graph mode has a fixed batch size"
            assert len(indices) <= len(indices_buf), "page indices exceed the graph buffer"
            indptr_buf.copy_(indptr)
            indices_buf[: len(indices)].copy_(indices)
            last_buf.copy_(last_page_len)
            indptr, indices, last_page_len = indptr_buf, indices_buf, last_buf
        self._planned = _Planned(torch.arange(batch_size + 1, dtype=torch.int32), indptr, indices, last_page_len,
                                 num_qo_heads, num_kv_heads, head_dim, page_size, sm_scale, q_data_type, kv_data_type)

    def run(self, q, paged_kv_cache, *, out=None):
        return self._planned.run(q, paged_kv_cache, out)
