"""Evaluation workloads and scoring for benchmarks of the engine."""
