"""The batched sampler against hand-computed expectations: filters, penalties, bias, min_tokens,
stop tokens, seeds, and one step mixing requests with different parameters."""

from __future__ import annotations

import math
import random

import pytest
import torch

from engine.sampler import SampleRow, apply_penalties, filter_logits, process_logits, sample, sampling_logits
from evals.sampler_reference import reference_filter, reference_process
from engine.sampling_params import SamplingParams

INF = float("inf")


def row(params: SamplingParams, prompt=(0,), output=(), generator=None) -> SampleRow:
    return SampleRow(params, generator, list(prompt), list(output))


def test_filters_per_row_in_one_batch():
    logits = torch.tensor([[4.0, 3.0, 2.0, 1.0]] * 4)  # softmax ~ [0.644, 0.237, 0.087, 0.032]
    out = filter_logits(logits, top_k=torch.tensor([2, 0, 0, 3]), top_p=torch.tensor([1.0, 0.7, 1.0, 0.5]),
                        min_p=torch.tensor([0.0, 0.0, 0.2, 0.0]))
    finite = torch.isfinite(out)
    assert finite.tolist() == [
        [True, True, False, False],   # top_k 2
        [True, True, False, False],   # top_p 0.7: 0.644 < 0.7, so the second token stays
        [True, True, False, False],   # min_p 0.2: 0.2 * 0.644 = 0.129 > 0.087
        [True, False, False, False],  # top_k 3 then top_p 0.5: the first token alone holds 0.665
    ]
    assert out[finite].tolist() == [4.0, 3.0] * 3 + [4.0]


def test_penalties_by_hand():
    logits = torch.tensor([[2.0, -1.0, 0.5, 1.0, -2.0]])
    out = apply_penalties(logits, [[0, 4]], [[2, 2, 3]], presence=torch.tensor([0.5]),
                          frequency=torch.tensor([0.1]), repetition=torch.tensor([2.0]))
    # repetition 2 on seen tokens {0, 4, 2, 3}: 2/2, -2*2, 0.5/2, 1/2; frequency 0.1 x count;
    # presence 0.5 on output tokens {2, 3}.
    expected = [1.0, -1.0, 0.25 - 0.2 - 0.5, 0.5 - 0.1 - 0.5, -4.0]
    assert out[0].tolist() == pytest.approx(expected)


def test_greedy_rows_with_bias_min_tokens_stop_ids_and_penalties():
    logits = torch.tensor([
        [1.0, 3.0, 2.0, 0.0],  # logit_bias +5 on token 3 -> 3
        [1.0, 3.0, 2.0, 0.0],  # min_tokens 2 with 1 output token: EOS (1) masked -> 2
        [1.0, 3.0, 2.0, 0.0],  # min_tokens: stop token 2 and EOS 1 masked -> 0
        [1.0, 3.0, 2.0, 0.0],  # frequency penalty 1.5 on token 1 seen twice: 3 - 3 = 0 -> 2
        [1.0, 3.0, 2.0, 0.0],  # min_tokens reached: nothing masked -> 1
    ])
    g = dict(temperature=0.0, max_tokens=8)
    rows = [
        row(SamplingParams(**g, logit_bias=((3, 5.0),))),
        row(SamplingParams(**g, min_tokens=2), output=[0]),
        row(SamplingParams(**g, min_tokens=2, stop_token_ids=(2,))),
        row(SamplingParams(**g, frequency_penalty=1.5), output=[1, 1]),
        row(SamplingParams(**g, min_tokens=1), output=[0]),
    ]
    out = sample(logits, rows, torch.Generator().manual_seed(0), eos_token_ids=(1,))
    assert out.token_ids == [3, 2, 0, 2, 1]
    # Logprobs are those of the unprocessed distribution.
    raw = torch.log_softmax(logits[0], -1)
    assert out.logprobs == pytest.approx([raw[3].item(), raw[2].item(), raw[0].item(), raw[2].item(), raw[1].item()])


def test_ignore_eos_keeps_eos_sampleable_under_min_tokens():
    logits = torch.tensor([[0.0, 5.0, 1.0]])
    out = sample(logits, [row(SamplingParams(temperature=0.0, min_tokens=3, ignore_eos=True))],
                 torch.Generator(), eos_token_ids=(1,))
    assert out.token_ids == [1]


def test_top_logprobs_per_row():
    logits = torch.tensor([[0.0, 2.0, 1.0], [3.0, 0.0, 1.0]])
    out = sample(logits, [row(SamplingParams(temperature=0.0, top_logprobs=2)), row(SamplingParams(temperature=0.0))],
                 torch.Generator())
    lp = torch.log_softmax(logits, -1)
    assert out.top_logprobs[0] == pytest.approx({1: lp[0, 1].item(), 2: lp[0, 2].item()})
    assert list(out.top_logprobs[0]) == [1, 2]
    assert out.top_logprobs[1] is None


def test_seeded_rows_are_batch_invariant_and_draws_follow_the_distribution():
    logits = torch.log(torch.tensor([[0.5, 0.3, 0.2, 1e-9]]))
    seeded = SamplingParams(temperature=1.0, seed=5)
    alone = sample(logits, [row(seeded, generator=torch.Generator().manual_seed(5))], torch.Generator()).token_ids
    batch = torch.cat([torch.zeros(1, 4), logits, torch.zeros(1, 4)])
    mixed = sample(batch, [row(SamplingParams()), row(seeded, generator=torch.Generator().manual_seed(5)),
                           row(SamplingParams())], torch.Generator().manual_seed(99)).token_ids
    assert mixed[1] == alone[0]
    n = 4000
    draws = sample(logits.expand(n, 4), [row(SamplingParams())] * n, torch.Generator().manual_seed(1)).token_ids
    freq = [draws.count(t) / n for t in range(4)]
    assert freq[0] == pytest.approx(0.5, abs=0.03) and freq[1] == pytest.approx(0.3, abs=0.03)
    assert freq[3] == 0.0


def test_temperature_sharpens_and_top_k_minus_one_keeps_all():
    assert SamplingParams(top_k=-1).top_k == 0
    logits = torch.log(torch.tensor([[0.6, 0.4]]))
    n = 2000
    cold = sample(logits.expand(n, 2), [row(SamplingParams(temperature=0.25))] * n, torch.Generator().manual_seed(2))
    # p ~ 0.6^4 / (0.6^4 + 0.4^4) = 0.835
    assert cold.token_ids.count(0) / n == pytest.approx(0.6**4 / (0.6**4 + 0.4**4), abs=0.03)


@pytest.mark.parametrize("field,value", [("min_p", 1.5), ("presence_penalty", 3.0), ("repetition_penalty", 0.0),
                                         ("top_k", -2), ("min_tokens", 99), ("n", 0)])
def test_bad_parameters_are_value_errors(field, value):
    with pytest.raises(ValueError, match=field):
        SamplingParams(**{field: value})


def test_unseen_tokens_keep_their_logits_under_penalties():
    logits = torch.tensor([[1.0, 2.0]])
    out = apply_penalties(logits, [[]], [[]], torch.tensor([1.0]), torch.tensor([1.0]), torch.tensor([3.0]))
    assert out.tolist() == [[1.0, 2.0]]
    assert math.isfinite(out.sum().item())


def random_params(rng: random.Random, vocab: int) -> SamplingParams:
    return SamplingParams(
        max_tokens=8, temperature=rng.choice([0.0, 0.5, 1.0, 1.7]), top_k=rng.choice([0, 1, 3, 50]),
        top_p=rng.choice([1.0, 0.9, 0.3]), min_p=rng.choice([0.0, 0.05, 0.3]),
        min_tokens=rng.choice([0, 3]), stop_token_ids=tuple(rng.sample(range(vocab), rng.randint(0, 2))),
        ignore_eos=rng.random() < 0.3, presence_penalty=rng.choice([0.0, 0.7, -0.4]),
        frequency_penalty=rng.choice([0.0, 0.3]), repetition_penalty=rng.choice([1.0, 1.3, 0.8]),
        logit_bias=tuple((t, rng.uniform(-5, 5)) for t in rng.sample(range(vocab), rng.randint(0, 3))))


@pytest.mark.parametrize("seed", range(6))
def test_batched_processing_equals_the_per_row_reference(seed):
    rng = random.Random(seed)
    num_rows, vocab = 7, 37  # odd sizes: two bitmask words, the second partly used
    gen = torch.Generator().manual_seed(seed)
    logits = torch.randn(num_rows, vocab, generator=gen) * 3
    rows = [row(random_params(rng, vocab), prompt=[rng.randrange(vocab) for _ in range(rng.randint(1, 9))],
                output=[rng.randrange(vocab) for _ in range(rng.randint(0, 5))]) for _ in range(num_rows)]
    bitmask = torch.randint(-2**31, 2**31 - 1, (num_rows, 2), generator=gen, dtype=torch.int64).to(torch.int32)
    masked = [i for i in range(num_rows) if rng.random() < 0.5]
    bits = ((bitmask[:, :, None].to(torch.int64) >> torch.arange(32)) & 1).reshape(num_rows, 64)[:, :vocab].bool()
    eos = (rng.randrange(vocab),)
    got = process_logits(logits, rows, eos, bitmask, masked)
    for i, r in enumerate(rows):
        want = reference_process(logits[i], r.params, r.prompt_ids, r.output_ids, eos,
                                 bits[i] if i in masked else None)
        assert torch.equal(torch.isinf(got[i]), torch.isinf(want)), i
        finite = torch.isfinite(want)
        assert torch.allclose(got[i][finite], want[finite], atol=1e-5), i
    drawn = [i for i, r in enumerate(rows) if not r.params.greedy]
    filtered = sampling_logits(got[drawn], [rows[i].params for i in drawn])
    for j, i in enumerate(drawn):
        want = reference_filter(got[i], rows[i].params)
        assert torch.equal(torch.isinf(filtered[j]), torch.isinf(want)), i
        finite = torch.isfinite(want)
        assert torch.allclose(filtered[j][finite], want[finite], atol=1e-5), i


def test_min_tokens_with_structured_output_is_refused():
    from engine.sampling_params import StructuredOutput

    with pytest.raises(ValueError, match="min_tokens cannot be combined"):
        SamplingParams(max_tokens=4, min_tokens=1, structured=StructuredOutput("json_object"))
