"""Issue 21, fourth round: does `thorough` gain from `balanced`'s big-box shape (shape_*)?

Sweeps use recall3.py on masked_replay.py's per-half caches (tune first; held-out once, after the choice):
  python research/recall3.py sweep wd thorough tune "{'shape_px': [0, 40], 'shape_dy': [-0.14], 'shape_w': [1.03]}"
This file lists the labelled faces (>= 10 px, not ignored) whose coverage crosses the 80 % line when a setting
changes, per photo, so a regression test can pick a real one:
  python research/recall4.py changed wd thorough tune "{'shape_px': 40, 'shape_dy': -0.14, 'shape_w': 1.03}"
"""
from __future__ import annotations

import ast
import sys
from dataclasses import asdict

import numpy as np

from faceveil.anonymize import Compositor, RegionParams
from faceveil.detect import get_detector
from faceveil.detect.multiscale import MultiScale
from faceveil.detect.presets import resolve
from faceveil.eval.leaks import anonymized_mask, box_coverage
from faceveil.io.labels import read_eval_labels

from recall3 import load  # noqa: E402  (research/ is the script's folder)
from replay_recall import SETS, as_detections  # noqa: E402


def changed(setname: str, preset: str, half: str, change: dict) -> None:
    cf = load(setname, preset, half)
    labels = read_eval_labels(SETS[setname][1])
    _, params, region = resolve(preset)
    base = {**asdict(MultiScale.Params()), **params}
    dets = {"before": get_detector("multiscale", base), "after": get_detector("multiscale", {**base, **change})}
    comp = Compositor(RegionParams(region["shape"], region["mask_scale"], 0.0))
    for key, parts in cf["passes"].items():
        h, w = cf["shapes"][key]
        lab = labels[key]
        ok = ~np.asarray(lab.ignore, bool) & (np.minimum(lab.faces.widths, lab.faces.heights) >= 10)
        if not ok.any():
            continue
        raw = [as_detections(a, s) for s, a in parts]
        cov = {}
        for name, det in dets.items():
            fused = det.fuse([det.keep(d) for d in raw], w, h, raw)
            cov[name] = box_coverage(anonymized_mask(comp, fused, (h, w)), lab.faces.xyxy)[0]
        for j in np.flatnonzero(ok):
            b, a = cov["before"][j], cov["after"][j]
            if (b >= 0.8) != (a >= 0.8):
                f = lab.faces.xyxy[j]
                print(f"{key} ({w}x{h}) face {j} {f[2] - f[0]:.0f}x{f[3] - f[1]:.0f} px at {f[:2].round().tolist()}: "
                      f"{b:.2f} -> {a:.2f} {'covered' if a >= 0.8 else 'LEAKED'}", flush=True)


if __name__ == "__main__":
    if len(sys.argv) != 6 or sys.argv[1] != "changed":
        sys.exit(__doc__)
    changed(*sys.argv[2:5], ast.literal_eval(sys.argv[5]))
