"""The step-breakdown benchmark runs end to end on the tiny test model (2 decode steps per
workload) and its phases add up: every phase is timed inside the step it belongs to."""

from __future__ import annotations

from benchmarks import bench_step


def test_smoke_run_prints_each_workloads_phases(tiny_model_dir, capsys):
    results = bench_step.main(["--model", str(tiny_model_dir), "--steps", "2"])
    printed = capsys.readouterr().out
    assert list(results) == [name for name, *_ in bench_step.WORKLOADS]
    assert "| workload | schedule (ms) | metadata (ms) | forward (ms) |" in printed
    for name, ms in results.items():
        assert f"| {name} |" in printed
        assert set(ms) == set(bench_step.PHASES)
        assert all(ms[p] >= 0 for p in bench_step.PHASES)
        parts = sum(ms[p] for p in bench_step.PHASES if p != "step")
        assert 0 < ms["forward"] and parts <= ms["step"] * 1.05 + 0.5  # medians of parts vs of the whole
