"""CenterFace on the WIDER FACE val photos in ../shared/data/widerface-val, official protocol.

Reference (issue 4): single scale on the full image padded to a multiple of 256,
threshold 0.02, NMS IoU 0.3 -> AP 0.937 / 0.937 / 0.807 (easy / medium / hard).
Run: PYTHONPATH=src python bench/wider_centerface.py [--limit N] [--cache preds.npz] [--precision int8]
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

from faceveil.eval.utility import eval_detect
from faceveil.eval.widerface import evaluate, load_ground_truth
from faceveil.detect import get_detector
from faceveil.io.images import read_rgb

ROOT = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "widerface-val"
REFERENCE = {"easy": 0.937, "medium": 0.937, "hard": 0.807}


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--limit", type=int, default=0)
    ap.add_argument("--pad", type=int, default=256)
    ap.add_argument("--cache", default="")
    ap.add_argument("--precision", choices=("int8", "fp32"), default="fp32", help="CenterFace weights")
    ap.add_argument("--continuous-iou", action="store_true", help="IoU without the official +1 (comparison aid)")
    args = ap.parse_args()
    files = sorted((ROOT / "images").glob("*/*.jpg"))[: args.limit or None]
    preds = {}
    cache = Path(args.cache) if args.cache else None
    if cache and cache.exists():
        z = np.load(cache, allow_pickle=True)
        preds = z["preds"].item()
    else:
        det = get_detector("centerface", {"precision": args.precision})
        t0 = time.perf_counter()
        from tqdm import tqdm

        for f in tqdm(files, file=sys.stderr):
            d = eval_detect(det, read_rgb(f), threshold=0.02, nms_iou=0.3, pad=args.pad)
            preds[f"{f.parent.name}/{f.stem}"] = (d.xyxy, d.score)
        print(f"detection: {time.perf_counter() - t0:.0f} s for {len(files)} images", file=sys.stderr)
        if cache:
            np.savez(cache, preds=np.array(preds, dtype=object))
    gt = load_ground_truth(ROOT / "ground_truth")
    t0 = time.perf_counter()
    res = evaluate(preds, gt, plus_one=not args.continuous_iou)
    print(f"evaluation: {time.perf_counter() - t0:.1f} s, {res['n_images']} images, IoU {res['iou_convention']}")
    print("| setting | faces | AP | reference | diff |\n|---|---|---|---|---|")
    for s in ("easy", "medium", "hard"):
        print(f"| {s} | {res[s]['n_faces']} | {res[s]['ap']:.4f} | {REFERENCE[s]:.3f} | {res[s]['ap'] - REFERENCE[s]:+.4f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
