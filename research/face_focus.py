"""Is replace's new face as sharp as the photo around it, no sharper and no softer?

The bank faces are sharp, and replace adds their fine detail at frame resolution; grain and skin texture are only
ever added (to match the person's visible skin). On soft footage (the shared clips: compressed, 640-960 px, motion
blur) and on out-of-focus faces the new face came out crisper than everything around it. replace's
``match_focus`` blurs the face as much as the ring's sharper edges are blurred, where they are blurrier than the
face's. For each face >= 40 px with landmarks (deepface-unit at 640 px, facemask ``--photos`` per side of
eval.splits, every 30th frame of the shared clips drawn as photos), per variant (``FOCUS_MATCH`` off / on, or
on:PCT for another ``FOCUS_PCT``), this prints:
- sharpness: Laplacian variance of the central half box, output over original (bench_replace's measure): median,
  10th and 90th percentile, and the median of |log2| (0 = as sharp as the original; 1 = twice or half);
- edge width: the blur of the central 0.8 box's edges in px (face_plate.edge_width), original / output;
- softened: the faces the step blurred, of all faces (any size) in the set.

    PYTHONPATH=src nice python research/face_focus.py [--photos 60] [--variants off,on,on:25] [--sets video]
"""
from __future__ import annotations

import argparse
import importlib
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))
sys.path.insert(0, str(ROOT / "research"))

import bench_replace as br  # noqa: E402
from face_plate import central_gray, edge_width, photo_sets, replaced_faces  # noqa: E402

L = importlib.import_module("faceveil.anonymize.replace_looks")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--photos", type=int, default=60, help="facemask photos per side")
    ap.add_argument("--variants", default="off,on", help="off, on, or on:PCT (FOCUS_PCT)")
    ap.add_argument("--sets", default="", help="comma list of the sets to run (default: all)")
    args = ap.parse_args()
    import faceveil
    from faceveil.detect.presets import DEFAULT_PRESET, get_preset

    comp = br.Compositor(br.RegionParams(**get_preset(DEFAULT_PRESET)["region"]))
    softened = []
    real_match, default_pct = L.match_focus, L.FOCUS_PCT

    def counting(comp_, *a):
        out = real_match(comp_, *a)
        softened[-1] += out is not comp_
        return out

    L.match_focus = counting
    print("| set | faces | variant | sharpness median (p10 / p90) | median abs log2 sharpness | edge width px, "
          "original / output | softened |")
    print("|---|---|---|---|---|---|---|")
    for name, imgs in photo_sets(args.photos).items():
        if args.sets and name not in args.sets.split(","):
            continue
        dets = [faceveil.detect(img) for img in imgs]
        for variant in args.variants.split(","):
            L.FOCUS_MATCH = variant.startswith("on")
            L.FOCUS_PCT = float(variant.split(":")[1]) if ":" in variant else default_pct
            method = br.make_method("replace", {})
            sharp, e_o, e_a, n_faces = [], [], [], 0
            softened.append(0)
            for img, out, b, r in replaced_faces(method, comp, imgs, dets):
                n_faces += 1
                sharp.append(br._face_looks(img, out, b, r)[3])
                e_o.append(edge_width(central_gray(img, b)))
                e_a.append(edge_width(central_gray(out, b)))
            s = np.asarray(sharp, np.float64)
            s = s[np.isfinite(s) & (s > 0)]
            all_faces = sum(len(d) for d in dets)
            print(f"| {name} | {n_faces} | {variant} | {np.median(s):.3f} ({np.percentile(s, 10):.3f} / "
                  f"{np.percentile(s, 90):.3f}) | {np.median(np.abs(np.log2(s))):.3f} | {np.nanmedian(e_o):.2f} / "
                  f"{np.nanmedian(e_a):.2f} | {softened[-1]} of {all_faces} |", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
