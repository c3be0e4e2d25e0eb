"""Harmonizers of `replace`: classic vs poisson vs the learned U-Net (unet).

    python bench/bench_harmonizer.py [--people 40] [--gallery 200] [--model PATH]

On LFW (../shared/data/lfw, evaluation only) probes of --people people (one photo
each) and deepface-unit's faces (MIT), per harmonizer:

- colour match: the CIE Lab difference (Delta E, CIE76) between the mean colour of
  a ring just inside the replaced region (0.75..1.0 of the region ellipse) and of a
  ring just outside it (1.0..1.25), i.e. how well the new face meets its
  surroundings; the originals' own value is the natural reference ("ring err": the
  mean per-face |difference| from it); and the Delta E between the mean colour of
  the face box and the original's (light and skin tone: the proxy task's target);
- SSIM of the face box vs the original, FD-dlib (LFW), detection rate by CenterFace
  and dlib HOG (IoU >= 0.3 with the original box), naive rank-1 (anonymized probe
  vs the original gallery of --gallery people; privacy must not get worse);
- robustness: deepface-unit with the whole photo darkened or tinted;
- speed: faces/s of the method alone (detections given) per wall-clock and per CPU
  second, in this process, on these photos. The machine is shared: timings are rough.
"""
from __future__ import annotations

import argparse
import sys
import time

import cv2
import numpy as np

from common import COMP, DATA, Face, detected, frechet, lfw_people, rank1, ssim, table
from faceveil.anonymize import get_method
from faceveil.anonymize.identity import descriptor
from faceveil.detect import get_detector
from faceveil.io.images import read_rgb


def variants(model: str, extra: str = "") -> dict[str, dict]:
    more = {"unet (--extra-model)": {"harmonizer": "unet", "harmonizer_model": extra}} if extra else {}
    return more | {
        "classic": {"harmonizer": "classic"},
        "poisson": {"harmonizer": "poisson"},
        "unet": {"harmonizer": "unet", "harmonizer_model": model},
        "unet (no Lab transfer first)": {"harmonizer": "unet", "harmonizer_model": model, "color_strength": 0.0},
    }


SCENES = {"as is": (1.0, 1.0, 1.0), "dark": (0.4, 0.4, 0.4), "warm": (1.0, 0.75, 0.5)}


def rings(box, shape, scale: float = 1.3):
    """Masks of the rings just inside and just outside the region ellipse of ``box``."""
    h, w = shape[:2]
    c = (np.asarray(box[:2]) + np.asarray(box[2:])) / 2
    ax = (np.asarray(box[2:]) - np.asarray(box[:2])) / 2 * scale
    yy, xx = np.mgrid[0:h, 0:w] + 0.5
    r = np.sqrt(((xx - c[0]) / ax[0]) ** 2 + ((yy - c[1]) / ax[1]) ** 2)
    return (r >= 0.75) & (r < 1.0), (r >= 1.0) & (r < 1.25)


def lab(img):
    return cv2.cvtColor(img.astype(np.float32) / 255, cv2.COLOR_RGB2Lab)


def ring_de(img, box) -> float:
    inner, outer = rings(box, img.shape)
    lo = lab(img)
    return float(np.linalg.norm(lo[inner].mean(0) - lo[outer].mean(0))) if inner.any() and outer.any() else np.nan


def colour_metrics(out, orig, box) -> tuple[float, float, float]:
    """(ring Delta E, |ring Delta E - the original's|, face-box mean colour Delta E vs the original)."""
    ring = ring_de(out, box)
    x1, y1, x2, y2 = np.clip(np.asarray(box), 0, [out.shape[1], out.shape[0]] * 2).astype(int)
    face = float(np.linalg.norm(lab(out)[y1:y2, x1:x2].reshape(-1, 3).mean(0)
                                - lab(orig)[y1:y2, x1:x2].reshape(-1, 3).mean(0)))
    return ring, abs(ring - ring_de(orig, box)), face


def deepface_faces(cf):
    items = []
    for p in sorted((DATA / "deepface-unit").glob("*.jpg")):
        img = read_rgb(p)
        f = 640 / max(img.shape[:2])
        img = cv2.resize(img, None, fx=f, fy=f, interpolation=cv2.INTER_AREA)
        d = cf.detect(img)
        if len(d):
            items.append((img, d))
    return items


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--people", type=int, default=40)
    ap.add_argument("--gallery", type=int, default=200)
    ap.add_argument("--model", default="", help="harmonizer ONNX (default: the shipped one)")
    ap.add_argument("--extra-model", default="", help="another harmonizer ONNX to compare with")
    args = ap.parse_args()
    cf = get_detector("centerface", {"threads": 1})
    hog = get_detector("dlib-hog", {})
    people = lfw_people()
    names = list(people)[: args.gallery]
    gallery = [Face(people[n][0], cf, hog) for n in names]
    rng = np.random.default_rng(0)
    probes, truth = [], []
    for i in rng.permutation(len(names)):
        if len(people[names[i]]) >= 2:
            try:
                probes.append(Face(people[names[i]][1], cf, hog))
                truth.append(i)
            except LookupError:
                continue
        if len(probes) == args.people:
            break
    truth = np.array(truth)
    g_desc = np.stack([f.desc for f in gallery])
    p_desc = np.stack([f.desc for f in probes])
    df = deepface_faces(cf)
    n_df = sum(len(d) for _, d in df)

    ref_ring = np.nanmean([ring_de(f.img, f.det.xyxy[0]) for f in probes])
    ref_ring_df = np.nanmean([ring_de(img, b) for img, d in df for b in d.xyxy])
    rows = [{"harmonizer": "original", "LFW ring dE": ref_ring, "LFW ring err": 0.0, "LFW face dE": 0.0,
             "unit ring dE": ref_ring_df, "unit ring err": 0.0, "unit face dE": 0.0, "SSIM box": 1.0, "FD-dlib": 0.0, "det CF": 1.0, "det HOG": 1.0,
             "naive rank-1": rank1(p_desc, g_desc, truth), "faces/s": np.nan, "faces/CPU-s": np.nan}]
    for label, params in variants(args.model, args.extra_model).items():
        method = get_method("replace", params)
        method.apply(probes[0].img, probes[0].det, COMP, np.random.default_rng(0))  # load models before timing
        t, c = time.perf_counter(), time.process_time()
        outs = [method.apply(f.img, f.det, COMP, np.random.default_rng(1000 + i)) for i, f in enumerate(probes)]
        fps, fpc = len(probes) / (time.perf_counter() - t), len(probes) / (time.process_time() - c)
        cm = np.array([colour_metrics(o, f.img, f.det.xyxy[0]) for o, f in zip(outs, probes)])
        df_outs = [method.apply(img, d, COMP, np.random.default_rng(7)) for img, d in df]
        cm_df = np.array([colour_metrics(o, img, b) for o, (img, d) in zip(df_outs, df) for b in d.xyxy])
        a_desc = np.stack([descriptor(o, f.dbox) for o, f in zip(outs, probes)])
        s_box = []
        for o, f in zip(outs, probes):
            x1, y1, x2, y2 = np.clip(f.det.xyxy[0], 0, 249).astype(int)
            s_box.append(ssim(o[y1:y2, x1:x2], f.img[y1:y2, x1:x2]))
        rows.append({"harmonizer": label, "LFW ring dE": float(np.nanmean(cm[:, 0])),
                     "LFW ring err": float(np.nanmean(cm[:, 1])), "LFW face dE": float(np.nanmean(cm[:, 2])),
                     "unit ring dE": float(np.nanmean(cm_df[:, 0])), "unit ring err": float(np.nanmean(cm_df[:, 1])),
                     "unit face dE": float(np.nanmean(cm_df[:, 2])), "SSIM box": float(np.mean(s_box)),
                     "FD-dlib": frechet(a_desc, p_desc),
                     "det CF": float(np.mean([detected(cf.detect(o), f.det.xyxy[0]) for o, f in zip(outs, probes)])),
                     "det HOG": float(np.mean([detected(hog.detect(o), f.det.xyxy[0]) for o, f in zip(outs, probes)])),
                     "naive rank-1": rank1(a_desc, g_desc, truth), "faces/s": fps, "faces/CPU-s": fpc})
        print(f"{label}: done", file=sys.stderr)
    print(f"\n## LFW {len(probes)} probes (gallery {len(gallery)} people, chance rank-1 {1 / len(gallery):.3f}); "
          f"deepface-unit {n_df} faces in {len(df)} photos (640 px)\n")
    print(table(rows, list(rows[0])))

    # Scenes outside the training range: the whole photo darkened or tinted (deepface-unit).
    rows = []
    for label, params in variants(args.model, args.extra_model).items():
        method = get_method("replace", params)
        row = {"harmonizer": label}
        for scene, gain in SCENES.items():
            vals = []
            for img, d in df:
                lit = np.clip(img * np.array(gain), 0, 255).astype(np.uint8)
                out = method.apply(lit, d, COMP, np.random.default_rng(7))
                vals += [colour_metrics(out, lit, b) for b in d.xyxy]
            v = np.array(vals)
            row[f"{scene}: ring err"] = float(np.nanmean(v[:, 1]))
            row[f"{scene}: face dE"] = float(np.mean(v[:, 2]))
            row[f"{scene}: face dE p90"] = float(np.percentile(v[:, 2], 90))
        rows.append(row)
    print(f"\n## deepface-unit, whole photo re-lit ({', '.join(f'{k} = RGB x {v}' for k, v in SCENES.items())})\n")
    print(table(rows, list(rows[0])))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
