"""Matplotlib figures for the evaluation bench (PNG, written atomically)."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..io.atomic import atomic_path


def _plt():
    import matplotlib

    matplotlib.use("Agg")  # no display; set before pyplot is imported
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: Path) -> Path:
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format=path.suffix.lstrip(".") or "png", dpi=110, bbox_inches="tight")
    _plt().close(fig)
    return path


def det_plot(curves: list[tuple[str, list, list]], path: Path, title: str = "") -> Path:
    """DET curves (FNMR against FMR on normal-deviate axes), one per (label, fmr, fnmr)."""
    from scipy.stats import norm

    plt = _plt()
    fig, ax = plt.subplots(figsize=(5.5, 5))
    lo, hi = 1e-3, 0.999
    ticks = [0.001, 0.01, 0.05, 0.2, 0.5, 0.8, 0.95, 0.99]
    for label, fmr, fnmr in curves:
        x = norm.ppf(np.clip(fmr, lo, hi))
        y = norm.ppf(np.clip(fnmr, lo, hi))
        ax.plot(x, y, label=label, lw=1.5)
    ax.plot(norm.ppf([lo, hi]), norm.ppf([lo, hi]), ":", color="grey", lw=0.8, label="EER line")
    t = norm.ppf(ticks)
    ax.set_xticks(t, [f"{v:g}" for v in ticks])
    ax.set_yticks(t, [f"{v:g}" for v in ticks])
    ax.set_xlim(norm.ppf(lo), norm.ppf(hi))
    ax.set_ylim(norm.ppf(lo), norm.ppf(hi))
    ax.set_xlabel("false match rate (FMR)")
    ax.set_ylabel("false non-match rate (FNMR)")
    ax.grid(alpha=0.3)
    ax.set_title(title or "DET (dlib descriptor attacker)")
    ax.legend(fontsize=7, loc="upper right")
    return _save(fig, path)


def rate_by_size_plot(rates: dict[str, dict[str, float | None]], path: Path, title: str) -> Path:
    """Grouped bars: detection rate per size bucket, one bar per method."""
    plt = _plt()
    methods = list(rates)
    buckets = list(next(iter(rates.values())).keys()) if rates else []
    fig, ax = plt.subplots(figsize=(max(6, 1.2 * len(buckets) + 2), 4))
    w = 0.8 / max(len(methods), 1)
    for k, m in enumerate(methods):
        vals = [np.nan if rates[m].get(b) is None else rates[m][b] for b in buckets]
        ax.bar(np.arange(len(buckets)) + k * w - 0.4 + w / 2, vals, w, label=m)
    ax.set_xticks(np.arange(len(buckets)), [f"{b} px" for b in buckets])
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("detection rate after anonymization")
    ax.set_xlabel("face height")
    ax.set_title(title)
    ax.legend(fontsize=7, ncol=2)
    ax.grid(axis="y", alpha=0.3)
    return _save(fig, path)


def pareto_front(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Indices of points not dominated when lower x (privacy leak) and higher y (utility) are better."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    keep = []
    for i in range(len(x)):
        dominated = np.any((x <= x[i]) & (y >= y[i]) & ((x < x[i]) | (y > y[i])))
        if not dominated and np.isfinite(x[i]) and np.isfinite(y[i]):
            keep.append(i)
    return np.array(sorted(keep, key=lambda i: x[i]), int)


def privacy_utility_plot(labels: list[str], x, y, path: Path, xlabel: str, ylabel: str) -> Path:
    plt = _plt()
    x, y = np.asarray(x, float), np.asarray(y, float)
    fig, ax = plt.subplots(figsize=(6, 4.5))
    ax.scatter(x, y, s=25, color="tab:blue")
    for lab, a, b in zip(labels, x, y):
        if np.isfinite(a) and np.isfinite(b):
            ax.annotate(lab, (a, b), fontsize=7, xytext=(3, 3), textcoords="offset points")
    front = pareto_front(x, y)
    if len(front):
        ax.plot(x[front], y[front], "-o", color="tab:red", ms=7, mfc="none", label="Pareto front")
        ax.legend(fontsize=8)
    ax.set_xlabel(xlabel + "  (lower = more private)")
    ax.set_ylabel(ylabel + "  (higher = more useful)")
    ax.grid(alpha=0.3)
    return _save(fig, path)
