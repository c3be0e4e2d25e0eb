"""The video default's coarse (640 px) pass on every Nth detector run instead of every run (issue 20, 720p speed).

The coarse pass costs about a quarter of the video preset's detector CPU at 720p (1280x736 main pass + 640x368
coarse pass, int8: 113 against 84 ms a run without it, one thread). Big faces move little between detector runs and
the tracker holds a lost face 1 s, so the pass may not be needed on every run. Variants, replayed in process as
bench/bench_video.py replays the default (its clips, its leak measure, its `thorough` reference cached):
- `every N`: the coarse pass on every Nth detector run of a shot (the first run after a scene cut always has it);
- `none`: never (`coarse_size=0`).
Prints leaked face-frames on the labelled (a) clips (`--side`; full sizes unless `--quick`) and on the shared
clips' first `--seconds` (b; all at most 960 px: the pass never runs there, so `--no-b`), and the share of detector
runs that take the coarse pass.

    PYTHONPATH=src nice python research/coarse_every.py --side tune --every 2,3
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))

import bench_video as bv  # noqa: E402
from common import synthetic_video  # noqa: E402


class Runs:
    """The detector per run of the schedule: with the coarse pass on every ``every``-th run of a shot."""

    def __init__(self, full, light, every: int):
        self.full, self.light, self.every = full, light, every
        self.n = 0
        self.coarse = self.runs = 0
        self.frame = None

    def __call__(self, img: np.ndarray):
        heavy = self.n % self.every == 0
        self.n += 1
        self.runs += 1
        self.coarse += heavy
        return (self.full if heavy else self.light)(self.frame, img)


def run(frames, fps, anon, full_cache: dict, light_cache: dict, detect_full, detect_light, every: int):
    """The video path's loop (tracked_frames) with ``Runs`` as its detector; a cut restarts the count."""
    from faceveil.io.video import VideoFrame
    from faceveil.video import VideoOptions, tracked_frames
    from faceveil.video import schedule as sched

    def cached(cache, detect):
        def go(i, img):
            if i not in cache:
                cache[i] = detect(img)
            return cache[i]
        return go

    runs = Runs(cached(full_cache, detect_full), cached(light_cache, detect_light), every)
    cuts = sched.SceneCuts()
    seen_cut = {}

    def gen():
        for i, f in enumerate(frames):
            runs.frame = i
            seen_cut[i] = cuts(f) and i > 0
            if seen_cut[i]:
                runs.n = 0  # the first run of a shot takes the coarse pass
            yield VideoFrame(f, i, i, i / fps)

    out = []
    for item in tracked_frames(gen(), runs, VideoOptions(), fps):
        i = item.frame.index
        out.append((i, item.frame.rgb, anon.anonymize(item.frame.rgb, item.detections, anon.rng_for(f"{i}"))))
    return out, runs


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--side", default="tune", choices=["tune", "held_out"])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--every", default="2,3")
    ap.add_argument("--seconds", type=float, default=1.0)
    ap.add_argument("--no-b", action="store_true")
    a = ap.parse_args()
    from faceveil.detect.presets import VIDEO_PRESET
    from faceveil.pipeline import Anonymizer

    full = Anonymizer(preset=VIDEO_PRESET)
    light = Anonymizer(preset=VIDEO_PRESET, detector_params={"coarse_size": 0})
    variants = [1] + [int(v) for v in a.every.split(",")] + [0]  # 0: never
    name = {1: "default (every run)", 0: "none"} | {k: f"every {k}" for k in variants[1:-1]}
    changed, leaked = synthetic_video("changed", "leaked")
    rows = {v: {"a": 0, "b": 0, "runs": 0, "coarse": 0} for v in variants}
    sets = [("a", c.name, c.frames, float(bv.FPS), c.boxes) for c in bv.labelled_clips(a.side, a.quick)]
    if not a.no_b:
        for clip in bv.SHARED_CLIPS:
            frames, fps = bv.shared_frames(clip, a.seconds)
            sets.append(("b", clip, frames, fps, bv.thorough_reference(clip, frames)))
    for kind, clip, frames, fps, truth in sets:
        fc, lc = {}, {}
        here = {}
        for v in variants:
            every = v if v else 10**9
            det_full = full.detector.detect if v else light.detector.detect
            out, runs = run(frames, fps, full, fc if v else lc, lc, det_full, light.detector.detect, every)
            here[v] = sum(leaked(truth[i], changed(src, res)) for i, src, res in out)
            rows[v][kind] += here[v]
            rows[v]["runs"] += runs.runs
            rows[v]["coarse"] += runs.coarse if v else 0
        print(f"{kind} {clip}: " + ", ".join(f"{name[v]} {here[v]}" for v in variants), flush=True)
    print(f"\n| coarse pass | leaked (a) {a.side} | leaked (b) | detector runs with it |\n|---|---:|---:|---:|")
    for v in variants:
        r = rows[v]
        print(f"| {name[v]} | {r['a']} | {r['b'] if not a.no_b else '-'} | {r['coarse'] / max(r['runs'], 1):.0%} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
