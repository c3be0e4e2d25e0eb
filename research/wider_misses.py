"""Issue 21: what are the balanced preset's misses on WIDER, and which detection lever finds them?

Stage `cache` runs, once per photo, every pass the levers can be replayed from (research/out/widermiss/):
the pass at the photo's own size down to 0.01 (its weak candidates seed the zoom tiles), the 2x pass over the
whole photo and a 3x pass on tiles around small seeds (CACHE_TILES; boxes up to ZOOM_MAX_PX image pixels, from
0.05: a rule's tiled pass is replayed from the boxes inside its tiles, as research/zoom_tiles.py does), the
coarse pass, and YuNet at the photo's own size.
Stage `misses` replays today's balanced preset (exactly its keep and fuse, the 2x boxes inside its planned
tiles standing for the tiled pass) on a half of `faceveil.eval.splits` and describes each leaked face: size,
kind (boxed short / never boxed), and the best raw candidate overlapping it at 1x, 2x and 3x (score, IoU).
Stage `sweep` replays levers (any MultiScale param, plus the probe-only keys below) on both halves.
Stage `real` runs today's preset and a candidate on the same photos in one run, interleaved, with their
detection times.

  python research/wider_misses.py cache wd tune 0 2 & python research/wider_misses.py cache wd tune 1 2  # then held_out
  python research/wider_misses.py misses wd tune
  python research/wider_misses.py sweep wd "{'zoom_seed_score': [0.02, 0.03], 'zoom_tile_k': [3.5, 5]}"
  python research/wider_misses.py real wd held_out "{'z3_seed_px': 16}" 12   # 12 evenly spaced photos

Probe-only sweep keys: z3_seed_px (seeds up to this size also get a 3x tile; 0: none), z3_seed_score,
z3_tile_k, z3_min_score (3x boxes need this score too), yunet_seed (YuNet boxes >= this score seed
tiles; 0: none), zoom_small_cut (a per-size cut in the zoomed tiles: boxes up to small_px need this
instead of zoom_min_score; 0: as today), yunet_add (YuNet boxes from this score, calibrated like CenterFace's,
added only where no CenterFace box matches them, as `add_masked` adds the masked member's; 0: none).
"""
from __future__ import annotations

import ast
import itertools
import pickle
import sys
import time
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np
from tqdm import tqdm

sys.path.insert(0, str(Path(__file__).resolve().parent))
from replay_recall import SETS, as_array, as_detections, half_summary  # noqa: E402

from faceveil.anonymize import Compositor, RegionParams  # noqa: E402
from faceveil.detect import get_detector  # noqa: E402
from faceveil.detect.multiscale import MultiScale, align_tiles, inside_tiles, plan_zoom_tiles  # noqa: E402
from faceveil.detect.presets import resolve  # noqa: E402
from faceveil.detections import Detections, box_iou  # noqa: E402
from faceveil.eval.leaks import LeakMetric, anonymized_mask, box_coverage  # noqa: E402
from faceveil.eval.splits import side as split_side  # noqa: E402
from faceveil.io.images import read_rgb  # noqa: E402
from faceveil.io.labels import find_image, read_eval_labels  # noqa: E402

OUT = Path(__file__).resolve().parent / "out" / "widermiss"
SEED_FLOOR, FLOOR, ZOOM_MAX_PX = 0.01, 0.05, 64.0
PROBE_KEYS = {"z3_seed_px": 0.0, "z3_seed_score": 0.03, "z3_tile_k": 3.5, "z3_min_score": 0.15, "yunet_seed": 0.0,
              "zoom_small_cut": 0.0, "yunet_add": 0.0}


def yunet_raw(img: np.ndarray) -> np.ndarray:
    """YuNet's boxes at its own lowest score (yuface's), no resize: rows as ``as_array``."""
    import yuface

    r = np.asarray(yuface.c_detect(np.ascontiguousarray(img[:, :, ::-1]))).reshape(-1, 16).astype(np.float32)
    d = Detections.from_xywh(r[:, 1:5], r[:, 0] / 100.0, r[:, 5:15].reshape(-1, 5, 2), "yunet")
    return as_array(d)


# The 2x pass runs on the whole photo (replayed tiles take the boxes inside them, as in research/zoom_tiles.py;
# wider tile rules than today's overlap to 3x the photo's area, dearer than the whole pass); the 3x pass only on
# tiles around the 1x candidates up to 24 px scoring >= 0.03, 3.5x their size (the widest 3x rule replayed).
CACHE_TILES = {3.0: {"zoom_seed_score": 0.03, "zoom_seed_px": 24.0, "zoom_tile_k": 3.5}}


def cache(setname: str, half: str, part: int = 0, parts: int = 1) -> None:
    images, labels = SETS[setname]
    _, params, _ = resolve("balanced")
    det = get_detector("multiscale", {**params, "threads": 1})
    p = det.params
    keys = [k for k in read_eval_labels(labels) if split_side(k) == half][part::parts]
    store, t = {}, time.perf_counter()
    for key in tqdm(keys, desc=f"{setname} {half} {part}/{parts}", file=sys.stderr, mininterval=30):
        img = read_rgb(find_image(images, key))
        h, w = img.shape[:2]
        side = max(h, w)
        if det.main_factor(img) != 1.0 or det.enlarged(img):
            continue  # WIDER's photos are all at their own size; this probe replays only those
        p1 = det._pass(img, 1.0, SEED_FLOOR)
        e = {"shape": (h, w), "p1": as_array(p1), "tiles": {}}
        e["zf"] = min(p.zoom, p.zoom_max_side / side)
        z = det._pass(img, e["zf"], FLOOR)
        e["p2"] = as_array(z[np.sqrt(z.areas) <= ZOOM_MAX_PX])
        for zf, rule in CACHE_TILES.items():
            tiles = plan_zoom_tiles(p1, h, w, replace(p, **rule))
            z = det.tiles_pass(img, tiles, zf, FLOOR) if len(tiles) else Detections.empty("centerface")
            e[f"p{int(zf)}"] = as_array(z[np.sqrt(z.areas) <= ZOOM_MAX_PX])
            e["tiles"][zf] = tiles
        if p.coarse_size and side > 1.5 * p.coarse_size:
            e["coarse"] = as_array(det._pass(img, p.coarse_size / side, FLOOR))
        e["yn1"] = yunet_raw(img)
        store[key] = e
    OUT.mkdir(parents=True, exist_ok=True)
    with open(OUT / f"{setname}_{half}_{part}of{parts}.pkl", "wb") as fh:
        pickle.dump({"photos": store, "seconds": time.perf_counter() - t}, fh)


def load(setname: str) -> dict:
    photos = {}
    for f in sorted(OUT.glob(f"{setname}_*_*of*.pkl")):
        with open(f, "rb") as fh:
            photos.update(pickle.load(fh)["photos"])
    return photos


def zoom_boxes(z: Detections, tiles: np.ndarray, zf: float, h: int, w: int, edge: float) -> Detections:
    """The whole-photo pass's boxes (image pixels) that a tiled pass at ``zf`` would keep: inside a tile, away
    from its inner edges (as MultiScale.tiles_pass keeps them)."""
    zh, zw = max(1, round(h * zf)), max(1, round(w * zf))
    zoomed = align_tiles(tiles, zf, zh, zw)
    return z[inside_tiles(z.scaled(zf), zoomed, zh, zw, edge)], zoomed, zh * zw


def parts_for(e: dict, det: MultiScale, q: dict) -> tuple[list[Detections], float]:
    """The passes of the balanced preset (tiled 2x, coarse) and the probe-only levers, replayed from the cache;
    with the share of the photo's 2x pixels the tiles cover (a cost proxy: 3x tiles count 2.25x per pixel)."""
    p = det.params
    h, w = e["shape"]
    p1 = as_detections(e["p1"], "centerface")
    seeds = p1
    if q["yunet_seed"] > 0:
        yn = as_detections(e["yn1"], "yunet")
        yn = yn[yn.score >= q["yunet_seed"]]
        seeds = Detections.merge([p1, Detections(yn.xyxy, np.ones(len(yn)), yn.landmarks, None, "centerface")],
                                 "centerface")
    tiles = plan_zoom_tiles(seeds, h, w, p)
    parts = [p1[p1.score >= det.floor]]
    z, zoomed, zpix = zoom_boxes(as_detections(e["p2"], "zoom"), tiles, e["zf"], h, w, p.zoom_tile_edge)
    cost = sum((x2 - x1) * (y2 - y1) for x1, y1, x2, y2 in zoomed) / zpix
    parts.append(z)
    if q["z3_seed_px"] > 0:
        p3 = replace(p, zoom_seed_px=q["z3_seed_px"], zoom_seed_score=q["z3_seed_score"], zoom_tile_k=q["z3_tile_k"])
        t3 = plan_zoom_tiles(seeds, h, w, p3)
        z3, zoomed3, zpix3 = zoom_boxes(as_detections(e["p3"], "zoom"), t3, 3.0, h, w, p.zoom_tile_edge)
        parts.append(Detections(z3.xyxy, z3.score, z3.landmarks, None, "zoom3"))
        cost += sum((x2 - x1) * (y2 - y1) for x1, y1, x2, y2 in zoomed3) / zpix3 * 2.25
    if "coarse" in e:
        parts.append(as_detections(e["coarse"], "centerface"))
    return parts, cost


def keep(det: MultiScale, d: Detections, q: dict) -> Detections:
    p = det.params
    if d.source == "zoom3":
        d = Detections(d.xyxy, d.score, d.landmarks, None, "zoom")
        return d[(d.score >= det.cut(d)) & (d.score >= q["z3_min_score"])]
    if d.source == "zoom" and q["zoom_small_cut"] > 0:
        size = np.sqrt(d.areas)
        need = np.where(size <= p.small_px, q["zoom_small_cut"], p.zoom_min_score)
        return d[(d.score >= det.cut(d)) & (d.score >= need)]
    return det.keep(d)


def fuse(det: MultiScale, e: dict, parts: list[Detections], q: dict, w: int, h: int) -> Detections:
    fused = det.fuse([keep(det, d, q) for d in parts], w, h)
    if q["yunet_add"] > 0:
        from faceveil.detect.multiscale import add_masked, calibrate

        p = det.params
        yn = as_detections(e["yn1"], "yunet")
        yn = calibrate(yn[yn.score >= q["yunet_add"]], p.box_dy, p.small_grow, p.small_px, p.large_px)
        fused = add_masked(fused, yn, extend=0.0).clipped(w, h)
    return fused


def split_params(p: dict) -> tuple[dict, dict, dict]:
    q = {k: p.get(k, v) for k, v in PROBE_KEYS.items()}
    region = {"shape": p.get("shape", "box"), "mask_scale": p["mask_scale"]}
    dp = {k: v for k, v in p.items() if k not in PROBE_KEYS and k not in ("shape", "mask_scale")}
    return dp, q, region


def base_params() -> dict:
    _, params, region = resolve("balanced")
    return {**asdict(MultiScale.Params()), **params, **region}


def replay(photos: dict, labels, p: dict, halves=("tune", "held_out")) -> dict:
    dp, q, region = split_params(p)
    det = get_detector("multiscale", dp)
    comp = Compositor(RegionParams(region["shape"], region["mask_scale"], 0.0))
    metrics = {h: LeakMetric() for h in halves}
    cost = {h: [] for h in halves}
    for key, e in photos.items():
        half = split_side(key)
        if half not in metrics:
            continue
        h, w = e["shape"]
        parts, c = parts_for(e, det, q)
        fused = fuse(det, e, parts, q, w, h)
        metrics[half].update(anonymized_mask(comp, fused, (h, w)), labels[key].faces, labels[key].ignore, key)
        cost[half].append(c)
    return {half: {**half_summary(m), "cost": float(np.mean(cost[half]))} for half, m in metrics.items()}


def fmt(r: dict) -> str:
    return (f"{r['leak'] * 100:.2f}% ({r['leaked']}: short {r['short']}, never {r['never']}) / {r['away'] * 100:.2f}% "
            f"zoomed {r['cost'] * 100:.0f}%")


def sweep(setname: str, grid: dict, verbose: bool = False, halves=("tune", "held_out")) -> None:
    photos, labels = load(setname), read_eval_labels(SETS[setname][1])
    base = base_params()
    for values in itertools.product(*grid.values()) if grid else [()]:
        p = {**base, **dict(zip(grid, values))}
        r = replay(photos, labels, p, halves)
        setting = " ".join(f"{k}={v}" for k, v in zip(grid, values)) or "balanced today"
        print(f"{setname} {setting} | " + " | ".join(f"{h} {fmt(r[h])}" for h in halves), flush=True)
        if verbose:
            for half in halves:
                print(f"   {half} by size (leaked, short, never, faces): {r[half]['by_size']}")


def best_candidate(d: Detections, face: np.ndarray) -> tuple[float, float]:
    """(best score, its IoU) among raw candidates overlapping the labelled face with IoU >= 0.3 (0, 0: none)."""
    if len(d) == 0:
        return 0.0, 0.0
    iou = box_iou(face[None].astype(np.float64), d.xyxy.astype(np.float64))[0]
    ok = iou >= 0.3
    if not ok.any():
        return 0.0, 0.0
    i = np.flatnonzero(ok)[np.argmax(d.score[ok])]
    return float(d.score[i]), float(iou[i])


def misses(setname: str, half: str, overrides: dict | None = None) -> None:
    """Each leaked face of today's preset on ``half``: size, coverage, kind, best raw candidate per pass."""
    photos, labels = load(setname), read_eval_labels(SETS[setname][1])
    p = {**base_params(), **(overrides or {})}
    dp, q, region = split_params(p)
    det = get_detector("multiscale", dp)
    comp = Compositor(RegionParams(region["shape"], region["mask_scale"], 0.0))
    rows = []
    for key, e in photos.items():
        if split_side(key) != half:
            continue
        h, w = e["shape"]
        parts, _ = parts_for(e, det, q)
        fused = fuse(det, e, parts, q, w, h)
        lab = labels[key]
        valid = ~lab.ignore if lab.ignore is not None else np.ones(len(lab.faces), bool)
        faces = lab.faces.xyxy[valid]
        if not len(faces):
            continue
        cov, _ = box_coverage(anonymized_mask(comp, fused, (h, w)), faces)
        size = np.minimum(faces[:, 2] - faces[:, 0], faces[:, 3] - faces[:, 1])
        cand = {n: as_detections(e[n], "x") for n in ("p1", "p2", "p3", "yn1")}
        for i in np.flatnonzero((cov < 0.8) & (size >= 10)):
            best = {n: best_candidate(d, faces[i]) for n, d in cand.items()}
            fb = box_iou(faces[i][None].astype(np.float64), fused.xyxy.astype(np.float64))[0] if len(fused) else [0.0]
            rows.append((key, float(size[i]), float(cov[i]), float(np.max(fb)), best))
    never = [r for r in rows if r[2] < 0.3]
    short = [r for r in rows if r[2] >= 0.3]
    print(f"{setname} {half}: {len(rows)} leaked faces >= 10 px: {len(short)} boxed short, {len(never)} never boxed")
    for name, group in (("boxed short", short), ("never boxed", never)):
        print(f"\n{name}: key | size px | coverage | best fused-box IoU | best raw candidate (score, IoU) per pass")
        for key, s, c, fb, best in sorted(group, key=lambda r: r[1]):
            print(f"  {key.split('/')[-1][:38]:38s} {s:5.0f} {c:4.2f} {fb:4.2f} | " +
                  " ".join(f"{n} {b[0]:.2f}/{b[1]:.2f}" for n, b in best.items()))
    edges = [10, 20, 40, 80, 1e9]
    print("\nby size (boxed short / never boxed):")
    for lo, hi in zip(edges, edges[1:]):
        sel = [r for r in rows if lo <= r[1] < hi]
        print(f"  {lo}-{hi if hi < 1e9 else ''} px: {sum(r[2] >= 0.3 for r in sel)} / {sum(r[2] < 0.3 for r in sel)}")
    print("\nnever boxed, a raw candidate (IoU >= 0.3) at or above each score, per pass:")
    for n in ("p1", "p2", "p3", "yn1"):
        print(f"  {n}: " + ", ".join(f">= {t}: {sum(r[4][n][0] >= t for r in never)}" for t in (0.01, 0.05, 0.1, 0.15, 0.2, 0.3, 0.5)))


class Zoom3(MultiScale):
    """balanced plus the probe's 3x tiles (z3_* keys), run for real: the tiles around the 1x pass's candidates up
    to z3_seed_px scoring >= z3_seed_score (>= zoom_seed_score: the seeds are the 1x pass MultiScale ran for its
    own tiles, kept here from its first call), z3_tile_k x their size, the photo enlarged 3x (capped at 3072 px),
    boxes up to zoom_max_px cut like the zoom pass's and from z3_min_score. Not in faceveil: it did not pay."""

    def __init__(self, params, q: dict):
        super().__init__(params)
        self.q, self.seeds = q, None

    def _pass(self, image, factor, floor, flip=False):
        d = super()._pass(image, factor, floor, flip)
        if self.seeds is None and factor == 1.0 and not flip:
            self.seeds = d
        return d

    def passes(self, image, floor=None):
        self.seeds = None
        out = super().passes(image, floor)
        p, q = self.params, self.q
        h, w = image.shape[:2]
        f3 = min(3.0, 3072 / max(h, w))
        if self.seeds is None or f3 <= self.zoom_factor(image) * 1.05:
            return out
        tiles = plan_zoom_tiles(self.seeds, h, w, replace(p, zoom_seed_px=q["z3_seed_px"],
                                                          zoom_seed_score=q["z3_seed_score"], zoom_tile_k=q["z3_tile_k"]))
        if len(tiles):
            z = self.tiles_pass(image, tiles, f3, self.floor if floor is None else floor)
            z = z[np.sqrt(z.areas) <= p.zoom_max_px]
            out.append(Detections(z.xyxy, z.score, z.landmarks, None, "zoom3"))
        return out

    def keep(self, d):
        return keep(self, d, self.q) if d.source == "zoom3" else super().keep(d)


def real(setname: str, half: str, overrides: dict, limit: int = 0) -> None:
    """Today's preset and the candidate on the same photos, interleaved per photo, 1 thread: leaks and
    detection time (each photo is detected by both, in alternating order, so the machine's load falls on both)."""
    images, labels = SETS[setname]
    labels = read_eval_labels(labels)
    _, params, region = resolve("balanced")
    dp, q, _ = split_params({**base_params(), **overrides})
    cand = get_detector("multiscale", {**params, **{k: v for k, v in overrides.items() if k in dp}, "threads": 1})
    if q["z3_seed_px"] > 0:
        cand = Zoom3(cand.params, q)
    dets = {"today": get_detector("multiscale", {**params, "threads": 1}), "candidate": cand}
    comp = Compositor(RegionParams(region["shape"], region["mask_scale"], 0.0))
    keys = [k for k in labels if half == "all" or split_side(k) == half]
    if limit:
        keys = keys[:: max(1, len(keys) // limit)][:limit]
    metrics = {n: LeakMetric() for n in dets}
    seconds = {n: 0.0 for n in dets}
    for i, key in enumerate(tqdm(keys, desc=setname, file=sys.stderr, mininterval=30)):
        img = read_rgb(find_image(images, key))
        for n in (list(dets) if i % 2 == 0 else list(dets)[::-1]):
            t = time.perf_counter()
            d = dets[n].detect(img)
            seconds[n] += time.perf_counter() - t
            metrics[n].update(anonymized_mask(comp, d, img.shape), labels[key].faces, labels[key].ignore, key)
    for n, m in metrics.items():
        r = m.compute()
        print(f"{setname} {half} {n} {overrides if n == 'candidate' else ''}: leaked {r.leak_rate * 100:.2f}% "
              f"({r.leaked} of {r.faces}: short {r.boxed_short}, never {r.never_boxed}) / away {r.away_rate * 100:.2f}%"
              f", detection {seconds[n] / len(keys) * 1000:.0f} ms/photo", flush=True)
    print(f"time ratio candidate / today: {seconds['candidate'] / seconds['today']:.2f}x")


if __name__ == "__main__":
    if len(sys.argv) < 3 or sys.argv[1] not in ("cache", "misses", "sweep", "real"):
        sys.exit(__doc__)
    a = sys.argv
    if a[1] == "cache":
        cache(a[2], a[3], int(a[4]) if len(a) > 4 else 0, int(a[5]) if len(a) > 5 else 1)
    elif a[1] == "misses":
        misses(a[2], a[3], ast.literal_eval(a[4]) if len(a) > 4 else None)
    elif a[1] == "real":
        real(a[2], a[3], ast.literal_eval(a[4]) if len(a) > 4 else {}, int(a[5]) if len(a) > 5 else 0)
    else:
        sweep(a[2], ast.literal_eval(a[3]) if len(a) > 3 else {}, "-v" in a,
              ("tune",) if "--tune" in a else ("tune", "held_out"))
