"""Where a photo's time goes in `faceveil anonymize` (issue 20, third pass): start-up and each stage per photo.

    python research/photo_overhead.py FOLDER [CLI detection args, e.g. --detect fast --dp precision=int8]

Start-up: each import and the Anonymizer's construction (model loading) in a fresh interpreter, CPU seconds
(time.process_time). Per photo: the CLI's own per-file path (Anonymizer.process_file, one process, as
`faceveil anonymize` with --jobs 1) with timers wrapped around its stages; exclusive CPU and wall ms per photo,
each stage without the stages inside it. CPU time counts onnxruntime's worker threads too (their spinning
included), so it is the steadier measure on a shared machine; wall time follows the load.
Outputs go to a temporary folder that is removed.
"""
from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

STARTUP = """
import time
t = time.process_time()
import numpy, cv2, PIL.Image
a = time.process_time()
import onnxruntime
b = time.process_time()
import faceveil.cli, faceveil.cli.anonymize, faceveil.pipeline, faceveil.batch
c = time.process_time()
import sys
onnx_loaded = "onnx" in sys.modules
from faceveil.cli.common import anonymizer_config
from faceveil.cli import build_parser
from faceveil.pipeline import Anonymizer
args = build_parser().parse_args(["anonymize", "x.jpg", "-o", "o", *sys.argv[1:]])
anon = Anonymizer.from_config(anonymizer_config(args, "blur", {}, None))
d = time.process_time()
print(f"numpy+cv2+PIL {a - t:.3f}  onnxruntime {b - a:.3f}  faceveil (cli, pipeline) {c - b:.3f}  "
      f"model load (Anonymizer) {d - c:.3f}  onnx imported: {'onnx' in sys.modules}  total {d - t:.3f} s CPU")
"""


class Timers:
    """Exclusive CPU and wall seconds per label (a stage's time without the timed stages inside it)."""

    def __init__(self):
        self.cpu, self.wall, self.calls = defaultdict(float), defaultdict(float), defaultdict(int)
        self.stack = []

    def wrap(self, label, fn):
        def inner(*a, **k):
            self.stack.append([0.0, 0.0])
            c0, w0 = time.process_time(), time.perf_counter()
            try:
                return fn(*a, **k)
            finally:
                c, w = time.process_time() - c0, time.perf_counter() - w0
                child_c, child_w = self.stack.pop()
                self.cpu[label] += c - child_c
                self.wall[label] += w - child_w
                self.calls[label] += 1
                if self.stack:
                    self.stack[-1][0] += c
                    self.stack[-1][1] += w
        return inner


def main() -> None:
    folder, cli_args = Path(sys.argv[1]), sys.argv[2:]
    print(subprocess.run([sys.executable, "-c", STARTUP, *cli_args], capture_output=True, text=True).stdout.strip())

    from faceveil import pipeline
    from faceveil.cli.common import anonymizer_config
    from faceveil.cli import build_parser
    from faceveil.detect import centerface, multiscale
    from faceveil.io import atomic, images

    args = build_parser().parse_args(["anonymize", str(folder), "-o", "o", *cli_args])
    anon = pipeline.Anonymizer.from_config(anonymizer_config(args, "blur", {}, None))
    t = Timers()
    det = anon.detector
    cf = det.cf

    class Session:  # the onnxruntime run, timed
        def __init__(self, s):
            self.s, self.run = s, t.wrap("network (session.run)", s.run)

    cf.session = Session(cf.session)
    cf.forward = t.wrap("input blob (pad, transpose, float32)", cf.forward)
    cf.detect_raw = t.wrap("heatmap decode", cf.detect_raw)
    det._pass = t.wrap("resize for a pass", det._pass)
    det.tiles_pass = t.wrap("zoom tiles (resize, crops)", det.tiles_pass)
    det.detect = t.wrap("detect: plan, keep, merges, NMS, fuse", det.detect)
    anon.anonymize = t.wrap("anonymize (blur)", anon.anonymize)
    pipeline.read_image = t.wrap("read (decode, EXIF orientation)", pipeline.read_image)
    pipeline.write_image = t.wrap("encode (JPEG/PNG)", pipeline.write_image)
    atomic._fsync_path = t.wrap("fsync (file and folder)", atomic._fsync_path)
    images.write_bytes_atomic = t.wrap("write (temp file, rename)", images.write_bytes_atomic)
    process = t.wrap("per-file rest (result, report record)", anon.process_file)
    del centerface, multiscale
    files = sorted(p for p in folder.iterdir() if p.is_file())
    with tempfile.TemporaryDirectory(prefix="photo_overhead_") as out:
        c0, w0 = time.process_time(), time.perf_counter()
        for p in files:
            r = process(p, Path(out) / p.name)
            assert r.status == "written", r.error
        cpu, wall = time.process_time() - c0, time.perf_counter() - w0
    n = len(files)
    print(f"\n{n} photos, {' '.join(cli_args) or 'default preset'}: {cpu / n * 1000:.0f} ms CPU, "
          f"{wall / n * 1000:.0f} ms wall per photo (start-up not included)\n")
    print("| stage | calls/photo | CPU ms/photo | wall ms/photo | share of CPU |\n|---|---:|---:|---:|---:|")
    for label in sorted(t.cpu, key=lambda k: -t.cpu[k]):
        print(f"| {label} | {t.calls[label] / n:.1f} | {t.cpu[label] / n * 1000:.1f} | {t.wall[label] / n * 1000:.1f} "
              f"| {t.cpu[label] / cpu:.0%} |")


if __name__ == "__main__":
    os.environ.setdefault("PYTHONWARNINGS", "ignore")
    main()
