"""Does replace keep a cover only on faces that wear one? `-m replace` keeps what covers the lower face (a mask, a
scarf: ``occluder_keep``); on a bare face that would keep the person's own chin and mouth. facemask labels every
face with_mask / without_mask / mask_weared_incorrect, so each decision can be checked against the truth.

For every detected face matched to a label (IoU >= 0.3) with plausible landmarks, the decision as replace makes it
(same geometry, skin model and occluder rule, without drawing a face): the share of the mouth box kept. A face
"keeps its lower face" when more than half of its mouth box is kept. Printed per half of faceveil.eval.splits: bare
faces that kept their lower face (a privacy failure) and masked faces that kept their mask (the look), for all faces
and for those >= 32 px high. `--before` runs the rule without stop 38's cleaner outline for clear covers.

Where almost no one wears a mask, `--set wider` (the WIDER val photos of one half) and `--set clips` (every 10th
frame of the shared clips) count the faces that keep their lower face before and now, and `--sheet FILE` draws those
>= 32 px that keep it only now (green: kept), to be looked at: an occluder (a scarf, a shield, a costume beard, the
head in front) or a bare chin and mouth (a leak).

    PYTHONPATH=src nice python research/occluder_labels.py [--side tune|held_out|both] [--before]
    PYTHONPATH=src nice python research/occluder_labels.py --set wider|clips [--side tune] [--sheet FILE]
"""
from __future__ import annotations

import argparse
import sys
from contextlib import contextmanager
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
from faceveil.anonymize import replace_geometry as G, replace_looks as L, replace_occluders as O  # noqa: E402
from faceveil.detect.presets import DEFAULT_PRESET, get_preset  # noqa: E402
from faceveil.detections import box_iou  # noqa: E402
from faceveil.eval.splits import split  # noqa: E402
from faceveil.io.images import read_rgb  # noqa: E402

COMP = Compositor(RegionParams(**get_preset(DEFAULT_PRESET)["region"]))


def mouth_kept(img: np.ndarray, both: bool = False):
    """(box, share of the mouth box kept) for each detected face with plausible landmarks; ``both``: (box, share
    before stop 38, share now, kept weight now, work window)."""
    dets = faceveil.detect(img)
    for r in COMP.regions(dets, img.shape):
        box, lm = dets.xyxy[r.index].astype(np.float64), r.landmarks
        if lm is None or not np.isfinite(lm).all() or not plausible(lm, box):
            continue
        g = G.Geometry(img.shape, r, box, np.asarray(lm, np.float64))
        wx1, wy1, wx2, wy2 = g.window
        win = img[wy1:wy2, wx1:wx2]
        small = cv2.resize(win, g.small_size, interpolation=cv2.INTER_AREA) if g.f < 1 else win
        lab = L.to_lab(small)
        skin = L.skin_pixels(small, lab, g.ring_all)  # as replace's rule reads it
        skin_lab = lab[skin] if skin.sum() >= 12 else None
        keep, _ = O.occluder_keep(small, lab, g.tx, g.ty, skin_lab)
        mx1, my1, mx2, my2 = O.OCC_MOUTH
        mouth = (g.tx >= mx1) & (g.tx <= mx2) & (g.ty >= my1) & (g.ty <= my2)
        share = float((keep[mouth] > 0.5).mean()) if mouth.any() else 0.0
        if not both:
            yield box, share
            continue
        with before():
            old, _ = O.occluder_keep(small, lab, g.tx, g.ty, skin_lab)
        yield box, float((old[mouth] > 0.5).mean()) if mouth.any() else 0.0, share, keep, g.window


@contextmanager
def before():
    """The rule as it was before stop 38: no cleaner outline for clear covers."""
    share = O.OCC_CLEAN_SHARE
    O.OCC_CLEAN_SHARE = 2.0  # no cover covers twice the mouth box
    try:
        yield
    finally:
        O.OCC_CLEAN_SHARE = share


def unlabelled(which: str, side: str, sheet: Path | None) -> None:
    """Faces keeping their lower face where almost no one wears a mask, before stop 38 and now."""
    if which == "wider":
        root = DATA / "widerface-val" / "images"
        names = split(sorted(str(p.relative_to(root)) for p in root.rglob("*.jpg")))[0 if side == "tune" else 1]
        frames = ((n, read_rgb(root / n)) for n in names)
    else:
        def clip_frames():
            for v in sorted((DATA / "videos").iterdir()):
                cap = cv2.VideoCapture(str(v))
                i = 0
                while True:
                    ok, f = cap.read()
                    if not ok:
                        break
                    if i % 10 == 0:
                        yield f"{v.name}:{i}", cv2.cvtColor(f, cv2.COLOR_BGR2RGB)
                    i += 1
        frames = clip_frames()
    n = big_n = 0
    kept = {"before": [0, 0], "now": [0, 0]}  # all faces, faces >= 32 px
    tiles = []
    for name, img in frames:
        for box, old, share, keep, (wx1, wy1, wx2, wy2) in mouth_kept(img, both=True):
            big = box[3] - box[1] >= 32
            n += 1
            big_n += big
            for what, s in (("before", old), ("now", share)):
                kept[what][0] += s > 0.5
                kept[what][1] += s > 0.5 and big
            if sheet is not None and big and share > 0.5 >= old and len(tiles) < 80:
                cx, cy, r = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2, (box[3] - box[1]) * 0.75
                x1, y1 = int(max(0, cx - r)), int(max(0, cy - r))
                x2, y2 = int(min(img.shape[1], cx + r)), int(min(img.shape[0], cy + r))
                full = np.zeros(img.shape[:2], np.float32)
                full[wy1:wy2, wx1:wx2] = cv2.resize(keep, (wx2 - wx1, wy2 - wy1))
                crop = cv2.resize(img[y1:y2, x1:x2], (96, 96))
                marked = crop.copy()
                m = cv2.resize(full[y1:y2, x1:x2], (96, 96)) > 0.5
                marked[m] = (marked[m] * 0.4 + np.array([0, 255, 0]) * 0.6).astype(np.uint8)
                tiles.append(np.hstack([crop, marked]))
    print(f"{which} ({side if which == 'wider' else 'every 10th frame'}): {n} faces with landmarks, {big_n} of them "
          f">= 32 px; keeping their lower face (all / >= 32 px): "
          + "; ".join(f"{k} {a} / {b}" for k, (a, b) in kept.items()))
    if sheet is not None and tiles:
        tiles += [np.zeros_like(tiles[0])] * (-len(tiles) % 5)
        cv2.imwrite(str(sheet), cv2.cvtColor(np.vstack([np.hstack(tiles[i:i + 5]) for i in range(0, len(tiles), 5)]),
                                             cv2.COLOR_RGB2BGR))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--side", choices=["tune", "held_out", "both"], default="tune")
    ap.add_argument("--before", action="store_true", help="the rule before stop 38 (no cleaner outline)")
    ap.add_argument("--set", choices=["facemask", "wider", "clips"], default="facemask")
    ap.add_argument("--sheet", type=Path, help="--set wider|clips: a PNG of the faces that keep it only now")
    args = ap.parse_args()
    if args.set != "facemask":
        unlabelled(args.set, "held_out" if args.side == "held_out" else "tune", args.sheet)
        return 0
    if args.before:
        O.OCC_CLEAN_SHARE = 2.0
    root = DATA / "facemask"
    names = sorted(p.name for p in (root / "images").glob("*.jpg"))
    tune, held = split(names)
    for side, chosen in (("tune", tune), ("held_out", held)):
        if args.side not in (side, "both"):
            continue
        tallies: dict[str, dict[str, list[int]]] = {"all": {}, ">= 32 px": {}}
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
                for what, tally in tallies.items():
                    if what == "all" or box[3] - box[1] >= 32:
                        c = tally.setdefault(labels[int(overlap.argmax())][0], [0, 0])
                        c[0] += kept > 0.5
                        c[1] += 1
        for what, tally in tallies.items():
            print(f"{side}, {what}: " + "; ".join(f"{label} kept their lower face {k} of {n} ({k / max(n, 1):.1%})"
                                                   for label, (k, n) in sorted(tally.items())), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
