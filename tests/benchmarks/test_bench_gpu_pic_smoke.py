"""The GPU benchmark script runs end to end on CPU (tiny model, torch backend) and writes what
it measured: tables into its RESULTS section, plots, and cache counts showing real reuse."""

from __future__ import annotations

from dataclasses import replace

import pytest

from benchmarks import bench_gpu_pic


def test_smoke_run_writes_measured_sections(tmp_path):
    s = replace(
        bench_gpu_pic.SMOKE_SETUP, contexts=(128,), rates=(16.0,), requests_per_rate=2, corpus_chunks=3,
        output_tokens=2, decode_batches=(2,), decode_context=32, decode_tokens=3,
    )
    results_md = tmp_path / "RESULTS.md"
    results_md.write_text("# Benchmark results\n\nsomeone else's section\n")
    results = bench_gpu_pic.run_benchmark(s, list(bench_gpu_pic.PARTS), tmp_path / "model", tmp_path / "plots",
                                          results_md, smoke=True)

    prompt = s.prefix_tokens + 128 + s.question_tokens
    ttft = results["ttft"]
    assert ttft["full"][128]["recomputed"] == prompt and ttft["full"][128]["cached"] == 0
    for policy in ("legolink-16", "cacheblend-15"):
        assert ttft[policy][128]["cached"] == 128, "the chunks were linked from the pool"
        assert ttft[policy][128]["recomputed"] < prompt
    for policy in bench_gpu_pic.POLICIES:
        assert ttft[policy][128]["ttft_s"] > 0
        assert results["poisson"][policy][16.0]["throughput_rps"] > 0
    assert results["decode"][2]["steps"] > 0 and results["decode"][2]["tokens_per_s"] > 0

    text = results_md.read_text()
    assert text.startswith("# Benchmark results\n\nsomeone else's section\n")
    for part in bench_gpu_pic.PARTS:
        assert text.count(f"<!-- bench_gpu_pic_smoke:{part}:begin -->") == 1
    assert "| context tokens | full ms | cacheblend-15 ms | legolink-16 ms |" in text
    assert "| offered req/s | policy |" in text and "| batch | timed steps |" in text
    for plot in ("ttft_vs_context", "poisson_ttft", "poisson_throughput", "decode_vs_limit"):
        assert (tmp_path / "plots" / f"{plot}.png").stat().st_size > 0
    # Running one part again replaces its own section only.
    results_md.write_text(text.replace("| batch | timed steps |", "| stale decode table |"))
    bench_gpu_pic.run_benchmark(s, ["decode"], tmp_path / "model", tmp_path / "plots", results_md, smoke=True)
    text = results_md.read_text()
    for part in bench_gpu_pic.PARTS:
        assert text.count(f"<!-- bench_gpu_pic_smoke:{part}:begin -->") == 1
    assert "someone else's section" in text and "| context tokens | full ms |" in text
    assert "stale decode table" not in text and "| batch | timed steps |" in text


def test_bad_parts_are_rejected(capsys):
    with pytest.raises(SystemExit):
        bench_gpu_pic.main(["--smoke", "--parts", "ttft,speed"])
    assert "comma-separated subset of ttft, poisson, decode" in capsys.readouterr().err
