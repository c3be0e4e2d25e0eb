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
