"""One generation request after it was accepted: the replicas' deltas of every prompt and
sequence gathered into OpenAI's response, whole or as Server-Sent Events.

    prompts p = 0..P-1, each an engine request of S sequences (S = best_of or n)
      merge(streams) -> (p, StreamDelta(index=s)) -> per-sequence state
      whole:  per prompt the best n by cumulative logprob (all S when best_of is unset),
              choice index p * n + j; usage: each prompt counted once, every sequence's tokens
      stream: one event per delta (best_of > n is refused earlier), then usage, then [DONE]

A replica dying under the request, or the request's deadline passing, ends it with an error:
a 502 / 504 body before the first byte (whole), an SSE error event then [DONE] (stream); either
way the replica calls are cancelled, which aborts the engine requests.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from ray.exceptions import RayActorError, RayTaskError
from ray.serve.exceptions import RayServeException

from deployments.http.api_metrics import APIMetrics
from deployments.http.errors import APIError, replica_failed, request_timeout
from deployments.http.prompt_logprobs import PromptLogprobs, prompt_logprobs
from deployments.protocol import Accepted, Failed, StreamDelta
from deployments.http.responses import (
    SSE_DONE,
    Choice,
    Endpoint,
    TokenLogprob,
    chunk_body,
    final_body,
    logprobs_body,
    running_usage,
    sse,
    usage,
    usage_chunk,
)
from engine.outputs import RequestStats

Decode = Callable[[list[int]], Awaitable[list[str]]]  # token ids -> each token's text


@dataclass(slots=True)
class Submitted:
    """One prompt's engine request, accepted by a replica."""

    stream: Any  # the replica call's streaming response
    accepted: Accepted
    prompt_tokens: int
    echo: str  # the prompt text, when the client asked for echo; else ""
    prompt_ids: tuple[int, ...] = ()  # the prompt's token ids (prompt logprobs name them)


@dataclass(slots=True)
class _Sequence:
    parts: list[str] = field(default_factory=list)
    tokens: list[TokenLogprob] = field(default_factory=list)
    num_tokens: int = 0
    finish_reason: str | None = None
    stats: RequestStats | None = None
    cumulative_logprob: float = 0.0
    stop_reason: str | int | None = None
    echoed: bool = False


async def merge(streams: Sequence[Any]) -> AsyncIterator[tuple[int, Any]]:
    """Items of several async streams as they come, tagged with their stream's position."""
    if len(streams) == 1:
        async for item in streams[0]:
            yield 0, item
        return
    queue: asyncio.Queue = asyncio.Queue()
    end = object()

    async def pump(i: int, stream: Any) -> None:
        try:
            async for item in stream:
                await queue.put((i, item))
        except Exception as e:  # handed to the consumer, which raises it
            await queue.put((i, e))
        await queue.put((i, end))

    tasks = [asyncio.create_task(pump(i, s)) for i, s in enumerate(streams)]
    try:
        remaining = len(streams)
        while remaining:
            i, item = await queue.get()
            if item is end:
                remaining -= 1
            elif isinstance(item, Exception):
                raise item
            else:
                yield i, item
    finally:
        for t in tasks:
            t.cancel()


async def until_deadline(items: AsyncGenerator[Any, None], deadline: float, timeout_s: float) -> AsyncIterator[Any]:
    """Items of ``items`` until ``deadline`` (``time.perf_counter`` seconds); a replica's death is
    the client's 502 and the deadline its 504 (:class:`APIError`)."""
    try:
        while True:
            try:
                item = await asyncio.wait_for(anext(items), max(0.0, deadline - time.perf_counter()))
            except StopAsyncIteration:
                return
            except asyncio.TimeoutError:
                raise request_timeout(timeout_s) from None
            except (RayActorError, RayTaskError, RayServeException) as e:
                raise replica_failed(e) from None
            yield item
    finally:
        await items.aclose()


class Generation:
    """Turns the accepted engine requests of one API request into its response."""

    def __init__(self, endpoint: Endpoint, request_id: str, model: str, submitted: list[Submitted],
                 num_choices: int, num_sequences: int, num_logprobs: int | None, decode: Decode,
                 metrics: APIMetrics, arrival: float, timeout_s: float, echo_logprobs: bool = False,
                 prompt_logprobs_field: bool = False, role: str = "assistant"):
        """``arrival`` + ``timeout_s``: the deadline (``time.perf_counter`` seconds);
        ``echo_logprobs``: the echoed prompt's tokens lead the logprobs (completions);
        ``prompt_logprobs_field``: vLLM's ``prompt_logprobs`` field is returned; ``role``: the
        chat reply's role."""
        self.endpoint = endpoint
        self.request_id = request_id
        self.model = model
        self.created = int(time.time())
        self.submitted = submitted
        self.num_choices = num_choices
        self.num_sequences = num_sequences
        self.num_logprobs = num_logprobs
        self.decode = decode
        self.metrics = metrics
        self.arrival = arrival
        self.timeout_s = timeout_s
        self.echo_logprobs = echo_logprobs
        self.prompt_logprobs_field = prompt_logprobs_field
        self.role = role
        self.prompts: dict[int, PromptLogprobs] = {}  # per prompt, once its logprobs arrived
        self.seqs = {(p, s): _Sequence() for p in range(len(submitted)) for s in range(num_sequences)}
        self._started = [False] * len(submitted)  # a prompt's first token arrived
        self._open = [num_sequences] * len(submitted)  # sequences not finished, per prompt

    # ---- the two shapes -----------------------------------------------------------------------

    async def whole(self) -> dict[str, Any]:
        self._begin()
        try:
            async for p, delta in self._deltas():
                await self._take(p, delta)
        finally:
            self._close()
        choices = []
        for p, sub in enumerate(self.submitted):
            seqs = [self.seqs[p, s] for s in range(self.num_sequences)]
            if self.num_sequences > self.num_choices:  # best_of: the most likely n, best first
                seqs = sorted(seqs, key=lambda q: -q.cumulative_logprob)[: self.num_choices]
            for j, q in enumerate(seqs):
                text = sub.echo + "".join(q.parts)
                prompt = self.prompts.get(p)
                lp = logprobs_body(self.endpoint, q.tokens if self.num_logprobs is not None else None,
                                   len(sub.echo), prompt.tokens if prompt is not None and self.echo_logprobs else ())
                by_id = prompt.by_id if prompt is not None and self.prompt_logprobs_field else None
                choices.append(Choice(p * self.num_choices + j, text, q.finish_reason, lp, q.stop_reason, by_id))
        body = final_body(self.endpoint, self.request_id, self.created, self.model, choices, self._usage(),
                          self.role)
        self._finished()
        return body

    async def events(self, include_usage: bool, continuous_usage: bool) -> AsyncIterator[bytes]:
        """SSE events; closing this generator (client gone) cancels the replica calls, which
        aborts the engine requests and frees their KV blocks."""
        prompt_tokens = sum(s.prompt_tokens for s in self.submitted)
        self._begin()
        try:
            if self.endpoint == "chat":
                for i in range(len(self.submitted) * self.num_choices):
                    yield sse(chunk_body(self.endpoint, self.request_id, self.created, self.model,
                                         Choice(i, "", None), include_usage,
                                         running_usage(prompt_tokens, 0) if continuous_usage else None, role=self.role))
            try:
                async for p, delta in self._deltas():
                    q = await self._take(p, delta)
                    text, echoed_prompt = delta.new_text, ()
                    if not q.echoed and self.submitted[p].echo:
                        text, q.echoed = self.submitted[p].echo + text, True
                        if self.echo_logprobs and p in self.prompts:
                            echoed_prompt = self.prompts[p].tokens
                    lp = None
                    if self.num_logprobs is not None and delta.new_token_ids:
                        n = len(delta.new_token_ids)
                        offset = len(self.submitted[p].echo) + sum(len(t.token) for t in q.tokens[:-n])
                        lp = logprobs_body(self.endpoint, q.tokens[-n:], offset, echoed_prompt)
                    if text or delta.finished or lp is not None:
                        now = running_usage(prompt_tokens, self._completion_tokens()) if continuous_usage else None
                        choice = Choice(p * self.num_choices + delta.index, text,
                                        delta.finish_reason if delta.finished else None, lp, delta.stop_reason)
                        yield sse(chunk_body(self.endpoint, self.request_id, self.created, self.model, choice,
                                             include_usage, now))
            except APIError as e:
                yield sse(e.body())
                self.metrics.request_done(self.endpoint, e.status)
            else:
                if include_usage:
                    yield sse(usage_chunk(self.endpoint, self.request_id, self.created, self.model, self._usage()))
                self._finished()
            yield SSE_DONE
        finally:
            self._close()

    # ---- state ----------------------------------------------------------------------------------

    def _deltas(self) -> AsyncIterator[tuple[int, StreamDelta | Failed]]:
        return until_deadline(merge([s.stream for s in self.submitted]), self.arrival + self.timeout_s,
                              self.timeout_s)

    async def _take(self, p: int, delta: StreamDelta | Failed) -> _Sequence:
        if isinstance(delta, Failed):
            raise APIError(500, delta.message, code="engine_error")
        q = self.seqs[p, delta.index]
        if delta.prompt_logprobs is not None and p not in self.prompts:
            self.prompts[p] = await prompt_logprobs(self.submitted[p].prompt_ids, delta.prompt_logprobs, self.decode)
        if delta.new_token_ids and not self._started[p]:
            self._started[p] = True
            self.metrics.first_token(time.perf_counter() - self.arrival)
        q.parts.append(delta.new_text)
        q.num_tokens += len(delta.new_token_ids)
        if delta.new_logprobs is not None:
            q.tokens.extend(await self._token_logprobs(delta))
        if delta.finished:
            q.finish_reason, q.stats, q.stop_reason = delta.finish_reason, delta.stats, delta.stop_reason
            q.cumulative_logprob = delta.cumulative_logprob or 0.0
            self._open[p] -= 1
            if self._open[p] == 0:
                self.metrics.sequence_ended(generating=True)
        return q

    async def _token_logprobs(self, delta: StreamDelta) -> list[TokenLogprob]:
        tops = delta.new_top_logprobs or ()
        ids = list(delta.new_token_ids) + [t for top in tops for t in top]
        texts = iter(await self.decode(ids))
        chosen = [next(texts) for _ in delta.new_token_ids]
        out = []
        for i, (token, logprob) in enumerate(zip(chosen, delta.new_logprobs)):
            top = tuple((next(texts), lp) for lp in tops[i].values()) if i < len(tops) else ()
            out.append(TokenLogprob(token, logprob, top))
        return out

    def _begin(self) -> None:
        for _ in self.submitted:
            self.metrics.sequence_started()

    def _completion_tokens(self) -> int:
        return sum(q.num_tokens for q in self.seqs.values())

    def _usage(self) -> dict[str, Any]:
        stats = [self.seqs[p, 0].stats or RequestStats() for p in range(len(self.submitted))]
        return usage(stats, self._completion_tokens())

    def _finished(self) -> None:
        stats = [self.seqs[p, 0].stats or RequestStats() for p in range(len(self.submitted))]
        self.metrics.finished([q.finish_reason or "abort" for q in self.seqs.values()], stats,
                              self._completion_tokens(), time.perf_counter() - self.arrival)
        self.metrics.request_done(self.endpoint, 200)

    def _close(self) -> None:
        for p, sub in enumerate(self.submitted):
            sub.stream.cancel()  # a no-op once finished; aborts the request if the client left
            if self._open[p] > 0:
                self._open[p] = 0
                self.metrics.sequence_ended(generating=self._started[p])
