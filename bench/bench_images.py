"""Image throughput: faceveil vs the deface CLI on the same files, in the same run.

    python bench/bench_images.py [--images DIR] [--limit N]

Prints images/s and ms per megapixel for detect-only and detect+blur (in
process, models loaded once) on real photos (../shared/data/deepface-unit) and
on synthetic 720p and 1080p frames made from them (plain CenterFace, as deface
runs it), then the end-to-end CLI wall time of `deface` and of `faceveil anonymize`
with `--detect fast` and with the default `balanced` preset on copies of the same
files, with the ratios (> 1: faceveil is faster). Run it on a quiet machine: both tools use every core.
"""
from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_IMAGES = ROOT.parent / "shared" / "data" / "deepface-unit"


def letterbox(img: np.ndarray, w: int, h: int) -> np.ndarray:
    import cv2

    f = min(w / img.shape[1], h / img.shape[0])
    small = cv2.resize(img, (round(img.shape[1] * f), round(img.shape[0] * f)), interpolation=cv2.INTER_AREA)
    out = np.zeros((h, w, 3), np.uint8)
    y, x = (h - small.shape[0]) // 2, (w - small.shape[1]) // 2
    out[y : y + small.shape[0], x : x + small.shape[1]] = small
    return out


def time_inprocess(images: list[np.ndarray]) -> dict[str, float]:
    from faceveil import Anonymizer

    anon = Anonymizer("blur", detector="centerface")  # one plain CenterFace pass (the library defaults to balanced)
    anon.detect(images[0])  # warm-up: session creation, first allocation
    mp = sum(i.shape[0] * i.shape[1] for i in images) / 1e6
    out = {}
    t = time.perf_counter()
    dets = [anon.detect(i) for i in images]
    out["detect_s"] = time.perf_counter() - t
    t = time.perf_counter()
    for i, d in zip(images, dets):
        anon.anonymize(i, d)
    out["blur_s"] = time.perf_counter() - t
    out["n"], out["mp"], out["faces"] = len(images), mp, sum(len(d) for d in dets)
    return out


def run_cli(cmd: list[str]) -> float:
    t = time.perf_counter()
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode not in (0, 1):
        raise SystemExit(f"{cmd[0]} failed: {r.stderr[-500:]}")
    return time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--images", type=Path, default=DEFAULT_IMAGES)
    ap.add_argument("--limit", type=int, default=30)
    args = ap.parse_args()
    if not args.images.is_dir():
        raise SystemExit(f"{args.images}: not found (needs ../shared/data or --images)")
    from faceveil.io.images import read_rgb

    paths = sorted(p for p in args.images.iterdir() if p.suffix.lower() in (".jpg", ".png"))[: args.limit]
    photos = [read_rgb(p) for p in paths]
    sets = {
        "photos": photos,
        "720p": [letterbox(p, 1280, 720) for p in photos],
        "1080p": [letterbox(p, 1920, 1080) for p in photos],
    }
    bin_dir = Path(sys.executable).parent
    deface = shutil.which("deface", path=str(bin_dir)) or shutil.which("deface")
    print(f"{len(photos)} images per set; faceveil in process (models loaded once), then both CLIs end to end\n")
    print(f"{'set':8} {'MP/img':>7} {'faces':>6} {'detect img/s':>13} {'detect ms/MP':>13} {'+blur img/s':>12} "
          f"{'blur ms/MP':>11} {'deface CLI s':>13} {'fv fast s':>10} {'x deface':>9} {'fv balanced s':>14} {'x deface':>9}")
    for name, imgs in sets.items():
        r = time_inprocess(imgs)
        total = r["detect_s"] + r["blur_s"]
        with tempfile.TemporaryDirectory() as tmp:
            src = Path(tmp) / "in"
            src.mkdir()
            for i, img in enumerate(imgs):
                Image.fromarray(img).save(src / f"{i:03d}.jpg", quality=92)
            files = sorted(str(p) for p in src.iterdir())
            cli = [str(bin_dir / "faceveil"), "anonymize", str(src), "-q", "-o"]
            fast = run_cli(cli + [str(Path(tmp) / "fast"), "--detect", "fast"])  # deface's cost: one pass
            bal = run_cli(cli + [str(Path(tmp) / "balanced")])  # the default preset: recall first
            if deface:
                # deface writes NAME_anonymized.jpg beside each input; one process for all files
                df = run_cli([deface, *files, "--replacewith", "blur"])
            else:
                df = float("nan")
        print(f"{name:8} {r['mp'] / r['n']:7.2f} {r['faces']:6d} {r['n'] / r['detect_s']:13.2f} "
              f"{1000 * r['detect_s'] / r['mp']:13.1f} {r['n'] / total:12.2f} {1000 * r['blur_s'] / r['mp']:11.1f} "
              f"{df:13.1f} {fast:10.1f} {df / fast:8.2f}x {bal:14.1f} {df / bal:8.2f}x")
    if not deface:
        print("\n(deface CLI not found: pip install --no-deps deface==1.5.0 imageio scikit-image)")


if __name__ == "__main__":
    main()
