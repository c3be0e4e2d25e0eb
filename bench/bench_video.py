"""Video throughput and leaks: faceveil per setting against the deface CLI, in the same run.

    PYTHONPATH=src python bench/bench_video.py                       # hikers 640x480 + a 960x720 version
    PYTHONPATH=src python bench/bench_video.py --seconds 10 --clips hikers

Speed: every anonymizer runs as a separate process on the same trimmed clip
(startup and model load included for all), so wall time and peak memory
(ru_maxrss of that process) compare like with like. decode-only and
decode+encode (our writer, same settings) are the floor no anonymizer can beat.

Leaks: synthetic clips from ../shared/data/deepface-unit with known boxes;
leaked face-frames = ground-truth faces (>= 10 px) with < 80 % of their pixels
changed (by more than 3 levels, on the unencoded frames). deface is run through
its library on the same frames (same model, its CLI defaults: threshold 0.2,
mask scale 1.3, ellipse blur). Benchmarks on a shared 2-core machine are noisy.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from common import synthetic_video

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"
DEFACE = Path(sys.executable).parent / "deface"
HIKERS = SHARED / "videos" / "group_hikers_640x480_ccby.mp4"


def prepare(src: Path, dst: Path, seconds: float, scale: float = 1.0) -> int:
    """Trim to ``seconds`` (and scale) with audio, re-encoded near-losslessly; return the frame count."""
    import cv2

    from faceveil.io.video import EncodeOptions, VideoWriter, probe, read_frames
    from dataclasses import replace

    info = probe(src)
    w, h = round(info.width * scale / 2) * 2, round(info.height * scale / 2) * 2
    info2 = replace(info, width=w, height=h)
    n = 0
    with VideoWriter(dst, info2, EncodeOptions(crf=16, preset="ultrafast", audio=False)) as wr:
        for f in read_frames(src):
            if f.time >= seconds:
                break
            rgb = f.rgb if scale == 1 else cv2.resize(f.rgb, (w, h), interpolation=cv2.INTER_CUBIC)
            wr.write(rgb, f.pts)
            n += 1
    return n


def run_timed(cmd: list[str], env=None) -> tuple[float, float]:
    """Wall seconds and peak RSS (MiB) of one child process."""
    t = time.perf_counter()
    p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    _, status, usage = os.wait4(p.pid, 0)
    wall = time.perf_counter() - t
    err = p.stderr.read().decode(errors="replace")
    if os.waitstatus_to_exitcode(status) not in (0, 1):
        raise RuntimeError(f"{cmd[:3]} failed: {err[-500:]}")
    return wall, usage.ru_maxrss / 1024


def speed_table(clip: Path, frames: int, work: Path) -> list[tuple[str, float, float, float]]:
    from faceveil.io.video import EncodeOptions, VideoWriter, probe, read_frames

    rows = []
    t = time.perf_counter()
    sum(1 for _ in read_frames(clip))
    rows.append(("decode only", frames / (time.perf_counter() - t), float("nan")))
    info = probe(clip)
    t = time.perf_counter()
    with VideoWriter(work / "enc.mp4", info, EncodeOptions()) as wr:
        for f in read_frames(clip):
            wr.write(f.rgb, f.pts)
    rows.append(("decode + encode (x264 veryfast crf 20)", frames / (time.perf_counter() - t), float("nan")))

    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    fv = [sys.executable, "-m", "faceveil", "anonymize", str(clip), "-q"]
    settings = [("faceveil, tracking off", ["--no-tracking"]), ("faceveil, tracking on (default)", []),
                ("faceveil, tracking, detect-every 2", ["--detect-every", "2"]),
                ("faceveil, tracking, detect-every 3", ["--detect-every", "3"]),
                ("faceveil --detect balanced (the images' default), tracking on", ["--detect", "balanced"])]
    for i, (name, extra) in enumerate(settings):
        wall, mem = run_timed(fv + ["-o", str(work / f"fv{i}")] + extra, env)
        rows.append((name, frames / wall, mem))
    if DEFACE.exists():
        wall, mem = run_timed([str(DEFACE), str(clip), "-o", str(work / "deface.mp4")])
        rows.append(("deface CLI (defaults)", frames / wall, mem))
    deface_fps = rows[-1][1] if DEFACE.exists() else float("nan")
    return [(name, fps, fps / deface_fps, mem) for name, fps, mem in rows]


# leaks --------------------------------------------------------------------------------

def synthetic_set(n_clips: int = 3, n_frames: int = 48):
    import faceveil
    from faceveil.detect.base import downscale
    from faceveil.io.images import read_rgb
    make_clip, sprite_from_photo = synthetic_video("make_clip", "sprite_from_photo")

    names = ["img1.jpg", "img3.jpg", "couple.jpg", "img10.jpg", "img17.jpg", "img22.jpg", "img30.jpg",
             "img40.jpg", "img50.jpg"]
    sprites = []
    for n in names[: 3 * n_clips]:
        im = downscale(read_rgb(SHARED / "deepface-unit" / n), 400)[0]
        d = faceveil.detect(im)
        if len(d):
            sprites.append(sprite_from_photo(im, d.xyxy[int(np.argmax(d.areas))]))
    clips = []
    for k in range(n_clips):
        trio = [sprites[(3 * k + j) % len(sprites)] for j in range(3)]
        size = (320, 240) if k % 2 == 0 else (480, 360)
        clips.append(make_clip(trio, size, n_frames, 24, seed=k))
    return clips


def leak_table(clips) -> list[tuple[str, int, int, int]]:
    from faceveil.io.video import VideoFrame
    from faceveil.pipeline import Anonymizer
    changed, leaked = synthetic_video("changed", "leaked")
    from faceveil.video import VideoOptions, tracked_frames

    from faceveil.detect.presets import VIDEO_PRESET
    from faceveil.detect.presets import resolve
    from faceveil.pipeline import AnonymizerConfig

    det, det_params, region = resolve(VIDEO_PRESET)  # what `faceveil anonymize clip.mp4` runs
    preset = Anonymizer.from_config(AnonymizerConfig(detector=det, detector_params=det_params, region=region))
    plain = Anonymizer(detector="centerface", region={"shape": "ellipse", "mask_scale": 1.3})  # plain CenterFace
    raws = {id(a): [[a.detect(f) for f in c.frames] for c in clips] for a in (preset, plain)}
    total_gt = sum(int(((b[:, 2:] - b[:, :2]).min(1) >= 10).sum()) for c in clips for b in c.boxes)
    settings = [(f"faceveil --detect {VIDEO_PRESET}, tracking off", preset, VideoOptions(tracking=False)),
                (f"faceveil --detect {VIDEO_PRESET}, tracking on (default)", preset, VideoOptions()),
                (f"faceveil --detect {VIDEO_PRESET}, tracking, detect-every 2", preset, VideoOptions(detect_every=2)),
                (f"faceveil --detect {VIDEO_PRESET}, tracking, detect-every 3", preset, VideoOptions(detect_every=3)),
                ("faceveil -d centerface (ellipse 1.3), tracking off", plain, VideoOptions(tracking=False)),
                ("faceveil -d centerface (ellipse 1.3), tracking on", plain, VideoOptions())]
    rows = []
    for name, anon, opt in settings:
        by_mask = by_pixels = 0
        raw_all = raws[id(anon)]
        for c, raw in zip(clips, raw_all):
            current = {}

            def frames(c=c):
                for i, f in enumerate(c.frames):
                    current["i"] = i
                    yield VideoFrame(f, i, i, i / c.fps)

            for item in tracked_frames(frames(), lambda im, raw=raw: raw[current["i"]], opt, c.fps):
                i = item.frame.index
                out = anon.anonymize(item.frame.rgb, item.detections, anon.rng_for(f"{i}"))
                by_mask += leaked(c.boxes[i], anon.compositor.mask(item.detections, out.shape) > 0)
                by_pixels += leaked(c.boxes[i], changed(item.frame.rgb, out))
        rows.append((name, by_pixels, by_mask, total_gt))
    try:
        rows.append(("deface (library, CLI defaults)", _deface_leaks(clips), -1, total_gt))
    except ImportError as exc:
        print(f"deface not importable ({exc}); skipped", file=sys.stderr)
    return rows


def _deface_leaks(clips) -> int:
    from deface.centerface import CenterFace
    from deface.deface import anonymize_frame

    changed, leaked = synthetic_video("changed", "leaked")

    n = 0
    for c in clips:
        cf = CenterFace()
        for i, f in enumerate(c.frames):
            dets, _ = cf(f, threshold=0.2)
            out = f.copy()
            anonymize_frame(dets, out, mask_scale=1.3, replacewith="blur", ellipse=True, draw_scores=False,
                            replaceimg=None, mosaicsize=20)
            n += leaked(c.boxes[i], changed(f, out))
    return n


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=5.0, help="trim the clips to this length (default 5)")
    ap.add_argument("--clips", default="hikers,hikers720", help="comma list of: hikers, hikers720")
    ap.add_argument("--no-leaks", action="store_true")
    ap.add_argument("--no-speed", action="store_true")
    args = ap.parse_args()
    if not args.no_speed:
        with tempfile.TemporaryDirectory(prefix="faceveil-bench-") as tmp:
            work = Path(tmp)
            for name in args.clips.split(","):
                scale = 1.5 if name == "hikers720" else 1.0
                clip = work / f"{name}.mp4"
                frames = prepare(HIKERS, clip, args.seconds, scale)
                from faceveil.io.video import probe

                info = probe(clip)
                print(f"\n### {name}: {info.width}x{info.height}, {frames} frames ({args.seconds:g} s of "
                      f"{HIKERS.name}), {os.cpu_count()} CPUs")
                print("| run | fps | x deface | peak MiB |\n|---|---:|---:|---:|")
                for row, fps, ratio, mem in speed_table(clip, frames, work):
                    print(f"| {row} | {fps:.1f} | {ratio:.2f} | {'' if mem != mem else f'{mem:.0f}'} |", flush=True)
    if not args.no_leaks:
        clips = synthetic_set()
        print(f"\n### leaked face-frames on {len(clips)} synthetic clips ({sum(len(c.frames) for c in clips)} frames)")
        print("| run | leaked (pixels changed) | leaked (region masks) | ground-truth face-frames |")
        print("|---|---:|---:|---:|")
        for name, by_px, by_mask, total in leak_table(clips):
            print(f"| {name} | {by_px} | {'' if by_mask < 0 else by_mask} | {total} |", flush=True)


if __name__ == "__main__":
    main()
