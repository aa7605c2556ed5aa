"""Workload simulation for routing policies (tests and benchmarks only; not shipped)."""
