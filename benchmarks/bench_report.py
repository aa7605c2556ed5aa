"""Tables, plots and the RESULTS.md section of a benchmark run (no measuring here)."""

from __future__ import annotations

import datetime
import platform
import subprocess
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]


def markdown_table(headers: list[str], rows: list[list]) -> str:
    """A GitHub markdown table; floats printed with 3 significant digits."""

    def cell(v) -> str:
        return f"{v:.3g}" if isinstance(v, float) else str(v)

    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def machine_description(device: torch.device) -> dict[str, str]:
    """What the numbers were measured on: accelerator, versions, date, commit."""
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        accel = f"{props.name} ({props.total_memory / 2**30:.0f} GiB), CUDA {torch.version.cuda}"
    else:
        accel = f"CPU ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"
    try:
        import flashinfer

        fi_version = flashinfer.__version__
    except ImportError:
        fi_version = "not installed"
    return {
        "device": accel,
        "torch": torch.__version__,
        "flashinfer": fi_version,
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "commit": git_commit(),
    }


def git_commit() -> str:
    """Short commit hash, with ``+dirty`` when tracked files differ from it."""
    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True).stdout.strip()

    commit = git("rev-parse", "--short", "HEAD") or "unknown"
    return commit + ("+dirty" if git("status", "--porcelain", "--untracked-files=no") else "")


def update_results(path: Path, key: str, markdown: str) -> None:
    """Replace this benchmark's section of ``path`` (between its markers), or append it."""
    begin, end = f"<!-- {key}:begin -->", f"<!-- {key}:end -->"
    block = f"{begin}\n{markdown.strip()}\n{end}\n"
    text = path.read_text() if path.exists() else "# Benchmark results\n\n"
    if begin in text and end in text:
        head, rest = text.split(begin, 1)
        text = head + block + rest.split(end, 1)[1].lstrip("\n")
    else:
        text = text.rstrip("\n") + "\n\n" + block
    path.write_text(text)


def pyplot_or_none(path: Path):
    """``matplotlib.pyplot`` on the Agg backend, or None (saying so) when the bench extra is
    not installed and ``path`` cannot be drawn."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print(f"matplotlib is not installed (the bench extra): skipped {path.name}")
        return None
    return plt


def save_line_plot(path: Path, title: str, xlabel: str, ylabel: str, series: dict[str, tuple[list, list]],
                   logx: bool = False, logy: bool = False) -> bool:
    """One line per series (name -> (xs, ys)); False when matplotlib is not installed."""
    plt = pyplot_or_none(path)
    if plt is None:
        return False
    fig, ax = plt.subplots(figsize=(6, 4))
    for name, (xs, ys) in series.items():
        ax.plot(xs, ys, marker="o", label=name)
    if logx:
        ax.set_xscale("log", base=2)
    if logy:
        ax.set_yscale("log")
    ax.set(title=title, xlabel=xlabel, ylabel=ylabel)
    ax.grid(True, alpha=0.3)
    ax.legend()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return True
