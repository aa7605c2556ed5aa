"""The accuracy benchmark runs end to end on epic-tiny (2 prompts) and reports exact invariants:
full agrees with itself, recomputes every token and has KL 0; chunks are linked, not compiled,
inside every policy's batch; no policy sees another's prompts in the prefix cache."""

from __future__ import annotations

import json

import pytest

from benchmarks import bench_accuracy

LABELS = ["full", "prefix", "naive", "legolink:k=2", "cacheblend:ratio=0.5", "naive:tail=1.0", "full@lexical"]


def test_smoke_run_prints_and_saves_the_side_by_side_table(tmp_path, capsys):
    out, plot = tmp_path / "acc.json", tmp_path / "acc.png"
    results = bench_accuracy.main([
        "--model", "epic-tiny", "--seeds", "1", "--n", "2", "--docs", "2-3", "--doc-tokens", "100",
        "--max-tokens", "4", "--policies", "prefix,naive,legolink:k=2,cacheblend:ratio=0.5,naive:tail=1.0,full@lexical",
        "--ttft-n", "1",
        "--out", str(out), "--plot", str(plot)])
    printed = capsys.readouterr().out

    assert list(results["policies"]) == LABELS, "full is added first, the rest keep their order"
    assert json.loads(out.read_text())["policies"].keys() == results["policies"].keys()
    assert plot.stat().st_size > 0
    assert "| policy | accuracy | single | two-hop | output == full |" in printed
    assert "| policy | seed 1 | accuracy / full's |" in printed
    for label in LABELS:
        assert f"| {label} |" in printed

    full = results["policies"]["full"]
    assert full["same_as_full"] == 1.0 and full["recomputed_fraction"] == 1.0
    assert full["kl_first_token"] == 0.0 and full["ttft_speedup_vs_full"] == 1.0
    for label in LABELS:
        row = results["policies"][label]
        assert row["batch_compiled_tokens"] == 0, "every chunk was resident before the batch"
        assert row["kl_first_token"] >= 0.0 and row["ttft_s"] > 0
        assert set(row["accuracy_by_kind"]) <= {"single", "two_hop"} and list(row["accuracy_per_seed"]) == [1]
    # epic-tiny's template head is shorter than a KV block, so prefix caching reuses nothing: the
    # prefix policy computes exactly what full does, unless an earlier policy's prompts were
    # left in the prefix cache.
    prefix = results["policies"]["prefix"]
    assert prefix["recomputed_fraction"] == 1.0 and prefix["same_as_full"] == 1.0
    for label in LABELS[2:5]:
        assert results["policies"][label]["recomputed_fraction"] < 1.0
    # An unlimited tail recomputes everything: exactly full's output.
    tail = results["policies"]["naive:tail=1.0"]
    assert tail["recomputed_fraction"] == 1.0 and tail["same_as_full"] == 1.0
    assert results["policies"]["full@lexical"]["recomputed_fraction"] == 1.0

    prompts = results["prompts"]
    assert [(p["seed"], p["index"]) for p in prompts] == [(1, 0), (1, 1)]
    for p in prompts:
        assert set(p["outputs"]) == set(LABELS) and 2 <= p["num_documents"] <= 3
        assert p["outputs"]["full"]["same_as_full"] and p["outputs"]["full"]["kl_first_token"] == 0.0
    cold = results["setup"]["cold_compile"][1]
    assert cold["tokens"] > 0 and cold["chunks"] >= 4


@pytest.mark.parametrize("argv, message", [
    (["--policies", "full,full"], "'full' is listed twice"),
    (["--policies", "legolink:depth=2"], "LinkPolicy has no field 'depth'"),
    (["--docs", "4-x"], "invalid literal"),
    (["--n", "2", "--ttft-n", "3"], "--ttft-n in"),
])
def test_bad_arguments_are_rejected(argv, message, capsys):
    with pytest.raises(SystemExit):
        bench_accuracy.main(argv)
    assert message in capsys.readouterr().err
