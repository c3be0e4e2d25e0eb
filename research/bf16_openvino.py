"""CenterFace in bf16 through OpenVINO instead of fp32 through onnxruntime (issue 20, photo speed): faster, and as safe?

This CPU has AVX-512 BF16. onnxruntime's CPU provider runs CenterFace in fp32 or (our build) int8; OpenVINO's CPU
plugin can run the same fp32 file with `INFERENCE_PRECISION_HINT=bf16`. OpenVINO is not a faceveil dependency (180 MB
installed): install it into any virtualenv and name its site-packages with --site-packages (appended to sys.path,
so this venv's numpy stays the one imported).

  python -m venv /tmp/ov && /tmp/ov/bin/pip install openvino
  # outputs against onnxruntime, thread and run-to-run determinism, time per forward (800 px facemask photos)
  python research/bf16_openvino.py --site-packages /tmp/ov/lib/python3.11/site-packages --hint bf16 --compare 8
  # any faceveil command with the fp32 CenterFace session swapped for OpenVINO's (or --hint ort: unchanged)
  python research/bf16_openvino.py --site-packages ... --hint bf16 -- eval leaks --images ../shared/data/facemask/images \\
      --labels ../shared/data/facemask/gt.txt --split tune -q -o out/

Prints the command's wall and CPU seconds (this process, onnxruntime's or OpenVINO's threads included).
"""
from __future__ import annotations

import argparse
import json
import resource
import sys
import time
from pathlib import Path

import numpy as np

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def ov_session_factory(hint: str):
    """A stand-in for faceveil's onnxruntime session (``run(None, {"input.1": blob})``) on OpenVINO."""
    import openvino as ov

    core = ov.Core()

    class OVSession:
        def __init__(self, path: str, threads: int):
            self.cm = core.compile_model(path, "CPU", {"INFERENCE_NUM_THREADS": threads, "INFERENCE_PRECISION_HINT": hint,
                                                       "PERFORMANCE_HINT": "LATENCY"})
            self.req = self.cm.create_infer_request()

        def run(self, names, feed):
            r = self.req.infer({0: feed["input.1"]})
            return [np.array(r[o]) for o in self.cm.outputs]

    return OVSession


def blobs(n: int, side: int = 800) -> list[np.ndarray]:
    """n facemask photos (evenly spaced) at ``side`` px, padded to 32, as the balanced preset's main pass feeds them."""
    import cv2

    from faceveil.io.images import read_image

    paths = sorted((DATA / "facemask" / "images").glob("*.png")) or sorted((DATA / "facemask" / "images").glob("*"))
    out = []
    for i in np.linspace(0, len(paths) - 1, n).round().astype(int):
        img = read_image(paths[i]).rgb
        f = side / max(img.shape[:2])
        img = cv2.resize(img, (round(img.shape[1] * f), round(img.shape[0] * f)), interpolation=cv2.INTER_LINEAR)
        h, w = img.shape[:2]
        b = np.zeros((1, 3, -(-h // 32) * 32, -(-w // 32) * 32), np.float32)
        b[0, :, :h, :w] = img.transpose(2, 0, 1)
        out.append(b)
    return out


def compare(hint: str, n: int) -> None:
    import onnxruntime as ort

    from faceveil.detect.centerface import centerface_model_path

    path = str(centerface_model_path("fp32"))
    xs = blobs(n)
    OV = ov_session_factory(hint)
    rows = {}
    for threads in (1, 2):
        so = ort.SessionOptions()
        so.intra_op_num_threads, so.log_severity_level = threads, 3
        s = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
        o = OV(path, threads)
        ref = [s.run(None, {"input.1": x}) for x in xs]
        got = [o.run(None, {"input.1": x}) for x in xs]
        again = [o.run(None, {"input.1": x}) for x in xs]
        rows[threads] = got
        heat = [np.abs(g[0] - r[0]) for g, r in zip(got, ref)]
        sure = [np.abs(g[0] - r[0])[np.maximum(g[0], r[0]) > 0.1] for g, r in zip(got, ref)]
        print(f"{threads} thread(s): heatmap |{hint} - ort fp32| max {max(h.max() for h in heat):.4f}, mean where either "
              f"> 0.1: {np.concatenate(sure).mean():.4f}; run to run equal: "
              f"{all(np.array_equal(a, b) for g, h in zip(got, again) for a, b in zip(g, h))}")
        for name, run in (("onnxruntime fp32", lambda x: s.run(None, {"input.1": x})), (f"openvino {hint}", lambda x: o.run(None, {"input.1": x}))):
            t, c = time.perf_counter(), time.process_time()
            for x in xs:
                run(x)
            print(f"   {name}: {1000 * (time.perf_counter() - t) / n:.1f} ms wall, "
                  f"{1000 * (time.process_time() - c) / n:.1f} ms CPU per forward")
    print("1 and 2 threads equal:", all(np.array_equal(a, b) for g, h in zip(rows[1], rows[2]) for a, b in zip(g, h)))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--site-packages", help="where openvino is installed, if not in this environment")
    ap.add_argument("--hint", choices=("ort", "f32", "bf16"), default="bf16", help="ort: leave onnxruntime in place")
    ap.add_argument("--compare", type=int, default=0, metavar="N", help="compare outputs and speed on N photos")
    ap.add_argument("command", nargs=argparse.REMAINDER, help="-- and a faceveil command")
    a = ap.parse_args()
    if a.site_packages:
        sys.path.append(a.site_packages)
    if a.compare:
        compare(a.hint, a.compare)
        return 0
    from faceveil.detect import centerface as cf

    if a.hint != "ort":
        OV, real = ov_session_factory(a.hint), cf._new_session

        def new_session(path, threads, spin=True):  # the fp32 model only: the int8 build stays onnxruntime's
            return OV(str(path), threads or 2) if "int8" not in str(path) else real(path, threads, spin)

        cf._new_session = new_session
    from faceveil.cli import main as cli

    argv = a.command[1:] if a.command[:1] == ["--"] else a.command
    t = time.time()
    code = cli(argv)
    ru = resource.getrusage(resource.RUSAGE_SELF)
    print(json.dumps({"hint": a.hint, "exit": code, "wall_s": round(time.time() - t, 1),
                      "cpu_s": round(ru.ru_utime + ru.ru_stime, 1)}))
    return code


if __name__ == "__main__":
    sys.exit(main())
