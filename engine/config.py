"""The engine's one configuration object."""

from __future__ import annotations

from dataclasses import dataclass, field

from engine.segments import LinkPolicy

DTYPES = ("float32", "bfloat16", "float16")
BACKENDS = ("torch", "flashinfer")


@dataclass(frozen=True)
class EngineConfig:
    """Everything an :class:`engine.Engine` is built from.

    Attributes:
        model: a packaged model's short name (``smollm2-135m-instruct``), a ``.gguf`` file, a
            Hugging Face model directory (config.json + safetensors) or a hub id.
        model_cache_dir: where GGUF models are kept dequantized ("" -> ``~/.cache/epic-serve/models``).
        device: ``cpu``, ``cuda`` or ``cuda:N``.
        dtype: weights and KV dtype: float32, bfloat16 or float16.
        backend: attention backend: ``torch`` (reference, CPU and GPU) or ``flashinfer`` (CUDA).
        block_size: tokens per KV page.
        num_blocks: KV pages in the pool; 0 sizes the pool from ``kv_cache_bytes``.
        kv_cache_bytes: byte budget of the paged KV pool when ``num_blocks`` is 0.
        max_num_batched_tokens: token budget of one engine step (all rows of all sequences).
        max_num_seqs: most requests running at once.
        max_model_len: longest prompt + output; 0 means the model's own context length.
        enable_prefix_caching: reuse exact-prefix KV blocks across requests.
        chunk_pool_bytes: on-device chunk residency budget (linked chunk KV kept for reuse).
        chunk_tokens: KVSplit's largest chunk, in tokens.
        link_policy: the server default, used when a request names none.
        enforce_eager: never capture CUDA graphs (as in vLLM). Otherwise, on CUDA with the
            ``flashinfer`` backend, decode-only steps replay a graph captured per batch size
            (1, 2, 4, then multiples of 8 up to ``max_num_seqs``) at start-up.
        skip_tokenizer_init: serve token-id prompts only (text fields are then empty).
        seed: seed of the engine's default sampler generator.
    """

    model: str
    model_cache_dir: str = ""
    device: str = "cpu"
    dtype: str = "float32"
    backend: str = "torch"
    block_size: int = 16
    num_blocks: int = 0
    kv_cache_bytes: int = 256 * 1024 * 1024
    max_num_batched_tokens: int = 2048
    max_num_seqs: int = 64
    max_model_len: int = 0
    enable_prefix_caching: bool = True
    chunk_pool_bytes: int = 256 * 1024 * 1024
    chunk_tokens: int = 512
    link_policy: LinkPolicy = field(default_factory=LinkPolicy.default)
    enforce_eager: bool = False
    skip_tokenizer_init: bool = False
    seed: int = 0

    @property
    def uses_cuda_graphs(self) -> bool:
        return not self.enforce_eager and self.device.startswith("cuda") and self.backend == "flashinfer"

    def __post_init__(self) -> None:
        if not self.model:
            raise ValueError("EngineConfig.model must name a model directory or hub id")
        if self.dtype not in DTYPES:
            raise ValueError(f"EngineConfig.dtype {self.dtype!r} is not one of {', '.join(DTYPES)}")
        if self.backend not in BACKENDS:
            raise ValueError(f"EngineConfig.backend {self.backend!r} is not one of {', '.join(BACKENDS)}")
        if not (self.device == "cpu" or self.device.startswith("cuda")):
            raise ValueError(f"EngineConfig.device {self.device!r} must be 'cpu', 'cuda' or 'cuda:N'")
        for name in ("block_size", "max_num_batched_tokens", "max_num_seqs", "chunk_tokens"):
            if getattr(self, name) <= 0:
                raise ValueError(f"EngineConfig.{name} must be > 0, got {getattr(self, name)}")
        for name in ("num_blocks", "kv_cache_bytes", "max_model_len", "chunk_pool_bytes"):
            if getattr(self, name) < 0:
                raise ValueError(f"EngineConfig.{name} must be >= 0, got {getattr(self, name)}")
