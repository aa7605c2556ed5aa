"""The test suite, a package tree: shared helpers in ``tests.support``, fixtures in conftest.py
files, every module importable as ``tests.<area>.<module>`` (so any subset runs, in either
import mode)."""
