"""Issue 21: tune the masked-face member of multiscale on the tune half, report it on the held-out half.

Question: where does the masked-face detector (src/faceveil/detect/masked.py) add recall to `fast`,
`balanced` and `thorough` without hiding much background, and do its cuts, tuned on the tune half of
faceveil.eval.splits, hold on the held-out half?

Stage `cf` runs each preset's CenterFace passes once per photo at a low floor and stores every pass's raw
boxes (research/out/masked/<set>_<preset>.pkl) with the time it took; stage `mk` stores the masked-face
detector's raw peaks at each run size (<set>_mk.pkl); stage `sweep` replays MultiScale's own keep and fuse
(add_masked included) for each combination of values and prints leaked (boxed short / never boxed) and
away-from-face area per half, exactly as `faceveil eval leaks` scores them (a score cut commutes with
greedy NMS, so a low-floor cache is exact).

  python research/masked_replay.py cf fm fast balanced thorough
  python research/masked_replay.py cf wd thorough half=tune     # one half only: <set>_<preset>_tune.pkl
  python research/masked_replay.py mk fm
  python research/masked_replay.py sweep fm balanced "{'masked': [False, True], 'masked_threshold': [0.5, 0.6]}"

Keys: any MultiScale param (masked_* ones above all), masked (False: CenterFace alone), masked_min_side
(one of MK_SIDES), mask_scale, shape.
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
from faceveil.detect.masked import MaskedFace
from faceveil.detect.multiscale import MultiScale
from faceveil.detect.presets import resolve
from faceveil.eval.leaks import LeakMetric, anonymized_mask
from faceveil.eval.splits import side
from faceveil.io.images import read_rgb
from faceveil.io.labels import find_image, read_eval_labels

from replay_recall import SETS, as_array, as_detections, half_summary  # noqa: E402  (research/ is the folder)

OUT = Path(__file__).resolve().parent / "out" / "masked"
FLOOR = 0.05
MK_SIDES = (0, 640, 800)  # masked-face detector run sizes cached: own size (shrunk to 1024), enlarged to 640, 800


def cache_cf(setname: str, presets: list[str]) -> None:
    images, labels = SETS[setname]
    keys = list(read_eval_labels(labels))
    half = next((p.split("=", 1)[1] for p in presets if p.startswith("half=")), None)
    presets = [p for p in presets if not p.startswith("half=")]
    if half:  # one half of faceveil.eval.splits only (issue 21: tune first, held-out once at the end)
        keys = [k for k in keys if side(k) == half]
    for preset in presets:
        name, params, _ = resolve(preset)
        det = get_detector(name, {**params, "threads": 1})
        store, shapes, ms = {}, {}, {}
        for key in tqdm(keys, desc=f"{setname} {preset}", file=sys.stderr, mininterval=20):
            img = read_rgb(find_image(images, key))
            t0 = time.perf_counter()
            parts = det.passes(img, FLOOR)
            det.fuse([det.keep(d) for d in parts], img.shape[1], img.shape[0])
            ms[key] = (time.perf_counter() - t0) * 1000
            store[key] = [(d.source, as_array(d)) for d in parts]
            shapes[key] = img.shape[:2]
        OUT.mkdir(parents=True, exist_ok=True)
        with open(OUT / f"{setname}_{preset}{'_' + half if half else ''}.pkl", "wb") as f:
            pickle.dump({"passes": store, "shapes": shapes, "ms": ms, "preset": preset}, f)


def cache_mk(setname: str) -> None:
    images, labels = SETS[setname]
    keys = list(read_eval_labels(labels))
    dets = {s: MaskedFace(MaskedFace.Params(threshold=FLOOR, min_side=s, threads=1)) for s in MK_SIDES}
    store, ms = {s: {} for s in MK_SIDES}, {s: {} for s in MK_SIDES}
    for key in tqdm(keys, desc=f"{setname} masked", file=sys.stderr, mininterval=20):
        img = read_rgb(find_image(images, key))
        done = {}  # run factor -> size already run at it (WIDER's 1024 px photos: every size is their own)
        for s, det in dets.items():
            f = det.factor(img)
            if f in done:
                store[s][key], ms[s][key] = store[done[f]][key], ms[done[f]][key]
                continue
            t0 = time.perf_counter()
            d = det.detect_raw(img, FLOOR)
            ms[s][key] = (time.perf_counter() - t0) * 1000
            store[s][key] = as_array(d)
            done[f] = s
    OUT.mkdir(parents=True, exist_ok=True)
    with open(OUT / f"{setname}_mk.pkl", "wb") as f:
        pickle.dump({"peaks": store, "ms": ms}, f)


def replay(cf: dict, mk: dict | None, labels, p: dict) -> dict:
    """Leaks per half (and all) of MultiScale's keep and fuse on the cached passes, with or without masked."""
    comp = Compositor(RegionParams(p.get("shape", "box"), p["mask_scale"], 0.0))
    det = get_detector("multiscale", {k: v for k, v in p.items() if k not in ("mask_scale", "shape", "masked")})
    metrics = {"tune": LeakMetric(), "held_out": LeakMetric()}
    ms = {"tune": [], "held_out": []}
    for key, parts in cf["passes"].items():
        h, w = cf["shapes"][key]
        ds = [as_detections(a, s) for s, a in parts]
        t = cf["ms"][key]
        if p.get("masked") and mk is not None:
            ds.append(as_detections(mk["peaks"][p["masked_min_side"]][key], "masked"))
            t += mk["ms"][p["masked_min_side"]][key]
        fused = det.fuse([det.keep(d) for d in ds], w, h)
        half = side(key)
        metrics[half].update(anonymized_mask(comp, fused, (h, w)), labels[key].faces, labels[key].ignore, key)
        ms[half].append(t)
    return {half: {**half_summary(m), "ms": float(np.mean(ms[half]))} for half, m in metrics.items()}


def ap(setname: str, preset: str = "balanced") -> None:
    """AP (IoU 0.5, faces >= 10 px) per half: the masked-face detector alone at each run size, the preset's
    CenterFace candidates (its passes fused without the cuts, as `faceveil eval leaks` draws its PR curve),
    and the preset's candidates with the masked-face member at each size."""
    from faceveil.detections import nms
    from faceveil.eval.leaks import PRCurve

    labels = read_eval_labels(SETS[setname][1])
    with open(OUT / f"{setname}_mk.pkl", "rb") as f:
        mk = pickle.load(f)
    with open(OUT / f"{setname}_{preset}.pkl", "rb") as f:
        cf = pickle.load(f)
    _, params, _ = resolve(preset)
    det = get_detector("multiscale", params)
    curves = {}
    for key in cf["passes"]:
        half, lab = side(key), labels[key]
        h, w = cf["shapes"][key]
        parts = [as_detections(a, s) for s, a in cf["passes"][key]]
        curves.setdefault(("centerface candidates", half), PRCurve()).update(det.fuse(parts, w, h), lab.faces, lab.ignore)
        for s in MK_SIDES:
            m = as_detections(mk["peaks"][s][key], "masked")
            curves.setdefault((f"masked alone, run size {s or 'own'}", half), PRCurve()).update(
                nms(m, 0.4).clipped(w, h), lab.faces, lab.ignore)
    for (name, half), c in sorted(curves.items()):
        r = c.compute()
        print(f"{setname} {half:8s} {name:36s} AP {r.ap:.3f} (recall at floor {r.recall[-1] if len(r.recall) else 0:.3f}, "
              f"{r.positives} faces)")


def fmt(r: dict) -> str:
    return (f"{r['leak'] * 100:.2f}% ({r['leaked']}/{r['faces']}: short {r['short']}, never {r['never']}) "
            f"away {r['away'] * 100:.2f}% {r['ms']:.0f}ms")


def sweep(setname: str, preset: str, grid: dict, verbose: bool = False) -> list:
    with open(OUT / f"{setname}_{preset}.pkl", "rb") as f:
        cf = pickle.load(f)
    mk = None
    if (OUT / f"{setname}_mk.pkl").is_file():
        with open(OUT / f"{setname}_mk.pkl", "rb") as f:
            mk = pickle.load(f)
    labels = read_eval_labels(SETS[setname][1])
    _, params, region = resolve(preset)
    base = {**asdict(MultiScale.Params()), **params, "mask_scale": region["mask_scale"], "shape": region["shape"]}
    rows = []
    for values in itertools.product(*grid.values()):
        p = {**base, **dict(zip(grid, values))}
        r = replay(cf, mk, labels, p)
        setting = " ".join(f"{k}={v}" for k, v in zip(grid, values))
        print(f"{setname} {preset} {setting} | tune {fmt(r['tune'])} | held-out {fmt(r['held_out'])}", flush=True)
        if verbose:
            for half in ("tune", "held_out"):
                print(f"   {half} by size (leaked, short, never, faces): {r[half]['by_size']}")
        rows.append((dict(zip(grid, values)), r))
    return rows


if __name__ == "__main__":
    if len(sys.argv) < 3 or sys.argv[1] not in ("cf", "mk", "sweep", "ap"):
        sys.exit(__doc__)
    if sys.argv[1] == "cf":
        cache_cf(sys.argv[2], sys.argv[3:])
    elif sys.argv[1] == "mk":
        cache_mk(sys.argv[2])
    elif sys.argv[1] == "ap":
        ap(sys.argv[2])
    else:
        sweep(sys.argv[2], sys.argv[3], ast.literal_eval(sys.argv[4]), "-v" in sys.argv)
