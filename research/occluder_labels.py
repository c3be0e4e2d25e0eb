"""Does replace keep a cover only on faces that wear one? `-m replace` keeps what covers the lower face (a mask, a
scarf: ``_occluder_keep``); on a bare face that would keep the person's own chin and mouth. facemask labels every
face with_mask / without_mask / mask_weared_incorrect, so each decision can be checked against the truth.

For every detected face matched to a label (IoU >= 0.3) with plausible landmarks, the decision as replace makes it
(same geometry, skin model and occluder rule, without drawing a face): the share of the mouth box kept. A face
"keeps its lower face" when more than half of its mouth box is kept. Printed per half of faceveil.eval.splits: bare
faces that kept their lower face (a privacy failure) and masked faces that kept their mask (the look).

    PYTHONPATH=src nice python research/occluder_labels.py [--side tune|held_out|both]
"""
from __future__ import annotations

import argparse
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))
from common import DATA  # noqa: E402

import faceveil  # noqa: E402
from faceveil.anonymize import Compositor, RegionParams  # noqa: E402
from faceveil.anonymize.bank import plausible  # noqa: E402
from faceveil.anonymize.methods import replace as R  # noqa: E402
from faceveil.detect.presets import DEFAULT_PRESET, get_preset  # noqa: E402
from faceveil.detections import box_iou  # noqa: E402
from faceveil.eval.splits import split  # noqa: E402
from faceveil.io.images import read_rgb  # noqa: E402

COMP = Compositor(RegionParams(**get_preset(DEFAULT_PRESET)["region"]))


def mouth_kept(img: np.ndarray):
    """(box, share of the mouth box kept) for each detected face with plausible landmarks."""
    dets = faceveil.detect(img)
    for r in COMP.regions(dets, img.shape):
        box, lm = dets.xyxy[r.index].astype(np.float64), r.landmarks
        if lm is None or not np.isfinite(lm).all() or not plausible(lm, box):
            continue
        g = R._Geometry(img.shape, r, box, np.asarray(lm, np.float64))
        wx1, wy1, wx2, wy2 = g.window
        win = img[wy1:wy2, wx1:wx2]
        small = cv2.resize(win, g.small_size, interpolation=cv2.INTER_AREA) if g.f < 1 else win
        lab = R._lab(small)
        skin = R._skin(small, lab, g.ring)
        keep, _ = R._occluder_keep(small, lab, g.tx, g.ty, lab[skin] if skin.sum() >= 12 else None)
        mx1, my1, mx2, my2 = R.OCC_MOUTH
        mouth = (g.tx >= mx1) & (g.tx <= mx2) & (g.ty >= my1) & (g.ty <= my2)
        yield box, float((keep[mouth] > 0.5).mean()) if mouth.any() else 0.0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--side", choices=["tune", "held_out", "both"], default="tune")
    args = ap.parse_args()
    root = DATA / "facemask"
    names = sorted(p.name for p in (root / "images").glob("*.jpg"))
    tune, held = split(names)
    for side, chosen in (("tune", tune), ("held_out", held)):
        if args.side not in (side, "both"):
            continue
        counts: dict[str, list[int]] = {}
        for name in chosen:
            objs = ET.parse(root / "annotations" / f"{Path(name).stem}.xml").getroot().iter("object")
            labels = [(o.find("name").text, [float(o.find("bndbox").find(k).text)
                                             for k in ("xmin", "ymin", "xmax", "ymax")]) for o in objs]
            if not labels:
                continue
            boxes = np.array([b for _, b in labels])
            for box, kept in mouth_kept(read_rgb(root / "images" / name)):
                overlap = box_iou(box[None], boxes)[0]
                if overlap.max() < 0.3:
                    continue
                c = counts.setdefault(labels[int(overlap.argmax())][0], [0, 0])
                c[0] += kept > 0.5
                c[1] += 1
        print(f"{side}: " + "; ".join(f"{label} kept their lower face {k} of {n} ({k / max(n, 1):.1%})"
                                       for label, (k, n) in sorted(counts.items())))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
