"""Issue 21, third round: where `thorough`'s away area comes from, and box shape by size for `balanced`.

Question 1: on the tune half of facemask, which of `thorough`'s fused boxes hide the pixels away from every
labelled face (by size, score, how many passes found the box, on a labelled face or not), and which rule cuts
them without leaking more (facemask and WIDER tune)?
Question 2: `balanced` boxes WIDER's big faces short (found, IoU 0.42-0.75 with the label): how do the matched
boxes >= 40 px sit against their labels, and does a shape calibration by size fitted on the WIDER tune half
cover them without costing on facemask's tune half?

Caches: masked_replay.py's `cf` stage, one half at a time (research/out/masked/<set>_<preset>_<half>.pkl):
  python research/masked_replay.py cf fm thorough balanced half=tune
  python research/recall3.py away fm thorough tune            # where the away area comes from
  python research/recall3.py sweep fm thorough tune "{'confirm_score': [0, 0.3]}" "1.4" "1.3,1.4@40"
  python research/recall3.py shape wd balanced tune            # matched boxes vs labels by size
Keys of sweep: any MultiScale param (confirm_* and large_box_* included). The replay is MultiScale's own keep
and fuse, drawn with faceveil's Compositor and scored by LeakMetric: what `faceveil eval leaks --split` prints.
"""
from __future__ import annotations

import ast
import itertools
import pickle
import sys
from dataclasses import asdict

import numpy as np

from faceveil.anonymize import Compositor, RegionParams
from faceveil.detect import get_detector
from faceveil.detect.multiscale import MultiScale
from faceveil.detect.presets import resolve
from faceveil.detections import box_iou
from faceveil.eval.leaks import LeakMetric, anonymized_mask, near_face_mask
from faceveil.io.labels import read_eval_labels

from masked_replay import OUT  # noqa: E402  (research/ is the script's folder)
from replay_recall import SETS, as_detections  # noqa: E402

SIZE_BANDS = (0, 16, 24, 40, 64, 128, 1e9)
SCORE_BANDS = (0, 0.2, 0.3, 0.5, 0.7, 1.01)


def load(setname: str, preset: str, half: str) -> dict:
    with open(OUT / f"{setname}_{preset}_{half}.pkl", "rb") as f:
        return pickle.load(f)


def band(v: float, edges) -> str:
    i = int(np.searchsorted(edges, v, side="right")) - 1
    return f"{edges[i]:g}-{edges[i + 1]:g}"


def away(setname: str, preset: str, half: str) -> None:
    """Per fused box: the away-from-face pixels its region alone hides, by size, score, support and label."""
    cf = load(setname, preset, half)
    labels = read_eval_labels(SETS[setname][1])
    _, params, region = resolve(preset)
    det = get_detector("multiscale", {**asdict(MultiScale.Params()), **params})
    comp = Compositor(RegionParams(region["shape"], region["mask_scale"], 0.0))
    table: dict = {}
    total_away = total_px = 0
    for key, parts in cf["passes"].items():
        h, w = cf["shapes"][key]
        ds = [det.keep(as_detections(a, s)) for s, a in parts]
        fused = det.fuse(ds, w, h)
        lab = labels[key]
        far = ~near_face_mask(lab.faces, (h, w), 1.6)
        total_px += int(far.sum())
        total_away += int((anonymized_mask(comp, fused, (h, w)) & far).sum())
        if len(fused) == 0:
            continue
        # support: which passes hold a kept box overlapping the fused box (IoU >= 0.5, before calibration)
        names = [f"{s}{i}" for i, (s, _) in enumerate(parts)]
        sup = np.zeros((len(fused), len(ds)), bool)
        for j, d in enumerate(ds):
            if len(d):
                sup[:, j] = box_iou(fused.xyxy, d.xyxy).max(1) >= 0.4
        iou_lab = box_iou(fused.xyxy, lab.faces.xyxy).max(1) if len(lab.faces) else np.zeros(len(fused))
        for i in range(len(fused)):
            m = anonymized_mask(comp, fused[[i]], (h, w)) & far
            px = int(m.sum())
            size = float(np.sqrt(fused.areas[i]))
            k = (band(size, SIZE_BANDS), band(float(fused.score[i]), SCORE_BANDS), int(sup[i].sum()),
                 "face" if iou_lab[i] >= 0.3 else "none")
            t = table.setdefault(k, [0, 0])
            t[0] += 1
            t[1] += px
    print(f"{setname} {preset} {half}: away {total_away / total_px * 100:.2f}% ({total_away} of {total_px} px); "
          f"per box (own region, overlaps counted per box): size band, score band, passes supporting, on a label")
    rows = sorted(table.items(), key=lambda kv: -kv[1][1])
    for (sb, scb, n, lab), (cnt, px) in rows[:60]:
        print(f"  size {sb:>8s} score {scb:>8s} passes {n} {lab:4s}: {cnt:5d} boxes, {px / total_px * 100:.3f} pts")
    for name, idx in (("size", 0), ("score", 1), ("passes", 2), ("label", 3)):
        agg: dict = {}
        for k, (cnt, px) in table.items():
            a = agg.setdefault(k[idx], [0, 0])
            a[0] += cnt
            a[1] += px
        print(f"  by {name}: " + ", ".join(f"{k} {c} boxes {p / total_px * 100:.2f} pts" for k, (c, p) in sorted(agg.items())))


def replay(cf: dict, labels, p: dict, spec) -> tuple:
    comp = Compositor(RegionParams(p.get("shape", "box"), spec, 0.0))
    det = get_detector("multiscale", {k: v for k, v in p.items() if k not in ("mask_scale", "shape")})
    m = LeakMetric()
    for key, parts in cf["passes"].items():
        h, w = cf["shapes"][key]
        raw = [as_detections(a, s) for s, a in parts]
        fused = det.fuse([det.keep(d) for d in raw], w, h, raw)
        m.update(anonymized_mask(comp, fused, (h, w)), labels[key].faces, labels[key].ignore, key)
    return m.compute()


def fmt(r) -> str:
    return (f"{r.leak_rate * 100:.2f}% ({r.leaked}/{r.faces}: short {r.boxed_short}, never {r.never_boxed}) / "
            f"{r.away_rate * 100:.2f}%")


def sweep(setname: str, preset: str, half: str, grid: dict, specs: list[str], verbose: bool = False) -> None:
    cf = load(setname, preset, half)
    labels = read_eval_labels(SETS[setname][1])
    _, params, region = resolve(preset)
    base = {**asdict(MultiScale.Params()), **params, "shape": region["shape"]}
    for values in itertools.product(*grid.values()):
        p = {**base, **dict(zip(grid, values))}
        for spec in specs or [region["mask_scale"]]:
            r = replay(cf, labels, p, spec)
            setting = " ".join(f"{k}={v}" for k, v in zip(grid, values))
            print(f"{setname} {preset} {half} {setting} --mask-scale {spec} | {fmt(r)}", flush=True)
            if verbose:
                print("    " + ", ".join(f"{b['bucket']} {b['leaked']}/{b['faces']} (short {b['boxed_short']}, "
                                         f"never {b['never_boxed']})" for b in r.buckets))


def shape(setname: str, preset: str, half: str, min_iou: float = 0.3) -> None:
    """Matched fused boxes (after the preset's calibration) against their labels, by box size: the label's
    centre offset (x, y in box widths / heights) and its width and height in the box's, medians and quartiles."""
    cf = load(setname, preset, half)
    labels = read_eval_labels(SETS[setname][1])
    _, params, _ = resolve(preset)
    det = get_detector("multiscale", {**asdict(MultiScale.Params()), **params})
    rows = []
    for key, parts in cf["passes"].items():
        h, w = cf["shapes"][key]
        fused = det.fuse([det.keep(as_detections(a, s)) for s, a in parts], w, h)
        lab = labels[key]
        ok = ~np.asarray(lab.ignore, bool)
        faces = lab.faces.xyxy[ok]
        if len(fused) == 0 or len(faces) == 0:
            continue
        iou = box_iou(fused.xyxy, faces)
        for j in range(len(faces)):
            i = int(np.argmax(iou[:, j]))
            if iou[i, j] < min_iou:
                continue
            b, f = fused.xyxy[i].astype(np.float64), faces[j].astype(np.float64)
            bw, bh = b[2] - b[0], b[3] - b[1]
            rows.append((np.sqrt(bw * bh), min(f[2] - f[0], f[3] - f[1]), iou[i, j],
                         ((f[0] + f[2]) - (b[0] + b[2])) / 2 / bw, ((f[1] + f[3]) - (b[1] + b[3])) / 2 / bh,
                         (f[2] - f[0]) / bw, (f[3] - f[1]) / bh, (f[1] - b[1]) / bh, (f[3] - b[3]) / bh))
    a = np.array(rows)
    print(f"{setname} {preset} {half}: {len(a)} labelled faces matched (IoU >= {min_iou}) by a fused box")
    print("  box px      n   IoU<0.5  dx          dy          w ratio     h ratio     top         bottom   (q25/med/q75)")
    for lo, hi in zip(SIZE_BANDS[:-1], SIZE_BANDS[1:]):
        s = a[(a[:, 0] >= lo) & (a[:, 0] < hi)]
        if len(s) == 0:
            continue
        q = lambda c: "/".join(f"{v:+.2f}" for v in np.percentile(s[:, c], [25, 50, 75]))  # noqa: E731
        print(f"  {lo:>4g}-{hi:<6g} {len(s):5d} {np.mean(s[:, 2] < 0.5) * 100:5.1f}%  {q(3)} {q(4)} {q(5)} {q(6)} "
              f"{q(7)} {q(8)}")


if __name__ == "__main__":
    if len(sys.argv) < 5 or sys.argv[1] not in ("away", "sweep", "shape"):
        sys.exit(__doc__)
    cmd, setname, preset, half = sys.argv[1:5]
    if cmd == "away":
        away(setname, preset, half)
    elif cmd == "shape":
        shape(setname, preset, half)
    else:
        rest = [a for a in sys.argv[6:] if a != "-v"]
        sweep(setname, preset, half, ast.literal_eval(sys.argv[5]), rest, "-v" in sys.argv)
