"""Does `-m replace` cover the real face on the video frames the detector skips as well as on the frames it runs on?

The video default detects on every 2nd frame; a skipped frame's boxes come from the tracker, with landmarks
interpolated between the detections around the frame where the track has both; replace draws the face at those
landmarks as on a detected frame, with the held box's ellipse grown (stop 29 filled the whole region from its
context first, as by the box alone). Any change to how those faces are
drawn must not show more of the real face. Here the detector is run on every frame anyway, as the truth; for each
of its faces that a tracked box overlaps (IoU >= 0.3), the share of the original that shows through the output at
its 5 landmarks and 3 jaw points (chin, and left and right of the mouth; also the eyes alone and the nose alone: a kept
mask shows the mouth and jaw points, often the nose tip, by design), read by a one-pixel perturbation: the
frame is anonymized twice, the second time with those pixels moved by 60 levels, from the same track state and
seed, and (1 - weight) is the change that comes through. Printed per kind of frame (skipped / detected): faces with
any point showing more than 1 %, 10 % and 50 %, and replace's paths (replaced by landmarks, estimated from the box,
interpolated, blurred).

    PYTHONPATH=src nice python research/skipped_cover.py CLIP [FRAMES]
"""
from __future__ import annotations

import argparse
from collections import Counter
from pathlib import Path

import numpy as np

from faceveil.api import resolved_detector
from faceveil.detections import box_iou
from faceveil.io.video import probe, read_frames
from faceveil.pipeline import Anonymizer
from faceveil.video.options import VideoOptions, video_preset
from faceveil.video.tracking import tracked_frames

STEP = 60  # levels a probed pixel is moved by


def probe_points(lm: np.ndarray) -> np.ndarray:
    """The 5 landmarks, the chin and two jaw points beside the mouth, from the 5 landmarks (rough, 8x2)."""
    ec, mc = lm[:2].mean(0), lm[3:].mean(0)
    down, mw = mc - ec, lm[4] - lm[3]
    return np.vstack([lm, mc + 0.9 * down, lm[3] - 0.5 * mw + 0.3 * down, lm[4] + 0.5 * mw + 0.3 * down])


def _state(m) -> dict:
    """The method's per-video track state (every dict in STREAM_STATE), copied."""
    return {name: dict(getattr(m, name)) for name in m.STREAM_STATE}


def _restore(m, state: dict) -> None:
    for name, value in state.items():
        setattr(m, name, dict(value))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("clip", type=Path)
    ap.add_argument("frames", type=int, nargs="?", default=60)
    args = ap.parse_args()
    det = resolved_detector(None, video_preset(None, None), {})
    an = Anonymizer(method="replace", preset="video", load_detector=False)
    m = an.method
    m.begin_stream()
    frames = (vf for vf in read_frames(args.clip) if vf.index < args.frames)
    shown: dict[str, list[float]] = {"skipped": [], "detected": []}
    eyes: dict[str, list[float]] = {"skipped": [], "detected": []}  # the eyes alone, the nose alone
    nose: dict[str, list[float]] = {"skipped": [], "detected": []}
    paths: Counter = Counter()
    for item in tracked_frames(frames, det.detect, VideoOptions(), float(probe(args.clip).fps)):
        f, d, kind = item.frame.rgb, item.detections, "skipped" if item.skipped else "detected"
        rng = lambda: an.rng_for(f"probe#{item.frame.index}")  # noqa: E731
        state0, before = _state(m), Counter(m.counts)
        out = an.anonymize(f, d, rng())
        paths.update({(kind, k): v - before[k] for k, v in m.counts.items()})
        truth = det.detect(f)
        if item.error or not len(truth) or not len(d):
            continue
        state1 = _state(m)
        H, W = f.shape[:2]
        moved, faces = f.copy(), []
        overlap = box_iou(truth.xyxy, d.xyxy)
        for j in range(len(truth)):
            lm = truth.landmarks[j].astype(np.float64)
            if overlap[j].max() < 0.3 or not np.isfinite(lm).all():
                continue
            pts = probe_points(lm).round().astype(int)
            inside = (pts[:, 0] >= 0) & (pts[:, 0] < W) & (pts[:, 1] >= 0) & (pts[:, 1] < H)
            if not inside.any():
                continue
            faces.append((pts, inside))
            for x, y in pts[inside]:
                v = moved[y, x].astype(int)
                moved[y, x] = np.where(v < 128, v + STEP, v - STEP)
        _restore(m, state0)  # the same track state as the first run
        out2 = an.anonymize(moved, d, rng())
        _restore(m, state1)
        a, b = out.astype(int), out2.astype(int)
        for pts, inside in faces:  # points outside the frame show nothing
            through = np.array([abs(b[y, x].sum() - a[y, x].sum()) / (3 * STEP) if ok else 0.0
                                for (x, y), ok in zip(pts, inside)])
            shown[kind].append(through.max())
            eyes[kind].append(through[:2].max())
            nose[kind].append(through[2])
    for kind in shown:
        v, e, n = np.array(shown[kind]), np.array(eyes[kind]), np.array(nose[kind])
        if len(v):
            print(f"{args.clip.name} {kind}: {len(v)} faces; a point showing > 1 % {(v > 0.01).mean():.1%}, "
                  f"> 10 % {(v > 0.1).mean():.1%}, > 50 % {(v > 0.5).mean():.1%}; an eye "
                  f"{(e > 0.01).mean():.1%} / {(e > 0.1).mean():.1%} / {(e > 0.5).mean():.1%}; the nose "
                  f"{(n > 0.01).mean():.1%} / {(n > 0.1).mean():.1%} / {(n > 0.5).mean():.1%}")
    print("paths:", dict(sorted(paths.items())))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
