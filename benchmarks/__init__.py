"""Standalone benchmark scripts (run as ``python benchmarks/NAME.py``); a package so the tests
can import the scripts they smoke-test."""
