"""The document registry: which chunks a registered document is made of, for each model.

Records live next to the chunks, under ``docs/<model scope>/<encoded doc id>.json`` of the
persistent location, so any process that opens the same directory or bucket finds them. The
model scope is a hash of the model fingerprint (records of other models are invisible); doc ids
may hold any characters and are stored base64url-encoded (reversible, safe as file names).
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import time
from dataclasses import asdict, dataclass, field

from kvstore.blobs import BlobStore
from kvstore.keys import ChunkKey, is_chunk_key

logger = logging.getLogger(__name__)

RECORD_VERSION = 1
MAX_DOC_ID_BYTES = 180  # base64url of it plus ".json" stays under the 255-byte file name limit
_SUFFIX = ".json"


@dataclass(frozen=True)
class DocumentRecord:
    """A registered document: its chunks' keys and token counts, in document order."""

    doc_id: str
    chunk_keys: list[ChunkKey]
    chunk_token_counts: list[int]
    model_fingerprint: str
    created_at: float = field(default_factory=time.time)  # Unix seconds

    def __post_init__(self) -> None:
        if not isinstance(self.doc_id, str) or not self.doc_id:
            raise ValueError("doc_id must be a non-empty string")
        if len(self.doc_id.encode()) > MAX_DOC_ID_BYTES:
            raise ValueError(f"doc_id is longer than {MAX_DOC_ID_BYTES} UTF-8 bytes")
        if len(self.chunk_keys) != len(self.chunk_token_counts):
            raise ValueError(f"{len(self.chunk_keys)} chunk keys but {len(self.chunk_token_counts)} token counts")
        bad_key = next((k for k in self.chunk_keys if not (isinstance(k, str) and is_chunk_key(k))), None)
        if bad_key is not None:
            raise ValueError(f"not a chunk key: {bad_key!r}")
        if any(type(n) is not int or n <= 0 for n in self.chunk_token_counts):
            raise ValueError(f"chunk token counts must be positive ints, got {self.chunk_token_counts}")
        if not self.model_fingerprint:
            raise ValueError("model_fingerprint must be a non-empty string")

    @property
    def num_tokens(self) -> int:
        return sum(self.chunk_token_counts)


def _encode_id(doc_id: str) -> str:
    return base64.urlsafe_b64encode(doc_id.encode()).decode().rstrip("=")


def _decode_id(text: str) -> str:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)).decode()


class DocumentRegistry:
    """put / get / delete / list of :class:`DocumentRecord` for one model.

    Backend failures raise :class:`~kvstore.errors.TierError` (the documents API answers 503);
    an unreadable or foreign record reads as absent.
    """

    def __init__(self, blobs: BlobStore, model_fingerprint: str, tenant: str | None = None) -> None:
        if not model_fingerprint:
            raise ValueError("model_fingerprint must be a non-empty string")
        self._blobs = blobs
        self.model_fingerprint = model_fingerprint
        self.tenant = tenant
        # A tenant's records live under a scope of their own: no other tenant can read, list,
        # use or delete them, or tell that they exist.
        named = model_fingerprint if tenant is None else json.dumps([model_fingerprint, tenant])
        scope = hashlib.blake2b(named.encode(), digest_size=8).hexdigest()
        self._prefix = f"docs/{scope}/"

    def _name(self, doc_id: str) -> str:
        if not isinstance(doc_id, str) or not doc_id:
            raise ValueError("doc_id must be a non-empty string")
        return self._prefix + _encode_id(doc_id) + _SUFFIX

    def put(self, record: DocumentRecord) -> None:
        """Store ``record`` (replacing one with the same id)."""
        if record.model_fingerprint != self.model_fingerprint:
            raise ValueError(
                f"record is for model {record.model_fingerprint!r}, registry for {self.model_fingerprint!r}"
            )
        body = json.dumps({"version": RECORD_VERSION, **asdict(record)}, sort_keys=True).encode()
        self._blobs.put(self._name(record.doc_id), [body])

    def get(self, doc_id: str) -> DocumentRecord | None:
        buf = self._blobs.get(self._name(doc_id))
        if buf is None:
            return None
        try:
            fields = json.loads(buf.tobytes())
            if fields.pop("version") != RECORD_VERSION:
                raise ValueError("unknown record version")
            record = DocumentRecord(**fields)
        except (ValueError, TypeError, KeyError, AttributeError) as err:
            logger.warning("document record %r is unreadable: %s", doc_id, err)
            return None
        if record.doc_id != doc_id or record.model_fingerprint != self.model_fingerprint:
            logger.warning("document record %r names another document or model", doc_id)
            return None
        return record

    def delete(self, doc_id: str) -> bool:
        """Remove a record; False if there was none."""
        name = self._name(doc_id)
        if not self._blobs.exists(name):
            return False
        self._blobs.delete(name)
        return True

    def list_ids(self) -> list[str]:
        """Ids of this model's documents, sorted."""
        ids = []
        for name in self._blobs.list(self._prefix):
            text = name[len(self._prefix) :]
            if "/" in text or not text.endswith(_SUFFIX):
                continue
            try:
                ids.append(_decode_id(text[: -len(_SUFFIX)]))
            except ValueError:
                logger.warning("ignoring %r: not an encoded document id", name)
        return sorted(ids)
