"""Per-tier counters of the tiered store (exported by the serving layer as metrics)."""

from __future__ import annotations

from dataclasses import asdict, dataclass


@dataclass(slots=True)
class TierStats:
    """Counters of one tier. Bytes are payload bytes of chunk KV; seconds are wall time."""

    hits: int = 0
    misses: int = 0
    errors: int = 0  # backend failures and corrupt objects (each also read as a miss by callers)
    skipped: int = 0  # calls not made while the tier's circuit breaker was open
    evictions: int = 0
    bytes_in: int = 0  # written into the tier
    bytes_out: int = 0  # read from the tier
    get_count: int = 0
    get_seconds: float = 0.0
    put_count: int = 0
    put_seconds: float = 0.0
    failing: bool = False  # the last call failed (logs once per failing spell, not per call)

    def as_dict(self) -> dict[str, int | float | bool]:
        return asdict(self)
