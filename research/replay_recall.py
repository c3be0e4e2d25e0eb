"""Tune the presets' cuts, box calibration and region without re-running the network.

Stage `cache` runs a preset's passes once per photo at a low floor and stores every
pass's raw boxes and landmarks (research/out/replay/<set>.pkl); stage `sweep` runs MultiScale's own
keep and fuse (merge, NMS, calibrate) and the region for each combination of values and prints the leak rate (faces >= 10 px) and away-from-face area, exactly as `faceveil eval leaks`
scores them (a score cut commutes with greedy NMS, so a low-floor cache is exact).

  python research/replay_recall.py cache fm wd                 # all 700 + 476 photos (slow: ~10 + 35 min, 2 cores)
  python research/replay_recall.py sweep wd "{'mask_scale': [1.2, 1.25], 'small_grow': [1.2, 1.35], 'box_dy': [0.11]}"

Keys: threshold, small_threshold, small_px, large_px, zoom_min_score, box_dy, small_grow, mask_scale, shape,
big_scales (any of BIG_GRID: the cache holds a big-face pass at each), big_min_px, big_min_score;
unset keys take the balanced preset's values.
"""
from __future__ import annotations

import ast
import itertools
import pickle
import sys
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
from tqdm import tqdm

from faceveil.anonymize import Compositor, RegionParams
from faceveil.detect import get_detector
from faceveil.detect.multiscale import MultiScale
from faceveil.detect.presets import resolve
from faceveil.detections import Detections
from faceveil.io.labels import find_image as resolve_image, read_eval_labels as read_labels
from faceveil.eval.leaks import LeakMetric, anonymized_mask
from faceveil.io.images import read_rgb

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
SETS = {"fm": (DATA / "facemask" / "images", DATA / "facemask" / "gt.txt"),
        "wd": (DATA / "widerface-val" / "images", DATA / "widerface-val" / "ground_truth" / "wider_face_val_bbx_gt.txt")}
OUT = Path(__file__).resolve().parent / "out" / "replay"
FLOOR = 0.05
BIG_GRID = (0.5, 0.6, 0.7, 0.75, 0.8, 0.9, 1.0)  # big-face pass scales the cache holds (every box, any size)


def as_array(d: Detections) -> np.ndarray:
    """Rows of x1 y1 x2 y2 score and the 5 landmarks (NaN when the detector gives none)."""
    lm = d.landmarks.reshape(-1, 10) if d.landmarks is not None else np.full((len(d), 10), np.nan, np.float32)
    return np.concatenate([d.xyxy, d.score[:, None], lm], 1)


def has_landmarks(a: np.ndarray) -> bool:
    """Whether ``as_array`` rows carry landmarks (caches from before landmarks have 5 columns)."""
    return a.shape[1] >= 15


def as_detections(a: np.ndarray, source: str) -> Detections:
    """``as_array``'s rows back to Detections."""
    lm = a[:, 5:15].reshape(-1, 5, 2) if has_landmarks(a) else None
    return Detections(a[:, :4], a[:, 4], lm, None, source)


def cache(setname: str, preset: str = "balanced") -> None:
    images, labels = SETS[setname]
    name, params, _ = resolve(preset)
    det = get_detector(name, {**params, "threshold": 0.1, "small_threshold": FLOOR, "big_scales": ()})
    store, shapes, t = {}, {}, time.perf_counter()
    for key in tqdm(list(read_labels(labels)), desc=setname, file=sys.stderr, mininterval=10):
        img = read_rgb(resolve_image(images, key))
        store[key] = [(d.source, as_array(d)) for d in det.passes(img, FLOOR)]
        big = det.big_passes(img, FLOOR, BIG_GRID, min_px=0.0)
        store[key] += [(f"big@{s}", as_array(d)) for s, d in zip(BIG_GRID, big)]
        shapes[key] = img.shape[:2]
    OUT.mkdir(parents=True, exist_ok=True)
    with open(OUT / f"{setname}.pkl", "wb") as f:
        pickle.dump({"passes": store, "shapes": shapes, "preset": preset, "seconds": time.perf_counter() - t}, f)


def replayed_passes(parts: list, p: dict) -> list[Detections]:
    """A photo's cached passes as ``MultiScale.passes`` gives them under params ``p``.

    Big-face passes are cached at every scale of BIG_GRID with boxes of any size: the ones in
    ``p["big_scales"]`` are used, cut at ``big_min_px``. Caches from before big-face passes have none.
    """
    out = []
    for source, a in parts:
        d = as_detections(a, source)
        if source.startswith("big@"):
            if float(source[4:]) not in tuple(p.get("big_scales", ())):
                continue
            d = MultiScale.as_big(d, p["big_min_px"])
        out.append(d)
    return out


def replay(cached: dict, labels, p: dict) -> tuple[float, float, dict]:
    """MultiScale's own keep and fuse on the cached passes (its network is not run)."""
    comp = Compositor(RegionParams(p.get("shape", "box"), p["mask_scale"], 0.0))
    det = get_detector("multiscale", {k: v for k, v in p.items() if k not in ("mask_scale", "shape")})
    metric = LeakMetric()  # leak_rate: faces >= 10 px; the buckets still list 5-10 px
    for key, parts in cached["passes"].items():
        h, w = cached["shapes"][key]
        kept = [det.keep(d) for d in replayed_passes(parts, p)]
        fused = det.fuse(kept, w, h)
        metric.update(anonymized_mask(comp, fused, (h, w)), labels[key].faces, labels[key].ignore, key)
    r = metric.compute()
    return r.leak_rate, r.away_rate, {b["bucket"]: b["leaked"] for b in r.buckets}


def half_summary(metric: LeakMetric) -> dict:
    """One half's leak numbers as the per-half replays print them (masked_replay.py, wider_misses.py): leaked
    faces >= 10 px, boxed short / never boxed, away area and, per size bucket, (leaked, short, never, faces)."""
    r = metric.compute()
    return {"leak": r.leak_rate, "leaked": r.leaked, "faces": r.faces, "short": r.boxed_short,
            "never": r.never_boxed, "away": r.away_rate,
            "by_size": {b["bucket"]: (b["leaked"], b["boxed_short"], b["never_boxed"], b["faces"])
                        for b in r.buckets}}


def sweep(setname: str, grid: dict) -> None:
    with open(OUT / f"{setname}.pkl", "rb") as f:
        cached = pickle.load(f)
    labels = read_labels(SETS[setname][1])
    _, params, region = resolve(cached["preset"])
    base = {**asdict(MultiScale.Params()), **params, "mask_scale": region["mask_scale"], "shape": region["shape"]}
    for values in itertools.product(*grid.values()):
        p = {**base, **dict(zip(grid, values))}
        leak, away, by = replay(cached, labels, p)
        setting = " ".join(f"{k}={v}" for k, v in zip(grid, values))
        print(f"{setname} {setting} leaked={leak * 100:.2f}% away={away * 100:.2f}% leaked by size: {by}", flush=True)


if __name__ == "__main__":
    if len(sys.argv) < 3 or sys.argv[1] not in ("cache", "sweep"):
        sys.exit(__doc__)
    if sys.argv[1] == "cache":
        for s in sys.argv[2:]:
            cache(s)
    else:
        sweep(sys.argv[2], ast.literal_eval(sys.argv[3]))
