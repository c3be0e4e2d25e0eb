"""Gate the coarse (640 px) pass by the main pass (issue 20, video and WIDER speed): where does it save a face?

The coarse pass (a copy 640 px long, for faces too big for the main pass) runs on every frame the video preset
detects on at 720p and 1080p (~20 % of onnxruntime's work there) and on every WIDER photo of `balanced` (~12 % of its
network). A gate would run it only where the main pass (or its mirror) has a candidate from `coarse_gate_score`
at least that size in the main pass's pixels. Per image (the labelled (a) clips' frames of bench_video.py at its
full sizes, and WIDER photos, one side of faceveil.eval.splits), this runs every pass once and prints:
- the labelled faces (>= 10 px) the coarse pass saves: under 80 % covered by the regions without its boxes, at
  least 80 % with them; for each, the main pass's largest candidate from each score (what a gate must not close);
- per gate: the faces it would lose of those, the images whose coarse pass still runs (the CPU kept), and the
  pixels the coarse pass's boxes add (background hidden).

  python research/coarse_gate.py --side tune --gates 48,64,96,128
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from faceveil.anonymize import Compositor, RegionParams
from faceveil.detect import get_detector
from faceveil.detect.presets import resolve
from faceveil.eval.leaks import anonymized_mask, box_coverage
from faceveil.eval.splits import side as side_of
from faceveil.io.images import read_rgb
from faceveil.io.labels import find_image, read_eval_labels

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
SCORES = (0.05, 0.1, 0.2)
sys.path.insert(0, str(ROOT / "bench"))

import bench_video as bv  # noqa: E402


def images(side: str, wider_limit: int):
    """(name, preset, RGB image, labelled boxes) for the (a) clips' frames and the WIDER photos of ``side``."""
    for clip in bv.labelled_clips(side, quick=False):
        for i, (f, b) in enumerate(zip(clip.frames, clip.boxes)):
            yield f"{clip.name}#{i}", "video", f, b
    labels = read_eval_labels(DATA / "widerface-val" / "ground_truth" / "wider_face_val_bbx_gt.txt")
    keys = [k for k in labels if side_of(k) == side][:wider_limit or None]
    for k in keys:
        yield k, "balanced", read_rgb(find_image(DATA / "widerface-val" / "images", k)), labels[k].faces.xyxy


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--side", choices=("tune", "held_out"), default="tune")
    ap.add_argument("--gates", default="48,64,96,128", help="coarse_gate_px values (main-pass pixels)")
    ap.add_argument("--wider", type=int, default=0, help="WIDER photos (0: all of the side)")
    args = ap.parse_args()
    gates = [float(g) for g in args.gates.split(",")]
    dets, comps = {}, {}
    for preset in ("video", "balanced"):
        name, params, region = resolve(preset)
        dets[preset] = get_detector(name, params)
        comps[preset] = Compositor(RegionParams(region["shape"], region["mask_scale"], 0.0))
    stats = {k: {"images": 0, "coarse": 0, "open": {g: 0 for g in gates}, "saved": [], "added": 0.0}
             for k in ("video", "balanced")}
    for key, preset, img, boxes in images(args.side, args.wider):
        det, comp, st = dets[preset], comps[preset], stats[preset]
        h, w = img.shape[:2]
        st["images"] += 1
        f = det.main_factor(img)
        if not (det.params.coarse_size and max(h, w) * f > 1.5 * det.params.coarse_size):
            continue
        parts = det.passes(img, 0.05)
        st["coarse"] += 1
        main = [d for d in parts if d.source == "centerface"][0]  # the first pass is the main one
        coarse = parts[-1]  # these presets run no big-face, YuNet or masked pass on images this size
        size = np.sqrt(main.areas) * f
        best = {s: float(size[main.score >= s].max()) if (main.score >= s).any() else 0.0 for s in SCORES}
        for g in gates:
            st["open"][g] += best[0.05] >= g
        with_c = anonymized_mask(comp, det.fuse([det.keep(d) for d in parts], w, h, parts), (h, w))
        rest = parts[:-1]
        without = anonymized_mask(comp, det.fuse([det.keep(d) for d in rest], w, h, rest), (h, w))
        st["added"] += float((with_c & ~without).mean())
        b = np.asarray(boxes, np.float64).reshape(-1, 4)
        b = b[np.sqrt((b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])) >= 10]
        if len(b):
            cw, _ = box_coverage(with_c, b)
            co, _ = box_coverage(without, b)
            for j in np.flatnonzero((cw >= 0.8) & (co < 0.8)):
                face = float(np.sqrt((b[j, 2] - b[j, 0]) * (b[j, 3] - b[j, 1])) * f)
                st["saved"].append((key, face, best))
                print(f"  {key}: coarse saves a {face:.0f} px face (main-pass px); main's largest candidate "
                      + " ".join(f">={s}: {v:.0f}" for s, v in best.items()), flush=True)
    for preset, st in stats.items():
        n = st["coarse"]
        print(f"{preset} ({args.side}): {st['images']} images, the coarse pass runs on {n}; it saves "
              f"{len(st['saved'])} labelled faces; its boxes add {st['added'] / max(n, 1) * 100:.2f} % of the pixels")
        for g in gates:
            lost = sum(best[0.05] < g for _, _, best in st["saved"])
            print(f"  gate {g:g} px: the coarse pass runs on {st['open'][g]} of {n} ({st['open'][g] / max(n, 1):.0%}), "
                  f"faces it saves lost: {lost}")


if __name__ == "__main__":
    main()
