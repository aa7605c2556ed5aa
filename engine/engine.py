"""The engine: one step is schedule -> run -> postprocess.

Synchronous core; ``engine.async_engine.AsyncEngine`` runs it in a background thread for the
serving layer. Not thread-safe by itself: one thread drives it.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable, Sequence

import torch

from engine import request_stats
from engine.block_pool import BlockPool
from engine.chunk_lifecycle import ChunkLifecycle
from engine.chunk_pool import ChunkPool
from engine.chunk_source import ChunkSource
from engine.config import EngineConfig
from engine.decode_graphs import capture_sizes
from engine.detokenizer import Detokenizer, TextState
from engine.kv_manager import KVManager
from engine.loader import load_model
from engine.model_runner import ModelRunner, StepResult
from engine.outputs import RequestOutput
from engine.prompt_logprobs import empty_prompt_logprobs, policy_for, record
from engine.request import Request, RequestStatus
from engine.sampler import SampleRow, make_generator, sample
from engine.sampling_params import SamplingParams
from engine.scheduler import Scheduler
from engine.segments import LinkPolicy, Segment, prompt_token_ids, with_chunk_bos
from engine.structured import GrammarBook
from engine.load import EngineLoad
from kvstore.keys import ChunkKey, chunk_key

Prompt = str | Sequence[int] | Sequence[Segment]


class Engine:
    """Generates text for segment prompts, reusing prefix blocks and linked chunk KV."""

    def __init__(self, config: EngineConfig, chunk_source: ChunkSource | None = None,
                 clock: Callable[[], float] = time.monotonic):
        self.config = config
        self.clock = clock
        self.device = torch.device(config.device)
        self.dtype = getattr(torch, config.dtype)  # EngineConfig admits only torch dtype names
        loaded = load_model(config.model, self.dtype, self.device, config.skip_tokenizer_init,
                            config.model_cache_dir)
        self.spec, self.tokenizer, self.model_fingerprint = loaded.spec, loaded.tokenizer, loaded.fingerprint
        self.max_model_len = config.max_model_len or self.spec.max_position_embeddings
        num_blocks = config.num_blocks or max(1, config.kv_cache_bytes // self._block_bytes())
        self.block_pool = BlockPool(num_blocks)
        self.kv = KVManager(self.block_pool, config.block_size, config.enable_prefix_caching)
        self.chunk_pool = ChunkPool(config.chunk_pool_bytes)
        self.chunks = ChunkLifecycle(self.chunk_pool, chunk_source, self.kv, self.spec.bos_token_id,
                                     self.device, self.dtype)
        self.scheduler = Scheduler(config, self.kv, self.chunks)
        graph_sizes = capture_sizes(config.max_num_seqs) if config.uses_cuda_graphs else ()
        self.runner = ModelRunner(loaded.model, num_blocks, config.block_size, config.backend,
                                  self.device, self.dtype, graph_sizes, -(-self.max_model_len // config.block_size))
        self.detokenizer = Detokenizer(self.tokenizer)
        self.generator = torch.Generator(device="cpu").manual_seed(config.seed)
        self._requests: dict[str, Request] = {}  # every unfinished sequence, by its own id
        self._groups: dict[str, list[Request]] = {}  # a client request's unfinished sequences
        self._text: dict[str, TextState] = {}
        self._grammars: GrammarBook | None = None
        self._ids = itertools.count()

    def _block_bytes(self) -> int:
        s = self.spec
        return s.num_layers * 2 * self.config.block_size * s.num_kv_heads * s.head_dim * self.dtype.itemsize

    # ---- requests -------------------------------------------------------------------------

    def make_request(self, prompt: Prompt, sampling: SamplingParams | None = None,
                     link_policy: LinkPolicy | None = None, request_id: str | None = None,
                     cache_salt: str | None = None) -> Request:
        """Validate and tokenize a prompt into a request (no engine state is touched).

        ``sampling.n`` > 1 makes one request of n sequences: the prompt is computed once and
        its KV blocks shared when the first token is sampled. ``cache_salt`` is the request's cache
        scope (:func:`kvstore.keys.cache_scope`): its chunk keys and prefix-cache blocks are kept
        apart from those of every other scope.
        """
        sampling = sampling or SamplingParams()
        policy = link_policy or self.config.link_policy
        segments = self._segments(prompt)
        if policy.chunk_bos:
            if self.spec.bos_token_id is None:
                raise ValueError(f"link policy {policy.label()}: this model has no BOS token to put before chunks")
            segments = with_chunk_bos(segments, self.spec.bos_token_id)
        ids = prompt_token_ids(segments)
        if not ids:
            raise ValueError("the prompt is empty")
        bad = [t for t in ids if not 0 <= t < self.spec.vocab_size]
        if bad:
            raise ValueError(f"token id {bad[0]} is outside the vocabulary [0, {self.spec.vocab_size})")
        if len(ids) + sampling.max_tokens > self.max_model_len:
            raise ValueError(
                f"the prompt has {len(ids)} tokens and max_tokens is {sampling.max_tokens}: together over "
                f"the context of {self.max_model_len} tokens"
            )
        total_blocks = self.kv.blocks_for(len(ids) + sampling.max_tokens)
        if total_blocks > self.block_pool.num_blocks:
            raise ValueError(
                f"prompt + max_tokens needs {total_blocks} KV blocks; the pool has {self.block_pool.num_blocks}"
            )
        bad = [t for t, _ in sampling.logit_bias if t >= self.spec.vocab_size]
        if bad:
            raise ValueError(f"logit_bias token id {bad[0]} is outside the vocabulary [0, {self.spec.vocab_size})")
        policy = policy_for(sampling, link_policy or self.config.link_policy)
        keys = [chunk_key(self.model_fingerprint, s.token_ids, cache_salt) for s in segments if s.kind == "chunk"]
        rid = request_id if request_id is not None else f"req-{next(self._ids)}"
        req = Request(rid, list(segments), ids, sampling, policy, self.clock(), keys, make_generator(sampling),
                      cache_salt=cache_salt, stats=request_stats.created(len(ids)),
                      prompt_logprobs=empty_prompt_logprobs(sampling, len(ids)))
        if sampling.structured is not None:
            req.grammar = self._grammar_book().compile(sampling.structured)
            req.matcher = self._grammar_book().matcher(req.grammar)
        return req

    def _grammar_book(self) -> GrammarBook:
        if self.tokenizer is None:
            raise ValueError("structured output needs the model's tokenizer")
        if self._grammars is None:
            self._grammars = GrammarBook(self.tokenizer, self.spec.vocab_size, self.spec.eos_token_ids)
        return self._grammars

    def _segments(self, prompt: Prompt) -> list[Segment]:
        if isinstance(prompt, str):
            if self.tokenizer is None:
                raise ValueError("this engine has no tokenizer: send token ids instead of text")
            return [Segment.text(self.tokenizer.encode(prompt))]
        items = list(prompt)
        if all(isinstance(s, Segment) for s in items):
            return items
        if all(isinstance(t, int) and not isinstance(t, bool) for t in items):
            return [Segment.text(items)]
        raise ValueError("a prompt is a string, a list of token ids, or a list of Segment")

    def submit(self, request: Request) -> None:
        if request.request_id in self._requests:
            raise ValueError(f"request id {request.request_id!r} is already in use")
        if request.request_id in self._groups:
            raise ValueError(f"request id {request.request_id!r} is already in use")
        self._requests[request.request_id] = request
        self._groups[request.request_id] = [request]
        self._text[request.request_id] = TextState()
        self.scheduler.add(request)

    def add_request(self, prompt: Prompt, sampling: SamplingParams | None = None,
                    link_policy: LinkPolicy | None = None, request_id: str | None = None,
                    cache_salt: str | None = None) -> str:
        req = self.make_request(prompt, sampling, link_policy, request_id, cache_salt)
        self.submit(req)
        return req.request_id

    def abort(self, request_id: str) -> list[RequestOutput]:
        """Stop a request (all its sequences) and free its blocks; the aborted sequences'
        outputs (none if it is unknown or already finished)."""
        outputs = []
        for req in list(self._groups.get(request_id, ())):
            req.finish_reason = "abort"
            self.scheduler.finish(req)
            outputs.append(self._output(req, [], "", finished=True))
        return outputs

    def request_ids(self) -> list[str]:
        """Ids of the requests not finished yet."""
        return list(self._groups)

    def has_unfinished(self) -> bool:
        return bool(self._requests) or self.scheduler.has_work()

    # ---- the loop -------------------------------------------------------------------------

    def step(self) -> list[RequestOutput]:
        sched = self.scheduler.schedule()
        if not sched.work:
            return []
        result = self.runner.execute(sched)
        return self._postprocess(result)

    def _postprocess(self, result: StepResult) -> list[RequestOutput]:
        self.chunks.absorb(result.captured)
        record(result.prompt_logprobs)
        for rid, n in result.blend_dropped.items():
            request_stats.blend_dropped(self._requests[rid].stats, n)
        if result.logits is None:
            return []
        reqs = [w.seq for w in result.sampled]
        logits = result.logits
        forked = [(i, self._fork(req)) for i, req in enumerate(reqs) if req.sampling.n > 1 and not req.forked]
        if forked:  # sequences 1..n-1 sample their first token from sequence 0's logits row
            logits = torch.cat([logits, logits[[i for i, children in forked for _ in children]]])
            reqs = reqs + [c for _, children in forked for c in children]
        mask, masked_rows = self._grammar_book().bitmask([r.matcher for r in reqs]) \
            if any(r.matcher is not None for r in reqs) else (None, [])
        rows = [SampleRow(r.sampling, r.generator, r.prompt_ids, r.output_ids) for r in reqs]
        sampled = sample(logits, rows, self.generator, self.spec.eos_token_ids, mask, masked_rows)
        now = self.clock()
        outputs = []
        for req, token, logprob, top in zip(reqs, sampled.token_ids, sampled.logprobs, sampled.top_logprobs):
            if not req.output_ids and req.stats.ttft_s is None:
                request_stats.first_token(req.stats, now - req.arrival_s)
                self.kv.publish(req.prompt_ids, req.block_ids, req.plan.exact_len, req.cache_salt)
            req.output_ids.append(token)
            req.logprobs.append(logprob)
            if top is not None:
                req.top_logprobs.append(top)
            if req.matcher is not None:
                assert req.matcher.accept_token(token), f"the grammar refused its own masked token {token}"
            outputs.append(self._advance(req))
        return outputs

    def _fork(self, parent: Request) -> list[Request]:
        """Sequences 1..n-1 of ``parent``, whose prompt has just been computed: they share its
        full prompt blocks and get a copy of the partial last one. A sequence that finds no free
        block for the copy waits and computes the prompt itself."""
        parent.forked = True
        num_full = len(parent.prompt_ids) // self.config.block_size
        partial = parent.block_ids[num_full:]
        children = []
        for i in range(1, parent.sampling.n):
            child = Request(f"{parent.request_id}#{i}", parent.segments, parent.prompt_ids, parent.sampling,
                            parent.policy, parent.arrival_s, parent.chunk_keys,
                            make_generator(parent.sampling, i), group_id=parent.group_id, index=i, forked=True,
                            cache_salt=parent.cache_salt, grammar=parent.grammar,
                            prompt_logprobs=parent.prompt_logprobs,
                            stats=request_stats.created(len(parent.prompt_ids)))
            if parent.grammar is not None:
                child.matcher = self._grammar_book().matcher(parent.grammar)
            self._requests[child.request_id] = child
            self._groups[parent.group_id].append(child)
            self._text[child.request_id] = TextState()
            forked = self.kv.fork(parent.block_ids, num_full)
            if forked is None:
                self.scheduler.add(child)
                continue
            child.block_ids, copies = forked
            self.runner.kv_caches[:, copies] = self.runner.kv_caches[:, partial]
            child.plan, child.chunks_resolved, child.status = parent.plan, True, RequestStatus.RUNNING
            request_stats.shares_prompt(child.stats)
            self.scheduler.running.append(child)
            children.append(child)
        return children

    def _advance(self, req: Request) -> RequestOutput:
        """Check stop conditions after a new token and build the request's output."""
        p = req.sampling
        token = req.output_ids[-1]
        # (the sampler masks these tokens while the output is shorter than min_tokens)
        stopped_by_token = token in p.stop_token_ids or (not p.ignore_eos and token in self.spec.eos_token_ids)
        stopped_by_token = stopped_by_token or (req.matcher is not None and req.matcher.is_terminated())
        text_ids = req.output_ids[:-1] if stopped_by_token else req.output_ids
        reason = "stop" if stopped_by_token else None
        if reason is None and (len(req.output_ids) >= p.max_tokens or req.num_tokens >= self.max_model_len):
            reason = "length"
        new_text, stop_hit = self.detokenizer.step(self._text[req.request_id], text_ids, p.stop, reason is not None,
                                                   p.skip_special_tokens, p.include_stop_str_in_output)
        if stop_hit is not None:
            reason = "stop"
        if reason is not None:
            req.finish_reason = reason
            # vLLM's stop_reason: the stop string or stop token id that ended it (None for EOS).
            req.stop_reason = stop_hit if stop_hit is not None else token if token in p.stop_token_ids else None
            self.scheduler.finish(req)
        return self._output(req, [token], new_text, finished=reason is not None)

    def _output(self, req: Request, new_ids: list[int], new_text: str, finished: bool) -> RequestOutput:
        request_stats.emitted(req.stats, len(req.output_ids))
        if finished:
            self._requests.pop(req.request_id, None)
            group = self._groups.get(req.group_id, [])
            if req in group:
                group.remove(req)
            if not group:
                self._groups.pop(req.group_id, None)
            state = self._text.pop(req.request_id)
        else:
            state = self._text[req.request_id]
        return RequestOutput(
            request_id=req.group_id,
            token_ids=list(req.output_ids),
            text=state.emitted,
            new_token_ids=new_ids,
            new_text=new_text,
            finished=finished,
            finish_reason=req.finish_reason if finished else None,
            stats=req.stats,
            logprobs=list(req.logprobs) if req.sampling.logprobs else None,
            top_logprobs=list(req.top_logprobs) if req.sampling.top_logprobs else None,
            index=req.index,
            cumulative_logprob=sum(req.logprobs),
            stop_reason=req.stop_reason if finished else None,
            prompt_logprobs=req.prompt_logprobs,
        )

    # ---- batch conveniences -----------------------------------------------------------------

    def generate(self, prompts: Sequence[Prompt], sampling: SamplingParams | Sequence[SamplingParams] | None = None,
                 link_policy: LinkPolicy | None = None) -> list[RequestOutput]:
        """Run prompts to completion together (continuous batching) and return final outputs:
        one per prompt, or ``n`` per prompt (in index order) when ``n`` > 1."""
        if isinstance(prompts, str) or (prompts and isinstance(prompts[0], int)):
            raise ValueError("generate takes a list of prompts; wrap a single prompt in a list")
        params = list(sampling) if isinstance(sampling, (list, tuple)) else [sampling] * len(prompts)
        if len(params) != len(prompts):
            raise ValueError(f"{len(params)} sampling params for {len(prompts)} prompts")
        reqs = [self.make_request(p, s, link_policy) for p, s in zip(prompts, params)]
        for req in reqs:
            self.submit(req)
        final: dict[tuple[str, int], RequestOutput] = {}
        while len(final) < sum(r.sampling.n for r in reqs):
            for out in self.step():
                if out.finished:
                    final[out.request_id, out.index] = out
        return [final[r.request_id, i] for r in reqs for i in range(r.sampling.n)]

    def start_compiles(self, token_id_lists: Sequence[Sequence[int]], scope: str | None = None) -> list[ChunkKey]:
        """Queue compile jobs for chunks not already resident; they run inside later steps.
        ``scope``: the cache scope of their keys (:func:`kvstore.keys.cache_scope`)."""
        keys = []
        for ids in token_id_lists:
            if not ids:
                raise ValueError("a chunk needs at least one token")
            bad = [t for t in ids if not 0 <= t < self.spec.vocab_size]
            if bad:
                raise ValueError(f"token id {bad[0]} is outside the vocabulary [0, {self.spec.vocab_size})")
            keys.append(chunk_key(self.model_fingerprint, ids, scope))
        for key, ids in zip(keys, token_id_lists):
            self.chunks.compile_only(key, tuple(int(t) for t in ids))
        return keys

    def compiling(self, keys: Sequence[ChunkKey]) -> bool:
        return self.chunks.compiling(keys)

    def compile_chunks(self, token_id_lists: Sequence[Sequence[int]], scope: str | None = None) -> list[ChunkKey]:
        """Compile chunks (if not already resident) into the pool and the chunk source.

        Drives the step loop itself, so it refuses to run while requests are in flight (their
        outputs would be lost); ``AsyncEngine.compile_chunks`` compiles alongside requests.
        """
        if self._requests:
            raise ValueError("compile_chunks runs the engine loop itself: use AsyncEngine.compile_chunks "
                             "while requests are in flight")
        keys = self.start_compiles(token_id_lists, scope)
        while self.compiling(keys):
            self.step()
        return keys

    def attach_chunk_source(self, source: ChunkSource) -> None:
        """Use ``source`` for chunks the pool lacks (it usually needs ``model_fingerprint`` first)."""
        self.chunks.source = source

    def load(self) -> EngineLoad:
        s = self.scheduler
        return EngineLoad(
            num_waiting=len(s.waiting),
            num_running=len(s.running),
            running_tokens=sum(r.num_tokens for r in s.running),
            free_blocks=self.block_pool.num_free,
            total_blocks=self.block_pool.num_blocks,
            pinned_chunks=self.chunk_pool.num_pins,
        )
