"""How much of replace's mask shows a flat plate instead of a face, and how large should the donors' face be drawn?

replace places the donors' averaged face by a 5-point fit (eyes, nose, mouth) and blends it inside a face-shaped
mask that must reach the person's jaw (the face ellipse joined with the detection box's). Where the mask reaches
past the donors' face (full weight out to 0.9 of its ellipse), the fill continued from the face's edge shows: a flat
skin-coloured band, a plate around a face that looks too small for its head. For each face >= 40 px with landmarks,
on deepface-unit (resized to 640 px, as bench_replace's looks table), facemask (``--photos`` per side of
eval.splits) and every 30th frame of the shared clips (drawn as photos, without tracks; a tracked face is drawn
TRACKED_FACE_SCALE as large about its eye line instead),
this prints per ``--scales`` value of replace's FACE_SCALE (how much larger than the fit a photo's face is drawn; its
fine detail is strengthened by FACE_SCALE**2 with it):
- plate: the share of the fully replaced area (inside the face or box ellipse) where the donors' face has weight
  under 0.5 (median and mean over faces);
- sharpness: Laplacian variance of the central half box, output over original (bench_replace's measure), median;
- edge width: the blur of the central 0.8 box's edges in px (Zhuo and Sim's re-blur gradient ratio at Canny edges,
  median over edge pixels, then over faces), original and output: whether a lower sharpness is blur or scale.

    PYTHONPATH=src nice python research/face_plate.py [--scales 1.0,1.15] [--photos 100]
"""
from __future__ import annotations

import argparse
import importlib
import sys
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))

import bench_replace as br  # noqa: E402

R = importlib.import_module("faceveil.anonymize.methods.replace")  # the name faceveil.anonymize is the function
G = importlib.import_module("faceveil.anonymize.replace_geometry")
L = importlib.import_module("faceveil.anonymize.replace_looks")


def edge_width(gray: np.ndarray) -> float:
    """Median blur (px) of the edges of ``gray``: replace's own estimate (Zhuo and Sim's re-blur gradient ratio at
    Canny edges, ``edge_sigmas``), over the whole patch."""
    e = L.edge_sigmas(gray, np.ones(gray.shape, bool))
    return float(np.median(e)) if len(e) >= 10 else float("nan")


def central_gray(img: np.ndarray, box) -> np.ndarray:
    """The central 0.8 of ``box`` in grey: the patch whose edge width the probes report."""
    return cv2.cvtColor(img[br._scaled(box, 0.8)], cv2.COLOR_RGB2GRAY).astype(np.float32)


def replaced_faces(method, comp, imgs, dets, min_px: float = 40):
    """(photo, output, box, region) for each face >= ``min_px`` with landmarks, each photo replaced with seed i."""
    for i, (img, d) in enumerate(zip(imgs, dets)):
        out = method.apply(img, d, comp, np.random.default_rng(i))
        for r in comp.regions(d, img.shape):
            b = np.asarray(d.xyxy[r.index], np.float64)
            if min(b[2] - b[0], b[3] - b[1]) >= min_px and r.landmarks is not None:
                yield img, out, b, r


def photo_sets(n: int) -> dict[str, list[np.ndarray]]:
    from faceveil.eval.splits import side
    from faceveil.io.images import read_rgb

    sets: dict[str, list[np.ndarray]] = {"deepface-unit": [], "facemask tune": [], "facemask held_out": []}
    for path in sorted((br.DATA / "deepface-unit").glob("*.jpg")):
        img = read_rgb(path)
        f = 640 / max(img.shape[:2])
        sets["deepface-unit"].append(cv2.resize(img, None, fx=f, fy=f, interpolation=cv2.INTER_AREA) if f < 1 else img)
    for path in sorted((br.DATA / "facemask" / "images").glob("*.jpg")):
        key = f"facemask {side(path.name)}"
        if len(sets[key]) < n:
            sets[key].append(read_rgb(path))
    sets["video"] = list(br.video_frames())
    return sets


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scales", default="1.0,1.15")
    ap.add_argument("--photos", type=int, default=100, help="facemask photos per side")
    args = ap.parse_args()
    import faceveil
    from faceveil.detect.presets import DEFAULT_PRESET, get_preset

    comp = br.Compositor(br.RegionParams(**get_preset(DEFAULT_PRESET)["region"]))
    scales = [float(s) for s in args.scales.split(",")]
    print("| set | faces | FACE_SCALE | plate median | plate mean | sharpness median "
          "| edge width px, original / output |")
    print("|---|---|---|---|---|---|---|")
    for name, imgs in photo_sets(args.photos).items():
        dets = [faceveil.detect(img) for img in imgs]
        for scale in scales:
            R.FACE_SCALE = scale
            method = br.make_method("replace", {})
            plate, sharp, e_o, e_a = [], [], [], []
            for img, out, b, r in replaced_faces(method, comp, imgs, dets):
                g = G.Geometry(img.shape, r, b, np.asarray(r.landmarks, np.float64))
                full = (g.rho <= 1) | (g.box_rho <= 1)
                if full.any():
                    plate.append(float((G.donor_alpha(*G.drawn_at(g.tx, g.ty, scale))[full] < 0.5).mean()))
                sharp.append(br._face_looks(img, out, b, r)[3])
                e_o.append(edge_width(central_gray(img, b)))
                e_a.append(edge_width(central_gray(out, b)))
            print(f"| {name} | {len(plate)} | {scale:g} | {np.median(plate):.3f} | {np.mean(plate):.3f} | "
                  f"{np.nanmedian(sharp):.3f} | {np.nanmedian(e_o):.2f} / {np.nanmedian(e_a):.2f} |", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
