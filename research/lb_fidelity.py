"""Where learned blur's operation fidelity fails: per detector, by face size and by mask label.

    python research/lb_fidelity.py [MODEL.onnx ...] [--side held_out|tune] [--max-images N]

The measure is bench_learnedblur.py's (AP@0.5 of CenterFace / YuNet on the anonymized photos against their own
detections on the originals, cut at the best-F1 score against the labels), on one side of the project's split
(faceveil.eval.splits). Also: recall of the pseudo ground truth at that cut, by face height and by the label
(with_mask / without_mask / mask_weared_incorrect) of the labelled face it sits on. Quick (about a minute).
"""
from __future__ import annotations

import argparse
import csv
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))
from common import DATA as SHARED  # noqa: E402

from faceveil.anonymize import Compositor, get_method  # noqa: E402
from faceveil.detect import get_detector  # noqa: E402
from faceveil.detections import Detections, box_iou  # noqa: E402
from faceveil.eval.splits import side  # noqa: E402
from faceveil.train.train_on_anon import ap_overall, best_f1_threshold, load_samples  # noqa: E402

DATA = SHARED / "facemask"
BUCKETS = [(0, 16), (16, 24), (24, 32), (32, 48), (48, 1e9)]


def mask_labels() -> dict[str, list[tuple[np.ndarray, str]]]:
    out: dict[str, list] = {}
    with open(DATA / "labels.csv") as f:
        for r in csv.DictReader(f):
            x, y, w, h = (float(r[k]) for k in "xywh")
            out.setdefault(r["image"], []).append((np.array([x, y, x + w, y + h]), r["label"]))
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("models", nargs="*", help="refiner ONNX files (default: the shipped one)")
    ap.add_argument("--side", default="held_out", choices=["held_out", "tune"])
    ap.add_argument("--max-images", type=int, default=0)
    ap.add_argument("--blur", action="store_true", help="also the plain blur 1.5x")
    args = ap.parse_args()
    samples, _ = load_samples(DATA / "images", DATA / "gt.txt")
    test = [s for s in samples if side(s.name) == args.side][: args.max_images or None]
    labels = mask_labels()
    comp = Compositor()
    dets = {"centerface": get_detector("centerface", {"threshold": 0.05}),
            "yunet": get_detector("yunet", {"threshold": 0.05})}
    gts = [s.boxes for s in test]
    clean = {k: [d.detect(s.image) for s in test] for k, d in dets.items()}
    pseudo = {}
    for k in dets:
        t = best_f1_threshold(clean[k], gts)
        pseudo[k] = (t, [p.xyxy[p.score >= t] for p in clean[k]])
    variants = [("blur1.5", "blur", {"relative": 1.5})] if args.blur else []
    variants += [(m or "shipped", "learnedblur", {"relative": 1.5, "threads": 1, **({"model": m} if m else {})})
                 for m in (args.models or [""])]
    n_faces = sum(len(g) for g in gts)
    print(f"{args.side}: {len(test)} photos, {n_faces} labelled faces")
    for label, name, params in variants:
        m = get_method(name, params)
        c0 = time.process_time()
        outs = [m.apply(s.image, Detections.from_boxes(s.boxes, source="label"), comp, np.random.default_rng(0))
                for s in test]
        cps = n_faces / (time.process_time() - c0)
        line = [f"{label}: {cps:.0f} faces/CPU-s"]
        for k, d in dets.items():
            t, ps = pseudo[k]
            preds = [d.detect(o) for o in outs]
            line.append(f"oper {k} {ap_overall(preds, ps):.3f}")
            # recall of pseudo-gt at t, by height / by mask label (pseudo boxes on labelled faces only)
            by_size, by_lab = {}, {}
            for s, p, g in zip(test, preds, ps):
                if not len(g):
                    continue
                q = p.xyxy[p.score >= t]
                hit = box_iou(g, q).max(axis=1) >= 0.5 if len(q) else np.zeros(len(g), bool)
                lab = labels.get(s.name, [])
                lb = np.stack([b for b, _ in lab]) if lab else np.zeros((0, 4))
                for gi, gb in enumerate(g):
                    h = gb[3] - gb[1]
                    bk = next(f"{lo}-{hi if hi < 1e9 else ''}" for lo, hi in BUCKETS if lo <= h < hi)
                    by_size.setdefault(bk, []).append(hit[gi])
                    if len(lb):
                        iou = box_iou(gb[None], lb)[0]
                        j = int(np.argmax(iou))
                        if iou[j] >= 0.3:
                            by_lab.setdefault(lab[j][1], []).append(hit[gi])
            line.append("  size " + " ".join(f"{b}:{np.mean(v):.2f}({len(v)})" for b, v in by_size.items()))
            line.append("  label " + " ".join(f"{b}:{np.mean(v):.2f}({len(v)})" for b, v in by_lab.items()))
        print("\n".join(line), flush=True)


if __name__ == "__main__":
    main()
