"""Gate balanced's big-face passes by the main pass (issue 20, photo speed): how much can be skipped, leaking nothing more?

Replays replay_recall.py's cache (research/out/replay/fm.pkl, stage `cache`) for one half of faceveil.eval.splits:
a gate (big_gate_px, big_gate_score) keeps a photo's big-face passes only where its cached main pass has a candidate
scoring >= big_gate_score whose box (sqrt of area, the photo's own pixels) is >= big_gate_px, as MultiScale does
with those params; elsewhere the big passes' boxes are dropped. Prints per gate: leaked faces >= 10 px (boxed short /
never boxed), the faces it leaks that the ungated replay does not (and the reverse), the away area and the share of
enlarged photos whose big passes run (the big passes' CPU kept; the rest is saved). `--sizes` first lists, for each
photo where a big pass keeps a box, its largest main-pass candidate per score (what a gate must not close).

  python research/big_gate.py --split tune "{'big_gate_px': [0, 24, 32, 40], 'big_gate_score': [0.05, 0.1]}" --sizes
  python research/big_gate.py --split held_out "{'big_gate_px': [0, 32], 'big_gate_score': [0.05]}"
"""
from __future__ import annotations

import argparse
import ast
import itertools
import pickle
from dataclasses import asdict

import numpy as np

from faceveil.anonymize import Compositor, RegionParams
from faceveil.detect import get_detector
from faceveil.detect.multiscale import MultiScale
from faceveil.detect.presets import resolve
from faceveil.eval.leaks import LeakMetric, anonymized_mask
from faceveil.eval.splits import side
from faceveil.io.labels import read_eval_labels

from replay_recall import OUT, SETS, as_detections, half_summary, replayed_passes  # noqa: E402  (research/ is the folder)


def run(cached: dict, labels, keys: list, p: dict) -> tuple[dict, float, set]:
    """(half_summary, share of enlarged photos whose big passes run, leaked faces) under params ``p``."""
    comp = Compositor(RegionParams(p.get("shape", "box"), p["mask_scale"], 0.0))
    det = get_detector("multiscale", {k: v for k, v in p.items() if k not in ("mask_scale", "shape")})
    metric, ran, enlarged = LeakMetric(), 0, 0
    for key in keys:
        parts = cached["passes"][key]
        h, w = cached["shapes"][key]
        passes = replayed_passes(parts, p)
        if det.enlarges(w, h) and p["big_scales"]:
            enlarged += 1
            main = as_detections(parts[0][1], parts[0][0])
            # MultiScale's own gate on the cached main pass (cut at the cache's floor, 0.05)
            if p["big_gate_px"] <= 0 or det.big_gate_open([main]):
                ran += 1
            else:
                passes = [d for d in passes if d.source != "big"]
        kept = [det.keep(d) for d in passes]
        metric.update(anonymized_mask(comp, det.fuse(kept, w, h), (h, w)), labels[key].faces, labels[key].ignore, key)
    r = metric.compute()
    leaked = {(x["image"], tuple(x["box"])) for x in r.leaks}
    return half_summary(metric), ran / max(enlarged, 1), leaked


def sizes(cached: dict, keys: list, p: dict) -> None:
    """Per photo whose big passes keep a box: that box's size and the main pass's largest candidate per score."""
    det = get_detector("multiscale", {k: v for k, v in p.items() if k not in ("mask_scale", "shape")})
    rows = []
    for key in keys:
        parts = cached["passes"][key]
        big = [det.keep(d) for d in replayed_passes(parts, p) if d.source == "big"]
        big = [d for d in big if len(d)]
        if not big:
            continue
        main = as_detections(parts[0][1], parts[0][0])
        s = np.sqrt(main.areas)
        best = {t: float(s[main.score >= t].max()) if (main.score >= t).any() else 0.0 for t in (0.05, 0.1, 0.2, 0.5)}
        rows.append((best[0.05], key, max(float(np.sqrt(d.areas).max()) for d in big), best))
    for _, key, b, best in sorted(rows):
        print(f"  {key}: big box {b:.0f} px; main's largest candidate " +
              " ".join(f">={t}: {v:.0f}" for t, v in best.items()))
    print(f"{len(rows)} of {len(keys)} photos keep a big-pass box")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("grid", help="dict of param -> values (big_gate_px, big_gate_score, any replay_recall key)")
    ap.add_argument("--split", choices=("tune", "held_out"), default="tune")
    ap.add_argument("--sizes", action="store_true", help="list the photos whose big passes keep a box first")
    args = ap.parse_args()
    with open(OUT / "fm.pkl", "rb") as f:
        cached = pickle.load(f)
    labels = read_eval_labels(SETS["fm"][1])
    keys = [k for k in cached["passes"] if side(k) == args.split]
    _, params, region = resolve(cached["preset"])
    base = {**asdict(MultiScale.Params()), **params, "mask_scale": region["mask_scale"], "shape": region["shape"]}
    if args.sizes:
        sizes(cached, keys, base)
    ref, _, ref_leaked = run(cached, labels, keys, {**base, "big_gate_px": 0.0})
    print(f"fm {args.split} ({len(keys)} photos) ungated: leaked {ref['leaked']} ({ref['short']} / {ref['never']}) "
          f"away {ref['away'] * 100:.2f}%", flush=True)
    grid = ast.literal_eval(args.grid)
    for values in itertools.product(*grid.values()):
        p = {**base, **dict(zip(grid, values))}
        r, share, leaked = run(cached, labels, keys, p)
        setting = " ".join(f"{k}={v}" for k, v in zip(grid, values))
        print(f"fm {args.split} {setting}: leaked {r['leaked']} ({r['short']} / {r['never']}) "
              f"+{len(leaked - ref_leaked)} / -{len(ref_leaked - leaked)} vs ungated, away {r['away'] * 100:.2f}%, "
              f"big passes run on {share * 100:.1f}% of enlarged photos", flush=True)


if __name__ == "__main__":
    main()
