"""API errors in OpenAI's shape: ``{"error": {"message", "type", "param", "code"}}``, and the
one place where the documents' domain errors become status codes."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from fastapi.responses import JSONResponse

from documents.errors import DocumentError, DocumentIncomplete, DocumentNotFound, InvalidDocument, StoreUnavailable

_TYPES = {
    400: "invalid_request_error",
    401: "invalid_request_error",
    404: "invalid_request_error",
    405: "invalid_request_error",
    408: "invalid_request_error",
    409: "invalid_request_error",
    413: "invalid_request_error",
    415: "invalid_request_error",
    431: "invalid_request_error",
    500: "server_error",
    502: "server_error",
    503: "server_overloaded",
    504: "timeout",
}

RETRY_AFTER_S = 1


def error_type(status: int) -> str:
    """OpenAI's error ``type`` for an HTTP status."""
    return _TYPES.get(status, "invalid_request_error")


@dataclass
class APIError(Exception):
    """An error the client receives as an OpenAI-style body.

    Attributes:
        status: HTTP status.
        message: what is wrong, naming the problem.
        param: the request field at fault, when one is.
        code: a short machine-readable code (e.g. ``model_not_found``).
    """

    status: int
    message: str
    param: str | None = None
    code: str | None = None

    def __post_init__(self) -> None:
        super().__init__(self.message)

    def body(self) -> dict[str, Any]:
        return {"error": {"message": self.message, "type": error_type(self.status),
                          "param": self.param, "code": self.code}}

    def response(self) -> JSONResponse:
        headers = {"Retry-After": str(RETRY_AFTER_S)} if self.status == 503 else None
        return JSONResponse(self.body(), status_code=self.status, headers=headers)


def bad_request(message: str, param: str | None = None, code: str | None = None) -> APIError:
    return APIError(400, message, param, code)


def context_length_exceeded(max_model_len: int, prompt_tokens: int, max_tokens: int, param: str) -> APIError:
    """Prompt + max_tokens over the context, in OpenAI's words."""
    where = "messages" if param == "messages" else "prompt"
    return bad_request(
        f"This model's maximum context length is {max_model_len} tokens. However, you requested "
        f"{prompt_tokens + max_tokens} tokens ({prompt_tokens} in the {where}, {max_tokens} in the completion). "
        f"Please reduce the length of the {where} or completion.", param, "context_length_exceeded")


def invalid_api_key() -> APIError:
    return APIError(401, "Incorrect API key provided. Send it as 'Authorization: Bearer <key>'.", None,
                    "invalid_api_key")


def overloaded(detail: str) -> APIError:
    return APIError(503, f"the server is over capacity ({detail}); retry after {RETRY_AFTER_S} s", code="overloaded")


def request_timeout(timeout_s: float) -> APIError:
    return APIError(504, f"the request exceeded its deadline of {timeout_s:g} s and was aborted", code="timeout")


def replica_failed(error: BaseException) -> APIError:
    """The engine replica serving a request died or failed under it (the request is lost)."""
    return APIError(502, f"the engine replica serving this request failed: {type(error).__name__}",
                    code="replica_failed")


# documents.errors -> (status, code)
_DOCUMENT_STATUS = {
    InvalidDocument: (400, None),
    DocumentNotFound: (404, "document_not_found"),
    DocumentIncomplete: (409, "document_incomplete"),
    StoreUnavailable: (503, "store_unavailable"),
}


def as_api_error(error: APIError | DocumentError) -> APIError:
    """``error`` as the client receives it (an APIError is returned as it is)."""
    if isinstance(error, APIError):
        return error
    status, code = _DOCUMENT_STATUS[type(error)]
    return APIError(status, error.message, error.field, code)
