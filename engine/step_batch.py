"""Flatten one step's scheduled work into model rows and attention metadata.

Rows are laid out work by work, positions ascending within a work. Each contiguous run of a
work's positions becomes one attention query segment cut at its last position.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from engine.attention.base import AttentionMetadata, SegmentLayout, build_metadata
from engine.recompute import Run
from engine.request import CompileJob, Request


def runs_of(positions: list[int]) -> list[Run]:
    """Contiguous runs of an ascending position list."""
    runs: list[Run] = []
    for p in positions:
        if runs and runs[-1][1] == p:
            runs[-1] = (runs[-1][0], p + 1)
        else:
            runs.append((p, p + 1))
    return runs


@dataclass(slots=True)
class StepBatch:
    """The rows of one forward (or of the rows kept after a mid-forward selection)."""

    seqs: list[Request | CompileJob]
    positions: list[list[int]]  # per seq, ascending
    row_offsets: list[int]  # [len(seqs) + 1]: rows of seq i are row_offsets[i]:row_offsets[i+1]
    token_ids: torch.Tensor  # [N] int64
    slots: list[int]  # [N] cache slot per row
    meta: AttentionMetadata

    @property
    def num_rows(self) -> int:
        return self.row_offsets[-1]

    def rows_of(self, i: int) -> range:
        return range(self.row_offsets[i], self.row_offsets[i + 1])


def slot_of(block_ids: list[int], pos: int, block_size: int) -> int:
    return block_ids[pos // block_size] * block_size + pos % block_size


def build_step_batch(
    seqs: list[Request | CompileJob], positions: list[list[int]], block_size: int, device: torch.device
) -> StepBatch:
    layouts: list[SegmentLayout] = []
    flat_pos: list[int] = []
    slots: list[int] = []
    tokens: list[int] = []
    offsets = [0]
    for seq, pos in zip(seqs, positions):
        blocks = tuple(seq.block_ids)
        for s, e in runs_of(pos):
            layouts.append(SegmentLayout(e - s, e, blocks))
        flat_pos.extend(pos)
        slots.extend(slot_of(seq.block_ids, p, block_size) for p in pos)
        tokens.extend(seq.token_at(p) for p in pos)
        offsets.append(len(flat_pos))
    meta = build_metadata(layouts, flat_pos, slots, block_size, device)
    token_ids = torch.tensor(tokens, dtype=torch.int64).to(device)
    return StepBatch(seqs, positions, offsets, token_ids, slots, meta)
