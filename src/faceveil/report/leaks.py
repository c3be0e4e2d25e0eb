"""Drawing for the leak evaluation: the precision-recall plot and crops of the leaked faces."""
from __future__ import annotations

from pathlib import Path

import numpy as np


def plot_pr_curve(pr, path: str | Path, operating: tuple[float, float] | None = None, title: str = "") -> None:
    """Precision against recall (``pr`` is a ``PRResult``); ``operating`` marks (recall, precision) in use."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from ..io.atomic import atomic_path

    fig, ax = plt.subplots(figsize=(5.5, 4.5), dpi=120)
    ax.plot(pr.recall, pr.precision, lw=1.5, label=f"detector (AP {pr.ap:.3f})")
    if operating is not None:
        ax.plot([operating[0]], [operating[1]], "o", color="C3", label="operating point")
    ax.set_xlabel("recall (IoU >= 0.5)")
    ax.set_ylabel("precision")
    ax.set_xlim(0, 1.0)
    ax.set_ylim(0, 1.02)
    ax.grid(alpha=0.3)
    ax.set_title(title or f"{pr.positives} labelled faces")
    ax.legend(loc="lower left")
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)


def leak_crop(image: np.ndarray, anonymized: np.ndarray, box, context: float = 2.0, min_side: int = 128) -> np.ndarray:
    """The labelled face with some surroundings: anonymized pixels tinted red, the labelled box in green."""
    import cv2

    h, w = image.shape[:2]
    x1, y1, x2, y2 = (float(v) for v in box)
    cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
    half = max(x2 - x1, y2 - y1, 24.0) * context / 2
    cx1, cy1 = int(max(0, np.floor(cx - half))), int(max(0, np.floor(cy - half)))
    cx2, cy2 = int(min(w, np.ceil(cx + half))), int(min(h, np.ceil(cy + half)))
    crop = image[cy1:cy2, cx1:cx2].astype(np.float32)
    m = anonymized[cy1:cy2, cx1:cx2]
    crop[m] = crop[m] * 0.5 + np.array([255, 0, 0], np.float32) * 0.5
    crop = crop.astype(np.uint8)
    f = max(1, int(np.ceil(min_side / max(1, min(crop.shape[:2])))))
    crop = cv2.resize(crop, (crop.shape[1] * f, crop.shape[0] * f), interpolation=cv2.INTER_NEAREST)
    p1 = (int(round((x1 - cx1) * f)), int(round((y1 - cy1) * f)))
    p2 = (int(round((x2 - cx1) * f)) - 1, int(round((y2 - cy1) * f)) - 1)
    cv2.rectangle(crop, p1, p2, (0, 255, 0), 1)
    return crop
