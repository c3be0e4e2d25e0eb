"""Where does replace draw faces on no face, and how dark-or-grey must a scene be for a colourless face? Two
questions behind replace's `min_score` gate and `SCENE_GREY` (issue 22, stop 36).

`weak`: the default preset on one half of faceveil.eval.splits (facemask and WIDER val); each detection at least
`--min-px` high (24: stop 36's boxes; 0: all) is "false" when its IoU with every label is < 0.3, and replace's own
draw for it (a face, or its blur) is counted; then, for each gate, the faces drawn on false boxes and on faces, and
the weak ones by size.
`grey`: each shared set's photos by the frame's chroma spread (the 99th percentile of a*b* away from the median,
on a 160 px copy: `_scene_colour`'s measure), listing those under 10.

`video`: the gate in video, per track. The video default's tracked boxes, each scored as the video path scores it
(its track's best detection so far, up to the look-ahead), on bench_video.py's labelled (a) clips of `--side`
(`--labelled`: a track is real when at least half of its detected boxes meet a label, IoU >= 0.3) or on the shared clips
(the whole hikers clip, the first seconds of the others; real = against bench_video.py's cached `thorough`
reference instead of labels). Per gate: face-frames a face is drawn on on false tracks, real ones blurred.

    PYTHONPATH=src nice python research/replace_weak.py weak --side tune|held_out [--min-px 0]
    PYTHONPATH=src nice python research/replace_weak.py grey
    PYTHONPATH=src nice python research/replace_weak.py video [--labelled --side tune|held_out]
"""
from __future__ import annotations

import argparse
import glob
from collections import Counter
from pathlib import Path

import cv2
import numpy as np

import faceveil
from faceveil.anonymize import Compositor, RegionParams, get_method
from faceveil.detect.presets import DEFAULT_PRESET, get_preset
from faceveil.detections import box_iou
from faceveil.eval.splits import split
from faceveil.io.images import read_rgb
from faceveil.io.labels import read_labels

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
SETS = {"facemask": ("facemask/gt.txt", "facemask/images"),
        "wider": ("widerface-val/ground_truth/wider_face_val_bbx_gt.txt", "widerface-val/images")}
GATES = (0.0, 0.3, 0.35, 0.4, 0.5)
VIDEO_GATES = (0.0, 0.2, 0.3, 0.4, 0.5)
SIZES = ((0, 10), (10, 16), (16, 24), (24, 32), (32, 48), (48, 96), (96, 10**5))


def weak(side: str, min_px: float = 24.0) -> None:
    comp = Compositor(RegionParams(**get_preset(DEFAULT_PRESET)["region"]))
    for name, (gt, root) in SETS.items():
        ims = [im for im in read_labels(DATA / gt).images if (DATA / root / im.path).exists()]
        chosen = set(split([im.path for im in ims])[0 if side == "tune" else 1])
        m = get_method("replace", {"min_score": 0.0})  # the draw each box gets without the gate
        rows = []  # (on a face, score, given a face, height)
        for im in ims:
            if im.path not in chosen:
                continue
            img = read_rgb(DATA / root / im.path)
            d = faceveil.detect(img)
            if not len(d):
                continue
            labels = im.xywh.astype(np.float64).copy()
            labels[:, 2:] += labels[:, :2]
            best = box_iou(d.xyxy.astype(np.float64), labels).max(axis=1) if len(labels) else np.zeros(len(d))
            for r in comp.regions(d, img.shape):
                h = float(d.xyxy[r.index, 3] - d.xyxy[r.index, 1])
                if h < min_px:
                    continue
                before = Counter(m.counts)
                m.draw_face(img, r, d.xyxy[r.index].astype(np.float64), 0)
                how = [k for k in m.counts if m.counts[k] != before.get(k, 0)]
                rows.append((best[r.index] >= 0.3, float(d.score[r.index]),
                             bool(how) and how[0] in ("replaced", "estimated", "fitted"), h))
        a = np.array(rows, dtype=float)
        face, score, drawn, h = a.T
        print(f"{name} {side}: {int(face.sum())} boxes on faces, {int((1 - face).sum())} false (>= {min_px:g} px)")
        for g in GATES:
            on = drawn.astype(bool) & (score >= g)
            print(f"  gate {g}: faces drawn on false boxes {int((on & (face == 0)).sum())}, "
                  f"on faces {int((on & (face == 1)).sum())}")
        for lo, hi in SIZES:
            w = drawn.astype(bool) & (score < 0.4) & (h >= lo) & (h < hi)
            print(f"  weak (< 0.4) given a face, {lo}-{hi} px: on faces {int((w & (face == 1)).sum())}, "
                  f"false {int((w & (face == 0)).sum())}")


def grey() -> None:
    for name in ("facemask", "widerface-val", "deepface-unit", "lfw"):
        spreads = []
        for f in sorted(glob.glob(str(DATA / name / "**" / "*.jpg"), recursive=True)):
            img = read_rgb(f)
            s = 160 / max(img.shape[:2])
            small = cv2.resize(img, None, fx=s, fy=s, interpolation=cv2.INTER_AREA) if s < 1 else img
            ab = cv2.cvtColor(small.astype(np.float32) / 255, cv2.COLOR_RGB2Lab)[..., 1:].reshape(-1, 2)
            spreads.append((float(np.percentile(np.linalg.norm(ab - np.median(ab, axis=0), axis=1), 99)),
                            Path(f).name))
        low = sorted(x for x in spreads if x[0] < 10)
        print(f"{name}: {len(spreads)} photos, {len(low)} under 10: "
              + ", ".join(f"{n} {v:.1f}" for v, n in low))


# (clip, seconds): the hikers clip whole (its weak tracks on trees), the others' first seconds
CLIPS = (("group_hikers_640x480_ccby.mp4", 17.4), ("multi_shot_stage_audience_360p.mp4", 5.0),
         ("talking_head_speech_844.mp4", 4.0), ("crowd_marathon_960x540_pd.mkv", 1.0))


def video(side: str | None) -> None:
    """``side`` None: the shared clips against the `thorough` reference; else bench_video.py's labelled (a) clips
    of that side (full sizes), against their labels."""
    import sys
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
    import bench_video as bv
    from faceveil.api import resolved_detector
    from faceveil.detect.presets import VIDEO_PRESET
    from faceveil.io.video import VideoFrame
    from faceveil.video import VideoOptions, tracked_frames

    det = resolved_detector(None, VIDEO_PRESET, {})
    if side is None:
        sets = []
        for name, seconds in CLIPS:
            frames, fps = bv.shared_frames(name, seconds)
            sets.append((name, frames, fps, bv.thorough_reference(name, frames)))
    else:
        sets = [(f"{c.name} ({side})", c.frames, float(bv.FPS), c.boxes) for c in bv.labelled_clips(side, False)]
    for name, frames, fps, ref in sets:
        rows = []  # (track, frame, score, height, detected, meets the reference)
        gen = (VideoFrame(f, i, i, i / fps) for i, f in enumerate(frames))
        for item in tracked_frames(gen, det.detect, VideoOptions(), fps):
            d, i = item.detections, item.frame.index
            if not len(d):
                continue
            meets = (box_iou(d.xyxy.astype(np.float64), ref[i].astype(np.float64)).max(axis=1) >= 0.3) \
                if len(ref[i]) else np.zeros(len(d), bool)
            for k in range(len(d)):
                rows.append((int(d.track_id[k]), i, float(d.score[k]), float(d.xyxy[k, 3] - d.xyxy[k, 1]),
                             d.sources[k] == "detected", bool(meets[k]), item.shot))
        a = np.array(rows, dtype=float)
        tid, h, detected, meets, shot = a[:, 0], a[:, 3], a[:, 4] > 0, a[:, 5] > 0, a[:, 6]
        ids = np.unique(tid)
        score = a[:, 2]  # as the video path scores a tracked box: its track's best detection so far in the shot
        real = {t: bool(((tid == t) & detected).any() and meets[(tid == t) & detected].mean() >= 0.5) for t in ids}
        is_real = np.array([real[t] for t in tid])
        # a box carried over a scene cut (its track has no detection in the frame's shot): no face of its track
        # there, whatever the track is; counted apart (it scores 0, so replace blurs it)
        seen = {(t, s) for t, s, dt in zip(tid, shot, detected) if dt}
        carried = np.array([(t, s) not in seen for t, s in zip(tid, shot)])
        for lo in (0, 24):
            big = (h >= lo) & ~carried
            print(f"{name} ({len(frames)} frames), boxes >= {lo} px high: face-frames on real tracks "
                  f"{int((big & is_real).sum())}, on false tracks {int((big & ~is_real).sum())}; carried over a cut "
                  f"{int(((h >= lo) & carried).sum())}; tracks real {sum(real.values())}, "
                  f"false {len(real) - sum(real.values())}")
            for g in VIDEO_GATES:
                face = big & (score >= g)
                # tracks blurred at first and given a face later (their best score passed the gate)
                late = sum(1 for t in ids if (face & (tid == t)).any() and (big & ~face & (tid == t)).any())
                print(f"  gate {g}: faces drawn on false tracks {int((face & ~is_real).sum())}, real face-frames "
                      f"blurred {int((big & ~face & is_real).sum())}, tracks blurred then given a face {late}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("what", choices=["weak", "grey", "video"])
    ap.add_argument("--side", choices=["tune", "held_out"], default="tune")
    ap.add_argument("--labelled", action="store_true", help="video: the labelled (a) clips of --side")
    ap.add_argument("--min-px", type=float, default=24.0, help="weak: boxes at least this high (stop 36: 24)")
    a = ap.parse_args()
    {"weak": lambda: weak(a.side, a.min_px), "grey": grey,
     "video": lambda: video(a.side if a.labelled else None)}[a.what]()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
