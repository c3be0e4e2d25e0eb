"""Quality of the anonymized faces: pixel metrics per crop, FD-dlib, diversity over seeds."""
from __future__ import annotations

import numpy as np

from .metrics import CropQuality, Diversity, frechet_distance


def evaluate_quality(files: list[str], originals: dict, anonymized: dict) -> dict:
    cq = CropQuality()
    real, fake = [], []
    for f in files:
        for q in anonymized.get(f, {}).get("quality", []):
            cq.add({k: (float("nan") if v is None else v) for k, v in q.items()})
        o, a = originals.get(f, {}).get("desc"), anonymized.get(f, {}).get("desc")
        if o is not None and a is not None:
            real.append(o)
            fake.append(a)
    out = cq.compute()
    out["fd_dlib"] = frechet_distance(np.array(real), np.array(fake)) if len(real) >= 2 else None
    out["fd_dlib_n"] = len(real)
    return out


def evaluate_diversity(per_seed: list[dict], files: list[str]) -> dict:
    """``per_seed``: anonymized records (with 'desc') of the same files under different seeds."""
    d = Diversity()
    for f in files:
        descs = [r.get(f, {}).get("desc") for r in per_seed]
        descs = [x for x in descs if x is not None]
        if len(descs) >= 2:
            d.update(np.array(descs))
    return {**d.compute(), "n_seeds": len(per_seed)}


def lab_means(img: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """(n, 3) CIE Lab mean colour (L 0..100, a/b signed) inside each box of an RGB uint8 image; NaN for a box
    wholly outside it. Delta-E (CIE76) between two images' faces is the norm of the rows' difference."""
    import cv2

    lab = cv2.cvtColor(img, cv2.COLOR_RGB2LAB).astype(np.float64)
    lab[..., 0] *= 100 / 255
    lab[..., 1:] -= 128
    h, w = img.shape[:2]
    out = []
    for x1, y1, x2, y2 in np.round(np.asarray(boxes, np.float64).reshape(-1, 4)).astype(int):
        x1, y1, x2, y2 = max(x1, 0), max(y1, 0), min(x2, w), min(y2, h)
        out.append(lab[y1:y2, x1:x2].reshape(-1, 3).mean(0) if x2 > x1 and y2 > y1 else np.full(3, np.nan))
    return np.array(out).reshape(-1, 3)
