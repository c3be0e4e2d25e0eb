"""Mixed precision by pass (issue 20, photos): which of the balanced preset's passes can run int8 without leaking more.

    python research/mixed_precision.py SET [SET ...] [--split tune|held_out|all] [--limit N] [--combos ...]

SET: fm (facemask) or wd (WIDER val). For each photo of the split, the balanced preset is run once per setting
(combos: "fp32", "int8", or the passes that run int8 joined by "+", e.g. "zoom+big"; precision=mixed with that
int8_passes), each with MultiScale's own detect, and scored as `faceveil eval leaks` scores it (LeakMetric, the
preset's region: leaked faces >= 10 px, away-from-face area). The network runs once per distinct input and
precision on a photo (a memo of CenterFace.forward keyed by the input's bytes: settings share their fp32 or int8
passes), so all settings cost about one fp32 and one int8 run.

CPU: each forward's time.process_time when it first ran, charged to every setting that uses it, by pass kind
(main, zoom, big, coarse, tiled) and precision; onnxruntime runs 1 thread here (the CPU a pass costs, without the
spread of a second thread on a shared machine).

"gate:LO-HI": int8 everywhere, and the photo re-run all fp32 when any int8 candidate scores in [LO, HI)
(a score near a cut); CPU int8 + fp32 on the re-run photos.
"""
from __future__ import annotations

import argparse
import hashlib
import sys
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
from tqdm import tqdm

from faceveil.detect import centerface, multiscale
from faceveil.detect.presets import resolve
from faceveil.eval.leaks import LeakMetric, anonymized_mask
from faceveil.eval.splits import split
from faceveil.io.images import read_rgb
from faceveil.io.labels import find_image, read_eval_labels
from faceveil.pipeline import Anonymizer

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
SETS = {"fm": (DATA / "facemask" / "images", DATA / "facemask" / "gt.txt"),
        "wd": (DATA / "widerface-val" / "images", DATA / "widerface-val" / "ground_truth" / "wider_face_val_bbx_gt.txt")}

MEMO: dict = {}
CPU: dict = defaultdict(float)  # (precision, kind) -> CPU seconds of the forwards run
RUNS: dict = defaultdict(int)
KIND = ["main"]
_forward = centerface.CenterFace.forward
_net = multiscale.MultiScale._net


def forward(self, image):
    key = (self.params.precision, image.shape, hashlib.blake2b(image.tobytes(), digest_size=16).digest())
    hit = MEMO.get(key)
    if hit is None:
        t = time.process_time()
        out = _forward(self, image)
        hit = MEMO[key] = out, time.process_time() - t
    # every setting is charged what its forwards cost, run now or taken from the memo
    CPU[self.params.precision, KIND[0]] += hit[1]
    RUNS[self.params.precision, KIND[0]] += 1
    return hit[0]


def net(self, kind):
    KIND[0] = kind
    return _net(self, kind)


centerface.CenterFace.forward = forward
multiscale.MultiScale._net = net


def setting_params(combo: str) -> dict:
    """"fp32", "int8", or the passes that run int8 joined by "+" (precision=mixed)."""
    if combo in ("fp32", "int8"):
        return {"precision": combo}
    return {"precision": "mixed", "int8_passes": tuple(combo.split("+"))}


def versus(m: LeakMetric, ref: LeakMetric, min_size: float = 10.0) -> str:
    """Faces (>= min_size) leaked here and not by ``ref``, and the reverse, over the same photos; then the faces
    covered under 90 % here (a margin: faces close to the 80 % leak line), finer than the leak count."""
    new = fixed = near = 0
    for a, b in zip(m.per_image, ref.per_image):
        big = a.counted & (a.size >= min_size)
        new += int((a.leaked & ~b.leaked & big).sum())
        fixed += int((b.leaked & ~a.leaked & big).sum())
        near += int((big & (np.nan_to_num(a.coverage) < 0.9)).sum())
    return f"+{new} / -{fixed} | {near}"


def crop_fidelity(setname: str, keys: list, k: float) -> None:
    """fp32 on a tile around each candidate (NMS'd, score >= 0.05, main pass) against fp32 on the whole resized
    photo: per candidate, its best-overlapping tile box (IoU) and the score difference."""
    from types import SimpleNamespace

    from faceveil.detections import box_iou, nms

    images = SETS[setname][0]
    name, params, _ = resolve("balanced", detector_params={"threads": 1})
    det = Anonymizer(method="blur", detector=name, detector_params=params).detector
    diffs, lost, d8 = [], 0, []
    int8 = det._net_of("int8")
    for key in tqdm(keys, desc=f"{setname} crops", file=sys.stderr, mininterval=20):
        import cv2

        img = read_rgb(find_image(images, key))
        f = det.main_factor(img)
        h, w = img.shape[:2]
        small = cv2.resize(img, (round(w * f), round(h * f)), interpolation=cv2.INTER_LINEAR) if f != 1 else img
        sh, sw = small.shape[:2]
        full = nms(det.cf.detect_raw(small, 0.05), 0.3)
        q = nms(int8.detect_raw(small, 0.02), 0.3)
        for i in range(len(full)):
            iou = box_iou(full.xyxy[[i]], q.xyxy)[0] if len(q) else np.zeros(1)
            d8.append(abs(float(q.score[int(np.argmax(iou))] - full.score[i])) if iou.max() >= 0.5 else 1.0)
        for i in range(len(full)):
            tile = multiscale.plan_zoom_tiles(full[[i]], sh, sw, SimpleNamespace(
                zoom_seed_score=0.0, zoom_seed_px=np.inf, zoom_tile_k=k, zoom_tile_min=48.0, zoom_tile_max=320.0))
            x1, y1, x2, y2 = multiscale.align_tiles(tile, 1.0, sh, sw)[0]
            t = nms(det.cf.detect_raw(np.ascontiguousarray(small[y1:y2, x1:x2]), 0.02).translated(x1, y1), 0.3)
            iou = box_iou(full.xyxy[[i]], t.xyxy)[0] if len(t) else np.zeros(1)
            if iou.max() < 0.5:
                lost += 1
                diffs.append(-float(full.score[i]))
            else:
                diffs.append(float(t.score[int(np.argmax(iou))] - full.score[i]))
    d = np.abs(np.array(diffs))
    print(f"{setname}: fp32 on a {k:g}x tile vs the whole photo, {len(d)} candidates >= 0.05: |score difference| "
          f"median {np.median(d):.3f}, 90th percentile {np.percentile(d, 90):.3f}, max {d.max():.3f}; "
          f">= 0.05 apart: {(d >= 0.05).mean() * 100:.0f} %; no tile box at IoU 0.5: {lost}. For comparison int8 on the "
          f"whole photo: median {np.median(d8):.3f}, 90th percentile {np.percentile(d8, 90):.3f}, >= 0.05 apart "
          f"{(np.array(d8) >= 0.05).mean() * 100:.0f} % (no box: counted 1.0)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("sets", nargs="+", choices=sorted(SETS))
    ap.add_argument("--split", default="tune", choices=("tune", "held_out", "all"))
    ap.add_argument("--limit", type=int, default=0)
    ap.add_argument("--combos", default="fp32,int8,zoom,big,coarse,zoom+big+coarse,main,main+zoom+big+coarse")
    ap.add_argument("--gates", default="", help="comma-separated LO-HI score bands (int8, fp32 where a candidate "
                    "scores in the band)")
    ap.add_argument("--crops", type=float, default=0, metavar="K", help="only: fp32 scores on tiles of K x a "
                    "candidate's size against the whole photo's (main pass)")
    a = ap.parse_args()
    combos = a.combos.split(",")
    gates = [tuple(map(float, g.split("-"))) for g in a.gates.split(",") if g]
    if gates:
        combos = list(dict.fromkeys(["fp32", "int8", *combos]))
    for s in a.sets:
        images, labels_path = SETS[s]
        labels = read_eval_labels(labels_path)
        keys = list(labels) if a.split == "all" else split(list(labels))[0 if a.split == "tune" else 1]
        if a.limit and a.limit < len(keys):
            keys = [keys[i] for i in np.linspace(0, len(keys) - 1, a.limit).round().astype(int)]
        if a.crops:
            crop_fidelity(s, keys, a.crops)
            continue
        anons = {}
        for c in combos:
            name, params, region = resolve("balanced", detector_params={**setting_params(c), "threads": 1})
            anons[c] = Anonymizer(method="blur", detector=name, detector_params=params, region=region)
        metrics = {c: LeakMetric() for c in combos}
        gm = {g: LeakMetric() for g in gates}
        rerun = defaultdict(int)
        own = {c: defaultdict(float) for c in combos}  # setting -> (precision, kind) -> CPU of its forwards
        runs = {c: defaultdict(int) for c in combos}
        for key in tqdm(keys, desc=s, file=sys.stderr, mininterval=20):
            path = find_image(images, key)
            if path is None:
                continue
            img = read_rgb(path)
            MEMO.clear()
            dets, cands = {}, {}
            for c in combos:
                CPU.clear()
                RUNS.clear()
                # what eval leaks runs: detections and the candidates down to its PR floor (0.05)
                dets[c], cands[c] = anons[c].detector.detect_candidates(img, 0.05)
                for k, v in CPU.items():
                    own[c][k] += v
                    runs[c][k] += RUNS[k]
                mask = anonymized_mask(anons[c].compositor, dets[c], img.shape)
                metrics[c].update(mask, labels[key].faces, labels[key].ignore, key)
            for g in gates:
                lo, hi = g
                sc = cands["int8"].score
                use = "fp32" if ((sc >= lo) & (sc < hi)).any() else "int8"
                rerun[g] += use == "fp32"
                mask = anonymized_mask(anons[use].compositor, dets[use], img.shape)
                gm[g].update(mask, labels[key].faces, labels[key].ignore, key)
        n = len(keys)
        print(f"\n## {s} {a.split} ({n} photos)\n")
        kinds = sorted({k for c in combos for _, k in own[c]})
        for c in ("fp32", "int8"):
            if c in own:
                print(f"{c}, network CPU ms/photo by pass (1 thread): " + "; ".join(
                    f"{k} {own[c][c, k] / n * 1000:.1f} ({runs[c][c, k]} runs)" for k in kinds))
        print("\n| setting | leaked (>= 10 px) | boxed short / never | new / no longer leaked vs fp32 | covered < 90 % "
              "| away | network CPU ms/photo |\n|---|---:|---:|---:|---:|---:|---:|")
        for c in combos:
            r = metrics[c].compute()
            print(f"| {c} | {r.leaked} of {r.faces} ({r.leak_rate * 100:.2f} %) | {r.boxed_short} / {r.never_boxed} | "
                  f"{versus(metrics[c], metrics['fp32'])} | {r.away_rate * 100:.2f} % | "
                  f"{sum(own[c].values()) / n * 1000:.0f} |")
        for g in gates:
            r = gm[g].compute()
            vs = versus(gm[g], metrics["fp32"])
            est = sum(own["int8"].values()) / n * 1000
            print(f"| gate {g[0]}-{g[1]} ({rerun[g]} of {n} re-run fp32) | {r.leaked} of {r.faces} "
                  f"({r.leak_rate * 100:.2f} %) | {r.boxed_short} / {r.never_boxed} | {vs} | {r.away_rate * 100:.2f} % | "
                  f"int8 {est:.0f} + fp32 on {rerun[g] / n * 100:.0f} % of photos |")
        sys.stdout.flush()


if __name__ == "__main__":
    main()
