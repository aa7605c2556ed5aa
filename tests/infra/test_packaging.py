"""The wheel: the runtime packages and the embedded default config, which loads from an
installed copy (no source checkout next to it)."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


# Not sources of the wheel (setuptools would also leave its build/ in a tree it builds in place).
NOT_SOURCES = shutil.ignore_patterns(".git", ".venv", ".store", "build", "*.egg-info", "__pycache__", "models")


def test_the_wheel_ships_the_default_config_and_it_loads(tmp_path):
    source = tmp_path / "source"  # a copy: building in place leaves build/ behind in the checkout
    shutil.copytree(ROOT, source, ignore=NOT_SOURCES)
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q",
                    "-w", str(tmp_path / "dist"), str(source)], check=True, capture_output=True, timeout=300)
    (wheel,) = (tmp_path / "dist").glob("epic_serve-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert "deployments/default.yaml" in names
    packages = {n.split("/")[0] for n in names if n.endswith(".py")}
    assert {"configs", "engine", "kvstore", "router", "deployments", "documents", "warmup"} <= packages
    assert not packages & {"tests", "benchmarks", "sim"}

    site = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(site)  # what pip install puts into site-packages
    work = tmp_path / "work"
    work.mkdir()
    code = ("import deployments.config as c; from deployments.config import load_config\n"
            "config = load_config()\n"
            "print(c.__file__); print(config.engine.model); print(config.store.persistent)")
    out = subprocess.run([sys.executable, "-c", code], cwd=work, capture_output=True, text=True, check=True,
                         env={"PYTHONPATH": str(site), "PATH": "/usr/bin:/bin"}, timeout=120).stdout.split("\n")
    assert out[0] == str(site / "deployments" / "config.py")  # the installed copy, not the checkout
    assert out[1] == "smollm2-135m-instruct"
    assert out[2] == f"dir://{work / '.store'}"
