"""Why is replace's FD-dlib above 0.221, and does pushing the bank's averages apart lower it? (issue 22)

On LFW (evaluation only; bench/common.py's gallery and probes, as bench/bench_replace.py draws them): the
Fréchet distance between the dlib descriptors of the replaced probes and of the originals, split into its mean
term and its covariance term, with the trace of each set's covariance (how spread the faces are). Then the
shipped bank's averages are pushed away from the bank's mean face by a factor (a caricature in pixel space,
entry = mean + alpha * (entry - mean), clipped) and the same numbers, with naive rank-1 and "within 0.6 of the
own original", are printed; a grid of the pushed entries goes to OUT/grid_<alpha>.png.

    PYTHONPATH=src nice python research/fd_caricature.py OUT [--people 100] [--alphas 1.0,1.5,2.0]
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import cv2
import numpy as np
from scipy import linalg

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))
from common import COMP, lfw_gallery_and_probes  # noqa: E402

from faceveil.anonymize import get_method  # noqa: E402
from faceveil.anonymize.bank import load_bank  # noqa: E402
from faceveil.anonymize.identity import MATCH, descriptor  # noqa: E402
from faceveil.detect import get_detector  # noqa: E402


def fd_parts(x: np.ndarray, y: np.ndarray) -> tuple[float, float, float, float]:
    """(mean term, covariance term, trace cov x, trace cov y) of the Fréchet distance between x and y."""
    s1, s2 = np.cov(x, rowvar=False), np.cov(y, rowvar=False)
    root = linalg.sqrtm(s1 @ s2).real
    return (float(((x.mean(0) - y.mean(0)) ** 2).sum()), float(np.trace(s1 + s2 - 2 * root)),
            float(np.trace(s1)), float(np.trace(s2)))


def caricature(faces: np.ndarray, alpha: float) -> np.ndarray:
    """The bank's entries pushed away from their mean face by ``alpha`` (1: unchanged), clipped to uint8."""
    f = faces.astype(np.float32)
    mean = f.mean(0)
    return np.clip(mean + alpha * (f - mean), 0, 255).round().astype(np.uint8)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out", type=Path)
    ap.add_argument("--people", type=int, default=100)
    ap.add_argument("--alphas", default="1.0,1.5,2.0")
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    cf, hog = get_detector("centerface", {"threads": 1}), get_detector("dlib-hog", {})
    gallery, probes, truth = lfw_gallery_and_probes(args.people, np.random.default_rng(0), cf, hog, 200)
    p = np.stack([f.desc for f in probes])
    g = np.stack([f.desc for f in gallery])
    method = get_method("replace", {})
    entries = method.synth.bank.faces  # the shipped averages, changed in place below (this process only)
    base = entries.copy()
    for alpha in (float(a) for a in args.alphas.split(",")):
        entries[...] = caricature(base, alpha)
        method.synth = type(method.synth)(method.synth.bank, k=method.params.k, reject=method.params.reject)
        outs = [method.apply(f.img, f.det, COMP, np.random.default_rng(1000 + i)) for i, f in enumerate(probes)]
        a = np.stack([descriptor(o, f.dbox) for o, f in zip(outs, probes)])
        m, c, ta, tp = fd_parts(a, p)
        rank1 = float((np.linalg.norm(a[:, None] - g[None], axis=2).argmin(1) == np.asarray(truth)).mean())
        within = float((np.linalg.norm(a - p, axis=1) < MATCH).mean())
        print(f"alpha {alpha}: FD-dlib {m + c:.4f} = mean {m:.4f} + covariance {c:.4f}; trace replaced {ta:.4f}, "
              f"originals {tp:.4f}; naive rank-1 {rank1:.3f}; within {MATCH} of own original {within:.3f}",
              flush=True)
        grid = np.concatenate([np.concatenate(list(entries[r * 8:(r + 1) * 8:2]), 1) for r in range(4)], 0)
        cv2.imwrite(str(args.out / f"grid_{alpha}.png"), cv2.cvtColor(grid[::2, ::2], cv2.COLOR_RGB2BGR))


if __name__ == "__main__":
    main()
