"""Flatten one step's scheduled work into model rows and attention metadata.

Rows are laid out work by work, positions ascending within a work. Each run of a work's
positions becomes one attention query segment cut at its last position.

The rows' positions, cache slots and token ids are built once per step with tensor operations
over the runs (no Python loop per token): a position is its run's start plus its offset in the
run, and a slot is the sequence's page at ``position // block_size`` times the block size plus
``position % block_size``.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import chain

import torch

from engine.attention.base import AttentionMetadata, SegmentLayout, build_metadata
from engine.chunk_lifecycle import CompileJob
from engine.recompute import Run
from engine.request import Request


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
    runs: list[list[Run]]  # per seq, ascending and disjoint
    row_offsets: list[int]  # [len(seqs) + 1]: rows of seq i are row_offsets[i]:row_offsets[i+1]
    token_ids: torch.Tensor  # [N] int64, on the device
    positions: torch.Tensor  # [N] int64 position per row, on the host
    slots: torch.Tensor  # [N] int64 cache slot per row, on the host
    meta: AttentionMetadata

    @property
    def num_rows(self) -> int:
        return self.row_offsets[-1]

    def rows_of(self, i: int) -> range:
        return range(self.row_offsets[i], self.row_offsets[i + 1])

    def positions_of(self, i: int) -> list[int]:
        """Seq i's positions, one per row, ascending."""
        return [p for s, e in self.runs[i] for p in range(s, e)]


def slots_of(block_ids: list[int], positions: torch.Tensor, block_size: int) -> torch.Tensor:
    """[n] int64 cache slots of a sequence's ``positions`` [n] int64 (host tensors)."""
    table = torch.tensor(block_ids, dtype=torch.int64)
    return table[positions // block_size] * block_size + positions % block_size


def tokens_in(seq: Request | CompileJob, start: int, end: int) -> list[int]:
    """Token ids at positions ``start..end-1`` of ``seq`` (list slices, no loop per token)."""
    if isinstance(seq, CompileJob):
        return seq.token_ids[start:end]
    n = len(seq.prompt_ids)
    return seq.prompt_ids[start:min(end, n)] + seq.output_ids[max(start - n, 0):max(end - n, 0)]


@dataclass(slots=True)
class StepRows:
    """One step's rows on the host, before attention metadata: what :func:`build_step_batch`
    packs, and what decode graphs pad into their static buffers instead."""

    layouts: list[SegmentLayout]  # one query segment per run
    token_ids: list[int]  # [N]
    positions: torch.Tensor  # [N] int64
    slots: torch.Tensor  # [N] int64
    row_offsets: list[int]  # [len(seqs) + 1]


def step_rows(seqs: list[Request | CompileJob], runs: list[list[Run]], block_size: int) -> StepRows:
    layouts: list[SegmentLayout] = []
    tokens: list[int] = []
    run_bounds: list[tuple[int, int]] = []
    run_seq: list[int] = []  # the seq of each run
    offsets = [0]
    for i, (seq, seq_runs) in enumerate(zip(seqs, runs)):
        blocks = tuple(seq.block_ids)
        for s, e in seq_runs:
            layouts.append(SegmentLayout(e - s, e, blocks))
            tokens += tokens_in(seq, s, e)
        run_bounds += seq_runs
        run_seq += [i] * len(seq_runs)
        offsets.append(offsets[-1] + sum(e - s for s, e in seq_runs))
    bounds = torch.tensor(run_bounds, dtype=torch.int64).view(-1, 2)  # [R, 2]
    lengths = bounds[:, 1] - bounds[:, 0]
    first_row = torch.cumsum(lengths, 0) - lengths
    # [N]: position = run start + (row - run's first row)
    positions = torch.arange(offsets[-1]) + torch.repeat_interleave(bounds[:, 0] - first_row, lengths)
    # The seqs' page tables end to end; row r reads table_start[seq of r] + position // block_size.
    tables = torch.tensor(list(chain.from_iterable(seq.block_ids for seq in seqs)), dtype=torch.int64)
    table_len = torch.tensor([len(seq.block_ids) for seq in seqs], dtype=torch.int64)
    table_start = torch.cumsum(table_len, 0) - table_len
    row_table = torch.repeat_interleave(table_start[torch.tensor(run_seq, dtype=torch.int64)], lengths)
    slots = tables[row_table + positions // block_size] * block_size + positions % block_size
    return StepRows(layouts, tokens, positions, slots, offsets)


def build_step_batch(
    seqs: list[Request | CompileJob], runs: list[list[Run]], block_size: int, device: torch.device
) -> StepBatch:
    rows = step_rows(seqs, runs, block_size)
    meta = build_metadata(rows.layouts, rows.positions, rows.slots, block_size, device)
    token_ids = torch.tensor(rows.token_ids, dtype=torch.int64).to(device)
    return StepBatch(seqs, [list(r) for r in runs], rows.row_offsets, token_ids, rows.positions, rows.slots, meta)
