"""CacheAwareRequestRouter in a real Ray Serve app: two dummy engine replicas (LRU chunk caches
publishing make_routing_stats) behind a handle."""

import asyncio
import sys
import time
from dataclasses import dataclass

import pytest

from kvstore.keys import chunk_key
from router.config import RouterConfig
from router.hint import RoutingHint
from router.stats import make_routing_stats
from sim.cluster import LRUChunkCache

pytestmark = pytest.mark.timeout(120)

APP = "router-serve-test"
STATS_PERIOD_S = 0.2


@dataclass(frozen=True)
class FakeRequest:
    """What the ingress passes the engine replica: anything with a ``routing_hint``."""

    routing_hint: RoutingHint
    hold: bool = False


def key(name: str) -> str:
    return chunk_key("fake-model", list(name.encode()))


def hint(*names: str) -> RoutingHint:
    keys = tuple(key(name) for name in names)
    return RoutingHint(chunk_keys=keys, chunk_tokens=(200,) * len(keys), total_tokens=200 * len(keys) + 10)


def build_app(ray):
    from ray import serve
    from ray.serve.config import RequestRouterConfig

    from router.serve_adapter import CacheAwareRequestRouter

    @ray.remote(num_cpus=0)
    class Gate:
        def __init__(self) -> None:
            self._opened = asyncio.Event()

        async def wait(self) -> None:
            await self._opened.wait()

        async def open(self) -> None:
            self._opened.set()

    @serve.deployment(
        num_replicas=2,
        max_ongoing_requests=8,
        ray_actor_options={"num_cpus": 0},
        request_router_config=RequestRouterConfig(
            request_router_class=CacheAwareRequestRouter,
            request_router_kwargs=RouterConfig(
                queue_penalty_tokens=50.0, imbalance_threshold=2, min_affinity_tokens=1, seed=0
            ).to_dict(),
            request_routing_stats_period_s=STATS_PERIOD_S,
        ),
    )
    class FakeEngine:
        def __init__(self, gate) -> None:
            self._gate = gate
            self._cache = LRUChunkCache(capacity_tokens=100_000)
            self._in_flight = 0
            self._stats_published = 0
            self._replica_id = serve.get_replica_context().replica_id.unique_id

        async def __call__(self, request: FakeRequest) -> str:
            self._in_flight += 1
            try:
                h = request.routing_hint
                self._cache.access(zip(h.chunk_keys, h.chunk_tokens))
                if request.hold:
                    await self._gate.wait.remote()
                return self._replica_id
            finally:
                self._in_flight -= 1

        async def preload(self, keys: list[str]) -> str:
            """Cache chunks behind the router's back (as a warm-up job would); return once
            Serve has pulled stats that list them."""
            self._cache.access((k, 200) for k in keys)
            published = self._stats_published
            while self._stats_published < published + 2:
                await asyncio.sleep(0.05)
            return self._replica_id

        def record_routing_stats(self) -> dict:
            self._stats_published += 1
            return make_routing_stats(
                queue_len=self._in_flight, running_tokens=0, free_blocks=0, total_blocks=0,
                gpu_keys=self._cache.keys_mru(), host_keys=(),
            )

    gate = Gate.remote()
    return FakeEngine.bind(gate), gate


@pytest.fixture(scope="module")
def engine(ray_session, serve_url):
    """The app on the session's Serve (started by ``serve_url`` on its own port, never Serve's default)."""
    import ray.cloudpickle
    from ray import serve

    # The deployment and request classes live in this test module, which replicas cannot import.
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
    app, gate = build_app(ray_session)
    handle = serve.run(app, name=APP, route_prefix=None)
    yield handle, gate
    serve.delete(APP)
    ray.cloudpickle.unregister_pickle_by_value(sys.modules[__name__])


def test_shared_chunks_follow_their_holder_and_saturation_spreads(engine):
    handle, gate = engine
    holder = handle.remote(FakeRequest(hint("a", "b", "c"))).result()
    # Same documents in another order, with and without new ones: same replica every time.
    for names in [("c", "a", "b"), ("b", "d"), ("e", "a"), ("c", "b", "a", "f")]:
        assert handle.remote(FakeRequest(hint(*names))).result() == holder

    # Hold requests open on the holder: within the imbalance threshold (2) it keeps them, past
    # it the next one spreads to the other replica, which then learns the chunks too and (with
    # the shorter queue: 600 - 50 * 1 > 600 - 50 * 3) keeps the rest.
    time.sleep(0.5)  # Serve's queue-length cache counts a finished request down in a callback
    held = []
    for _ in range(6):
        response = handle.remote(FakeRequest(hint("b", "a", "c"), hold=True))
        response._to_object_ref_sync()  # returns once a replica accepted it
        held.append(response)
    gate.open.remote()
    placed = [r.result() for r in held]
    other = next(r for r in placed if r != holder)
    assert placed == [holder, holder, holder, other, other, other]


def test_replica_stats_teach_the_router_what_it_never_routed(engine):
    handle, _ = engine
    # Were stats ignored, each request below would land on the warmed replica with chance 1/2.
    for names in (("x1", "x2", "x3"), ("y1", "y2", "y3"), ("z1", "z2", "z3")):
        # No routing hint: routed by load alone, so the router learns nothing from it.
        warmed = handle.preload.remote([key(name) for name in names]).result()
        time.sleep(1.0)  # the controller rebroadcasts changed stats to the handle
        assert handle.remote(FakeRequest(hint(*names))).result() == warmed
