"""Documents as the ingress sees them: inline text is chunked, ids are looked up.

A registered document is a :class:`documents.registry.DocumentRecord` (its chunk keys and token
counts) plus the chunks' token ids in a :class:`documents.chunk_ids.ChunkIdStore`, both at the
store's persistent location. Blocking calls (files, S3); the ingress runs them off its loop.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from deployments.prompting import ChunkedDocument, PromptBuilder
from documents.chunk_ids import ChunkIdStore
from documents.errors import DocumentIncomplete, DocumentNotFound, InvalidDocument, StoreUnavailable
from documents.registry import DocumentRecord, DocumentRegistry
from kvstore.blobs import BlobStore, MemoryBlobs
from kvstore.builder import open_blobs
from kvstore.config import StoreConfig
from kvstore.errors import TierError
from kvstore.keys import cache_scope


class DocumentRef(Protocol):
    """One document of a request: inline (``model_text`` set, what the model reads) or
    registered (``id`` set)."""

    @property
    def model_text(self) -> str | None: ...

    @property
    def id(self) -> str | None: ...


def _unavailable(e: TierError, field: str | None = None) -> StoreUnavailable:
    return StoreUnavailable(f"the document store is unavailable: {e}", field)


class DocumentLibrary:
    """Resolves ``{"text"}`` / ``{"id"}`` documents and keeps registrations."""

    def __init__(self, builder: PromptBuilder, registry: DocumentRegistry, chunk_ids: ChunkIdStore):
        self.builder = builder
        self.registry = registry
        self.chunk_ids = chunk_ids

    @classmethod
    def open(cls, builder: PromptBuilder, store: StoreConfig | BlobStore, tenant: str | None = None) -> DocumentLibrary:
        """``tenant``'s library at ``store``'s persistent location (a config, or its opened
        blob store; in process memory when there is none), for the model whose fingerprint
        ``builder`` puts into chunk keys. Its documents' chunks are keyed under the tenant's
        scope, whatever scope ``builder`` has."""
        blobs = (open_blobs(store) or MemoryBlobs()) if isinstance(store, StoreConfig) else store
        fingerprint = builder.model_fingerprint
        scope = cache_scope(tenant, None)
        return cls(builder.scoped(scope), DocumentRegistry(blobs, fingerprint, tenant),
                   ChunkIdStore(blobs, fingerprint, scope))

    def resolve(self, refs: Sequence[DocumentRef], builder: PromptBuilder | None = None) -> list[ChunkedDocument]:
        """Chunk inline documents and load registered ones, in request order, keyed by
        ``builder`` (a request's scoped builder; default: the library's).

        Raises:
            InvalidDocument: blank text. DocumentNotFound: an unknown id. DocumentIncomplete: a
                registered document whose chunk ids are gone. StoreUnavailable.
        """
        builder = builder or self.builder
        docs = []
        for i, ref in enumerate(refs):
            if ref.model_text is not None:
                try:
                    docs.append(builder.chunk_document(ref.model_text))
                except ValueError as e:
                    raise InvalidDocument(str(e), f"documents[{i}].text") from None
            else:
                doc = self._registered(ref.id, f"documents[{i}].id")
                # Under the request's scope (a cache_salt), the same tokens have other keys.
                docs.append(doc if builder.scope == self.builder.scope else
                            ChunkedDocument(doc.chunk_token_ids, builder.keys_of(doc.chunk_token_ids), doc.text))
        return docs

    def _registered(self, doc_id: str, param: str) -> ChunkedDocument:
        record = self.get(doc_id, param)
        try:
            ids = [self.chunk_ids.get(key) for key in record.chunk_keys]
        except TierError as e:
            raise _unavailable(e, param) from None
        if any(i is None for i in ids):
            raise DocumentIncomplete(f"document {doc_id!r} is registered but its chunks' token ids are missing "
                                     "from the store; register it again", param)
        return ChunkedDocument(tuple(ids), tuple(record.chunk_keys), "")

    def get(self, doc_id: str, param: str | None = None) -> DocumentRecord:
        """The record of a registered document.

        Raises:
            DocumentNotFound, InvalidDocument (an invalid id), StoreUnavailable.
        """
        try:
            record = self.registry.get(doc_id)
        except ValueError as e:
            raise InvalidDocument(str(e), param) from None
        except TierError as e:
            raise _unavailable(e, param) from None
        if record is None:
            raise DocumentNotFound(f"no document with id {doc_id!r}", param)
        return record

    def register(self, doc_id: str, doc: ChunkedDocument) -> DocumentRecord:
        """Store the chunk ids and the record (the chunks' KV is already compiled and stored).

        Raises:
            InvalidDocument (an invalid id), StoreUnavailable.
        """
        try:
            record = DocumentRecord(doc_id, list(doc.chunk_keys), doc.chunk_token_counts,
                                    self.registry.model_fingerprint)
        except ValueError as e:
            raise InvalidDocument(str(e), "documents.id") from None
        try:
            for ids in doc.chunk_token_ids:
                self.chunk_ids.put(ids)
            self.registry.put(record)
        except TierError as e:
            raise _unavailable(e) from None
        return record

    def delete(self, doc_id: str) -> None:
        """Forget a registration (the chunks stay: other documents may share them).

        Raises:
            DocumentNotFound, InvalidDocument (an invalid id), StoreUnavailable.
        """
        try:
            deleted = self.registry.delete(doc_id)
        except ValueError as e:
            raise InvalidDocument(str(e)) from None
        except TierError as e:
            raise _unavailable(e) from None
        if not deleted:
            raise DocumentNotFound(f"no document with id {doc_id!r}")

    def list_ids(self) -> list[str]:
        try:
            return self.registry.list_ids()
        except TierError as e:
            raise _unavailable(e) from None
