"""The README's Python engine example runs as written (against the committed default model)."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_readme_engine_example(capsys, monkeypatch):
    text = (ROOT / "README.md").read_text()
    section = text[text.index("## Python engine API") :]
    section = section[: section.index("\n## ", 1)]
    (code,) = re.findall(r"```python\n(.*?)```", section, flags=re.S)
    monkeypatch.chdir(ROOT)
    namespace: dict = {}
    exec(compile(code, "README.md[engine]", "exec"), namespace)
    assert capsys.readouterr().out.strip()
    first, again = namespace["first"], namespace["again"]
    assert first.stats.compiled_tokens == sum(len(c) for c in namespace["chunks"])
    assert again.stats.chunk_hit_tokens == first.stats.compiled_tokens and again.stats.compiled_tokens == 0
