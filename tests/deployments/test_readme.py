"""The README's HTTP API examples run, unchanged but for the address, against the test app."""

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
def test_python_example(base_url, index, capsys):
    code = http_api_blocks("python")[index]
    assert DEFAULT_URL in code
    exec(compile(code.replace(DEFAULT_URL, base_url), f"README.md[python {index}]", "exec"), {})
    assert capsys.readouterr().out.strip()


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")
def test_curl_examples(base_url):
    for block in http_api_blocks("bash"):
        if not block.lstrip().startswith("curl"):
            continue
        out = subprocess.run(["bash", "-c", block.replace(DEFAULT_URL, base_url)], capture_output=True, text=True,
                             timeout=60)
        assert out.returncode == 0, out.stderr
        assert json.loads(out.stdout)["choices"][0]["message"]["role"] == "assistant"
