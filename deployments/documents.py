"""Documents as the ingress sees them: inline text is chunked, ids are looked up.

A registered document is a :class:`kvstore.registry.DocumentRecord` (its chunk keys and token
counts) plus the chunks' token ids in a :class:`deployments.chunk_ids.ChunkIdStore`, both at the
store's persistent location. Blocking calls (files, S3); the ingress runs them off its loop.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from deployments.chunk_ids import ChunkIdStore
from deployments.errors import APIError, bad_request
from deployments.prompting import ChunkedDocument, PromptBuilder
from deployments.schema import DocumentRef
from kvstore.errors import TierError
from kvstore.registry import DocumentRecord, DocumentRegistry


class DocumentLibrary:
    """Resolves ``{"text"}`` / ``{"id"}`` documents and keeps registrations."""

    def __init__(self, builder: PromptBuilder, registry: DocumentRegistry, chunk_ids: ChunkIdStore):
        self.builder = builder
        self.registry = registry
        self.chunk_ids = chunk_ids

    def resolve(self, refs: Sequence[DocumentRef]) -> list[ChunkedDocument]:
        """Chunk inline documents and load registered ones, in request order.

        Raises:
            APIError: blank text (400), an unknown id (404), a registered document whose chunk
                ids are gone (409), the registry's backend failing (503).
        """
        docs = []
        for i, ref in enumerate(refs):
            if ref.text is not None:
                try:
                    docs.append(self.builder.chunk_document(ref.model_text))
                except ValueError as e:
                    raise bad_request(str(e), f"documents[{i}].text") from None
            else:
                docs.append(self._registered(ref.id, f"documents[{i}].id"))
        return docs

    def _registered(self, doc_id: str, param: str) -> ChunkedDocument:
        record = self.get(doc_id, param)
        try:
            ids = [self.chunk_ids.get(key) for key in record.chunk_keys]
        except TierError as e:
            raise APIError(503, f"the document store is unavailable: {e}", param, "store_unavailable") from None
        if any(i is None for i in ids):
            raise APIError(409, f"document {doc_id!r} is registered but its chunks' token ids are missing "
                                "from the store; register it again", param, "document_incomplete")
        return ChunkedDocument(tuple(ids), tuple(record.chunk_keys), "")

    def get(self, doc_id: str, param: str | None = None) -> DocumentRecord:
        """The record of a registered document.

        Raises:
            APIError: 404 when unknown, 400 for an invalid id, 503 when the backend fails.
        """
        try:
            record = self.registry.get(doc_id)
        except ValueError as e:
            raise bad_request(str(e), param) from None
        except TierError as e:
            raise APIError(503, f"the document store is unavailable: {e}", param, "store_unavailable") from None
        if record is None:
            raise APIError(404, f"no document with id {doc_id!r}", param, "document_not_found")
        return record

    def register(self, doc_id: str, doc: ChunkedDocument) -> DocumentRecord:
        """Store the chunk ids and the record (the chunks' KV is already compiled and stored).

        Raises:
            APIError: 400 for an invalid id, 503 when the backend fails.
        """
        try:
            record = DocumentRecord(doc_id, list(doc.chunk_keys), doc.chunk_token_counts,
                                    self.registry.model_fingerprint)
        except ValueError as e:
            raise bad_request(str(e), "documents.id") from None
        try:
            for ids in doc.chunk_token_ids:
                self.chunk_ids.put(ids)
            self.registry.put(record)
        except TierError as e:
            raise APIError(503, f"the document store is unavailable: {e}", None, "store_unavailable") from None
        return record

    def delete(self, doc_id: str) -> None:
        """Forget a registration (the chunks stay: other documents may share them).

        Raises:
            APIError: 404 when unknown, 503 when the backend fails.
        """
        try:
            deleted = self.registry.delete(doc_id)
        except ValueError as e:
            raise bad_request(str(e)) from None
        except TierError as e:
            raise APIError(503, f"the document store is unavailable: {e}", None, "store_unavailable") from None
        if not deleted:
            raise APIError(404, f"no document with id {doc_id!r}", None, "document_not_found")

    def list_ids(self) -> list[str]:
        try:
            return self.registry.list_ids()
        except TierError as e:
            raise APIError(503, f"the document store is unavailable: {e}", None, "store_unavailable") from None


def document_body(record: DocumentRecord) -> dict[str, Any]:
    """A registered document as the API returns it."""
    return {
        "id": record.doc_id,
        "object": "document",
        "created": int(record.created_at),
        "chunk_keys": list(record.chunk_keys),
        "chunk_token_counts": list(record.chunk_token_counts),
        "num_tokens": record.num_tokens,
    }
