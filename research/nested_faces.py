"""Are detections inside a larger detection parts of its face, or faces of their own? The question behind replace's
rule for nested boxes (issue 22, stop 47).

On large photos of one big face the default preset returns, besides the face's box, boxes on parts of it (eyes to
mouth, half the face), from its passes at other sizes; replace drew a new face on each, so a person got two or three
faces over each other. For each detection scoring >= `--score` (replace's `min_score`) that lies inside a larger one
(the share of its box inside >= `--inside`, its area >= `--ratio` of the larger's; each box once, in the larger
box it lies most inside) this counts, on one half of
faceveil.eval.splits of facemask and WIDER val (labels) and on deepface-unit (no labels: listed), whether it meets a
label of its own (IoU >= 0.3 with a label other than the one the larger box meets best: a face of its own, which
replace must not lose) or not (part of the larger box's face, or no face), by each candidate threshold.

    PYTHONPATH=src nice python research/nested_faces.py --side tune|held_out [--sets facemask,wider,deepface]
"""
from __future__ import annotations

import argparse
import glob
from pathlib import Path

import numpy as np

import faceveil
from faceveil.detections import box_inside, box_iou
from faceveil.eval.splits import split
from faceveil.io.images import read_rgb
from faceveil.io.labels import read_labels

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
SETS = {"facemask": ("facemask/gt.txt", "facemask/images"),
        "wider": ("widerface-val/ground_truth/wider_face_val_bbx_gt.txt", "widerface-val/images")}
INSIDE = (0.5, 0.6, 0.8, 0.95)
RATIO = (0.05, 0.1, 0.2)


def nested_pairs(xyxy: np.ndarray, score: np.ndarray, min_score: float):
    """(i, j, share of i's box inside j's, area of i over j's) for every strong i inside a larger strong j."""
    b = np.asarray(xyxy, np.float64)
    area = np.prod(b[:, 2:] - b[:, :2], axis=1)
    inside = box_inside(b, b)
    for i in range(len(b)):
        for j in range(len(b)):
            if i != j and area[j] > area[i] and min(score[i], score[j]) >= min_score and inside[i, j] > 0:
                yield i, j, float(inside[i, j]), area[i] / area[j]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--side", default="tune", choices=("tune", "held_out"))
    ap.add_argument("--sets", default="facemask,wider,deepface")
    ap.add_argument("--score", type=float, default=0.4)
    ap.add_argument("--inside", type=float, default=0.5)
    ap.add_argument("--ratio", type=float, default=0.05)
    a = ap.parse_args()
    for name in a.sets.split(","):
        rows = []  # (inside, ratio, own face, height of i)
        if name == "deepface":
            photos = [(f, None) for f in sorted(glob.glob(str(DATA / "deepface-unit" / "*.jpg")))]
        else:
            gt, root = SETS[name]
            ims = [im for im in read_labels(DATA / gt).images if (DATA / root / im.path).exists()]
            chosen = set(split([im.path for im in ims])[0 if a.side == "tune" else 1])
            photos = []
            for im in ims:
                if im.path in chosen:
                    lab = im.xywh.astype(np.float64).copy()
                    lab[:, 2:] += lab[:, :2]
                    photos.append((str(DATA / root / im.path), lab))
        boxes = 0
        for path, lab in photos:
            d = faceveil.detect(read_rgb(path))
            boxes += int((d.score >= a.score).sum())
            best = {}  # each nested box once: in the larger box it lies most inside
            for i, j, inside, ratio in nested_pairs(d.xyxy, d.score, a.score):
                if inside >= a.inside and ratio >= a.ratio and inside > best.get(i, (0.0,))[0]:
                    best[i] = (inside, j, ratio)
            for i, (inside, j, ratio) in sorted(best.items()):
                own = False
                if lab is not None and len(lab):
                    iou = box_iou(np.asarray(d.xyxy[[i, j]], np.float64), lab)
                    li, lj = int(iou[0].argmax()), int(iou[1].argmax())
                    own = bool(iou[0, li] >= 0.3 and (li != lj or iou[1, lj] < 0.3))
                h = float(d.xyxy[i, 3] - d.xyxy[i, 1])
                rows.append((inside, ratio, own, h))
                if lab is None or own:
                    print(f"  {Path(path).name}: box {np.round(d.xyxy[i]).astype(int).tolist()} "
                          f"({d.score[i]:.2f}) in {np.round(d.xyxy[j]).astype(int).tolist()} ({d.score[j]:.2f}): "
                          f"inside {inside:.2f}, area {ratio:.2f}{', a face of its own' if own else ''}")
        r = np.array(rows, float).reshape(-1, 4)
        print(f"{name} ({a.side if name != 'deepface' else 'all'}): {len(photos)} photos, {boxes} boxes >= "
              f"{a.score:g}, {len(r)} nested boxes (inside >= {a.inside:g}, area >= {a.ratio:g})")
        for t in INSIDE:
            for q in RATIO:
                m = (r[:, 0] >= t) & (r[:, 1] >= q)
                print(f"  inside >= {t:g}, area >= {q:g}: {int(m.sum())} boxes, of which a face of its own "
                      f"{int((m & (r[:, 2] > 0)).sum())}")


if __name__ == "__main__":
    main()
