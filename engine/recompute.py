"""Which prompt positions a link policy recomputes (pure).

Example: prefix of 4 tokens, two chunks of 6, a question of 3; legolink k=2; prefix hit 0:

    position   0 1 2 3 | 4 5 6 7 8 9 | 10 11 12 13 14 15 | 16 17 18
    segment    prefix  | chunk A     | chunk B           | text
    linked             | . . . . . . | .  .  .  .  .  .  |
    recomputed x x x x | x x         | x  x              | x  x  x

Runs: [(0, 6), (10, 12), (16, 19)]. Linked: A at 4, B at 10 (their cached KV is written first,
then the recomputed rows overwrite theirs). The last prompt position is always recomputed:
its hidden state yields the first output token.

``tail`` adds the last chunk positions, counted back from the end of the last chunk: with
tail = 0.25 of the 12 chunk tokens above, positions 13-15 (B's last 3) are recomputed too, so
the document nearest the question attends to every document before it:

    recomputed x x x x | x x         | x  x        x  x  x | x  x  x
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from engine.segments import LinkPolicy, Segment

Run = tuple[int, int]  # half-open [start, end) of absolute positions


@dataclass(frozen=True, slots=True)
class ChunkSpan:
    """Where one chunk segment sits in the prompt."""

    index: int  # ordinal among the prompt's chunk segments
    start: int
    num_tokens: int

    @property
    def end(self) -> int:
        return self.start + self.num_tokens


@dataclass(frozen=True, slots=True)
class PromptPlan:
    """How one prompt is materialised in its pages.

    Attributes:
        runs: positions computed through every layer (sorted, disjoint, merged).
        linked: chunks whose cached KV is written into the pages before any compute.
        blend_candidates: CacheBlend and query only: positions inside ``runs`` of which only the
            top ``ratio`` are kept (CacheBlend: computed at layers 0-1, kept beyond if their KV
            deviation is in the top; query: ranked by the question's attention before the forward).
        blend_ratio: their ratio (0 otherwise).
        exact_len: positions [0, exact_len) end with exactly the KV of a plain prefill, so their
            full blocks may be published as prefix-cache entries.
    """

    runs: tuple[Run, ...]
    linked: tuple[ChunkSpan, ...]
    blend_candidates: tuple[Run, ...]
    blend_ratio: float
    exact_len: int

    @property
    def num_computed(self) -> int:
        return sum(e - s for s, e in self.runs)


def chunk_spans(segments: Sequence[Segment]) -> list[ChunkSpan]:
    spans, pos = [], 0
    for seg in segments:
        if seg.kind == "chunk":
            spans.append(ChunkSpan(len(spans), pos, len(seg)))
        pos += len(seg)
    return spans


def prefix_cacheable_len(segments: Sequence[Segment], policy: LinkPolicy) -> int:
    """How many leading positions may come from the exact-prefix cache under ``policy``."""
    total = sum(len(s) for s in segments)
    if not policy.reuses_prefix:
        return 0
    if policy.name == "prefix":
        return total - 1
    lead = 0
    for seg in segments:
        if seg.kind != "prefix":
            break
        lead += len(seg)
    return min(lead, total - 1)


def merge_runs(runs: Sequence[Run]) -> tuple[Run, ...]:
    """Sort and merge overlapping or touching runs; drop empty ones."""
    merged: list[list[int]] = []
    for s, e in sorted(r for r in runs if r[1] > r[0]):
        if merged and s <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], e)
        else:
            merged.append([s, e])
    return tuple((s, e) for s, e in merged)


def plan_prompt(segments: Sequence[Segment], policy: LinkPolicy, prefix_hit: int) -> PromptPlan:
    """The recompute set of ``policy`` for a prompt whose first ``prefix_hit`` positions are cached."""
    total = sum(len(s) for s in segments)
    assert 0 <= prefix_hit < total, "at least the last prompt position must be computed"
    if not policy.reuses_chunks:
        return PromptPlan(((prefix_hit, total),), (), (), 0.0, total)
    spans = chunk_spans(segments)
    runs: list[Run] = []
    pos = 0
    for seg in segments:
        if seg.kind != "chunk":
            runs.append((max(pos, prefix_hit), pos + len(seg)))
        pos += len(seg)
    runs.append((total - 1, total))
    candidates: tuple[Run, ...] = ()
    tail = tail_runs(spans, policy.tail)
    runs += tail
    if policy.name == "legolink":
        runs += [(c.start, c.start + min(policy.k, c.num_tokens)) for c in spans if c.start > 0]
    elif policy.selects_rows:
        # The last position is never dropped: its hidden state yields the first token.
        candidates = subtract_runs([(c.start, c.end) for c in spans], [(total - 1, total), *tail])
        runs += list(candidates)
    merged = merge_runs(runs)
    ratio = policy.ratio if candidates else 0.0
    # Positions CacheBlend may drop after layer 1 are not surely recomputed.
    sure = merged if ratio >= 1.0 else subtract_runs(merged, candidates)
    exact_len = _first_uncovered(sure, spans, total)
    return PromptPlan(merged, tuple(spans), candidates, ratio, exact_len)


def tail_runs(spans: Sequence[ChunkSpan], fraction: float) -> list[Run]:
    """The last ``ceil(fraction * chunk tokens)`` chunk positions, walking back from the last chunk."""
    budget = math.ceil(fraction * sum(c.num_tokens for c in spans) - 1e-9)
    runs: list[Run] = []
    for c in reversed(spans):
        if budget <= 0:
            break
        take = min(budget, c.num_tokens)
        runs.append((c.end - take, c.end))
        budget -= take
    return runs


def subtract_runs(runs: Sequence[Run], minus: Sequence[Run]) -> tuple[Run, ...]:
    """Positions in ``runs`` but not in ``minus``, as merged runs."""
    out: list[Run] = []
    for s, e in runs:
        cuts = [(ms, me) for ms, me in minus if ms < e and me > s]
        for ms, me in sorted(cuts):
            if ms > s:
                out.append((s, ms))
            s = max(s, me)
        if s < e:
            out.append((s, e))
    return merge_runs(out)


def _first_uncovered(runs: Sequence[Run], spans: Sequence[ChunkSpan], total: int) -> int:
    """The first chunk position not inside ``runs`` (KV is exact before it), else ``total``."""
    for c in spans:
        p = c.start
        for s, e in runs:
            if s <= p < e:
                p = e
        if p < c.end:
            return p
    return total
