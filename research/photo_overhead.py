"""Where a photo's time goes in `faceveil anonymize` (issue 20, third pass): start-up and each stage per photo.

    python research/photo_overhead.py FOLDER [CLI detection args, e.g. --detect fast --dp precision=int8]
    python research/photo_overhead.py --sessions FOLDER [CLI detection args]

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
    if len(sys.argv) < 2 or sys.argv[1] in ("-h", "--help"):
        return print(__doc__.strip())
    if sys.argv[1] == "--sessions":
        return sessions(Path(sys.argv[2]), sys.argv[3:])
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




SESSION_OPTIONS = {
    "2 threads, spinning (default)": {"threads": 0},
    "2 threads, no spinning": {"threads": 0, "spin": False},
    "1 thread": {"threads": 1},
    "1 thread, no spinning": {"threads": 1, "spin": False},
    "2 threads, no memory pattern": {"threads": 0, "mem_pattern": False},
}


def sessions(folder: Path, cli_args: list[str], rounds: int = 3) -> None:
    """The preset's real network inputs on FOLDER's photos (captured once), replayed through sessions made with
    other options, each option in turn per round: CPU and wall ms per photo (fastest round)."""
    import numpy as np
    import onnxruntime as ort

    from faceveil import pipeline
    from faceveil.cli import build_parser
    from faceveil.cli.common import anonymizer_config
    from faceveil.detect.centerface import centerface_model_path
    from faceveil.io.images import read_rgb

    args = build_parser().parse_args(["anonymize", str(folder), "-o", "o", *cli_args])
    anon = pipeline.Anonymizer.from_config(anonymizer_config(args, "blur", {}, None))
    det = anon.detector
    blobs = []
    run = det.cf.session.run

    class Capture:
        def run(self, names, feed):
            blobs.append(feed["input.1"])
            return run(names, feed)

    det.cf.session = Capture()
    files = sorted(p for p in folder.iterdir() if p.is_file())
    for p in files:
        det.detect(read_rgb(p))
    path = str(centerface_model_path(det.params.precision))
    made = {}
    for name, o in SESSION_OPTIONS.items():
        opts = ort.SessionOptions()
        opts.log_severity_level = 3
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        if o["threads"]:
            opts.intra_op_num_threads = o["threads"]
        if not o.get("spin", True):
            opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        if not o.get("mem_pattern", True):
            opts.enable_mem_pattern = False
        made[name] = ort.InferenceSession(path, opts, providers=["CPUExecutionProvider"])
        made[name].run(None, {"input.1": blobs[0]})
    ref = [run(None, {"input.1": b}) for b in blobs]
    best = {n: (np.inf, np.inf) for n in made}
    for _ in range(rounds):
        for name, s in made.items():
            c0, w0 = time.process_time(), time.perf_counter()
            outs = [s.run(None, {"input.1": b}) for b in blobs]
            c, w = time.process_time() - c0, time.perf_counter() - w0
            best[name] = (min(best[name][0], c), min(best[name][1], w))
            same = all(np.array_equal(x, y) for o, r in zip(outs, ref) for x, y in zip(o, r))
            print(f"{name}: {c / len(files) * 1000:.0f} ms CPU, {w / len(files) * 1000:.0f} ms wall per photo, "
                  f"outputs {'identical' if same else 'DIFFERENT'}", file=sys.stderr, flush=True)
    print(f"\n{len(blobs)} network runs on {len(files)} photos ({' '.join(cli_args) or 'default preset'}), "
          f"fastest of {rounds} rounds:\n\n| session | CPU ms/photo | wall ms/photo |\n|---|---:|---:|")
    for name, (c, w) in best.items():
        print(f"| {name} | {c / len(files) * 1000:.0f} | {w / len(files) * 1000:.0f} |")


if __name__ == "__main__":
    os.environ.setdefault("PYTHONWARNINGS", "ignore")
    main()
