"""Fit the mean 5-point face shape relative to a face box (faceveil.anonymize.box_landmarks.MEAN_SHAPE).

The default detector preset (CenterFace, `balanced`) on the TUNE half of the facemask photos
(faceveil.eval.splits; CC0 data), each detection's 5 landmarks expressed in its own box
((x - x1) / w, (y - y1) / h), the per-coordinate median over faces >= MIN_PX high whose landmarks a
similarity maps onto the template (bank.plausible). Also printed: the same shape against the labelled
boxes matched to a detection (IoU >= 0.4), as a check of how far labelled and detected boxes differ.

    PYTHONPATH=src python tools/fit_box_landmarks.py /work/shared/data/facemask
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from faceveil.anonymize.bank import plausible
from faceveil.detections import Detections, box_iou
from faceveil.eval.splits import split
from faceveil.io.images import read_rgb
from faceveil.pipeline import Anonymizer
from faceveil.train.train_on_anon import read_wider_gt

MIN_PX = 24.0


def relative(lm: np.ndarray, box: np.ndarray) -> np.ndarray:
    w, h = box[2] - box[0], box[3] - box[1]
    return (lm - box[:2]) / [w, h]


def main(root: str) -> None:
    root = Path(root)
    gt = read_wider_gt(root / "gt.txt")
    tune, _ = split(sorted(gt))
    anon = Anonymizer("blur")
    own, lab = [], []
    for name in tune:
        det = anon.detect(read_rgb(root / "images" / name))
        keep = det.has_landmarks & ((det.xyxy[:, 3] - det.xyxy[:, 1]) >= MIN_PX)
        for box, lm in zip(det.xyxy[keep], det.landmarks[keep]):
            if plausible(lm, box):
                own.append(relative(lm.astype(np.float64), box.astype(np.float64)))
        labels = Detections.from_boxes(gt[name], source="label").with_landmarks_from(det)
        for box, lm, ok in zip(labels.xyxy, labels.landmarks, labels.has_landmarks):
            if ok and box[3] - box[1] >= MIN_PX and plausible(lm, box):
                lab.append(relative(lm.astype(np.float64), box.astype(np.float64)))
    own, lab = np.array(own), np.array(lab)
    print(f"{len(tune)} tune photos; {len(own)} detections, {len(lab)} matched labelled boxes (>= {MIN_PX:.0f} px)")
    for what, a in (("own boxes", own), ("labelled boxes", lab)):
        med = np.median(a, axis=0)
        iqr = np.percentile(a, 75, axis=0) - np.percentile(a, 25, axis=0)
        print(f"{what}: median\n{np.round(med, 3).tolist()}\n  interquartile range\n{np.round(iqr, 3).tolist()}")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "/work/shared/data/facemask")
