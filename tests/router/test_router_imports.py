"""The routing policy runs in a plain process: no torch anywhere in router/, ray only in the
Serve adapter."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_pure_router_modules_import_neither_torch_nor_ray():
    code = (
        "import sys\n"
        "import router.config, router.hint, router.index, router.policy, router.stats\n"
        "print(sorted(m for m in ('torch', 'ray') if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
