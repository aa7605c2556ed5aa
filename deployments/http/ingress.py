"""The OpenAI-compatible ingress deployment (FastAPI through ``@serve.ingress``).

Per generation request:

    API key -> read the body (size-limited) -> validate (schema; unknown fields logged)
      -> resolve documents (documents) -> chat template + tokenize + KVSplit + chunk keys
         (prompting, on one tokenizer thread), one layout per prompt of a batch
      -> max_tokens against the context -> replica.generate(EngineRequest) per prompt through
         a streaming handle (the router reads its routing_hint) -> first record: Accepted |
         Rejected -> JSON or SSE back to the client (generation)

Every failure the client can cause is an :class:`~deployments.http.errors.APIError` with an
OpenAI-style body; the response header ``x-epic-replica`` names the engine replica that served
the request.
"""

# No "from __future__ import annotations": Serve's class-based views re-read the route
# signatures, and string annotations would not resolve in its module (Request -> a 422).
import asyncio
import hmac
import importlib.metadata
import logging
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from fastapi import Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse
from ray import serve
from ray.exceptions import RayActorError, RayTaskError
from ray.serve.exceptions import BackPressureError, RayServeException

from deployments.http.api_metrics import CONTENT_TYPE, APIMetrics
from deployments.config import IngressConfig
from deployments.http.fastapi_app import app, read_body
from documents.errors import DocumentError
from documents.library import DocumentLibrary
from deployments.http.errors import APIError, as_api_error, bad_request, invalid_api_key, overloaded, request_timeout
from deployments.http.generation import Generation, Submitted
from deployments.model_files import fingerprint_of, tokenizer_of
from deployments.prompting import PromptBuilder, PromptLayout
from deployments.protocol import Accepted, CompileRequest, EngineRequest, Failed, ModelInfo, Rejected
from deployments.http.responses import Endpoint, document_body
from deployments.http.bodies import parse_body
from deployments.http.schema import ChatCompletionRequest, CompletionRequest
from deployments.http.service_schema import DetokenizeRequest, RegisterDocumentsRequest, TokenizeRequest
from deployments.http.token_budget import resolve_max_tokens
from engine.async_engine import EngineError
from engine.config import EngineConfig
from engine.segments import prompt_token_ids
from kvstore.blobs import MemoryBlobs
from kvstore.builder import open_blobs
from kvstore.config import StoreConfig
from kvstore.keys import cache_scope
from router.hint import RoutingHint

logger = logging.getLogger(__name__)

REPLICA_HEADER = "x-epic-replica"
HEALTH_TIMEOUT_S = 10.0

@serve.ingress(app)
class Ingress:
    """Validates, tokenizes and routes; streams the replicas' tokens back as OpenAI responses."""

    def __init__(self, replica, engine_config: EngineConfig, store_config: StoreConfig, config: IngressConfig):
        fingerprint = fingerprint_of(engine_config)
        self.config = config
        self.builder = PromptBuilder(tokenizer_of(engine_config), fingerprint, engine_config.chunk_tokens)
        self._blobs = open_blobs(store_config) or MemoryBlobs()  # documents of every tenant
        self._libraries: dict[str | None, DocumentLibrary] = {}
        self._keys = {**({config.api_key: None} if config.api_key is not None else {}), **config.api_keys}
        self.replica = replica
        self.replica_stream = replica.options(stream=True)
        # Tokenization (and the document lookups it needs) on one thread: tokenizers are not
        # safe to share between threads, and the event loop stays free. Registry calls on _io.
        self._tokenizer_thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="epic-tokenize")
        self._io = ThreadPoolExecutor(max_workers=4, thread_name_prefix="epic-documents")
        self.metrics = APIMetrics(config.served_model_name)
        self._model_info: ModelInfo | None = None

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
            return await self._start(request, endpoint, arrival)
        except (APIError, DocumentError) as e:
            error = as_api_error(e)
            self.metrics.request_done(endpoint, error.status)
            raise error from None

    async def _start(self, request: Request, endpoint: Endpoint, arrival: float) -> Response:
        tenant = self._authorize(request)
        model = ChatCompletionRequest if endpoint == "chat" else CompletionRequest
        body = self._parse(model, await self._read(request))
        if body.model is not None:
            self._check_model(body.model)
        if body.documents is not None and len(body.documents) > self.config.max_documents:
            raise bad_request(f"{len(body.documents)} documents; at most {self.config.max_documents} per request",
                              "documents")
        scope = cache_scope(tenant, body.cache_salt)
        layouts = await self._off_loop(self._tokenizer_thread, self._layouts, endpoint, body, tenant, scope)
        info = await self.model_info()
        samplings = []
        for layout, _ in layouts:
            max_tokens = resolve_max_tokens(endpoint, body.requested_max_tokens, layout.routing_hint.total_tokens, info,
                                            self.config.default_max_tokens)
            try:
                samplings.append(body.sampling(max_tokens))
            except ValueError as e:
                raise bad_request(str(e)) from None
        policy = body.link_policy.to_policy() if body.link_policy is not None else None
        request_id = f"{'chatcmpl' if endpoint == 'chat' else 'cmpl'}-{uuid.uuid4().hex}"
        submitted: list[Submitted] = []
        try:
            for i, ((layout, echo), sampling) in enumerate(zip(layouts, samplings)):
                rid = request_id if len(layouts) == 1 else f"{request_id}-{i}"
                stream, accepted = await self._submit(EngineRequest(
                    rid, layout.segments, sampling, policy, layout.routing_hint, layout.text, scope),
                    arrival + self.config.request_timeout_s)
                self.metrics.kv_usage(accepted.replica_id, accepted.kv_usage)
                submitted.append(Submitted(stream, accepted, layout.routing_hint.total_tokens, echo,
                                           tuple(prompt_token_ids(layout.segments))))
        except BaseException:
            for s in submitted:
                s.stream.cancel()
            raise
        headers = {REPLICA_HEADER: ",".join(dict.fromkeys(s.accepted.replica_id for s in submitted))}
        generation = Generation(endpoint, request_id, self.config.served_model_name, submitted, body.num_choices,
                                body.num_sequences, body.num_logprobs, self._decode_each, self.metrics, arrival,
                                self.config.request_timeout_s,
                                echo_logprobs=endpoint == "completions" and body.echo_logprobs,
                                prompt_logprobs_field=body.num_prompt_logprobs is not None,
                                role=body.reply_role if endpoint == "chat" else "assistant")
        if body.stream:
            return StreamingResponse(generation.events(body.include_usage, body.continuous_usage),
                                     media_type="text/event-stream", headers=headers)
        return JSONResponse(await generation.whole(), headers=headers)

    def _layouts(self, endpoint: Endpoint, body, tenant: str | None,
                 scope: str | None) -> list[tuple[PromptLayout, str]]:
        """Resolve the documents (the tenant's registered ones; in the ``document_order`` asked
        for) and build each prompt, keyed under the request's cache scope, with its echo text
        (on the tokenizer thread)."""
        builder = self.builder.scoped(scope)
        docs = builder.ordered(self._library(tenant).resolve(body.documents or [], builder), body.document_order,
                               body.question)
        if endpoint == "chat":
            return [(builder.chat([m.as_template_message() for m in body.messages], docs,
                                  body.chat_template_kwargs, **body.template_options), body.echo_text)]
        out = []
        for prompt in body.prompts:
            echo = "" if not body.echo else prompt if isinstance(prompt, str) else builder.tokenizer.decode(prompt)
            out.append((builder.completion(prompt, docs), echo))
        return out

    def _library(self, tenant: str | None) -> DocumentLibrary:
        """The tenant's registered documents (no tenant: the shared ones)."""
        if tenant not in self._libraries:
            self._libraries[tenant] = DocumentLibrary.open(self.builder, self._blobs, tenant)
        return self._libraries[tenant]

    async def _submit(self, request: EngineRequest, deadline: float):
        """Send a request to a replica and wait for its first answer until ``deadline``
        (``time.perf_counter`` seconds): a refusal, an overload or the deadline becomes the
        client's error. Returns the stream and the replica's ``Accepted``."""
        stream = self.replica_stream.generate.remote(request)
        try:
            first = await asyncio.wait_for(stream.__anext__(), max(0.0, deadline - time.perf_counter()))
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
        except asyncio.TimeoutError:  # routed or queued past the deadline
            stream.cancel()
            raise request_timeout(self.config.request_timeout_s) from None
        if isinstance(first, Rejected):
            raise bad_request(first.message, code="invalid_prompt")
        if isinstance(first, Failed):
            raise APIError(500, first.message, code="engine_error")
        assert isinstance(first, Accepted), f"unexpected first record {type(first).__name__}"
        return stream, first

    async def _decode_each(self, token_ids: list[int]) -> list[str]:
        """Each token's own text (logprobs name tokens by it)."""
        tokenizer = self.builder.tokenizer
        return await self._off_loop(self._tokenizer_thread,
                                    lambda: [tokenizer.decode([t], skip_special_tokens=False) for t in token_ids])

    # ---- tokenizer ----------------------------------------------------------------------------

    @app.post("/tokenize")
    async def tokenize(self, request: Request) -> dict[str, Any]:
        self._check_headers(request)
        body = self._parse(TokenizeRequest, await self._read(request))
        if body.model is not None:
            self._check_model(body.model)

        def run() -> list[int]:
            if body.messages is not None:
                return prompt_token_ids(self.builder.chat([m.as_template_message() for m in body.messages],
                                                          []).segments)
            if body.add_special_tokens:
                return prompt_token_ids(self.builder.completion(body.prompt, []).segments)
            return self.builder.encode(body.prompt)

        tokens = await self._off_loop(self._tokenizer_thread, run)
        info = await self.model_info()
        return {"count": len(tokens), "max_model_len": info.max_model_len, "tokens": tokens, "token_strs": None}

    @app.post("/detokenize")
    async def detokenize(self, request: Request) -> dict[str, Any]:
        self._check_headers(request)
        body = self._parse(DetokenizeRequest, await self._read(request))
        if body.model is not None:
            self._check_model(body.model)
        info = await self.model_info()
        bad = [t for t in body.tokens if not 0 <= t < info.vocab_size]
        if bad:
            raise bad_request(f"token id {bad[0]} is outside the vocabulary [0, {info.vocab_size})", "tokens")
        text = await self._off_loop(self._tokenizer_thread, self.builder.tokenizer.decode, body.tokens)
        return {"prompt": text}

    # ---- documents ----------------------------------------------------------------------------

    @app.post("/v1/documents")
    async def register_documents(self, request: Request) -> dict[str, Any]:
        library = self._library(self._authorize(request))
        body = self._parse(RegisterDocumentsRequest, await self._read(request))
        if len(body.documents) > self.config.max_documents:
            raise bad_request(f"{len(body.documents)} documents; at most {self.config.max_documents} per request",
                              "documents")
        ids = [d.id for d in body.documents]
        duplicate = next((i for i in ids if ids.count(i) > 1), None)
        if duplicate is not None:
            raise bad_request(f"document id {duplicate!r} appears twice", "documents")
        docs = []
        for i, d in enumerate(body.documents):
            docs.append(await self._off_loop(self._tokenizer_thread, library.builder.chunk_document, d.text,
                                             param=f"documents[{i}].text"))
        # Every distinct chunk once: token ids -> key, in document order.
        chunks = {t: k for doc in docs for t, k in zip(doc.chunk_token_ids, doc.chunk_keys)}
        hint = RoutingHint(chunk_keys=tuple(chunks.values()), chunk_tokens=tuple(len(t) for t in chunks),
                           total_tokens=sum(len(t) for t in chunks))
        try:
            result = await self.replica.compile.remote(
                CompileRequest(tuple(chunks), hint, "".join(d.text for d in docs), library.builder.scope))
        except BackPressureError as e:
            raise overloaded(str(e)) from None
        except ValueError as e:  # the engine refused a chunk (e.g. chunk_tokens over the context)
            raise bad_request(str(e), "documents") from None
        records = [await self._off_loop(self._io, library.register, i, d) for i, d in zip(ids, docs)]
        return {"object": "list", "data": [document_body(r) for r in records], "replica": result.replica_id,
                "persisted": result.persisted}

    @app.get("/v1/documents")
    async def list_documents(self, request: Request) -> dict[str, Any]:
        library = self._library(self._authorize(request))
        ids = await self._off_loop(self._io, library.list_ids)
        return {"object": "list", "data": [{"id": i, "object": "document"} for i in ids]}

    @app.get("/v1/documents/{doc_id:path}")
    async def get_document(self, doc_id: str, request: Request) -> dict[str, Any]:
        library = self._library(self._authorize(request))
        return document_body(await self._off_loop(self._io, library.get, doc_id))

    @app.delete("/v1/documents/{doc_id:path}")
    async def delete_document(self, doc_id: str, request: Request) -> dict[str, Any]:
        library = self._library(self._authorize(request))
        await self._off_loop(self._io, library.delete, doc_id)
        return {"id": doc_id, "object": "document", "deleted": True}

    # ---- service ------------------------------------------------------------------------------

    @app.get("/v1/models")
    async def models(self, request: Request) -> dict[str, Any]:
        self._authorize(request)
        return {"object": "list", "data": [await self._model_card()]}

    @app.get("/v1/models/{model_id:path}")
    async def model(self, model_id: str, request: Request) -> dict[str, Any]:
        self._authorize(request)
        self._check_model(model_id, param=None)
        return await self._model_card()

    @app.get("/version")
    async def version(self) -> dict[str, str]:
        return {"version": importlib.metadata.version("epic-serve")}

    @app.get("/metrics")
    async def prometheus(self) -> Response:
        return PlainTextResponse(self.metrics.exposition(), media_type=CONTENT_TYPE)

    @app.get("/health")
    async def health(self) -> Response:
        """200 when an engine replica answers its health check in time, else 503."""
        try:
            await asyncio.wait_for(self.replica.check_health.remote(), HEALTH_TIMEOUT_S)
        except BackPressureError:  # every replica's queue is full: they are alive and working
            return JSONResponse({"status": "ok"})
        except (asyncio.TimeoutError, RayActorError, RayTaskError, RayServeException, EngineError) as e:
            return APIError(503, f"the engine is unhealthy: {e or type(e).__name__}", code="engine_unhealthy").response()
        return JSONResponse({"status": "ok"})

    # ---- helpers ------------------------------------------------------------------------------

    async def model_info(self) -> ModelInfo:
        """The served model's context length and vocabulary, asked of a replica once."""
        if self._model_info is None:
            self._model_info = await self.replica.model_info.remote()
        return self._model_info

    async def _model_card(self) -> dict[str, Any]:
        info = await self.model_info()
        name = self.config.served_model_name
        return {"id": name, "object": "model", "created": 0, "owned_by": "epic-serve", "root": name,
                "parent": None, "max_model_len": info.max_model_len}

    def _check_headers(self, request: Request) -> None:
        """Raises APIError 431 for headers over ``max_header_bytes``."""
        header_bytes = sum(len(k) + len(v) + 4 for k, v in request.headers.raw)
        if header_bytes > self.config.max_header_bytes:
            raise APIError(431, f"the request headers are {header_bytes} bytes; the limit is "
                                f"{self.config.max_header_bytes}", code="request_header_fields_too_large")

    def _authorize(self, request: Request) -> str | None:
        """The request's tenant (None: none), from its API key when keys are configured.

        Raises:
            APIError: 431 for headers over ``max_header_bytes``; 401 when keys are configured
                and the request sends none of them.
        """
        self._check_headers(request)
        if not self._keys:
            return None
        sent = request.headers.get("authorization", "").encode("latin-1")  # the raw header bytes
        matches = [tenant for key, tenant in self._keys.items() if hmac.compare_digest(sent, f"Bearer {key}".encode())]
        if not matches:
            raise invalid_api_key()
        return matches[0]

    async def _read(self, request: Request) -> bytes:
        return await read_body(request, self.config.max_body_bytes, self.config.body_timeout_s)

    def _parse(self, model, raw: bytes):
        body, unknown = parse_body(model, raw, self.config.strict)
        if unknown:
            logger.warning("ignoring unsupported request fields: %s", ", ".join(unknown))
        return body

    def _check_model(self, model: str, param: str | None = "model") -> None:
        if model != self.config.served_model_name:
            raise APIError(404, f"the model {model!r} does not exist; available: {self.config.served_model_name}",
                           param, "model_not_found")

    @staticmethod
    async def _off_loop(executor: ThreadPoolExecutor, fn, *args, param: str | None = None):
        """Run blocking work off the event loop; a ValueError from it is the client's 400."""
        try:
            return await asyncio.get_running_loop().run_in_executor(executor, fn, *args)
        except ValueError as e:
            raise bad_request(str(e), param) from None
