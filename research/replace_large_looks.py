"""Replace's looks on large faces (issue 22, stop 63): the measures of bench/bench_replace.py's looks table (Delta-E of
the central half box, fill, seam, sharpness) and the face's edge width, on the faces >= 200 px wide that the looks
table (deepface-unit shrunk to 640 px, facemask, every 30th video frame) hardly holds.

    PYTHONPATH=SRC python research/replace_large_looks.py [--out FILE.json]

Sets: the talking-head clip's first 40 frames (research/replace_speed.py's cache: run its ``cache`` first) and the
deepface-unit photos at full size, each face detected by the default preset (cached in
research/out/large_looks.pkl), faces >= 200 px wide scoring >= 0.4. Each face is replaced alone in its frame
(seed = its index). Edge width: the median blur sigma (px) of Canny edge pixels inside the central half box
(``replace_looks.edge_sigmas``'s estimate), the output's and the original's. Run once per source tree (main's,
a branch's) and compare the medians.
"""
from __future__ import annotations

import argparse
import json
import pickle
import sys
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
SPEED_CACHE = ROOT / "research" / "out" / "replace_speed.pkl"
CACHE = ROOT / "research" / "out" / "large_looks.pkl"
MIN_PX = 200


def faces() -> dict:
    import faceveil
    from faceveil.io.images import read_rgb

    if CACHE.exists():
        return pickle.loads(CACHE.read_bytes())
    sets = {"talk": [(img, d) for _, img, d in pickle.loads(SPEED_CACHE.read_bytes())["talk"]], "deepface": []}
    for p in sorted((DATA / "deepface-unit").glob("*.jpg")):
        img = read_rgb(p)
        sets["deepface"].append((img, faceveil.detect(img)))
    CACHE.parent.mkdir(parents=True, exist_ok=True)
    CACHE.write_bytes(pickle.dumps(sets))
    return sets


def edge_width(img: np.ndarray, box) -> float:
    from faceveil.anonymize.replace_looks import edge_sigmas

    x1, y1, x2, y2 = box
    cx, cy, hw, hh = (x1 + x2) / 2, (y1 + y2) / 2, (x2 - x1) / 4, (y2 - y1) / 4
    c = img[int(max(cy - hh, 0)):int(np.ceil(cy + hh)), int(max(cx - hw, 0)):int(np.ceil(cx + hw))]
    g = cv2.cvtColor(c, cv2.COLOR_RGB2GRAY)
    e = edge_sigmas(g.astype(np.float32), np.ones(g.shape, bool), g)
    return float(np.median(e)) if len(e) >= 20 else float("nan")


def main() -> int:
    sys.path.insert(0, str(ROOT / "bench"))
    from bench_replace import _face_looks

    from faceveil.anonymize import Compositor, RegionParams, get_method
    from faceveil.detect.presets import DEFAULT_PRESET, get_preset
    from faceveil.detections import Detections

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="")
    a = ap.parse_args()
    comp = Compositor(RegionParams(**get_preset(DEFAULT_PRESET)["region"]))
    m = get_method("replace", {})
    res = {}
    for name, items in faces().items():
        rows = []
        for img, d in items:
            for j in range(len(d)):
                box = d.xyxy[j]
                if box[2] - box[0] < MIN_PX or d.score[j] < 0.4:
                    continue
                one = Detections(d.xyxy[j:j + 1], d.score[j:j + 1],
                                 None if d.landmarks is None else d.landmarks[j:j + 1], None)
                out = m.apply(img, one, comp, np.random.default_rng(len(rows)))
                region = comp.regions(one, img.shape)[0]
                rows.append([*_face_looks(img, out, box, region), edge_width(out, box), edge_width(img, box)])
        r = np.array(rows, np.float64)
        med = {k: float(np.nanmedian(r[:, i])) for i, k in enumerate(
            ["delta_e", "fill", "seam", "sharpness", "edge_px", "edge_px_original"])}
        med["delta_e_p90"] = float(np.nanpercentile(r[:, 0], 90))
        res[name] = {"faces": len(rows), **{k: round(v, 3) for k, v in med.items()}}
        print(name, res[name], flush=True)
    if a.out:
        Path(a.out).write_text(json.dumps(res, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
