"""Recalibrating the int8 CenterFace (issue 20, lever 1): build candidates and compare them with fp32.

    PYTHONPATH=src python bench/int8_calib.py stats --count 48 --sides 400,800,1280 --cache /tmp/i8/stats.pkl
    PYTHONPATH=src python bench/int8_calib.py probe --stats /tmp/i8/stats.pkl --method minmax [--fp32 ends,...]
    PYTHONPATH=src python bench/int8_calib.py layers --stats /tmp/i8/stats.pkl   # per-layer sensitivity

``probe`` prints the network-level error of a candidate against fp32 on tune-half photos at the sizes the
balanced preset runs them (facemask at 360 and 800 px, WIDER at 1024 and 640 px; choosing only, never
calibrating, on WIDER): mean |heatmap difference| where either heatmap passes 0.1, mean |log box size
difference| where fp32's heatmap passes 0.3 (box sizes: what moved the large faces' boxes), and the
number of fp32 boxes (score >= 0.3, NMS) without an int8 box at IoU >= 0.6. ``layers`` quantizes one
convolution at a time (the rest fp32) and ranks them by that error. The leak measure itself is
`faceveil eval leaks --split tune` with FACEVEIL_CENTERFACE_ONNX set to the candidate (docs/int8.md).
"""
from __future__ import annotations

import argparse
import pickle
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from common import DATA, tool_module

B = tool_module("build_centerface_models")


def probe_items(n_fm: int = 12, n_wd: int = 8) -> list[tuple[Path, int]]:
    from faceveil.eval.splits import side

    fm = [p for p in sorted((DATA / "facemask" / "images").glob("*.jpg")) if side(p.name) == "tune"]
    wd = [p for p in sorted((DATA / "widerface-val" / "images").glob("*/*.jpg")) if side(p.name) == "tune"]
    fm = fm[3::max(1, len(fm) // n_fm)][:n_fm]
    wd = wd[5::max(1, len(wd) // n_wd)][:n_wd]
    return [(p, s) for p in fm for s in (360, 800)] + [(p, s) for p in wd for s in (1024, 640)]


class Ref:
    """fp32 outputs of the probe items, computed once."""

    def __init__(self, fp32_path: Path, items):
        self.items = items
        self.blobs = [B.blob(p, s) for p, s in items]
        sess = session(fp32_path)
        self.outs = [sess.run(None, {"input.1": b}) for b in self.blobs]


def session(path: Path):
    import onnxruntime as ort

    o = ort.SessionOptions()
    o.log_severity_level = 3
    o.intra_op_num_threads = 1
    return ort.InferenceSession(str(path), o, providers=["CPUExecutionProvider"])


def decode(heat, scale, offset, thr=0.3):
    from faceveil.detections import Detections, nms

    h, sc, of = heat[0, 0], scale[0], offset[0]
    ys, xs = np.nonzero(h > thr)
    if not len(ys):
        return Detections.empty("c")
    sh, sw = np.exp(sc[0, ys, xs]) * 4, np.exp(sc[1, ys, xs]) * 4
    cy, cx = (ys + of[0, ys, xs] + 0.5) * 4, (xs + of[1, ys, xs] + 0.5) * 4
    b = np.stack([cx - sw / 2, cy - sh / 2, cx + sw / 2, cy + sh / 2], 1)
    return nms(Detections(b, h[ys, xs], np.zeros((len(ys), 5, 2)), None, "c"), 0.3)


def compare(ref: Ref, path: Path) -> dict:
    from faceveil.detections import box_iou

    sess = session(path)
    he, se, miss, n, t = [], [], 0, 0, 0.0
    for b, (h32, s32, o32, _) in zip(ref.blobs, ref.outs):
        t0 = time.perf_counter()
        h8, s8, o8, _ = sess.run(None, {"input.1": b})
        t += time.perf_counter() - t0
        m = (h32 > 0.1) | (h8 > 0.1)
        if m.any():
            he.append(float(np.abs(h8 - h32)[m].mean()))
        m = h32[0, 0] > 0.3
        if m.any():
            se.append(float(np.abs(s8[0][:, m] - s32[0][:, m]).mean()))
        d32, d8 = decode(h32, s32, o32), decode(h8, s8, o8, 0.2)
        n += len(d32)
        if len(d32):
            iou = box_iou(d32.xyxy, d8.xyxy) if len(d8) else np.zeros((len(d32), 1))
            miss += int((iou.max(1) < 0.6).sum())
    return {"heat": float(np.mean(he)), "logsize": float(np.mean(se)), "lost": miss, "boxes": n, "s": t}


def load_stats(path: Path) -> dict:
    return pickle.loads(path.read_bytes())


def fp32_model(tmp: Path) -> Path:
    import onnx
    from faceveil.detect.centerface import centerface_model_path

    out = tmp / "fp32.onnx"
    if not out.exists():
        onnx.save(B.clean_fp32(centerface_model_path(packaged=False)), str(out))
    return out


def nodes_arg(spec: str, model) -> list[str]:
    names = []
    for n in (x for x in spec.split(",") if x):
        names += B.end_nodes(model) if n == "ends" else [n]
    return names


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("cmd", choices=("stats", "probe", "layers"))
    ap.add_argument("--count", type=int, default=48)
    ap.add_argument("--sides", default="800")
    ap.add_argument("--cache", type=Path, default=Path("/tmp/i8/stats.pkl"))
    ap.add_argument("--stats", type=Path, default=Path("/tmp/i8/stats.pkl"))
    ap.add_argument("--method", default="minmax", help="minmax or a percentile such as 99.999")
    ap.add_argument("--fp32", default="ends")
    ap.add_argument("--symmetric", action="store_true")
    ap.add_argument("--reduce-range", action="store_true")
    ap.add_argument("--out", type=Path, default=None, help="keep the candidate here")
    ap.add_argument("--model", type=Path, default=None, help="probe this file instead of building one")
    ap.add_argument("--work", type=Path, default=Path("/tmp/i8"))
    a = ap.parse_args()
    import onnx

    a.work.mkdir(parents=True, exist_ok=True)
    fp32 = fp32_model(a.work)
    if a.cmd == "stats":
        photos = B.calibration_photos(DATA, a.count)
        t = time.perf_counter()
        st = B.collect_stats(fp32, photos, [int(s) for s in a.sides.split(",")])
        a.cache.write_bytes(pickle.dumps(st))
        print(f"{len(photos)} photos x {a.sides}: {time.perf_counter() - t:.0f} s -> {a.cache}")
        return 0
    stats = load_stats(a.stats) if a.stats.exists() else {}
    ranges = B.tensor_ranges(stats, "minmax" if a.method == "minmax" else "percentile",
                             0 if a.method == "minmax" else float(a.method))
    model = onnx.load(str(fp32))
    items = probe_items()
    ref = Ref(fp32, items)
    if a.cmd == "probe":
        out = a.model or a.out or a.work / "cand.onnx"
        if not a.model:
            B.quantize(fp32, out, ranges, nodes_arg(a.fp32, model), a.symmetric, a.reduce_range)
        r = compare(ref, out)
        r32 = compare(ref, fp32)
        print(f"{a.stats.name} {a.method} fp32={a.fp32} sym={a.symmetric} rr={a.reduce_range}: "
              f"heat {r['heat']:.4f} logsize {r['logsize']:.4f} lost {r['lost']}/{r['boxes']} "
              f"time {r['s']:.1f}s (fp32 {r32['s']:.1f}s)", flush=True)
        return 0
    convs = [n.name for n in model.graph.node if n.op_type == "Conv"]
    ends = set(B.end_nodes(model))
    everything = [n.name for n in model.graph.node]
    with tempfile.TemporaryDirectory() as tmp:
        for c in convs:
            if c in ends:
                continue
            out = Path(tmp) / "one.onnx"
            B.quantize(fp32, out, ranges, [x for x in everything if x != c], a.symmetric)
            r = compare(ref, out)
            print(f"{c}: heat {r['heat']:.4f} logsize {r['logsize']:.4f} lost {r['lost']}/{r['boxes']}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
