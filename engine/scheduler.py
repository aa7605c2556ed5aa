"""Continuous batching under a token budget. It speaks token counts, not phases.

Each step fills the budget in this order: one token per decoding request; the next piece of
every running prompt (prefill or link-recompute runs, chunked when long); compile work for
chunks that waiting requests need; then waiting requests in arrival order (a request whose
chunks are still compiling does not hold up those behind it). When a decoding request needs a
block and none is free, the most recently arrived running request is preempted (its blocks
freed, recomputed later), so the oldest requests always progress: no starvation.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from engine import request_stats
from engine.chunk_lifecycle import ChunkLifecycle, CompileJob, LinkWrite
from engine.config import EngineConfig
from engine.kv_manager import KVManager
from engine.recompute import Run, merge_runs, plan_prompt, prefix_cacheable_len
from engine.request import Request, RequestStatus


@dataclass(slots=True)
class ScheduledWork:
    """The positions of one sequence computed in this step."""

    seq: Request | CompileJob
    runs: list[Run]
    sample: bool  # the last row's logits produce a token (prompt finished, or decode)
    blend_candidates: tuple[Run, ...] = ()  # CacheBlend rows that may be dropped after layer 1
    blend_ratio: float = 0.0

    @property
    def num_tokens(self) -> int:
        return sum(e - s for s, e in self.runs)


@dataclass(slots=True)
class SchedulerOutput:
    work: list[ScheduledWork] = field(default_factory=list)
    links: list[LinkWrite] = field(default_factory=list)  # written into pages before the forward


def take_positions(pending: list[Run], budget: int) -> list[Run]:
    """Pop up to ``budget`` positions off the front of ``pending`` (splitting a run)."""
    taken: list[Run] = []
    while pending and budget > 0:
        s, e = pending[0]
        n = min(e - s, budget)
        taken.append((s, s + n))
        budget -= n
        if s + n == e:
            pending.pop(0)
        else:
            pending[0] = (s + n, e)
    return taken


def intersect_runs(a: tuple[Run, ...], b: list[Run]) -> tuple[Run, ...]:
    return merge_runs([(max(s1, s2), min(e1, e2)) for s1, e1 in a for s2, e2 in b])


class Scheduler:
    def __init__(self, config: EngineConfig, kv: KVManager, chunks: ChunkLifecycle):
        self.config = config
        self.kv = kv
        self.chunks = chunks
        self.waiting: list[Request] = []  # arrival order
        self.running: list[Request] = []  # arrival order

    def add(self, request: Request) -> None:
        self.waiting.append(request)

    def has_work(self) -> bool:
        return bool(self.waiting or self.running or self.chunks.has_work())

    def schedule(self) -> SchedulerOutput:
        out = SchedulerOutput()
        budget = self.config.max_num_batched_tokens
        for req in list(self.running):
            if budget == 0:
                break
            if req.status is not RequestStatus.RUNNING or req.in_prefill:
                continue
            if not self._grow_or_preempt(req):
                continue
            pos = req.num_tokens - 1
            out.work.append(ScheduledWork(req, [(pos, pos + 1)], sample=True))
            budget -= 1
        for req in self.running:
            if budget > 0 and req.in_prefill:
                budget -= self._schedule_prompt_piece(req, budget, out)
        budget = self._schedule_compiles(budget, out)
        self._admit(budget, out)
        return out

    def _grow_or_preempt(self, req: Request) -> bool:
        while not self.kv.ensure_capacity(req.block_ids, req.num_tokens):
            victim = self.running[-1]
            self.preempt(victim)
            if victim is req:
                return False
        return True

    def _schedule_prompt_piece(self, req: Request, budget: int, out: SchedulerOutput) -> int:
        runs = take_positions(req.pending, budget)
        plan = req.plan
        work = ScheduledWork(req, runs, sample=not req.pending)
        if plan.blend_candidates:
            work.blend_candidates = intersect_runs(plan.blend_candidates, runs)
            work.blend_ratio = plan.blend_ratio
        out.work.append(work)
        return work.num_tokens

    def _schedule_compiles(self, budget: int, out: SchedulerOutput) -> int:
        for job in self.chunks.running:
            if budget == 0:
                return 0
            budget -= self._schedule_job_piece(job, budget, out)
        while budget > 0 and (job := self.chunks.start_next_job()) is not None:
            budget -= self._schedule_job_piece(job, budget, out)
        return budget

    def _schedule_job_piece(self, job: CompileJob, budget: int, out: SchedulerOutput) -> int:
        work = ScheduledWork(job, take_positions(job.pending, budget), sample=False)
        out.work.append(work)
        return work.num_tokens

    def _admit(self, budget: int, out: SchedulerOutput) -> None:
        for req in list(self.waiting):
            if budget == 0 or len(self.running) >= self.config.max_num_seqs:
                return
            if req.policy.reuses_chunks:
                if not req.chunks_resolved:
                    request_stats.chunks_found(req.stats, self.chunks.resolve(req))
                if not self.chunks.ready(req):
                    continue  # compiling; requests behind it may go first
            segments = req.effective_segments()
            token_ids = req.prompt_ids + req.output_ids
            alloc = self.kv.allocate_prompt(token_ids, prefix_cacheable_len(segments, req.policy), req.cache_salt)
            if alloc is None:
                return  # first come, first served: nothing overtakes a request short of blocks
            req.block_ids, hit = alloc
            req.plan = plan_prompt(segments, req.policy, hit)
            req.pending = list(req.plan.runs)
            request_stats.admitted(req.stats, hit, req.plan.num_computed)
            req.status = RequestStatus.RUNNING
            self.waiting.remove(req)
            self.running.append(req)
            if req.plan.linked:
                out.links.extend(self.chunks.links(req))
            budget -= self._schedule_prompt_piece(req, budget, out)

    def preempt(self, req: Request) -> None:
        """Free a running request's blocks; it is recomputed from its tokens when readmitted."""
        self.running.remove(req)
        self.kv.free(req.block_ids)
        self.chunks.release(req)
        req.status = RequestStatus.WAITING
        req.plan, req.pending, req.chunks_resolved = None, [], False
        request_stats.preempted(req.stats)
        i = 0
        while i < len(self.waiting) and self.waiting[i].arrival_s <= req.arrival_s:
            i += 1
        self.waiting.insert(i, req)

    def finish(self, req: Request) -> None:
        """Remove a finished or aborted request and free everything it holds."""
        if req in self.running:
            self.running.remove(req)
        elif req in self.waiting:
            self.waiting.remove(req)
        self.kv.free(req.block_ids)
        self.chunks.release(req)
        req.status = RequestStatus.FINISHED
