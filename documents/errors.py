"""What can go wrong with registered documents, in the documents' own terms.

The HTTP layer maps each to a status code in one place (``deployments.http.errors``); the
warm-up job reports them in its problem log.

    InvalidDocument      the text or id is unusable (blank text, an id too long)
    DocumentNotFound     no registration under that id
    DocumentIncomplete   registered, but the chunks' token ids are gone from the store
    StoreUnavailable     the registry's or the ids' backend failed (files, S3)
"""

from __future__ import annotations


class DocumentError(Exception):
    """Base class.

    Attributes:
        message: what is wrong, naming the document.
        field: the request field it concerns (``documents[2].id``), when there is one.
    """

    def __init__(self, message: str, field: str | None = None):
        super().__init__(message)
        self.message = message
        self.field = field


class InvalidDocument(DocumentError):
    pass


class DocumentNotFound(DocumentError):
    pass


class DocumentIncomplete(DocumentError):
    pass


class StoreUnavailable(DocumentError):
    pass
