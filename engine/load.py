"""A snapshot of how busy an engine is (for routing stats and admission control)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class EngineLoad:
    num_waiting: int
    num_running: int
    running_tokens: int
    free_blocks: int
    total_blocks: int
    pinned_chunks: int  # chunk-pool pins held by requests waiting to link (0 when idle)
