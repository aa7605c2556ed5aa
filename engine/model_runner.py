"""Runs one engine step on the device: write the linked chunks into their pages, forward layer
by layer (capturing compile jobs' K/V), return the sampled rows' logits.

The ``query`` policy's selection happens before the forward (:mod:`engine.query_select`): its
dropped candidate rows are never computed.

CacheBlend's selection happens mid-forward: layers 0-1 run for every row; at layer 1 each
candidate row's fresh K/V is compared with the linked K/V it overwrote (RoPE is a rotation, so
the distance is the same before or after it); only the top ``ratio`` candidates (plus all other
rows) continue through layers 2.., the rest keep their linked K/V there.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch

from engine.attention import make_attention_backend
from engine import prompt_logprobs
from engine.model import ForwardContext, KVCapture, Model
from engine.chunk_lifecycle import CompileJob, LinkWrite
from engine.decode_graphs import DecodeGraphs, is_decode_step
from engine.query_select import select_rows
from engine.rope import apply_rope, inverse_frequencies, rope_cos_sin
from engine.scheduler import ScheduledWork, SchedulerOutput
from engine.step_batch import StepBatch, build_step_batch, runs_of, slots_of, step_rows

BLEND_LAYER = 1  # CacheBlend selects by KV deviation at this layer


@dataclass(slots=True)
class StepResult:
    sampled: list[ScheduledWork]  # works whose last row produced logits, in order
    logits: torch.Tensor | None  # [len(sampled), vocab] float32
    captured: list[tuple[CompileJob, torch.Tensor]] = field(default_factory=list)  # [L, 2, n, Hkv, D]
    blend_dropped: dict[str, int] = field(default_factory=dict)  # request_id -> rows dropped
    prompt_logprobs: list[prompt_logprobs.PromptValues] = field(default_factory=list)


class ModelRunner:
    """Owns the paged KV tensor, the attention backend and the decode graphs.

    ``graph_sizes`` (empty: none) are the batch sizes decode-only steps run at through
    :class:`DecodeGraphs`, captured as CUDA graphs on a CUDA device (replayed eagerly elsewhere),
    for sequences of at most ``max_seq_pages`` pages; the KV tensor then holds one scratch block
    past the pool's ``num_blocks`` for their padding.
    """

    def __init__(self, model: Model, num_blocks: int, block_size: int, backend: str,
                 device: torch.device, dtype: torch.dtype, graph_sizes: Sequence[int] = (),
                 max_seq_pages: int = 0):
        spec = model.spec
        self.model = model
        self.block_size = block_size
        self.device = device
        # [num_layers, num_blocks (+ 1 scratch), 2, block_size, num_kv_heads, head_dim]
        self.kv_caches = torch.zeros(
            spec.num_layers, num_blocks + bool(graph_sizes), 2, block_size, spec.num_kv_heads, spec.head_dim,
            dtype=dtype, device=device,
        )
        self.attention = make_attention_backend(
            backend, spec.num_heads, spec.num_kv_heads, spec.head_dim, spec.head_dim**-0.5, device, dtype
        )
        self.inv_freq = inverse_frequencies(spec).to(device)
        self.graphs = None
        if graph_sizes:
            decoders = {size: self.attention.graph_decoder(size, size * max(max_seq_pages, 1)) for size in graph_sizes}
            self.graphs = DecodeGraphs(model, decoders, self.kv_caches, self.inv_freq, block_size,
                                       capture=device.type == "cuda")

    def link(self, write: LinkWrite) -> None:
        """Write a chunk's NoPE KV [num_layers, 2, T, Hkv, D] at its absolute positions."""
        span, kv = write.span, write.kv
        positions = torch.arange(span.start, span.end)
        slots = slots_of(write.block_ids, positions, self.block_size).to(self.device)
        cos, sin = rope_cos_sin(positions.to(self.device), self.inv_freq)
        blocks, offsets = slots // self.block_size, slots % self.block_size
        self.kv_caches[:, blocks, 0, offsets] = apply_rope(kv[:, 0], cos, sin).to(self.kv_caches.dtype)
        self.kv_caches[:, blocks, 1, offsets] = kv[:, 1].to(self.kv_caches.dtype)

    @torch.inference_mode()
    def execute(self, sched: SchedulerOutput) -> StepResult:
        for write in sched.links:
            self.link(write)
        works = sched.work
        seqs, runs = [w.seq for w in works], [w.runs for w in works]
        if self.graphs is not None and is_decode_step(sched) and self.graphs.fits(len(works)):
            return StepResult(works, self.model.compute_logits(self.graphs.run(step_rows(seqs, runs, self.block_size))))
        batch = build_step_batch(seqs, runs, self.block_size, self.device)
        querying = [i for i, w in enumerate(works) if w.blend_candidates and w.seq.policy.name == "query"]
        dropped: dict[str, int] = {}
        if querying:
            keep, dropped = select_rows(self.model, self.attention, self.kv_caches, self.inv_freq, batch, works,
                                        querying)
            batch, _ = self._subset_batch(batch, keep)
        capture = self._compile_capture(works, batch)
        blending = [i for i, w in enumerate(works) if w.blend_candidates and w.seq.policy.name == "cacheblend"]
        h = self.model.embed(batch.token_ids)  # [N, hidden]
        ctx = self.forward_context(batch, capture)
        for i, layer in enumerate(self.model.layers):
            if blending and i == BLEND_LAYER:
                before = self._gather_kv(i, batch, works, blending)
            h = layer(h, ctx)
            if blending and i == BLEND_LAYER:
                keep, blend_dropped = self._select(i, before, batch, works, blending)
                dropped.update(blend_dropped)
                batch, flat = self._subset_batch(batch, keep)
                h = h[flat]
                ctx = self.forward_context(batch, capture, self._capture_rows(works, batch))
        sampled = [w for w in works if w.sample]
        rows = [batch.row_offsets[i + 1] - 1 for i, w in enumerate(works) if w.sample]
        logits = self.model.compute_logits(h[rows]) if rows else None
        prompt = prompt_logprobs.select_rows(batch)
        return StepResult(sampled, logits, self._split_capture(works, capture), dropped,
                          prompt_logprobs.compute(self.model.compute_logits, h, prompt))

    def forward_context(self, batch: StepBatch, capture: KVCapture | None,
                        capture_rows: torch.Tensor | None = None) -> ForwardContext:
        """The per-step context of ``batch``'s forward (attention planned once for every layer)."""
        if capture is not None and capture_rows is not None:
            capture = KVCapture(capture_rows, capture.out)
        self.attention.plan(batch.meta)
        cos, sin = rope_cos_sin(batch.meta.positions, self.inv_freq)
        return ForwardContext(cos, sin, batch.meta.slot_mapping, self.attention, self.kv_caches, capture)

    def _capture_rows(self, works: list[ScheduledWork], batch: StepBatch) -> torch.Tensor:
        """[C] int64: the rows of compile jobs' chunk tokens (positions past their BOS), in order."""
        keep = torch.zeros(batch.num_rows, dtype=torch.bool)
        for i, w in enumerate(works):
            if isinstance(w.seq, CompileJob):
                rows = slice(batch.row_offsets[i], batch.row_offsets[i + 1])
                keep[rows] = batch.positions[rows] >= w.seq.num_skip
        return keep.nonzero()[:, 0].to(self.device)

    def _compile_capture(self, works: list[ScheduledWork], batch: StepBatch) -> KVCapture | None:
        rows = self._capture_rows(works, batch)
        if rows.numel() == 0:
            return None
        spec = self.model.spec
        out = torch.empty(spec.num_layers, 2, rows.numel(), spec.num_kv_heads, spec.head_dim,
                          dtype=self.kv_caches.dtype, device=self.device)
        return KVCapture(rows, out)

    def _split_capture(self, works: list[ScheduledWork], capture: KVCapture | None):
        pieces, start = [], 0
        for w in works:
            if isinstance(w.seq, CompileJob):
                n = sum(max(0, e - max(s, w.seq.num_skip)) for s, e in w.runs)
                if n:
                    pieces.append((w.seq, capture.out[:, :, start : start + n].clone()))
                start += n
        return pieces

    def _candidate_slots(self, batch: StepBatch, works: list[ScheduledWork], i: int) -> list[tuple[int, int]]:
        """(row, slot) of work i's CacheBlend candidate rows."""
        cands = works[i].blend_candidates
        return [
            (r, int(batch.slots[r])) for r, p in zip(batch.rows_of(i), batch.positions_of(i))
            if any(s <= p < e for s, e in cands)
        ]

    def _gather_kv(self, layer: int, batch: StepBatch, works, blending: list[int]) -> dict[int, torch.Tensor]:
        """Linked K/V of each blending work's candidate rows at ``layer``: {work: [C, 2, Hkv, D]}."""
        out = {}
        for i in blending:
            slots = torch.tensor([s for _, s in self._candidate_slots(batch, works, i)], device=self.device)
            out[i] = self.kv_caches[layer, slots // self.block_size, :, slots % self.block_size].float()
        return out

    def _select(self, layer: int, before, batch: StepBatch, works, blending: list[int]):
        """Per blending work: keep non-candidate rows and the top-ratio candidates by deviation."""
        keep = [list(batch.rows_of(i)) for i in range(len(works))]
        dropped: dict[str, int] = {}
        after = self._gather_kv(layer, batch, works, blending)
        for i in blending:
            cand = self._candidate_slots(batch, works, i)
            deviation = (after[i] - before[i]).pow(2).sum(dim=(1, 2, 3))  # [C]
            num_keep = math.ceil(works[i].blend_ratio * len(cand))
            top = set(deviation.topk(num_keep).indices.tolist()) if num_keep else set()
            drop = {cand[j][0] for j in range(len(cand)) if j not in top}
            keep[i] = [r for r in keep[i] if r not in drop]
            dropped[works[i].seq.request_id] = len(drop)
        return keep, dropped

    def _subset_batch(self, batch: StepBatch, keep: list[list[int]]) -> tuple[StepBatch, torch.Tensor]:
        """The batch of the ``keep`` rows, and their indices [M] int64 among ``batch``'s rows."""
        runs = [runs_of(batch.positions[rows].tolist()) for rows in keep]
        flat = torch.tensor([r for rows in keep for r in rows], dtype=torch.int64, device=self.device)
        return build_step_batch(batch.seqs, runs, self.block_size, self.device), flat
