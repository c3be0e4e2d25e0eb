"""Zoom only where small faces can be: which tiles must the balanced preset's 2x pass see?

Stage `cache` runs, once per photo, the passes a tiled zoom can be replayed from: the pass at the photo's
own size (cut at 0.02: its weak candidates seed the tiles), the 2x pass over the whole photo (capped at
2048 px, every box), the coarse pass and the big-face passes (research/out/zoom/<set>.pkl). Stage `sweep`
replays today's balanced preset (reference) and the tiled rule for each combination of values: the tiles
are planned by `faceveil.detect.multiscale.plan_zoom_tiles` from the cached 1x pass, the 2x boxes that
lie inside a tile (not touching an inner edge) stand for the tiled pass, and MultiScale's own keep / fuse
and `faceveil eval leaks`' metric score them, on the tune and held-out halves of `faceveil.eval.splits`.
It also prints the zoomed pixels as a share of the whole 2x pass (the cost the tiles keep).

  python research/zoom_tiles.py cache fm wd
  python research/zoom_tiles.py sweep wd "{'zoom_seed_score': [0.03, 0.05], 'zoom_tile_k': [3, 4]}"
  python research/zoom_tiles.py real fm "{'zoom_seed_score': 0.08}"   # the real tiles, both halves

The tiled pass itself (real crops, batched) is then checked with `faceveil eval leaks` on both full sets.
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

sys.path.insert(0, str(Path(__file__).resolve().parent))
from replay_recall import SETS, as_array, as_detections  # noqa: E402

from faceveil.anonymize import Compositor, RegionParams  # noqa: E402
from faceveil.detect import get_detector  # noqa: E402
from faceveil.detect.multiscale import MultiScale  # noqa: E402
from faceveil.detect.presets import resolve  # noqa: E402
from faceveil.detections import Detections  # noqa: E402
from faceveil.eval.leaks import LeakMetric, anonymized_mask  # noqa: E402
from faceveil.eval.splits import split  # noqa: E402
from faceveil.io.images import read_rgb  # noqa: E402
from faceveil.io.labels import find_image, read_eval_labels  # noqa: E402

OUT = Path(__file__).resolve().parent / "out" / "zoom"
SEED_FLOOR, FLOOR = 0.02, 0.05
# The balanced preset before zoom tiles (the reference every rule is compared with)
BEFORE = {"zoom_tiles": False}
BIG = (0.6, 0.9)


def cache(setname: str, threads: int = 1) -> None:
    images, labels = SETS[setname]
    _, params, _ = resolve("balanced")
    det = get_detector("multiscale", {**params, "threads": threads})
    store, t = {}, time.perf_counter()
    for key in tqdm(list(read_eval_labels(labels)), desc=setname, file=sys.stderr, mininterval=10):
        img = read_rgb(find_image(images, key))
        side = max(img.shape[:2])
        p = det.params
        from faceveil.detect.base import downscale

        _, f1 = downscale(img, p.max_size)
        # photos under min_side: the main pass's factor (today's balanced enlarges them to min_side)
        zf = p.min_side / side if p.min_side and side < p.min_side else min(p.zoom, p.zoom_max_side / side)
        entry = {"shape": img.shape[:2], "f1": f1, "zf": zf,
                 "p1": as_array(det._pass(img, f1, SEED_FLOOR)), "p2": as_array(det._pass(img, zf, FLOOR))}
        if p.coarse_size:
            entry["coarse"] = as_array(det._pass(img, p.coarse_size / side, FLOOR))
        entry["big"] = {s: as_array(det._pass(img, s, FLOOR)) for s in BIG}
        store[key] = entry
    OUT.mkdir(parents=True, exist_ok=True)
    with open(OUT / f"{setname}.pkl", "wb") as fh:
        pickle.dump({"photos": store, "seconds": time.perf_counter() - t}, fh)


def reference_parts(e: dict, det: MultiScale) -> list[Detections]:
    """Today's balanced passes, from the cache (photos under min_side: main at 2x + big; else 1x + zoom + coarse)."""
    p = det.params
    h, w = e["shape"]
    side = max(h, w)
    if p.min_side and side < p.min_side:
        parts = [as_detections(e["p2"], "centerface")]
        parts += [MultiScale.as_big(as_detections(e["big"][s], "big"), p.big_min_px) for s in p.big_scales]
        f = e["zf"]
    else:
        parts = [as_detections(e["p1"], "centerface")]
        z = as_detections(e["p2"], "zoom")
        parts.append(z[np.sqrt(z.areas) <= p.zoom_max_px])
        f = e["f1"]
    if p.coarse_size and side * f > 1.5 * p.coarse_size:
        parts.append(as_detections(e["coarse"], "centerface"))
    return parts


def tiled_parts(e: dict, det: MultiScale) -> tuple[list[Detections], float, int]:
    """The tiled rule: the 1x pass, the 2x boxes inside the planned tiles (photos under min_side: with
    ``min_side_tiles``, standing for the enlarged main pass), the big-face and coarse passes."""
    p = det.params
    h, w = e["shape"]
    side = max(h, w)
    if p.min_side and side < p.min_side and not p.min_side_tiles:
        return reference_parts(e, det), 1.0, 0  # the whole enlargement, as MultiScale runs it
    from faceveil.detect.multiscale import align_tiles, inside_tiles, plan_zoom_tiles

    p1 = as_detections(e["p1"], "centerface")
    tiles = plan_zoom_tiles(p1, h, w, p)
    parts = [p1[~det.replaced(p1, tiles, h, w)]]
    z = as_detections(e["p2"], "zoom")
    z = z[np.sqrt(z.areas) <= p.zoom_max_px]
    zf = e["zf"]
    zh, zw = max(1, round(h * zf)), max(1, round(w * zf))
    zoomed = align_tiles(tiles, zf, zh, zw)
    z = z[inside_tiles(z.scaled(zf), zoomed, zh, zw, p.zoom_tile_edge)]
    parts.append(Detections(z.xyxy, z.score, z.landmarks, None, "centerface") if p.min_side and side < p.min_side else z)
    parts += [MultiScale.as_big(as_detections(e["big"][s], "big"), p.big_min_px) for s in p.big_scales]
    if p.coarse_size and side * e["f1"] > 1.5 * p.coarse_size:
        parts.append(as_detections(e["coarse"], "centerface"))
    area = sum((x2 - x1) * (y2 - y1) for x1, y1, x2, y2 in zoomed)
    return parts, area / float(zh * zw), len(tiles)


def score(cached: dict, labels, p: dict, keys: list[str], tiled: bool) -> dict:
    comp = Compositor(RegionParams(p.get("shape", "box"), p["mask_scale"], 0.0))
    det = get_detector("multiscale", {k: v for k, v in p.items() if k not in ("mask_scale", "shape")})
    metric, share, ntiles = LeakMetric(), [], 0
    for key in keys:
        e = cached["photos"][key]
        h, w = e["shape"]
        if tiled:
            parts, s, n = tiled_parts(e, det)
            share.append(s)
            ntiles += n
        else:
            parts = reference_parts(e, det)
        fused = det.fuse([det.keep(d) for d in parts], w, h)
        metric.update(anonymized_mask(comp, fused, (h, w)), labels[key].faces, labels[key].ignore, key)
    r = metric.compute()
    return {"leaked": r.leak_rate * 100, "away": r.away_rate * 100, "n": sum(b["leaked"] for b in r.buckets[1:]),
            "share": float(np.mean(share)) * 100 if share else 100.0, "tiles": ntiles / max(1, len(keys))}


def sweep(setname: str, grid: dict) -> None:
    with open(OUT / f"{setname}.pkl", "rb") as fh:
        cached = pickle.load(fh)
    labels = read_eval_labels(SETS[setname][1])
    tune, held = split(list(cached["photos"]))
    _, params, region = resolve("balanced")
    base = {**asdict(MultiScale.Params()), **params, "mask_scale": region["mask_scale"], "shape": region["shape"]}

    def line(tag, p, tiled):
        a, b = score(cached, labels, p, tune, tiled), score(cached, labels, p, held, tiled)
        print(f"{setname} {tag}: tune {a['leaked']:.2f}% ({a['n']}) / {a['away']:.2f}%  held-out {b['leaked']:.2f}% "
              f"({b['n']}) / {b['away']:.2f}%  zoomed area {a['share']:.1f}% / {b['share']:.1f}% of the photo, "
              f"tiles/photo {a['tiles']:.1f}", flush=True)

    line("balanced before zoom tiles", {**base, **BEFORE}, False)
    for values in itertools.product(*grid.values()):
        p = {**base, **dict(zip(grid, values))}
        line(" ".join(f"{k}={v}" for k, v in zip(grid, values)), p, True)


def real(setname: str, overrides: dict) -> None:
    """The balanced preset itself (real tiles, ``overrides`` applied) on every photo, scored per half as
    `faceveil eval leaks` scores the whole set; detection time per photo (1 thread)."""
    images, labels = SETS[setname]
    labels = read_eval_labels(labels)
    _, params, region = resolve("balanced")
    det = get_detector("multiscale", {**params, **overrides, "threads": 1})
    comp = Compositor(RegionParams(region["shape"], region["mask_scale"], 0.0))
    tune, held = split(list(labels))
    metrics = {"tune": LeakMetric(), "held-out": LeakMetric(), "all": LeakMetric()}
    seconds = 0.0
    for key in tqdm(list(labels), desc=setname, file=sys.stderr, mininterval=30):
        img = read_rgb(find_image(images, key))
        t = time.perf_counter()
        d = det.detect(img)
        seconds += time.perf_counter() - t
        mask = anonymized_mask(comp, d, img.shape)
        for name in ("tune" if key in tune else "held-out", "all"):
            metrics[name].update(mask, labels[key].faces, labels[key].ignore, key)
    for name, m in metrics.items():
        r = m.compute()
        print(f"{setname} real {overrides}: {name} leaked {r.leak_rate * 100:.2f}% ({r.leaked} of {r.faces}) / away "
              f"{r.away_rate * 100:.2f}%", flush=True)
    print(f"{setname} real {overrides}: detection {seconds / len(labels) * 1000:.0f} ms/photo", flush=True)


if __name__ == "__main__":
    if len(sys.argv) < 3 or sys.argv[1] not in ("cache", "sweep", "real"):
        sys.exit(__doc__)
    if sys.argv[1] == "cache":
        for s in sys.argv[2:]:
            cache(s)
    elif sys.argv[1] == "real":
        real(sys.argv[2], ast.literal_eval(sys.argv[3]) if len(sys.argv) > 3 else {})
    else:
        sweep(sys.argv[2], ast.literal_eval(sys.argv[3]))
