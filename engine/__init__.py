"""The epic-serve engine: our Llama-family forward, paged KV, continuous batching and
position-independent chunk linking."""

from engine.config import EngineConfig
from engine.outputs import RequestOutput, RequestStats
from engine.sampling_params import SamplingParams, StructuredOutput
from engine.segments import LinkPolicy, Segment

__all__ = ["Engine", "EngineConfig", "LinkPolicy", "RequestOutput", "RequestStats", "SamplingParams", "Segment",
           "StructuredOutput"]


def __getattr__(name: str):
    # The engine pulls in torch and transformers: import it on first use only, so light users
    # (the router, config loading) stay light.
    if name == "Engine":
        from engine.engine import Engine

        return Engine
    if name == "AsyncEngine":
        from engine.async_engine import AsyncEngine

        return AsyncEngine
    raise AttributeError(name)
