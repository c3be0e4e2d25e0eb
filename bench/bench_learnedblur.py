"""Learned blur vs Gaussian blur (same kernel), pixelate and blackout on the facemask test split.

    python bench/bench_learnedblur.py [--model PATH] [--json out.json]

Test split: the same seeded split as `faceveil train learnedblur` / `faceveil eval train`
(split seed 0, 20 % held out): the refiner never saw these images. Faces are the labelled boxes.

- operation fidelity (DartBlur's Table 1 sense): AP@0.5 of a fixed pretrained detector on the
  anonymized images, scored against that detector's own detections on the clean images (pseudo ground
  truth, cut at the score that best matches the labels); CenterFace (the detector used in training) and
  YuNet (never used in training). Also AP against the labels, for reference.
- review convenience: mean |method - Gaussian blur| (0..255) inside the labelled boxes, and its colour
  part (the difference's distance from grey, i.e. a tint).
- speed: faces/s of the method alone (boxes given), wall clock; noisy on a shared machine.
- bench/learnedblur_grid.png: original / Gaussian blur / learned blur crops of test faces.
Privacy (LFW) and cycle / post-hoc fidelity come from `faceveil eval privacy` and `faceveil eval train`.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "facemask"

from faceveil.anonymize import Compositor, get_method
from faceveil.detect import get_detector
from faceveil.detections import Detections
from faceveil.train.train_on_anon import ap_overall, best_f1_threshold, load_samples, split

# "blur" is the Gaussian blur inside learnedblur (kernel 1.5x the face width); "blur1" is blur's own default.
METHODS = {"none": None, "blackout": ("blackout", {}), "blur": ("blur", {"relative": 1.5}),
           "blur1": ("blur", {"relative": 1.0}), "pixelate": ("pixelate", {"cells": 10}),
           "learnedblur": ("learnedblur", {"relative": 1.5})}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="", help="refiner ONNX (default: the shipped one)")
    ap.add_argument("--json", default="")
    ap.add_argument("--grid", default=str(ROOT / "bench" / "learnedblur_grid.png"))
    args = ap.parse_args()
    samples, _ = load_samples(DATA / "images", DATA / "gt.txt")
    _, test = split(samples, 0.2, 0)
    gts = [s.boxes for s in test]
    n_faces = int(sum(len(g) for g in gts))
    comp = Compositor()
    outs, speed = {}, {}
    for label, spec in METHODS.items():
        if spec is None:
            outs[label] = [s.image for s in test]
            continue
        name, params = spec
        if name == "learnedblur" and args.model:
            params = {**params, "model": args.model}
        m = get_method(name, params)
        m.apply(test[0].image, Detections.from_boxes(test[0].boxes), comp, np.random.default_rng(0))  # warm-up
        t0 = time.perf_counter()
        outs[label] = [m.apply(s.image, Detections.from_boxes(s.boxes, source="label"), comp,
                               np.random.default_rng(0)) for s in test]
        speed[label] = n_faces / (time.perf_counter() - t0)
    dets = {"centerface": get_detector("centerface", {"threshold": 0.05}),
            "yunet": get_detector("yunet", {"threshold": 0.05})}
    rows = {k: {"faces_per_s": speed.get(k)} for k in METHODS}
    for dname, det in dets.items():
        clean = [det.detect(im) for im in outs["none"]]
        t = best_f1_threshold(clean, gts)
        pseudo = [p.xyxy[p.score >= t] for p in clean]
        for label in METHODS:
            preds = clean if label == "none" else [det.detect(im) for im in outs[label]]
            rows[label][f"oper_{dname}"] = ap_overall(preds, pseudo)
            rows[label][f"ap_labels_{dname}"] = ap_overall(preds, gts)
        rows["none"][f"pseudo_threshold_{dname}"] = t
    for label in METHODS:
        diffs, colour = [], []
        for s, a, b in zip(test, outs[label], outs["blur"]):
            h, w = s.image.shape[:2]
            for x1, y1, x2, y2 in np.round(s.boxes).astype(int):
                x1, y1, x2, y2 = max(x1, 0), max(y1, 0), min(x2, w), min(y2, h)
                if x2 > x1 and y2 > y1:
                    d = a[y1:y2, x1:x2].astype(float) - b[y1:y2, x1:x2]
                    diffs.append(np.abs(d).mean())
                    colour.append(np.abs(d - d.mean(2, keepdims=True)).mean())  # the tint: off grey
        rows[label]["l1_to_blur"] = float(np.mean(diffs))
        rows[label]["colour_to_blur"] = float(np.mean(colour))
    print(f"facemask test split: {len(test)} images, {n_faces} labelled faces")
    print("| method | oper. fid. CenterFace | oper. fid. YuNet | AP labels CF | AP labels YuNet | L1 to blur "
          "| its colour part | faces/s |")
    print("|---|---|---|---|---|---|---|---|")
    for label, r in rows.items():
        fps = f"{r['faces_per_s']:.0f}" if r["faces_per_s"] else "-"
        print(f"| {label} | {r['oper_centerface']:.3f} | {r['oper_yunet']:.3f} | {r['ap_labels_centerface']:.3f} | "
              f"{r['ap_labels_yunet']:.3f} | {r['l1_to_blur']:.1f} | {r['colour_to_blur']:.1f} | {fps} |")
    if args.json:
        Path(args.json).write_text(json.dumps({"n_images": len(test), "n_faces": n_faces, "rows": rows}, indent=1))
    grid(test, outs, args.grid)


def grid(test, outs, path, n=6, side=128) -> None:
    """Crops (2x the face box) of the n largest test faces: original | Gaussian blur | learned blur."""
    faces = sorted(((s.boxes[j, 2] - s.boxes[j, 0], i, j) for i, s in enumerate(test) for j in range(len(s.boxes))),
                   reverse=True)
    picked, seen = [], set()
    for _, i, j in faces:
        if i not in seen:
            picked.append((i, j))
            seen.add(i)
        if len(picked) == n:
            break
    rows = []
    for i, j in picked:
        x1, y1, x2, y2 = test[i].boxes[j]
        cx, cy, r = (x1 + x2) / 2, (y1 + y2) / 2, max(x2 - x1, y2 - y1)
        h, w = test[i].image.shape[:2]
        a, b = int(max(cx - r, 0)), int(max(cy - r, 0))
        c, d = int(min(cx + r, w)), int(min(cy + r, h))
        tiles = [cv2.resize(outs[k][i][b:d, a:c], (side, side), interpolation=cv2.INTER_AREA)
                 for k in ("none", "blur", "learnedblur")]
        rows.append(np.concatenate(tiles, axis=1))
    img = np.concatenate(rows, axis=0)
    cv2.imwrite(str(path), img[:, :, ::-1])
    print(f"grid (original | Gaussian blur | learned blur) -> {path}")


if __name__ == "__main__":
    main()
