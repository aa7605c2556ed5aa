"""A registered document whose chunks a bounded store evicted (and no engine holds) is served
by id all the same: its chunks are recompiled from the token ids stored at registration, and
the answer is the one the document gives when its chunks are cached."""

from __future__ import annotations

from tests.support.serving import CHUNK_TOKENS, engine_section
from tests.support.tiny_chat_model import document

from deployments.http.schema import DocumentRef
from deployments.prompting import PromptBuilder
from documents.library import DocumentLibrary
from engine import Engine, EngineConfig, SamplingParams
from kvstore.builder import build_store
from kvstore.config import StoreConfig

QUESTION = [{"role": "user", "content": "Which harbor?"}]
GREEDY = SamplingParams(max_tokens=8, temperature=0.0)


def test_evicted_registered_document_is_recompiled_from_its_token_ids(tmp_path, tiny_model_dir):
    root = tmp_path / "store"
    engine_config = EngineConfig(**engine_section(tiny_model_dir))

    def store(max_bytes: int):
        config = StoreConfig(memory_bytes=0, object_store_bytes=0, persistent=f"dir://{root}",
                             persistent_max_bytes=max_bytes)
        return config, build_store(config, first.model_fingerprint)

    first = Engine(engine_config)
    config, chunks = store(max_bytes=1 << 40)
    first.attach_chunk_source(chunks)
    builder = PromptBuilder(first.tokenizer, first.model_fingerprint, CHUNK_TOKENS)
    library = DocumentLibrary.open(builder, config)
    manual = builder.chunk_document(document(11, num_sentences=12))
    assert len(manual.chunk_keys) > 1
    first.compile_chunks(list(manual.chunk_token_ids))
    assert chunks.flush(10)
    library.register("manual", manual)
    cached = first.generate([list(builder.chat(QUESTION, [manual]).segments)], GREEDY)[0]
    manual_bytes = sum(p.stat().st_size for p in (root / "chunks").rglob("*.kv"))

    # Other documents' chunks fill a store bounded at the manual's size: its chunks are evicted.
    config, bounded = store(max_bytes=manual_bytes)
    first.attach_chunk_source(bounded)
    for seed in range(3):
        other = builder.chunk_document(document(100 + seed, num_sentences=12))
        first.compile_chunks(list(other.chunk_token_ids))
        assert bounded.flush(10)
    assert not any(bounded.contains(k) for k in manual.chunk_keys)

    second = Engine(engine_config)  # its chunk pool is empty
    second.attach_chunk_source(bounded)
    (resolved,) = DocumentLibrary.open(builder, config).resolve([DocumentRef(id="manual")])
    assert resolved.chunk_keys == manual.chunk_keys
    out = second.generate([list(builder.chat(QUESTION, [resolved]).segments)], GREEDY)[0]
    assert out.stats.compiled_tokens == sum(len(ids) for ids in manual.chunk_token_ids)
    assert out.stats.chunk_hit_tokens == 0
    assert out.token_ids == cached.token_ids
