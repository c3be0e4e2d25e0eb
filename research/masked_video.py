"""Does a masked face keep its mask from frame to frame under `-m replace` in video?

replace keeps an occluder over the lower face (a mask, a scarf) on the frames the detector runs on. On the frames it
skips (the video default detects on every 2nd frame) the face is drawn at interpolated landmarks; if the mask is
not kept there, a masked person's lower face alternates between the mask and a new mouth at half the frame rate.
No shared clip shows a mask, so the clip is made here, as bench_video.py makes its labelled clips: slow pans and
zooms over facemask photos (``--side``, eval.splits; default tune) with a face labelled `with_mask` at least 40 px
high, at 960x540 (the faces 100-250 px). Every frame goes through the video path (video preset, tracking,
``--method``); for each labelled masked face >= 60 px high, its mouth area (the box's x 0.3-0.7, y 0.62-0.85) counts
as kept when the output's mean absolute difference from the input there is <= ``--kept`` levels. Printed per kind of
frame (detected / skipped): faces, share kept; and per labelled face, how often kept flips between two consecutive
frames (the alternation a viewer sees) and how much the mouth area's difference from the input changes from frame
to frame (the same without a threshold), and where the flips come from (a skipped frame unlike the detected one
before it, or a detected frame unlike the last detected one). ``--write CLIP`` also writes the clip
(research/skipped_cover.py reads it: whether the eyes and nose show through where a cover is kept).

    PYTHONPATH=src nice python research/masked_video.py [--side tune|held_out] [--photos 6] [--write clip.mp4]
"""
from __future__ import annotations

import argparse
import sys
from fractions import Fraction
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))

import bench_video as bv  # noqa: E402

DATA = ROOT.parent / "shared" / "data" / "facemask"
MOUTH = (0.3, 0.62, 0.7, 0.85)  # the mouth area within a labelled box (x1, y1, x2, y2 as fractions)
NOSE = (0.3, 0.42, 0.7, 0.62)  # the band between the eyes and the mouth (a mask's upper half), of the box


def masked_photos(side: str, n: int) -> list[bv.Photo]:
    """Photos of ``side`` with a face labelled with_mask >= 40 px high, by name; their masked boxes only."""
    from faceveil.eval.splits import side as side_of

    boxes: dict[str, list] = {}
    for line in (DATA / "labels.csv").read_text().splitlines()[1:]:
        name, x, y, w, h, label = line.split(",")
        if label == "with_mask":
            boxes.setdefault(name, []).append([float(x), float(y), float(x) + float(w), float(y) + float(h)])
    out = []
    for name in sorted(boxes):
        b = np.asarray(boxes[name], np.float64)
        if side_of(name) == side and (b[:, 3] - b[:, 1]).max() >= 40:
            out.append(bv.Photo(DATA / "images" / name, b))
    return out[:n]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--side", default="tune", choices=["tune", "held_out"])
    ap.add_argument("--photos", type=int, default=6)
    ap.add_argument("--frames", type=int, default=24, help="frames per photo (one shot each)")
    ap.add_argument("--method", default="replace")
    ap.add_argument("--kept", type=float, default=6.0, help="mean |output - input| at or under which the mouth "
                                                             "area counts as kept")
    ap.add_argument("--write", type=Path, help="also write the clip here (mp4, 24 fps)")
    args = ap.parse_args()

    from faceveil.api import resolved_detector
    from faceveil.pipeline import Anonymizer
    from faceveil.video.options import VideoOptions, video_preset

    clip = bv.make_labelled_clip(masked_photos(args.side, args.photos), (960, 540), args.frames, 0, "masked")
    if args.write:
        from faceveil.io.video import EncodeOptions, VideoInfo, VideoWriter

        info = VideoInfo(args.write, 960, 540, Fraction(24), Fraction(1, 24), 0, 0.0, 0, "h264", False)
        with VideoWriter(args.write, info, EncodeOptions(audio=False)) as writer:
            for i, f in enumerate(clip.frames):
                writer.write(f, i)
    det = bv.CachedDetector(resolved_detector(None, video_preset(None, None), {}).detect)
    an = Anonymizer(method=args.method, preset="video", load_detector=False)
    an.method.begin_stream()
    skipped = set()
    from faceveil.io.video import VideoFrame
    from faceveil.video import tracked_frames

    def gen():
        for i, f in enumerate(clip.frames):
            det.current = (i, f)
            yield VideoFrame(f, i, i, i / clip.fps)

    kept: dict[str, list[bool]] = {"detected": [], "skipped": []}
    per_face: dict[tuple, dict[int, bool]] = {}
    level: dict[tuple, dict[int, float]] = {}  # the same faces' mean |output - input| over the mouth area
    nose: dict[tuple, dict[int, float]] = {}  # ... and over the NOSE band (where a kept mask is continued)
    x1f, y1f, x2f, y2f = MOUTH
    shot = np.searchsorted(clip.cuts, np.arange(len(clip.frames)), side="right") - 1
    for item in tracked_frames(gen(), det, VideoOptions(), float(clip.fps)):
        i = item.frame.index
        src = item.frame.rgb
        out = an.anonymize(src, item.detections, an.rng_for(f"{i}"))
        kind = "skipped" if item.skipped else "detected"
        if item.skipped:
            skipped.add(i)
        for j, (bx1, by1, bx2, by2) in enumerate(clip.boxes[i]):
            w, h = bx2 - bx1, by2 - by1
            if h < 60 or w < 30:
                continue
            sl = (slice(int(by1 + y1f * h), int(by1 + y2f * h)), slice(int(bx1 + x1f * w), int(bx1 + x2f * w)))
            d = np.abs(out[sl].astype(np.int16) - src[sl]).mean()
            k = bool(d <= args.kept)
            kept[kind].append(k)
            # a face is one labelled box of one shot, by its index among the boxes still in view: a face leaving
            # the frame (a zoom in) shifts the index of those after it, so a few pairs may compare two faces
            # (alike before and after a change; the share of frames kept does not depend on it)
            per_face.setdefault((int(shot[i]), j), {})[i] = k
            level.setdefault((int(shot[i]), j), {})[i] = float(d)
            nl = (slice(int(by1 + NOSE[1] * h), int(by1 + NOSE[3] * h)),
                  slice(int(bx1 + NOSE[0] * w), int(bx1 + NOSE[2] * w)))
            nose.setdefault((int(shot[i]), j), {})[i] = float(np.abs(out[nl].astype(np.int16) - src[nl]).mean())
    for kind, v in kept.items():
        if v:
            print(f"{kind}: {len(v)} masked face-frames, mouth area kept {np.mean(v):.1%}")
    flips = pairs = 0
    for frames in per_face.values():
        for i, k in frames.items():
            if i + 1 in frames:
                pairs += 1
                flips += k != frames[i + 1]
    print(f"kept flips between consecutive frames: {flips} of {pairs} pairs ({flips / max(pairs, 1):.1%}), "
          f"{len(per_face)} faces, {len(clip.frames)} frames ({len(skipped)} skipped)")
    # where the flips come from: a skipped frame unlike the detected frame before it (how skipped frames are
    # drawn), or a detected frame unlike the detected frame before it (the rule's own decision)
    held_differs = held_n = rule_differs = rule_n = 0
    for frames in per_face.values():
        for i, k in frames.items():
            if i in skipped and i - 1 in frames and i - 1 not in skipped:
                held_n += 1
                held_differs += k != frames[i - 1]
            if i not in skipped and i - 2 in frames and i - 2 not in skipped and i - 1 in skipped:
                rule_n += 1
                rule_differs += k != frames[i - 2]
    jumps = [abs(v[i + 1] - d) for v in level.values() for i, d in v.items() if i + 1 in v]
    print(f"mouth area's mean |output - input|, its change between consecutive frames: mean {np.mean(jumps):.2f}, "
          f"median {np.median(jumps):.2f} levels")
    jumps = [abs(v[i + 1] - d) for v in nose.values() for i, d in v.items() if i + 1 in v]
    print(f"the same over the band between eyes and mouth: mean {np.mean(jumps):.2f}, median {np.median(jumps):.2f} "
          f"levels (its mean |output - input|: {np.mean([d for v in nose.values() for d in v.values()]):.1f})")
    print(f"skipped frame unlike the detected one before it: {held_differs} of {held_n}; detected frame unlike the "
          f"detected one two frames before: {rule_differs} of {rule_n}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
