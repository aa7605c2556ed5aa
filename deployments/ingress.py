"""The OpenAI-compatible ingress deployment (FastAPI through ``@serve.ingress``).

Per generation request:

    read the body (size-limited) -> validate (schema) -> resolve documents (documents)
      -> chat template + tokenize + KVSplit + chunk keys (prompting, on one tokenizer thread)
      -> replica.generate(EngineRequest) through a streaming handle (the router reads its
         routing_hint) -> first record: Accepted | Rejected -> JSON or SSE back to the client

Every failure the client can cause is an :class:`~deployments.errors.APIError` with an
OpenAI-style body; the response header ``x-epic-replica`` names the engine replica that served
the request.
"""

# No "from __future__ import annotations": Serve's class-based views re-read the route
# signatures, and string annotations would not resolve in its module (Request -> a 422).
import asyncio
import logging
import time
import uuid
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from ray import serve
from ray.exceptions import RayActorError
from ray.serve.exceptions import BackPressureError, RayServeException
from starlette.exceptions import HTTPException as StarletteHTTPException

from deployments.chunk_ids import ChunkIdStore
from deployments.config import IngressConfig
from deployments.documents import DocumentLibrary, document_body
from deployments.errors import APIError, bad_request, overloaded
from deployments.metrics import MetricSink, Observation, request_observations
from deployments.model_files import fingerprint_of, tokenizer_of
from deployments.prompting import PromptBuilder, PromptLayout
from deployments.protocol import Accepted, CompileRequest, EngineRequest, Failed, Rejected
from deployments.responses import Endpoint, SSE_DONE, chunk_body, final_body, sse, usage_chunk
from deployments.schema import (
    ChatCompletionRequest,
    CompletionRequest,
    RegisterDocumentsRequest,
    parse_body,
)
from engine.config import EngineConfig
from engine.outputs import RequestStats
from kvstore.blobs import MemoryBlobs
from kvstore.builder import open_blobs
from kvstore.config import StoreConfig
from kvstore.registry import DocumentRegistry
from router.hint import RoutingHint

logger = logging.getLogger(__name__)

REPLICA_HEADER = "x-epic-replica"
COMPLETIONS_DEFAULT_MAX_TOKENS = 16  # OpenAI's default for /v1/completions

app = FastAPI(title="epic-serve", docs_url=None, redoc_url=None)


@app.exception_handler(APIError)
async def _api_error(_: Request, exc: APIError) -> JSONResponse:
    return exc.response()


@app.exception_handler(StarletteHTTPException)
async def _http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
    # Unknown paths and methods, in the same error shape as everything else.
    return APIError(exc.status_code, str(exc.detail), code="not_found" if exc.status_code == 404 else None).response()


@app.exception_handler(Exception)
async def _internal_error(_: Request, exc: Exception) -> JSONResponse:
    logger.exception("unhandled error")
    return APIError(500, f"internal error: {type(exc).__name__}").response()


async def read_body(request: Request, max_bytes: int) -> bytes:
    """The request body, refused with 413 beyond ``max_bytes`` (before reading it all)."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > max_bytes:
        raise APIError(413, f"the body is {declared} bytes; the limit is {max_bytes}", code="body_too_large")
    body = bytearray()
    async for part in request.stream():
        body += part
        if len(body) > max_bytes:
            raise APIError(413, f"the body exceeds the limit of {max_bytes} bytes", code="body_too_large")
    return bytes(body)


@serve.ingress(app)
class Ingress:
    """Validates, tokenizes and routes; streams the replicas' tokens back as OpenAI responses."""

    def __init__(self, replica, engine_config: EngineConfig, store_config: StoreConfig, config: IngressConfig):
        fingerprint = fingerprint_of(engine_config)
        self.config = config
        self.builder = PromptBuilder(tokenizer_of(engine_config), fingerprint, engine_config.chunk_tokens)
        blobs = open_blobs(store_config) or MemoryBlobs()
        self.documents = DocumentLibrary(self.builder, DocumentRegistry(blobs, fingerprint),
                                         ChunkIdStore(blobs, fingerprint))
        self.replica = replica
        self.replica_stream = replica.options(stream=True)
        # Tokenization (and the document lookups it needs) on one thread: tokenizers are not
        # safe to share between threads, and the event loop stays free. Registry calls on _io.
        self._tokenizer_thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="epic-tokenize")
        self._io = ThreadPoolExecutor(max_workers=4, thread_name_prefix="epic-documents")
        self._metrics = MetricSink(("epic_requests", "epic_ttft_seconds", "epic_e2e_latency_seconds",
                                    "epic_prompt_tokens", "epic_completion_tokens", "epic_cache_hit_tokens",
                                    "epic_compiled_tokens", "epic_recomputed_tokens"))

    # ---- generation ---------------------------------------------------------------------------

    @app.post("/v1/completions")
    async def completions(self, request: Request) -> Response:
        return await self._generate(request, "completions")

    @app.post("/v1/chat/completions")
    async def chat_completions(self, request: Request) -> Response:
        return await self._generate(request, "chat")

    async def _generate(self, request: Request, endpoint: Endpoint) -> Response:
        arrival = time.perf_counter()
        try:
            response = await self._start(request, endpoint, arrival)
        except APIError as e:
            self._count(endpoint, e.status)
            raise
        return response

    async def _start(self, request: Request, endpoint: Endpoint, arrival: float) -> Response:
        raw = await read_body(request, self.config.max_body_bytes)
        model = ChatCompletionRequest if endpoint == "chat" else CompletionRequest
        body = parse_body(model, raw)
        self._check_model(body.model)
        if body.documents is not None and len(body.documents) > self.config.max_documents:
            raise bad_request(f"{len(body.documents)} documents; at most {self.config.max_documents} per request",
                              "documents")
        layout = await self._off_loop(self._tokenizer_thread, self._layout, endpoint, body)
        default_max = self.config.default_max_tokens if endpoint == "chat" else COMPLETIONS_DEFAULT_MAX_TOKENS
        try:
            sampling = body.sampling(default_max)
        except ValueError as e:
            raise bad_request(str(e)) from None
        policy = body.link_policy.to_policy() if body.link_policy is not None else None
        request_id = f"{'chatcmpl' if endpoint == 'chat' else 'cmpl'}-{uuid.uuid4().hex}"
        stream, accepted = await self._submit(
            EngineRequest(request_id, layout.segments, sampling, policy, layout.routing_hint, layout.text))
        headers = {REPLICA_HEADER: accepted.replica_id}
        created = int(time.time())
        if body.stream:
            events = self._events(endpoint, stream, request_id, created, body.include_usage, arrival)
            return StreamingResponse(events, media_type="text/event-stream", headers=headers)
        return await self._collect(endpoint, stream, request_id, created, arrival, headers)

    def _layout(self, endpoint: Endpoint, body: CompletionRequest | ChatCompletionRequest) -> PromptLayout:
        """Resolve the documents and build the prompt (on the tokenizer thread)."""
        docs = self.builder.ordered(self.documents.resolve(body.documents or []), body.document_order, body.question)
        if endpoint == "chat":
            return self.builder.chat([m.as_template_message() for m in body.messages], docs)
        return self.builder.completion(body.prompt, docs)

    async def _submit(self, request: EngineRequest):
        """Send a request to a replica and wait for its first answer: a refusal or an overload
        becomes the client's error. Returns the stream and the replica's ``Accepted``."""
        stream = self.replica_stream.generate.remote(request)
        try:
            first = await stream.__anext__()
        # No cancel() after these: the call never reached a replica, and cancel() would raise
        # the same error again (it fetches the failed assignment).
        except BackPressureError as e:
            raise overloaded(str(e)) from None
        except (RayActorError, RayServeException) as e:
            raise APIError(503, f"no engine replica could take the request: {type(e).__name__}",
                           code="replica_unavailable") from None
        except asyncio.CancelledError:  # the client left while the request was being routed
            stream.cancel()
            raise
        if isinstance(first, Rejected):
            raise bad_request(first.message, code="invalid_prompt")
        if isinstance(first, Failed):
            raise APIError(500, first.message, code="engine_error")
        assert isinstance(first, Accepted), f"unexpected first record {type(first).__name__}"
        return stream, first

    async def _collect(self, endpoint: Endpoint, stream, request_id: str, created: int, arrival: float,
                       headers: dict[str, str]) -> Response:
        text: list[str] = []
        ttft = None
        try:
            async for delta in stream:
                if isinstance(delta, Failed):
                    raise APIError(500, delta.message, code="engine_error")
                if ttft is None and delta.new_token_ids:
                    ttft = time.perf_counter() - arrival
                text.append(delta.new_text)
                if delta.finished:
                    self._finished(endpoint, delta.stats, ttft, arrival)
                    body = final_body(endpoint, request_id, created, self.config.served_model_name, "".join(text),
                                      delta.finish_reason, delta.stats)
                    return JSONResponse(body, headers=headers)
        finally:
            stream.cancel()  # a no-op once finished; aborts the request if the client left
        raise APIError(500, "the engine stream ended without a final record", code="engine_error")

    async def _events(self, endpoint: Endpoint, stream, request_id: str, created: int, include_usage: bool,
                      arrival: float) -> AsyncIterator[bytes]:
        """SSE events; closing this generator (client gone) cancels the replica call, which
        aborts the engine request and frees its KV blocks."""
        model = self.config.served_model_name
        ttft = None
        try:
            if endpoint == "chat":
                yield sse(chunk_body(endpoint, request_id, created, model, None, None, include_usage, role=True))
            async for delta in stream:
                if isinstance(delta, Failed):
                    yield sse(APIError(500, delta.message, code="engine_error").body())
                    self._count(endpoint, 500)
                    break
                if ttft is None and delta.new_token_ids:
                    ttft = time.perf_counter() - arrival
                if delta.new_text or delta.finished:
                    yield sse(chunk_body(endpoint, request_id, created, model, delta.new_text, delta.finish_reason,
                                         include_usage))
                if delta.finished:
                    if include_usage:
                        yield sse(usage_chunk(endpoint, request_id, created, model, delta.stats))
                    self._finished(endpoint, delta.stats, ttft, arrival)
            yield SSE_DONE
        finally:
            stream.cancel()

    # ---- documents ----------------------------------------------------------------------------

    @app.post("/v1/documents")
    async def register_documents(self, request: Request) -> dict[str, Any]:
        body = parse_body(RegisterDocumentsRequest, await read_body(request, self.config.max_body_bytes))
        if len(body.documents) > self.config.max_documents:
            raise bad_request(f"{len(body.documents)} documents; at most {self.config.max_documents} per request",
                              "documents")
        ids = [d.id for d in body.documents]
        duplicate = next((i for i in ids if ids.count(i) > 1), None)
        if duplicate is not None:
            raise bad_request(f"document id {duplicate!r} appears twice", "documents")
        docs = []
        for i, d in enumerate(body.documents):
            docs.append(await self._off_loop(self._tokenizer_thread, self.builder.chunk_document, d.text,
                                             param=f"documents[{i}].text"))
        # Every distinct chunk once: token ids -> key, in document order.
        chunks = {t: k for doc in docs for t, k in zip(doc.chunk_token_ids, doc.chunk_keys)}
        hint = RoutingHint(chunk_keys=tuple(chunks.values()), chunk_tokens=tuple(len(t) for t in chunks),
                           total_tokens=sum(len(t) for t in chunks))
        try:
            result = await self.replica.compile.remote(
                CompileRequest(tuple(chunks), hint, "".join(d.text for d in docs)))
        except BackPressureError as e:
            raise overloaded(str(e)) from None
        except ValueError as e:  # the engine refused a chunk (e.g. chunk_tokens over the context)
            raise bad_request(str(e), "documents") from None
        if list(result.chunk_keys) != list(chunks.values()):
            raise APIError(500, "the engine replica computed other chunk keys: it serves another model",
                           code="model_mismatch")
        records = [await self._off_loop(self._io, self.documents.register, i, d) for i, d in zip(ids, docs)]
        return {"object": "list", "data": [document_body(r) for r in records], "replica": result.replica_id,
                "persisted": result.persisted}

    @app.get("/v1/documents")
    async def list_documents(self) -> dict[str, Any]:
        ids = await self._off_loop(self._io, self.documents.list_ids)
        return {"object": "list", "data": [{"id": i, "object": "document"} for i in ids]}

    @app.get("/v1/documents/{doc_id:path}")
    async def get_document(self, doc_id: str) -> dict[str, Any]:
        return document_body(await self._off_loop(self._io, self.documents.get, doc_id))

    @app.delete("/v1/documents/{doc_id:path}")
    async def delete_document(self, doc_id: str) -> dict[str, Any]:
        await self._off_loop(self._io, self.documents.delete, doc_id)
        return {"id": doc_id, "object": "document", "deleted": True}

    # ---- service ------------------------------------------------------------------------------

    @app.get("/v1/models")
    async def models(self) -> dict[str, Any]:
        return {"object": "list", "data": [{"id": self.config.served_model_name, "object": "model", "created": 0,
                                            "owned_by": "epic-serve"}]}

    @app.get("/health")
    async def health(self) -> dict[str, str]:
        return {"status": "ok"}

    # ---- helpers ------------------------------------------------------------------------------

    def _check_model(self, model: str) -> None:
        if model != self.config.served_model_name:
            raise APIError(404, f"the model {model!r} does not exist; available: {self.config.served_model_name}",
                           "model", "model_not_found")

    @staticmethod
    async def _off_loop(executor: ThreadPoolExecutor, fn, *args, param: str | None = None):
        """Run blocking work off the event loop; a ValueError from it is the client's 400."""
        try:
            return await asyncio.get_running_loop().run_in_executor(executor, fn, *args)
        except ValueError as e:
            raise bad_request(str(e), param) from None

    def _finished(self, endpoint: Endpoint, stats: RequestStats, ttft: float | None, arrival: float) -> None:
        self._count(endpoint, 200)
        self._metrics.record(request_observations(endpoint, stats, ttft, time.perf_counter() - arrival))

    def _count(self, endpoint: Endpoint, status: int) -> None:
        self._metrics.record([Observation("epic_requests", 1, {"endpoint": endpoint, "status": str(status)})])

