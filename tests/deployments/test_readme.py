"""The README's HTTP API examples run, unchanged but for the address, against `make serve` (the
embedded default, SmolLM2-135M-Instruct), and answer with the facts they ask for."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[2] / "README.md"
DEFAULT_URL = "http://127.0.0.1:8000"


def http_api_blocks(language: str) -> list[str]:
    text = README.read_text()
    start = text.index("## HTTP API")
    end = text.find("\n## ", start + 1)
    section = text[start:] if end < 0 else text[start:end]
    return re.findall(rf"```{language}\n(.*?)```", section, flags=re.S)


def test_readme_has_examples():
    assert len(http_api_blocks("python")) >= 2
    assert any(b.lstrip().startswith("curl") for b in http_api_blocks("bash"))


@pytest.mark.parametrize("index", range(len(http_api_blocks("python"))))
def test_python_example(make_serve, index, capsys):
    code = http_api_blocks("python")[index]
    assert DEFAULT_URL in code
    exec(compile(code.replace(DEFAULT_URL, make_serve.url), f"README.md[python {index}]", "exec"), {})
    out = capsys.readouterr().out.lower()
    assert out.strip()
    if "where does the ferry leave from?" in code.lower():
        assert "north harbor" in out and "copper lantern" in out, out


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")
def test_curl_examples(make_serve):
    for block in http_api_blocks("bash"):
        if not block.lstrip().startswith("curl"):
            continue
        out = subprocess.run(["bash", "-c", block.replace(DEFAULT_URL, make_serve.url)], capture_output=True,
                             text=True, timeout=120)
        assert out.returncode == 0, out.stderr
        message = json.loads(out.stdout)["choices"][0]["message"]
        assert message["role"] == "assistant"
        if "ferry leave from" in block:
            assert "north harbor" in message["content"].lower(), message
