"""One warm-up worker: documents in, chunks compiled into the persistent store, ids registered.

Per batch of documents::

    KVSplit + chunk keys (the ingress's PromptBuilder: same wrapper, same ids, same keys)
      -> ask the persistent tier which distinct chunks it already holds (those are skipped)
      -> Engine.compile_chunks(the missing ones) -> PersistentSink writes them, drain()
      -> register each document whose every chunk is stored, as ``POST /v1/documents`` does
         (DocumentLibrary.register: chunk token ids, then the record); a document already
         registered with the same chunks is left as it is

A crash anywhere loses at most the batch in flight: chunks are stored before the documents
naming them are registered, and a rerun skips what is stored. A plain class (no Ray): the job
runs it as a Ray actor, tests may run it in-process.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from documents.errors import DocumentError
from documents.library import DocumentLibrary
from deployments.model_files import fingerprint_of, tokenizer_of
from deployments.prompting import ChunkedDocument, PromptBuilder
from warmup.corpus import CorpusDocument
from warmup.sink import PersistentSink
from warmup.summary import WarmupCounts
from engine.config import EngineConfig
from kvstore.builder import open_blobs
from kvstore.config import StoreConfig
from kvstore.errors import TierError
from kvstore.keys import ChunkKey
from kvstore.persistent import BlobTier

logger = logging.getLogger(__name__)


class DocumentCompiler:
    """Compiles batches of documents into the store named by ``store_config``.

    Args:
        engine_config: the engine as the worker runs it (see
            :func:`warmup.job.warmup_engine_config`).
        store_config: the serving app's store; its persistent location receives the chunks and
            the document registry.
        write_threads: chunk writes in flight at once.

    Raises:
        ValueError: the store has no persistent location, or the model cannot be loaded.
    """

    def __init__(self, engine_config: EngineConfig, store_config: StoreConfig, write_threads: int = 4,
                 tenant: str | None = None):
        from engine import Engine

        blobs = open_blobs(store_config)
        if blobs is None:
            raise ValueError("the warm-up needs a persistent store (store.persistent: dir://PATH or s3://BUCKET/PREFIX)")
        fingerprint = fingerprint_of(engine_config)
        self.tier = BlobTier(store_config.location.kind, blobs, fingerprint)
        self.sink = PersistentSink(self.tier, write_threads, max_pending=2 * write_threads)
        self.engine = Engine(engine_config, chunk_source=self.sink)
        builder = PromptBuilder(tokenizer_of(engine_config), fingerprint, engine_config.chunk_tokens)
        self.library = DocumentLibrary.open(builder, blobs, tenant)  # the tenant's registry and scope
        self.builder = self.library.builder

    def process(self, docs: Sequence[CorpusDocument]) -> WarmupCounts:
        """Warm one batch; failures are counted and described, never raised."""
        counts = WarmupCounts()
        chunked: list[tuple[str, ChunkedDocument]] = []
        for doc in docs:
            try:
                chunked.append((doc.doc_id, self.builder.chunk_document(doc.text)))
            except ValueError as e:
                counts.fail(doc.doc_id, f"cannot chunk the text: {e}")
        distinct: dict[ChunkKey, tuple[int, ...]] = {}
        for _, doc in chunked:
            for ids, key in zip(doc.chunk_token_ids, doc.chunk_keys):
                distinct.setdefault(key, ids)
        missing = [key for key in distinct if not self._stored(key)]
        failed = self._compile({key: distinct[key] for key in missing}, counts)
        counts.chunks = len(distinct)
        counts.tokens = sum(len(ids) for ids in distinct.values())
        counts.chunks_skipped = len(distinct) - len(missing)
        counts.chunks_failed = len(failed)
        counts.chunks_compiled = len(missing) - len(failed)
        counts.tokens_compiled = sum(len(distinct[k]) for k in missing if k not in failed)
        for doc_id, doc in chunked:
            reason = next((failed[k] for k in doc.chunk_keys if k in failed), None)
            if reason is None:
                reason = self._register(doc_id, doc, counts)
            if reason is not None:
                counts.fail(doc_id, reason)
        return counts

    def _stored(self, key: ChunkKey) -> bool:
        try:
            return self.tier.contains(key)
        except TierError as e:
            logger.warning("cannot tell whether chunk %s is stored (%s): compiling it", key, e)
            return False

    def _compile(self, chunks: dict[ChunkKey, tuple[int, ...]], counts: WarmupCounts) -> dict[ChunkKey, str]:
        """Compile and store ``chunks``; returns the keys that did not reach the store, with why."""
        if not chunks:
            return {}
        failed: dict[ChunkKey, str] = {}
        try:
            self.engine.compile_chunks(list(chunks.values()), self.builder.scope)
        except ValueError as e:  # the engine refused a chunk (e.g. longer than its context)
            failed = {key: f"compile failed: {e}" for key in chunks}
        report = self.sink.drain()
        counts.bytes_written += sum(report.written.values())
        failed.update(report.failed)
        for key in chunks:
            if key not in report.written:
                failed.setdefault(key, "the chunk was not written to the store")
        return failed

    def _register(self, doc_id: str, doc: ChunkedDocument, counts: WarmupCounts) -> str | None:
        """Register ``doc`` unless it already is, with the same chunks; the reason on failure."""
        try:
            existing = self.library.registry.get(doc_id)
        except (TierError, ValueError):
            existing = None
        if existing is None or list(existing.chunk_keys) != list(doc.chunk_keys):
            try:
                self.library.register(doc_id, doc)
            except DocumentError as e:
                return f"cannot register: {e.message}"
            counts.documents_new += 1
        counts.documents += 1
        return None

    def close(self) -> None:
        self.sink.close()
        self.tier.close()
