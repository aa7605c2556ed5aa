"""The two failures a tier reports: its backend failed, or what it holds is not valid."""

from __future__ import annotations


class TierError(Exception):
    """A tier's backend failed (S3 unreachable, disk full, Ray object lost, ...).

    The tiered store turns it into a miss or a dropped write and counts it; it never reaches
    the caller of ``get_chunk`` / ``put_chunk``.
    """


class CorruptChunkError(TierError):
    """Stored bytes failed a check (framing, header field, checksum): treat as a miss, never
    return them."""
