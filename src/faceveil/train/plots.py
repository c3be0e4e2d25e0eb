"""Plots of a train-on-anonymized run (matplotlib, headless). Drawing only: the numbers come from results.json."""
from __future__ import annotations

from pathlib import Path

import numpy as np


def _save(fig, path: Path) -> None:
    from ..io.atomic import atomic_path

    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=120, bbox_inches="tight", format="png")


def plot_ap_by_size(results: dict, path: Path) -> None:
    """Grouped bars: AP overall and per face-height bucket, one colour per method."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = results["methods"]
    groups = ["all"] + list(rows[0]["ap_by_size"])
    x = np.arange(len(groups))
    wbar = 0.8 / max(len(rows), 1)
    fig, ax = plt.subplots(figsize=(max(6, 1.2 * len(groups) + 0.4 * len(rows)), 4))
    for i, r in enumerate(rows):
        vals = [r["ap"]] + [r["ap_by_size"][g] for g in groups[1:]]
        ax.bar(x + (i - (len(rows) - 1) / 2) * wbar, [np.nan if v is None else v for v in vals], wbar, label=r["label"])
    n = rows[0]["n_gt_by_size"]
    ax.set_xticks(x, ["all"] + [f"{g} px\n({n[g]})" for g in groups[1:]])
    ax.set_ylabel("AP @ IoU 0.5 (clean test)")
    ax.set_ylim(0, 1)
    ax.set_title("Detector trained on anonymized faces, tested on clean faces")
    ax.legend(fontsize=8, bbox_to_anchor=(1.01, 1), loc="upper left")
    _save(fig, path)
    plt.close(fig)


def plot_ap_vs_time(results: dict, path: Path) -> None:
    """AP on the clean test split at each checkpoint against training time, one line per method."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for r in results["methods"]:
        c = r["curve"]
        ax.plot([p["seconds"] for p in c], [p["ap"] for p in c], marker="o", label=r["label"])
    ax.set_xlabel("training time (s)")
    ax.set_ylabel("AP @ IoU 0.5 (clean test)")
    ax.set_ylim(0, 1)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, bbox_to_anchor=(1.01, 1), loc="upper left")
    _save(fig, path)
    plt.close(fig)
