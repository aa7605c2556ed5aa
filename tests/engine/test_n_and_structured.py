"""n sequences from one prompt computation, structured output through xgrammar, text options."""

from __future__ import annotations

import json

import jsonschema
import pytest

from engine import SamplingParams, Segment
from engine.sampling_params import StructuredOutput

from tests.support.engines import assert_no_leaks, make_engine

PROMPT = [1, 40, 41, 42, 43, 44, 45]  # 7 tokens: one full block of 4 and a partial one


@pytest.fixture(scope="module")
def engine(text_model_dir):
    return make_engine(text_model_dir, num_blocks=128)


def test_n_sequences_equal_separately_seeded_requests_and_share_the_prompt(engine):
    params = SamplingParams(max_tokens=10, temperature=1.0, seed=3, n=3, ignore_eos=True)
    outs = engine.generate([PROMPT], params)
    assert [o.index for o in outs] == [0, 1, 2]
    # Sequence i draws from seed + i: each equals a lone request with that seed.
    for i, out in enumerate(outs):
        alone = engine.generate([PROMPT], SamplingParams(max_tokens=10, temperature=1.0, seed=3 + i,
                                                         ignore_eos=True))[0]
        assert out.token_ids == alone.token_ids
    assert len({tuple(o.token_ids) for o in outs}) == 3
    assert outs[0].stats.recomputed_tokens > 0 and not outs[0].stats.shared_prompt
    assert all(o.stats.shared_prompt and o.stats.recomputed_tokens == 0 for o in outs[1:])
    assert engine.generate([PROMPT], params)[2].token_ids == outs[2].token_ids  # reproducible
    assert_no_leaks(engine)


def test_abort_stops_every_sequence(engine):
    rid = engine.add_request(PROMPT, SamplingParams(max_tokens=50, temperature=0.0, n=2, ignore_eos=True))
    engine.step()
    engine.step()
    outs = engine.abort(rid)
    assert sorted(o.index for o in outs) == [0, 1] and all(o.finish_reason == "abort" for o in outs)
    assert_no_leaks(engine)


SCHEMAS = [
    {"type": "object", "properties": {"answer": {"type": "string", "enum": ["yes", "no"]},
                                      "score": {"type": "integer", "minimum": 0, "maximum": 9}},
     "required": ["answer", "score"], "additionalProperties": False},
    {"type": "object", "properties": {"flags": {"type": "array", "items": {"type": "boolean"}, "maxItems": 3},
                                      "inner": {"type": "object", "properties": {"ok": {"type": "boolean"}},
                                                "required": ["ok"], "additionalProperties": False}},
     "required": ["flags", "inner"], "additionalProperties": False},
]


@pytest.mark.parametrize("schema", SCHEMAS)
@pytest.mark.parametrize("temperature", [0.0, 1.0])
def test_json_schema_output_validates(engine, schema, temperature):
    params = SamplingParams(max_tokens=60, temperature=temperature, seed=1,
                            structured=StructuredOutput("json_schema", json.dumps(schema)))
    out = engine.generate([PROMPT], params)[0]
    assert out.finish_reason == "stop", out.text
    jsonschema.validate(json.loads(out.text), schema)
    assert_no_leaks(engine)


def test_choice_and_regex(engine):
    choice = engine.generate([PROMPT], SamplingParams(
        max_tokens=20, temperature=1.0, seed=4, structured=StructuredOutput("choice", choices=("fox", "rabbit"))))[0]
    assert choice.text in ("fox", "rabbit") and choice.finish_reason == "stop"
    regex = engine.generate([PROMPT], SamplingParams(
        max_tokens=20, temperature=0.0, structured=StructuredOutput("regex", r"[0-9]{3}-[a-c]")))[0]
    assert len(regex.text) == 5 and regex.text[:3].isdigit() and regex.text[3] == "-" and regex.text[4] in "abc"


def test_n_structured_sequences_each_validate(engine):
    schema = SCHEMAS[0]
    outs = engine.generate([PROMPT], SamplingParams(max_tokens=60, temperature=1.0, seed=9, n=3,
                                                    structured=StructuredOutput("json_schema", json.dumps(schema))))
    for out in outs:
        jsonschema.validate(json.loads(out.text), schema)


def test_invalid_schema_is_a_value_error(engine):
    with pytest.raises(ValueError, match="invalid json_schema"):
        engine.make_request(PROMPT, SamplingParams(structured=StructuredOutput("json_schema", "{nope")))


def test_stop_string_kept_with_include_stop_str_in_output(engine):
    ref = engine.generate([PROMPT], SamplingParams(max_tokens=12, temperature=0.0, ignore_eos=True))[0]
    stop = ref.text[4:6]
    cut = ref.text.index(stop)
    kept = engine.generate([PROMPT], SamplingParams(max_tokens=12, temperature=0.0, ignore_eos=True, stop=(stop,),
                                                    include_stop_str_in_output=True))[0]
    assert kept.text == ref.text[: cut + len(stop)] and kept.finish_reason == "stop"
    assert kept.stop_reason == stop and ref.stop_reason is None


def test_special_tokens_in_text_unless_skipped(engine):
    bos = engine.tokenizer.bos_token_id
    biased = dict(max_tokens=2, temperature=0.0, logit_bias=((bos, 100.0),), ignore_eos=True)
    assert engine.generate([PROMPT], SamplingParams(**biased))[0].text == ""
    assert engine.generate([PROMPT], SamplingParams(**biased, skip_special_tokens=False))[0].text == "<s><s>"


def test_stop_token_ids_end_the_request(engine):
    ref = engine.generate([PROMPT], SamplingParams(max_tokens=8, temperature=0.0, ignore_eos=True))[0]
    out = engine.generate([PROMPT], SamplingParams(max_tokens=8, temperature=0.0, ignore_eos=True,
                                                   stop_token_ids=(ref.token_ids[3],)))[0]
    first = ref.token_ids.index(ref.token_ids[3])
    assert out.token_ids == ref.token_ids[: first + 1] and out.finish_reason == "stop"
    assert out.stop_reason == ref.token_ids[3]
    assert out.text == engine.tokenizer.decode(ref.token_ids[:first], skip_special_tokens=True)


def test_cache_salt_separates_prefix_cache_entries(engine):
    prompt = [Segment.prefix([1] + list(range(60, 80))), Segment.text([90])]  # five full blocks of 4 cacheable
    params = SamplingParams(max_tokens=2, temperature=0.0)

    def hits(salt):
        rid = engine.add_request(prompt, params, cache_salt=salt)
        while True:
            for out in engine.step():
                if out.request_id == rid and out.finished:
                    return out.stats.prefix_hit_tokens

    assert hits("tenant-a") == 0
    assert hits("tenant-a") == 20  # the same salt shares the cached blocks
    assert hits("tenant-b") == 0
    assert hits(None) == 0
    assert hits(None) == 20
