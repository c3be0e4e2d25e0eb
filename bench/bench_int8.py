"""int8 vs fp32 CenterFace: ms per image for the fast and balanced presets (issue 20, lever 1), and
--jobs x threads on images (lever 2). Prints markdown tables (docs/int8.md). Never a timed test.

    PYTHONPATH=src python bench/bench_int8.py [--facemask 50] [--wider 20] [--jobs-photos 40] [--skip-jobs]

Detection only, one process, onnxruntime on all cores (threads=0), each photo run by fp32 and int8
in turn (after one warm-up photo each) so that load from other processes hits both alike.
The jobs table runs `faceveil anonymize DIR -o OUT --jobs J --dp threads=T` (default preset) and
reports the best wall time per photo of --repeat rounds, start-up included.
"""
from __future__ import annotations

import argparse
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import int8_line

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"


def photos(folder: Path, pattern: str, n: int, seed: int = 0) -> list[Path]:
    files = sorted(folder.glob(pattern))
    return sorted(random.Random(seed).sample(files, min(n, len(files))))


def detection_table(sets: dict[str, list[Path]]) -> None:
    from faceveil.detect import get_detector
    from faceveil.detect.presets import resolve
    from faceveil.io.images import read_rgb

    print("| photos | preset | fp32 ms/image | int8 ms/image | fp32 / int8 | faces fp32 | faces int8 |")
    print("|---|---|---|---|---|---|---|")
    for set_name, files in sets.items():
        images = [read_rgb(f) for f in files]
        for preset in ("fast", "balanced"):
            name, params, _ = resolve(preset)
            dets = {p: get_detector(name, {**params, "precision": p}) for p in ("fp32", "int8")}
            for d in dets.values():
                d.detect(images[0])  # warm-up: session creation, first-run allocations
            total = {p: 0.0 for p in dets}
            faces = {p: 0 for p in dets}
            for img in images:
                for p, d in dets.items():
                    t = time.perf_counter()
                    faces[p] += len(d.detect(img))
                    total[p] += time.perf_counter() - t
            ms = {p: 1000 * total[p] / len(images) for p in dets}
            print(f"| {set_name} ({len(images)}) | {preset} | {ms['fp32']:.0f} | {ms['int8']:.0f} | "
                  f"{ms['fp32'] / ms['int8']:.2f}x | {faces['fp32']} | {faces['int8']} |", flush=True)


def jobs_table(files: list[Path], repeat: int = 3) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    print(f"\n{len(files)} facemask photos, default preset, `faceveil anonymize` wall time "
          f"({os.cpu_count()} CPUs; best of {repeat} rounds, the settings interleaved within a round)\n")
    print("| --jobs | threads per worker | precision | s total | ms/photo |")
    print("|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "in"
        src.mkdir()
        for f in files:
            (src / f.name).symlink_to(f)
        settings = [(p, j, t) for p in ("fp32", "int8") for j in (1, 2) for t in (1, 2)]
        best = {k: float("inf") for k in settings}
        for r in range(repeat):
            for precision, jobs, threads in settings:
                out = Path(tmp) / f"out-{r}-{precision}-{jobs}-{threads}"
                cmd = [sys.executable, "-m", "faceveil", "anonymize", str(src), "-o", str(out), "-q",
                       "--jobs", str(jobs), "--dp", f"threads={threads}", "--dp", f"precision={precision}"]
                t = time.perf_counter()
                subprocess.run(cmd, check=True, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                best[precision, jobs, threads] = min(best[precision, jobs, threads], time.perf_counter() - t)
        for (precision, jobs, threads), s in best.items():
            print(f"| {jobs} | {threads} | {precision} | {s:.1f} | {1000 * s / len(files):.0f} |", flush=True)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--facemask", type=int, default=50)
    ap.add_argument("--wider", type=int, default=20)
    ap.add_argument("--jobs-photos", type=int, default=40)
    ap.add_argument("--skip-jobs", action="store_true")
    ap.add_argument("--repeat", type=int, default=3, help="jobs table: best of this many rounds")
    ap.add_argument("--skip-detect", action="store_true")
    a = ap.parse_args()
    print(int8_line())
    if not DATA.is_dir():
        sys.exit(f"{DATA} not found: the bench needs ../shared/data beside the checkout")
    if not a.skip_detect:
        detection_table({"facemask": photos(DATA / "facemask" / "images", "*.jpg", a.facemask),
                         "WIDER": photos(DATA / "widerface-val" / "images", "*/*.jpg", a.wider)})
    if not a.skip_jobs:
        jobs_table(photos(DATA / "facemask" / "images", "*.jpg", a.jobs_photos, seed=1), a.repeat)
    return 0


if __name__ == "__main__":
    sys.exit(main())
