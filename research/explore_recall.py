"""Research harness behind the detection presets (run by hand; slow).

Stage 1 (`cache`): run one detection pass over a labelled set at a low threshold and
store the per-image detections (after that pass's NMS) in research/out/cache/.
Stage 2 (`sweep`): combine cached passes (union + NMS, at a threshold) and measure
leak rate and away-from-face area for mask scales, without running a network again.
Greedy NMS commutes with a score cut, so a pass cached at 0.02 gives exactly what a
run at any higher threshold would.

  python research/explore_recall.py cache fm cf1          # facemask, CenterFace as is
  python research/explore_recall.py sweep fm cf1+flip --thr 0.1,0.2 --scale 1.3,1.5
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
from tqdm import tqdm

from faceveil.anonymize import Compositor, RegionParams
from faceveil.detections import Detections, nms
from faceveil.io.labels import find_image as resolve_image, read_eval_labels as read_labels
from faceveil.eval.leaks import LeakMetric, anonymized_mask
from faceveil.io.images import read_rgb

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
SETS = {
    "fm": (DATA / "facemask" / "images", DATA / "facemask" / "gt.txt"),
    "wd": (DATA / "widerface-val" / "images", DATA / "widerface-val" / "ground_truth" / "wider_face_val_bbx_gt.txt"),
}
CACHE = Path(__file__).resolve().parent / "out" / "cache"
FLOOR = 0.02


def flip_dets(d: Detections, width: int) -> Detections:
    b = d.xyxy.copy()
    b[:, [0, 2]] = width - d.xyxy[:, [2, 0]]
    lm = d.landmarks.copy()
    lm[:, :, 0] = width - lm[:, :, 0]
    lm = lm[:, [1, 0, 2, 4, 3]]  # left/right eye and mouth corner swap sides
    return Detections(b, d.score, lm, None, d.source)


def run_pass(name: str, image: np.ndarray, det) -> Detections:
    """One pass: `cf<long side>` (0 = as is), optional `f` suffix for a flipped copy; `yn` for YuNet."""
    import cv2

    h, w = image.shape[:2]
    flip = name.endswith("f")
    base = name[:-1] if flip else name
    img = image[:, ::-1].copy() if flip else image
    if base.startswith("yn"):
        out = det["yn"].detect(img)
    else:
        side = int(base[2:] or 0)
        f = 1.0 if side == 0 else side / max(h, w)
        if f != 1.0:
            interp = cv2.INTER_AREA if f < 1 else cv2.INTER_LINEAR
            img = cv2.resize(img, (max(1, round(w * f)), max(1, round(h * f))), interpolation=interp)
        out = nms(det["cf"].detect_raw(img, FLOOR), 0.3).scaled(1.0 / f)
    return flip_dets(out, w) if flip else out


def cache(setname: str, passes: list[str], limit: int, det: dict | None = None, sets: dict | None = None,
          out: Path = CACHE) -> None:
    from faceveil.detect import get_detector

    images, labels = (sets or SETS)[setname]
    lab = read_labels(labels)
    keys = list(lab)[:: max(1, len(lab) // limit)] if limit else list(lab)
    det = det or {"cf": get_detector("centerface", {"threshold": 0.5, "threads": 2})}
    if any(p.startswith("yn") for p in passes):
        det["yn"] = get_detector("yunet", {"threshold": 0.3})
    store = {p: {} for p in passes}
    secs = {p: 0.0 for p in passes}
    for k in tqdm(keys, file=sys.stderr, desc=setname):
        img = read_rgb(resolve_image(images, k))
        for p in passes:
            t = time.perf_counter()
            d = run_pass(p, img, det)
            secs[p] += time.perf_counter() - t
            store[p][k] = np.concatenate([d.xyxy, d.score[:, None], d.landmarks.reshape(-1, 10)], axis=1)
    out.mkdir(parents=True, exist_ok=True)
    for p in passes:
        np.savez_compressed(out / f"{setname}_{p}.npz", **{"k" + str(i): v for i, v in enumerate(store[p].values())},
                            keys=np.array(list(store[p])), ms=secs[p] / len(keys) * 1000)
        print(f"{setname} {p}: {secs[p] / len(keys) * 1000:.0f} ms/image", file=sys.stderr)


def load(setname: str, p: str) -> tuple[dict[str, Detections], float]:
    z = np.load(CACHE / f"{setname}_{p}.npz")
    out = {}
    for i, k in enumerate(z["keys"]):
        a = z["k" + str(i)]
        out[str(k)] = Detections(a[:, :4], a[:, 4], a[:, 5:].reshape(-1, 5, 2), None, p)
    return out, float(z["ms"])


def evaluate(setname, dets: dict[str, Detections], regions: RegionParams, shapes: dict, lab) -> dict:
    comp = Compositor(regions)
    m5 = LeakMetric(min_size=5)
    for k, d in dets.items():
        m5.update(anonymized_mask(comp, d, shapes[k]), lab[k].faces, lab[k].ignore, k)
    r = m5.compute()
    b = {x["bucket"]: x for x in r.buckets}
    n10 = sum(x["faces"] for x in r.buckets if x["min"] >= 10)
    l10 = sum(x["leaked"] for x in r.buckets if x["min"] >= 10)
    return {"leak": l10 / n10, "away": r.away_rate, "leak5": b["5-10 px"]["rate"],
            "leak10": b["10-20 px"]["rate"], "n": n10}


def sweep(setname: str, combo: str, thrs: list[float], scales: list[float], shape: str, nms_iou: float,
          per_pass_thr: dict[str, float], tsmalls: list[float], spx: tuple[float, float], dy: float = 0.0, grow: float = 1.0) -> None:
    from faceveil.detect.multiscale import calibrate, size_threshold

    images, labels = SETS[setname]
    lab = read_labels(labels)
    passes = combo.split("+")
    loaded = [load(setname, p) for p in passes]
    keys = list(loaded[0][0])
    shapes = {}
    for k in keys:
        from PIL import Image

        with Image.open(resolve_image(images, k)) as im:
            shapes[k] = (im.size[1], im.size[0])
    ms = sum(x[1] for x in loaded)
    for thr, tsm in [(t, ts) for t in thrs for ts in (tsmalls or [None])]:
        tsm = thr if tsm is None else tsm
        fused = {}
        for k in keys:
            parts = [d[k] for d, _ in loaded]
            parts = [p[(p.score >= per_pass_thr.get(name, 0))
                       & (p.score >= size_threshold(np.sqrt(p.areas), tsm, thr, *spx))]
                     for p, name in zip(parts, passes)]
            f = nms(Detections.merge(parts, "x"), nms_iou)
            f = calibrate(f, dy, grow, *spx)
            fused[k] = f.clipped(shapes[k][1], shapes[k][0])
        for s in scales:
            r = evaluate(setname, fused, RegionParams(shape, s, 0.0), shapes, lab)
            print(f"{setname} {combo:22s} thr={thr:<5} small={tsm:<5} scale={s:<4} {shape:7s} dy={dy} grow={grow} leak={r['leak']*100:5.2f}% "
                  f"away={r['away']*100:5.2f}%  leak10-20={r['leak10']*100:5.2f}% leak5-10={r['leak5']*100:5.1f}% "
                  f"n={r['n']} ms={ms:.0f}", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("stage", choices=["cache", "sweep"])
    ap.add_argument("set", choices=list(SETS))
    ap.add_argument("passes")
    ap.add_argument("--limit", type=int, default=0)
    ap.add_argument("--thr", default="0.2")
    ap.add_argument("--scale", default="1.3")
    ap.add_argument("--shape", default="ellipse")
    ap.add_argument("--nms", type=float, default=0.3)
    ap.add_argument("--pthr", default="", help="per-pass minimum threshold, e.g. cf2048=0.3")
    ap.add_argument("--tsmall", default="", help="score cuts for small boxes (size-aware threshold)")
    ap.add_argument("--dy", type=float, default=0.0, help="shift boxes down by this fraction of their height")
    ap.add_argument("--grow", type=float, default=1.0, help="enlarge small boxes by this")
    ap.add_argument("--spx", default="16,64", help="small_px,large_px of the size-aware threshold")
    a = ap.parse_args()
    if a.stage == "cache":
        cache(a.set, a.passes.split(","), a.limit)
    else:
        pthr = dict((kv.split("=")[0], float(kv.split("=")[1])) for kv in a.pthr.split(",") if kv)
        for combo in a.passes.split(","):
            sweep(a.set, combo, [float(x) for x in a.thr.split(",")], [float(x) for x in a.scale.split(",")],
                  a.shape, a.nms, pthr, [float(x) for x in a.tsmall.split(",") if x],
                  tuple(float(x) for x in a.spx.split(",")), a.dy, a.grow)


if __name__ == "__main__":
    main()
