"""The FastAPI app the ingress serves: every error in OpenAI's shape, and the request body read
within its size limit."""

import asyncio
import logging

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from deployments.http.errors import APIError, as_api_error
from documents.errors import DocumentError

logger = logging.getLogger(__name__)

app = FastAPI(title="epic-serve", docs_url=None, redoc_url=None)


@app.exception_handler(APIError)
async def _api_error(_: Request, exc: APIError) -> JSONResponse:
    return exc.response()


@app.exception_handler(DocumentError)
async def _document_error(_: Request, exc: DocumentError) -> JSONResponse:
    return as_api_error(exc).response()


@app.exception_handler(StarletteHTTPException)
async def _http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
    # Unknown paths and methods, in the same error shape as everything else.
    return APIError(exc.status_code, str(exc.detail), code="not_found" if exc.status_code == 404 else None).response()


@app.exception_handler(Exception)
async def _internal_error(_: Request, exc: Exception) -> JSONResponse:
    logger.exception("unhandled error")
    return APIError(500, f"internal error: {type(exc).__name__}").response()


async def read_body(request: Request, max_bytes: int, timeout_s: float) -> bytes:
    """The request body, refused with 413 beyond ``max_bytes`` (before reading it all) and with
    408 when it takes longer than ``timeout_s`` to arrive (a client trickling its body)."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > max_bytes:
        raise APIError(413, f"the body is {declared} bytes; the limit is {max_bytes}", code="body_too_large")
    body = bytearray()
    try:
        async with asyncio.timeout(timeout_s):
            async for part in request.stream():
                body += part
                if len(body) > max_bytes:
                    raise APIError(413, f"the body exceeds the limit of {max_bytes} bytes", code="body_too_large")
    except TimeoutError:
        raise APIError(408, f"the body did not arrive within {timeout_s:g} s", code="request_timeout") from None
    return bytes(body)
