"""Plots bench/results/scale.json (bench/scale_bench.py): reconcile time and RSS against LocalModels.

Run with an interpreter that has matplotlib (.cache/venv-aiperf): `python bench/scale_plot.py IN OUT.png`.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def main() -> int:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    data = json.loads(Path(sys.argv[1]).read_text())
    fig, axes = plt.subplots(1, 3, figsize=(15, 4))
    operator = data.get("operator") or []
    router = data.get("router") or []
    if operator:
        n = [r["count"] for r in operator]
        axes[0].plot(
            n, [r["all_status_observed_s"] for r in operator], "o-", label="operator: all reconciled"
        )
        axes[1].plot(n, [r["operator_peak_rss_mib"] for r in operator], "o-", label="operator peak RSS")
    if router:
        n = [r["models"] for r in router]
        axes[0].plot(
            n, [r["last_create_to_listed_s"] for r in router], "s-", label="router: last create → listed"
        )
        axes[1].plot(n, [r["router_peak_rss_mib"] for r in router], "s-", label="router peak RSS")
        axes[2].plot(n, [r["added_p50_ms"] for r in router], "o-", label="added p50")
        axes[2].plot(n, [r["added_p99_ms"] for r in router], "s-", label="added p99")
    axes[0].axhline(120, color="grey", linestyle=":", label="goal: 120 s")
    axes[1].axhline(300, color="grey", linestyle=":", label="goal: 300 MB")
    titles = ("seconds", "MiB", "router added latency, ms (3 endpoints per model)")
    for ax, title in zip(axes, titles, strict=True):
        ax.set_xscale("log")
        ax.set_xlabel("LocalModels")
        ax.set_title(title)
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=8)
    load = data["machine"].get("load_avg_at_start")
    fig.suptitle(f"scale bench, {data['machine']['cpus']} CPUs, load at start {load}")
    fig.tight_layout()
    fig.savefig(sys.argv[2], dpi=100)
    return 0


if __name__ == "__main__":
    sys.exit(main())
