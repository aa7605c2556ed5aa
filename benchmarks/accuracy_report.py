"""Tables and the accuracy-vs-recompute plot of ``bench_accuracy`` (no measuring here)."""

from __future__ import annotations

from pathlib import Path

from benchmarks.bench_report import markdown_table, pyplot_or_none

from engine.segments import LinkPolicy

POLICY_HEADERS = ["policy", "accuracy", "single", "two-hop", "output == full", "KL(full||policy) 1st token",
                  "recomputed", "TTFT ms (median)", "TTFT full / policy", "compiled in batch"]


def policy_table(summary: dict[str, dict]) -> str:
    """One row per policy: accuracies are means over every prompt of every seed."""
    rows = []
    for label, r in summary.items():
        kinds = r["accuracy_by_kind"]
        ttft = r["ttft_s"]
        rows.append([
            label, _pct(r["accuracy"]), _pct(kinds.get("single")), _pct(kinds.get("two_hop")),
            _pct(r["same_as_full"]), f"{r['kl_first_token']:.4f}", _pct(r["recomputed_fraction"]),
            "-" if ttft is None else f"{ttft * 1000:.0f}",
            "-" if r["ttft_speedup_vs_full"] is None else f"{r['ttft_speedup_vs_full']:.1f}x",
            r["batch_compiled_tokens"],
        ])
    return markdown_table(POLICY_HEADERS, rows)


def seed_table(summary: dict[str, dict], seeds: list[int]) -> str:
    """Accuracy per seed, and each policy's accuracy relative to full's over all seeds."""
    full = summary["full"]["accuracy"]
    rows = [[label, *(_pct(r["accuracy_per_seed"][s]) for s in seeds),
             "-" if not full else f"{r['accuracy'] / full:.2f}"] for label, r in summary.items()]
    return markdown_table(["policy", *(f"seed {s}" for s in seeds), "accuracy / full's"], rows)


def plot_accuracy(path: Path, summary: dict[str, dict], families_of: dict[str, str], title: str) -> bool:
    """Accuracy against recomputed fraction: a point per policy, a line through each policy
    family (``families_of``: label -> family, e.g. the policy name and document order, by
    recompute), full as a horizontal reference. False without matplotlib."""
    plt = pyplot_or_none(path)
    if plt is None:
        return False
    fig, ax = plt.subplots(figsize=(7, 4.5))
    ax.axhline(summary["full"]["accuracy"] * 100, color="grey", linestyle="--", label="full")
    families: dict[str, list[str]] = {}
    for label in summary:
        if label != "full":
            families.setdefault(families_of[label], []).append(label)
    for name, labels in families.items():
        labels.sort(key=lambda lb: summary[lb]["recomputed_fraction"])
        xs = [summary[lb]["recomputed_fraction"] * 100 for lb in labels]
        ys = [summary[lb]["accuracy"] * 100 for lb in labels]
        ax.plot(xs, ys, marker="o", label=name)
        for lb, x, y in zip(labels, xs, ys):
            ax.annotate(lb, (x, y), textcoords="offset points", xytext=(4, 4), fontsize=7)
    ax.set(title=title, xlabel="recomputed prompt tokens (%)", ylabel="answers right (%)",
           xlim=(0, 103), ylim=(0, 103))
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return True


def family_of(policy: LinkPolicy, order: str) -> str:
    """The curve a policy's point belongs to: its name and every field but its budget (k,
    ratio, tail), then its document order unless the client's."""
    name = policy.name + ("+bos" if policy.chunk_bos else "")
    return name + ("" if order == "as_given" else f"@{order}")


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value:.1%}"
