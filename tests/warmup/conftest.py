"""Warm-up fixtures: the serving tests' tiny chat model (built offline) and a corpus of short
generated documents."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

# The tiny model builder lives with the serving tests; reuse it rather than copy it.
sys.path.append(str(Path(__file__).resolve().parents[1] / "deployments"))


@pytest.fixture(scope="session")
def warmup_model_dir(tmp_path_factory) -> Path:
    from tiny_model import build_tiny_model

    return build_tiny_model(tmp_path_factory.mktemp("warmup-tiny-llama"))
