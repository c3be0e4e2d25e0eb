"""The report of a train-on-anonymized run: report.md and plots (matplotlib, headless).

Drawing only: every number comes from the results dict (results.json).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..eval.metrics import QUALITY_KEYS
from ..io.atomic import atomic_path


def _save(fig, path: Path) -> None:
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


def _f(v, nd: int = 3) -> str:
    return "–" if v is None or (isinstance(v, float) and not np.isfinite(v)) else f"{v:.{nd}f}"


def report_markdown(r: dict) -> str:
    d = r["data"]
    lines = [
        "# Train on anonymized, test on clean",
        "",
        f"{d['n_train']} train images ({d['n_train_faces']} faces), {d['n_test']} test images "
        f"({d['n_test_faces']} faces); split seed {r['split_seed']}, training seed {r['seed']}, device {r['device']}, "
        + (f"budget {r['budget_s']:.0f} s per method" if r["budget_s"] else "no time budget")
        + (f", at most {r['max_steps']} steps" if r["max_steps"] else "") + ".",
        f"Detector: {r['detector']['name']} ({r['detector']['params'] / 1e6:.2f} M parameters), trained from scratch "
        f"per method. AP at IoU 0.5, all-point interpolation, on the clean test split.",
        "",
        "| method | family | AP | cycle fidelity | post-hoc fidelity | operation fidelity | AP on anonymized test | steps | train s |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for m in r["methods"]:
        lines.append(f"| {m['label']} | {m['family']} | {_f(m['ap'])} | {_f(m['cycle_fidelity'])} | "
                     f"{_f(m['posthoc_fidelity'])} | {_f(m['operation_fidelity'])} | {_f(m['ap_anonymized_test'])} | "
                     f"{m['train']['steps']} | {m['train']['seconds']:.0f} |")
    names = list(r["methods"][0]["ap_by_size"])
    n = r["methods"][0]["n_gt_by_size"]
    lines += ["", "AP by face height (px; test faces per bucket in brackets):", "",
              "| method | " + " | ".join(f"{k} ({n[k]})" for k in names) + " |",
              "|---" * (len(names) + 1) + "|"]
    for m in r["methods"]:
        lines.append(f"| {m['label']} | " + " | ".join(_f(m["ap_by_size"][k]) for k in names) + " |")
    lines += ["", "Face-crop quality (train split, original vs anonymized):", "",
              "| method | L1 | L2 (MSE) | SSIM | PSNR |", "|---|---|---|---|---|"]
    for m in r["methods"]:
        q = m["quality"]
        if q:
            lines.append(f"| {m['label']} | {_f(q['l1'], 1)} | {_f(q['mse'], 0)} | {_f(q['ssim'])} | {_f(q['psnr'], 1)} |")
    c = r["correlation"]
    lines += ["", "Pearson r of each quality metric with cycle fidelity across methods ('none' left out; p in brackets):",
              "", "| set | n | " + " | ".join(QUALITY_KEYS) + " |", "|---" * (len(QUALITY_KEYS) + 2) + "|"]
    for name, tab in [("all", c["all"])] + sorted(c["by_family"].items()):
        n_ = max(v["n"] for v in tab.values())
        lines.append(f"| {name} | {n_} | " + " | ".join(
            "–" if tab[k]["r"] is None else f"{tab[k]['r']:+.2f} ({tab[k]['p']:.2f})" for k in QUALITY_KEYS) + " |")
    lines += ["", "AP at the checkpoints (fraction of the budget: AP):", ""]
    for m in r["methods"]:
        lines.append(f"- {m['label']}: " + ", ".join(f"{p['fraction']:.2f} ({p['seconds']:.0f} s): {_f(p['ap'])}" for p in m["curve"]))
    lines += ["", "Definitions (DartBlur's names): cycle fidelity = AP of the detector trained on anonymized data, on "
              "clean test images, relative to the clean-trained detector's AP. Post-hoc fidelity = AP of the "
              "anonymized-trained detector on anonymized test images, scored against the clean-trained detector's "
              f"detections on clean images (score >= {_f(r['pseudo_gt_threshold'], 2)}, its best-F1 cut-off). "
              "Operation fidelity = the clean-trained detector on anonymized test images against its own clean "
              "detections.", "", "Plots: ap_by_size.png, ap_vs_time.png. Left out: " + "; ".join(r["left_out"]) + ".", ""]
    return "\n".join(lines)
