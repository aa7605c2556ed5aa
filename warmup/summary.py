"""What a warm-up did: counters per batch, summed into the job's summary, and its problem log."""

from __future__ import annotations

import dataclasses
import json
import logging
from dataclasses import dataclass, field
from collections.abc import Callable
from pathlib import Path
from typing import Any, TextIO

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Problem:
    """A document that was not warmed: a bad record (where it is) or a failure (its id)."""

    kind: str  # "bad_record" | "failed"
    where: str  # "PATH:LINE" / "PATH:row N" for a bad record, the document id for a failure
    reason: str


@dataclass
class WarmupCounts:
    """Counters of one batch, or of a whole job (:meth:`add`).

    Chunk counters count distinct chunks per batch: ``chunks == chunks_compiled +
    chunks_skipped + chunks_failed``. A chunk shared by two batches counts as compiled in the
    first and skipped in the second.
    """

    documents: int = 0  # registered with every chunk stored (now or before)
    documents_new: int = 0  # of those, (re)registered by this job
    chunks: int = 0
    chunks_compiled: int = 0
    chunks_skipped: int = 0  # already in the store
    chunks_failed: int = 0
    tokens: int = 0  # tokens of ``chunks``
    tokens_compiled: int = 0
    bytes_written: int = 0  # KV payload bytes written to the store
    bad_records: int = 0
    failed: int = 0  # documents that could not be warmed (compile or store failures)
    problems: list[Problem] = field(default_factory=list)  # of this batch; a job logs them instead

    def add(self, other: WarmupCounts) -> None:
        for f in dataclasses.fields(self):
            if f.name != "problems":
                setattr(self, f.name, getattr(self, f.name) + getattr(other, f.name))

    def fail(self, where: str, reason: str, kind: str = "failed") -> None:
        self.problems.append(Problem(kind, where, reason))
        if kind == "failed":
            self.failed += 1
        else:
            self.bad_records += 1


@dataclass
class WarmupSummary:
    """The job's result: totals, time and where it ran."""

    counts: WarmupCounts
    elapsed_s: float
    workers: int
    device: str

    @property
    def tokens_per_s(self) -> float:
        """Compiled tokens per second of the whole job."""
        return self.counts.tokens_compiled / self.elapsed_s if self.elapsed_s > 0 else 0.0

    @property
    def chunks_per_s(self) -> float:
        return self.counts.chunks_compiled / self.elapsed_s if self.elapsed_s > 0 else 0.0

    def as_dict(self) -> dict[str, Any]:
        counts = {k: v for k, v in dataclasses.asdict(self.counts).items() if k != "problems"}
        return {**counts, "elapsed_s": round(self.elapsed_s, 3), "tokens_per_s": round(self.tokens_per_s, 1),
                "chunks_per_s": round(self.chunks_per_s, 2), "workers": self.workers, "device": self.device}

    def render(self) -> str:
        c = self.counts
        return "\n".join([
            f"warm-up done in {self.elapsed_s:.1f} s on {self.workers} {self.device} worker"
            f"{'s' if self.workers != 1 else ''}",
            f"  documents  {c.documents} warmed ({c.documents_new} newly registered), {c.failed} failed, "
            f"{c.bad_records} bad records skipped",
            f"  chunks     {c.chunks}: {c.chunks_compiled} compiled, {c.chunks_skipped} already stored, "
            f"{c.chunks_failed} failed",
            f"  tokens     {c.tokens} ({c.tokens_compiled} compiled)",
            f"  written    {c.bytes_written / 2**20:.1f} MiB of KV",
            f"  throughput {self.tokens_per_s:.0f} tokens/s, {self.chunks_per_s:.1f} chunks/s compiled",
        ])


class ProblemLog:
    """Reports skipped records and failed documents: the first ``max_printed`` on the console,
    all of them (one JSON object per line) in ``path`` when given."""

    def __init__(self, path: Path | None, console: TextIO | None, max_printed: int = 20):
        self._file = path.open("w") if path is not None else None
        self._console = console
        self._max_printed = max_printed
        self.count = 0

    def report(self, problem: Problem, write: Callable[[str], None] | None = None) -> None:
        """Record one problem; ``write`` prints a console line (e.g. ``tqdm.write``)."""
        self.count += 1
        if self._file is not None:
            self._file.write(json.dumps(dataclasses.asdict(problem)) + "\n")
        line = f"{'skipped bad record' if problem.kind == 'bad_record' else 'failed document'} {problem.where}: " \
               f"{problem.reason}"
        if self.count <= self._max_printed and self._console is not None:
            (write or (lambda s: print(s, file=self._console)))(line)
        else:
            logger.debug(line)

    def close(self) -> None:
        if self._console is not None and self.count > self._max_printed:
            more = self.count - self._max_printed
            print(f"... and {more} more problem{'s' if more != 1 else ''}"
                  + (f" (all in {self._file.name})" if self._file is not None else ""), file=self._console)
        if self._file is not None:
            self._file.close()
