"""The warm-up job: compile a document corpus into the chunk store before traffic arrives.

    python -m warmup.job --corpus PATH|s3://BUCKET/PREFIX [--config FILE] [--workers N]
    epic warmup --corpus ...                                    (the same)
    ray job submit --working-dir . -- python -m warmup.job --corpus ... --config ...

It joins the Ray cluster named by ``--address`` or ``RAY_ADDRESS`` (``ray job submit`` sets it)
and starts a local Ray with the config's ``ray:`` resources otherwise. Either way the serving
app finds what it warmed: chunks and the document registry live at the store's persistent
location (``store.persistent``), which both read.

    driver: corpus stream ──> batches of documents ──> at most 2 batches per worker in flight
                                                        │
    workers (Ray actors, 1 GPU each when the cluster has GPUs, else 1 CPU): DocumentCompiler
        KVSplit, skip stored chunks, compile the rest, write them, register the documents
                                                        │
    driver: counts, progress bar, problem log, summary <─┘

Idempotent and resumable: stored chunks are skipped, documents already registered with the same
chunks are left alone, so a rerun after a crash compiles only what did not reach the store.
Bad records are reported and skipped. Exit status: 0 when every document was warmed or skipped
as a bad record, 1 when some failed (the problem log says which), 2 for a bad invocation.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import sys
import time
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, TextIO

from deployments.config import AppConfig, load_config
from warmup.corpus import BadRecord, Corpus, CorpusDocument, S3Access
from warmup.summary import Problem, ProblemLog, WarmupCounts, WarmupSummary
from engine.config import EngineConfig
from kvstore.config import StoreConfig

logger = logging.getLogger(__name__)

DEVICES = ("auto", "cpu", "cuda")
BATCHES_PER_WORKER = 2  # in flight: one running, one queued, so a worker never waits for the driver


@dataclass(frozen=True)
class WarmupOptions:
    """One warm-up run.

    Attributes:
        corpus: a JSONL/Parquet file, a directory of them, or ``s3://bucket/prefix``.
        config: the serving YAML (None: the embedded ``deployments/default.yaml``).
        address: the Ray cluster to join (None: ``RAY_ADDRESS``, else start a local Ray).
        workers: engine workers (0: one per free GPU of the cluster, or 1 without GPUs).
        device: ``auto`` (GPU workers when the cluster has GPUs), ``cpu`` or ``cuda``.
        batch_docs: documents per batch sent to a worker.
        write_threads: chunk writes in flight per worker.
        s3_endpoint_url: S3 endpoint of the corpus (None: the store's).
        summary_json: where to write the summary as JSON.
        errors: where to write every problem, one JSON object per line.
        progress: show a progress bar on stderr.
        tenant: warm the corpus for this tenant only (its registry and cache scope; the
            ``ingress.api_keys`` tenant name); None: shared with every caller without a tenant.
    """

    corpus: str
    config: Path | None = None
    address: str | None = None
    workers: int = 0
    device: Literal["auto", "cpu", "cuda"] = "auto"
    batch_docs: int = 16
    write_threads: int = 4
    s3_endpoint_url: str | None = None
    summary_json: Path | None = None
    errors: Path | None = None
    progress: bool = True
    tenant: str | None = None

    def __post_init__(self) -> None:
        if self.device not in DEVICES:
            raise ValueError(f"device {self.device!r} is not one of {', '.join(DEVICES)}")
        if self.workers < 0:
            raise ValueError(f"workers must be >= 0, got {self.workers}")
        if self.tenant == "":
            raise ValueError("tenant must be non-empty when set")
        for name in ("batch_docs", "write_threads"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")


def warmup_engine_config(config: EngineConfig, device: str) -> EngineConfig:
    """The serving engine's config as a warm-up worker runs it on ``device``.

    The dtype never changes (it is part of every chunk key). On a CPU the attention backend is
    the torch reference. The chunk pool is off: every chunk handed to the engine is compiled
    and reaches the store, and a worker holds no chunks between batches.
    """
    if device == "cpu":
        return dataclasses.replace(config, device="cpu", backend="torch", chunk_pool_bytes=0)
    return dataclasses.replace(config, device=config.device if config.device.startswith("cuda") else "cuda",
                               chunk_pool_bytes=0)


class CompileWorker:
    """The Ray actor around a :class:`~warmup.compile.DocumentCompiler`, imported in
    the worker so that the driver never loads torch."""

    def __init__(self, engine_config: EngineConfig, store_config: StoreConfig, write_threads: int,
                 tenant: str | None):
        from warmup.compile import DocumentCompiler

        self._compiler = DocumentCompiler(engine_config, store_config, write_threads, tenant)

    def process(self, docs: list[CorpusDocument]) -> WarmupCounts:
        return self._compiler.process(docs)



@dataclass
class WorkerPool:
    """Engine workers for one serving config, started and ready (reusable by several runs)."""

    handles: list  # Ray actor handles of CompileWorker
    device: str

    def close(self) -> None:
        import ray

        for handle in self.handles:
            ray.kill(handle)


def start_workers(config: AppConfig, options: WarmupOptions) -> WorkerPool:
    """Start ``options.workers`` workers (Ray must be connected) and wait until they are ready.

    Raises:
        ValueError: a worker could not start (e.g. the model cannot be loaded).
    """
    import ray
    from ray.exceptions import RayActorError

    num_gpus = ray.cluster_resources().get("GPU", 0)
    device = options.device if options.device != "auto" else ("cuda" if num_gpus >= 1 else "cpu")
    # By default one worker per GPU free now (serving replicas may hold the others; more
    # workers than that would wait for the autoscaler), at least one.
    free_gpus = int(ray.available_resources().get("GPU", 0))
    num_workers = options.workers or (free_gpus if device == "cuda" else 1) or 1
    actor = ray.remote(CompileWorker).options(num_cpus=1, num_gpus=1 if device == "cuda" else 0, max_restarts=1)
    engine_config = warmup_engine_config(config.engine, device)
    pool = WorkerPool([actor.remote(engine_config, config.store, options.write_threads, options.tenant) for _ in range(num_workers)],
                      device)
    try:
        ray.get([h.__ray_ready__.remote() for h in pool.handles])
    except RayActorError as e:
        pool.close()
        raise ValueError(f"the warm-up workers could not start: {e}") from None
    return pool


def run_warmup(options: WarmupOptions, console: TextIO = sys.stderr, pool: WorkerPool | None = None) -> WarmupSummary:
    """Run the job to the end and return its summary.

    Args:
        options: what to warm up, and how.
        console: where the progress bar and problems go.
        pool: workers started by :func:`start_workers` for the same config (Ray connected); by
            default the run connects to Ray, starts its own workers and stops them at the end.

    Raises:
        ValueError: a bad config, corpus location or option (nothing was compiled).
    """
    config = load_config(options.config)
    if config.store.location.kind == "none":
        raise ValueError("the config's store has no persistent location (store.persistent): "
                         "the serving app could not find what a warm-up wrote")
    corpus = Corpus(options.corpus, S3Access.like_store(config.store, options.s3_endpoint_url))
    started = _connect(options, config) if pool is None else False
    own = None
    try:
        if pool is None:
            pool = own = start_workers(config, options)
        log = ProblemLog(options.errors, console)
        start = time.perf_counter()
        try:
            counts = _dispatch(corpus, pool.handles, options.batch_docs, log, options.progress, corpus.num_rows(),
                               console)
        finally:
            log.close()
        return WarmupSummary(counts, time.perf_counter() - start, len(pool.handles), pool.device)
    finally:
        if own is not None:
            own.close()
        if started:
            import ray

            ray.shutdown()


def _connect(options: WarmupOptions, config: AppConfig) -> bool:
    """Join the cluster (``--address`` / ``RAY_ADDRESS``) or start a local Ray; True if started."""
    from kvstore.ray_connect import LocalRay, connect_ray

    return connect_ray(options.address, LocalRay(max(config.ray.num_cpus, options.workers),
                                                 config.ray.object_store_memory))


def _batches(corpus: Iterable[CorpusDocument | BadRecord], size: int,
             on_bad: Callable[[BadRecord], None]) -> Iterable[list[CorpusDocument]]:
    batch: list[CorpusDocument] = []
    for item in corpus:
        if isinstance(item, BadRecord):
            on_bad(item)
            continue
        batch.append(item)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def _dispatch(corpus: Corpus, workers: Sequence, batch_docs: int, log: ProblemLog, progress: bool,
              total: int | None, console: TextIO) -> WarmupCounts:
    """Feed batches to the workers (bounded in flight) and sum their counts."""
    import ray
    from ray.exceptions import RayError
    from tqdm import tqdm

    totals = WarmupCounts()
    bar = tqdm(total=total, desc="warm-up", unit="doc", disable=not progress, file=console, dynamic_ncols=True)
    free = deque(w for w in workers for _ in range(BATCHES_PER_WORKER))
    inflight: dict = {}  # ObjectRef -> (worker, doc ids)

    def problem(p: Problem) -> None:
        log.report(p, (lambda line: bar.write(line, file=console)) if progress else None)

    def bad(record: BadRecord) -> None:
        totals.bad_records += 1
        problem(Problem("bad_record", record.where, record.reason))
        bar.update(1)

    def collect_one() -> None:
        [ref], _ = ray.wait(list(inflight), num_returns=1)
        worker, doc_ids = inflight.pop(ref)
        free.append(worker)
        try:
            counts: WarmupCounts = ray.get(ref)
        except RayError as e:  # the worker died or raised: the batch is lost, a rerun redoes it
            counts = WarmupCounts()
            reason = f"worker error: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
            for doc_id in doc_ids:
                counts.fail(doc_id, reason)
        totals.add(counts)
        for p in counts.problems:
            problem(p)
        bar.update(len(doc_ids))
        bar.set_postfix(compiled=totals.chunks_compiled, skipped=totals.chunks_skipped, failed=totals.failed,
                        refresh=False)

    try:
        for batch in _batches(corpus, batch_docs, bad):
            while not free:
                collect_one()
            worker = free.popleft()
            inflight[worker.process.remote(batch)] = (worker, [d.doc_id for d in batch])
        while inflight:
            collect_one()
    finally:
        bar.close()
    return totals


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="epic warmup", description="Compile a document corpus into the chunk store "
                                "and register its documents, so requests can name them by id.")
    p.add_argument("--corpus", required=True, help="JSONL/Parquet file, directory, or s3://BUCKET/PREFIX "
                   "(records with 'id' and 'text')")
    p.add_argument("--config", type=Path, default=None, help="serving YAML (default: the embedded deployments/default.yaml)")
    p.add_argument("--address", default=None, help="Ray cluster to join (default: RAY_ADDRESS, else a local Ray)")
    p.add_argument("--workers", type=int, default=0, help="engine workers (default: one per free GPU, or 1 on CPUs)")
    p.add_argument("--device", choices=DEVICES, default="auto", help="worker hardware (default: GPUs if the "
                   "cluster has them)")
    p.add_argument("--batch-docs", type=int, default=16, help="documents per batch sent to a worker")
    p.add_argument("--write-threads", type=int, default=4, help="chunk writes in flight per worker")
    p.add_argument("--s3-endpoint-url", default=None, help="S3 endpoint of the corpus (default: the store's)")
    p.add_argument("--summary-json", type=Path, default=None, help="also write the summary here as JSON")
    p.add_argument("--errors", type=Path, default=None, help="write every bad record and failure here (JSONL)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--tenant", default=None, help="warm for this tenant only (a name in ingress.api_keys)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        options = WarmupOptions(corpus=args.corpus, config=args.config, address=args.address, workers=args.workers,
                                device=args.device, batch_docs=args.batch_docs, write_threads=args.write_threads,
                                s3_endpoint_url=args.s3_endpoint_url, summary_json=args.summary_json,
                                errors=args.errors, progress=not args.no_progress, tenant=args.tenant)
        summary = run_warmup(options)
    except ValueError as e:
        print(f"epic warmup: {e}", file=sys.stderr)
        return 2
    print(summary.render(), flush=True)
    if options.summary_json is not None:
        options.summary_json.write_text(json.dumps(summary.as_dict(), indent=2) + "\n")
    return 1 if summary.counts.failed else 0


if __name__ == "__main__":
    sys.exit(main())
