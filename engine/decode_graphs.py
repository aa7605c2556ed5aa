"""CUDA-graph decode: the decode forward captured once per batch size, replayed per step.

A decode-only step (every row one sequence's next token) of ``n`` rows runs as the smallest
captured size ``B >= n``. Rows ``n..B-1`` are padding: token 0 at position 0, writing its K/V
into the *scratch block* (one KV page past the block pool, never handed out) and attending only
to it, so padding touches no real page. Before each replay the step's token ids, positions and
slots are copied into the graph's static buffers and the attention backend's decoder for ``B``
rows is planned (host work; FlashInfer's graph decode wrapper plans into fixed device buffers).

    step rows:     [r0 r1 r2]            n = 3
    graph rows:    [r0 r1 r2 pad]        B = 4; pad: token 0, position 0, slot = scratch page

Everything but the capture also runs on a CPU: with ``capture=False`` the same forward runs
eagerly over the same static buffers and padding (which is how the tests check it there).
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from engine.attention.base import AttentionBackend, SegmentLayout, build_metadata
from engine.model import ForwardContext, Model
from engine.request import Request
from engine.rope import rope_cos_sin
from engine.scheduler import SchedulerOutput
from engine.step_batch import StepRows


def capture_sizes(max_num_seqs: int) -> list[int]:
    """Batch sizes to capture: of 1, 2, 4, 8, 16, 24, ... (multiples of 8), those below
    ``max_num_seqs`` and the first at or above it."""
    sizes: list[int] = []
    for size in (1, 2, 4, *range(8, max_num_seqs + 8, 8)):
        sizes.append(size)
        if size >= max_num_seqs:
            break
    return sizes


def graph_size(num_rows: int, sizes: list[int]) -> int | None:
    """The smallest captured size holding ``num_rows`` rows, or None (the step runs eagerly)."""
    return next((s for s in sorted(sizes) if s >= num_rows), None)


def is_decode_step(sched: SchedulerOutput) -> bool:
    """Every work is a request's single next-token row, sampled; no links written this step."""
    return bool(sched.work) and not sched.links and all(
        isinstance(w.seq, Request) and w.sample and w.num_tokens == 1 and not w.blend_candidates
        for w in sched.work
    )


class DecodeGraphs:
    """Static buffers and one decode forward per batch size (a CUDA graph when ``capture``).

    Args:
        model: the runner's model.
        decoders: per batch size, an attention backend planned for exactly that many decode
            rows (FlashInfer's graph wrappers on CUDA; any backend when not capturing).
        kv_caches: [num_layers, num_blocks + 1, 2, block_size, Hkv, D]; the last block is scratch.
        inv_freq: [head_dim // 2] float32 RoPE inverse frequencies.
        block_size: tokens per KV page.
        capture: record each size as a CUDA graph (CUDA only); else replay eagerly.
    """

    def __init__(self, model: Model, decoders: dict[int, AttentionBackend], kv_caches: torch.Tensor,
                 inv_freq: torch.Tensor, block_size: int, capture: bool):
        self.model = model
        self.decoders = decoders
        self.kv_caches = kv_caches
        self.inv_freq = inv_freq
        self.block_size = block_size
        self.scratch_block = kv_caches.shape[1] - 1
        self.sizes = sorted(decoders)
        largest, device = self.sizes[-1], kv_caches.device
        self.token_ids = torch.zeros(largest, dtype=torch.int64, device=device)  # [B_max]
        self.positions = torch.zeros(largest, dtype=torch.int64, device=device)  # [B_max]
        self.slots = torch.full((largest,), self.scratch_block * block_size, dtype=torch.int64, device=device)
        self.hidden = torch.zeros(largest, model.spec.hidden_size, dtype=kv_caches.dtype, device=device)
        self._graphs: dict[int, Callable[[], None]] = {}
        self.steps = 0  # decode steps run through here
        if capture:
            self._capture_all()

    def fits(self, num_rows: int) -> bool:
        return graph_size(num_rows, self.sizes) is not None

    def run(self, rows: StepRows) -> torch.Tensor:
        """The last layer's output [n, hidden] of a decode-only step's n ``rows``."""
        n = len(rows.layouts)
        size = graph_size(n, self.sizes)
        assert size is not None, f"{n} decode rows exceed the largest captured size {self.sizes[-1]}"
        token_ids = torch.tensor(rows.token_ids, dtype=torch.int64).to(self.kv_caches.device)
        self._stage(token_ids, rows.positions, rows.slots, rows.layouts, size)
        self._graphs.get(size, lambda: self._forward(size))()
        self.steps += 1
        return self.hidden[:n]

    @property
    def captured(self) -> list[int]:
        """The sizes recorded as CUDA graphs (none off CUDA)."""
        return sorted(self._graphs)

    def _stage(self, token_ids: torch.Tensor, positions: torch.Tensor, slots: torch.Tensor,
               layouts: list[SegmentLayout], size: int) -> None:
        """Load n real rows (token ids on the device, positions and slots [n] on the host, one
        segment each) and ``size - n`` padding rows into the static buffers; plan their attention."""
        n = len(layouts)
        pad = size - n
        scratch_slot = self.scratch_block * self.block_size
        meta = build_metadata(
            layouts + [SegmentLayout(1, 1, (self.scratch_block,))] * pad,
            torch.cat([positions, torch.zeros(pad, dtype=torch.int64)]),
            torch.cat([slots, torch.full((pad,), scratch_slot, dtype=torch.int64)]),
            self.block_size, self.kv_caches.device)
        self.decoders[size].plan(meta)
        self.positions[:size].copy_(meta.positions)
        self.slots[:size].copy_(meta.slot_mapping)
        self.token_ids[:n].copy_(token_ids)
        self.token_ids[n:size].zero_()

    def _forward(self, size: int) -> None:
        """The decode forward of the first ``size`` static rows into ``self.hidden``."""
        cos, sin = rope_cos_sin(self.positions[:size], self.inv_freq)
        ctx = ForwardContext(cos, sin, self.slots[:size], self.decoders[size], self.kv_caches)
        h = self.model.embed(self.token_ids[:size])
        for layer in self.model.layers:
            h = layer(h, ctx)
        self.hidden[:size].copy_(h)

    def _capture_all(self) -> None:
        """Record every size, largest first, sharing one memory pool (CUDA only)."""
        pool = torch.cuda.graph_pool_handle()
        none = torch.zeros(0, dtype=torch.int64)
        for size in reversed(self.sizes):
            self._stage(none.to(self.kv_caches.device), none, none, [], size)  # all padding
            stream = torch.cuda.Stream(self.kv_caches.device)
            stream.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(stream):
                self._forward(size)  # warm-up outside the graph (allocations, kernel choice)
            torch.cuda.current_stream().wait_stream(stream)
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph, pool=pool):
                self._forward(size)
            self._graphs[size] = graph.replay
        torch.cuda.synchronize(self.kv_caches.device)
