"""Sampling, stop conditions, text output, bad input, and the asyncio front."""

import asyncio

import pytest
import torch

from engine import AsyncEngine, LinkPolicy, SamplingParams, Segment
from engine.kvsplit import kvsplit

from tests.support.engines import make_engine
from tests.support.tokenizer import STORY_CORPUS

@pytest.fixture(scope="module")
def engine(text_model_dir):
    return make_engine(text_model_dir, num_blocks=128)


def test_seeded_sampling_is_reproducible_and_varies_with_the_seed(engine):
    prompt = [1, 50, 60, 70]
    runs = [engine.generate([prompt], SamplingParams(max_tokens=12, temperature=1.5, seed=s))[0].token_ids
            for s in (7, 7, 8)]
    assert runs[0] == runs[1]
    assert runs[0] != runs[2]
    # Batched with others, a seeded request still draws the same tokens.
    other = SamplingParams(max_tokens=5, temperature=1.0)
    seeded = SamplingParams(max_tokens=12, temperature=1.5, seed=7)
    outs = engine.generate([[1, 9], prompt, [1, 5, 5]], [other, seeded, other])
    assert outs[1].token_ids == runs[0]


def test_top_k_one_equals_greedy(engine):
    prompt = [1, 80, 81, 82]
    greedy = engine.generate([prompt], SamplingParams(max_tokens=8, temperature=0.0))[0]
    topk = engine.generate([prompt], SamplingParams(max_tokens=8, temperature=0.7, top_k=1, seed=3))[0]
    assert greedy.token_ids == topk.token_ids


def test_logprobs_are_those_of_the_chosen_tokens(engine):
    out = engine.generate([[1, 40, 41]], SamplingParams(max_tokens=4, temperature=0.0, logprobs=True))[0]
    assert len(out.logprobs) == 4 and all(lp <= 0.0 for lp in out.logprobs)
    # Greedy picks the most likely token: its logprob is at least log(1/vocab).
    assert all(lp >= -torch.log(torch.tensor(300.0)).item() for lp in out.logprobs)


def test_text_prompt_and_text_output(engine, text_model_dir):
    out = engine.generate(["the fox"], SamplingParams(max_tokens=10, temperature=0.0, ignore_eos=True))[0]
    assert out.text == engine.tokenizer.decode(out.token_ids, skip_special_tokens=True)


def test_stop_string_cuts_the_text_before_it(engine):
    params = SamplingParams(max_tokens=20, temperature=0.0, ignore_eos=True)
    full = engine.generate(["the fox"], params)[0]
    assert len(full.text) > 4
    stop = full.text[3:5]
    cut = engine.generate(["the fox"], SamplingParams(max_tokens=20, temperature=0.0, ignore_eos=True, stop=[stop]))[0]
    assert cut.finish_reason == "stop"
    assert cut.text == full.text[: full.text.index(stop)]
    assert stop not in cut.text


def test_stop_token_ids_and_eos(engine):
    full = engine.generate([[1, 20, 21]], SamplingParams(max_tokens=10, temperature=0.0, ignore_eos=True))[0]
    target = full.token_ids[3]
    out = engine.generate([[1, 20, 21]], SamplingParams(max_tokens=10, temperature=0.0, stop_token_ids=[target]))[0]
    first = full.token_ids.index(target)
    assert out.finish_reason == "stop" and out.token_ids == full.token_ids[: first + 1]


@pytest.mark.parametrize(
    "prompt, params, message",
    [
        ([], None, "empty"),
        ([1] * 200, None, "context"),
        ([1] * 100, dict(max_tokens=50), "context"),
        ([1, 999], None, "vocabulary"),
        ([1, 2], dict(max_tokens=0), "max_tokens"),
        ([1, 2], dict(max_tokens=-3), "max_tokens"),
        ([1, 2], dict(stop=[""]), "stop"),
        ([1, 2], dict(stop=[3]), "stop"),
        ([1, 2], dict(top_p=0.0), "top_p"),
        ([1, 2], dict(temperature=-1.0), "temperature"),
    ],
)
def test_bad_input_is_a_clear_value_error_and_the_engine_keeps_serving(engine, prompt, params, message):
    with pytest.raises(ValueError, match=message):
        engine.generate([prompt], SamplingParams(**params) if params else None)
    assert not engine.has_unfinished()
    assert engine.generate([[1, 3, 4]], SamplingParams(max_tokens=2, temperature=0.0))[0].finish_reason


def test_bad_link_policy_and_segment():
    with pytest.raises(ValueError, match="valid: full, prefix"):
        LinkPolicy("fastest")
    with pytest.raises(ValueError, match="k"):
        LinkPolicy("legolink", k=-1)
    with pytest.raises(ValueError, match="ratio"):
        LinkPolicy("cacheblend", ratio=1.5)
    with pytest.raises(ValueError, match="segment kind"):
        Segment("document", (1,))


def test_kvsplit_with_a_real_tokenizer(engine):
    tok = engine.tokenizer
    doc = "\n\n".join(STORY_CORPUS[:6])

    def encode(s):
        return tok.encode(s, add_special_tokens=False)

    for limit in (8, 20, 64, 10_000):
        chunks = kvsplit(doc, encode, limit)
        assert "".join(c.text for c in chunks) == doc
        assert all(0 < len(c.token_ids) <= limit for c in chunks)
        assert all(list(c.token_ids) == encode(c.text) for c in chunks)
        assert chunks == kvsplit(doc, encode, limit)  # deterministic
        if limit >= 20:  # cuts between words, never inside one
            assert all(c.text[-1].isspace() or c.text[-1] in ".!?" for c in chunks[:-1])
    assert len(kvsplit(doc, encode, 10_000)) == 1


def test_async_engine_streams_equal_generate_and_abort_frees_blocks(text_model_dir):
    engine = make_engine(text_model_dir, num_blocks=128)
    params = SamplingParams(max_tokens=8, temperature=0.0, ignore_eos=True)
    expected = [o.token_ids for o in engine.generate([[1, 10, 11], [1, 12, 13, 14]], params)]
    front = AsyncEngine(engine)

    async def collect(prompt):
        tokens, text = [], ""
        async for out in await front.add_request(prompt, params):
            tokens += out.new_token_ids
            text += out.new_text
        assert out.finished and out.token_ids == tokens and out.text == text
        return tokens

    async def main():
        got = await asyncio.gather(collect([1, 10, 11]), collect([1, 12, 13, 14]))
        with pytest.raises(ValueError, match="empty"):
            await front.add_request([], params)
        stream = await front.add_request([1, 5, 6], SamplingParams(max_tokens=100, temperature=0.0, ignore_eos=True))
        async for _ in stream:
            break
        await stream.aclose()  # the client went away
        for _ in range(100):
            if engine.load().free_blocks == engine.load().total_blocks:
                break
            await asyncio.sleep(0.05)
        return got

    try:
        assert asyncio.run(main()) == expected
        assert front.load().free_blocks == front.load().total_blocks
    finally:
        front.shutdown()


def test_check_health_fails_once_the_step_loop_is_dead(text_model_dir):
    from engine.async_engine import EngineError

    engine = make_engine(text_model_dir, num_blocks=16)
    front = AsyncEngine(engine)
    front.check_health()

    def broken_load():
        raise RuntimeError("load failed")  # outside the step's error handling: the loop dies

    engine.load = broken_load
    front.abort("wake-up")
    assert front.wait_stopped(10)
    with pytest.raises(EngineError, match="step loop has stopped"):
        front.check_health()
