"""Where does replace draw faces on no face, and how dark-or-grey must a scene be for a colourless face? The
questions behind replace's `min_score` gate and `SCENE_GREY` (issue 22, stop 36), HELD_FACE_S and DUPLICATE_OVERLAP.

`weak`: the default preset on one half of faceveil.eval.splits (facemask and WIDER val); each detection at least
`--min-px` high (24: stop 36's boxes; 0: all) is "false" when its IoU with every label is < 0.3, and replace's own
draw for it (a face, or its blur) is counted; then, for each gate, the faces drawn on false boxes and on faces, and
the weak ones by size.
`grey`: each shared set's photos by the frame's chroma spread (the 99th percentile of a*b* away from the median,
on a 160 px copy: `scene_colour`'s measure), listing those under 10.

`video`: the gate in video, per track. The video default's tracked boxes, each scored as the video path scores it
(its track's best detection so far, up to the look-ahead), on bench_video.py's labelled (a) clips of `--side`
(`--labelled`: a track is real when at least half of its detected boxes meet a label, IoU >= 0.3) or on the shared clips
(the whole hikers clip, the first seconds of the others; real = against bench_video.py's cached `thorough`
reference instead of labels). Per gate: face-frames a face is drawn on on false tracks, real ones blurred; also per
"the track's 2nd (3rd) best detection >= gate", replayed from the tracker's own detections.
`lost`: where replace draws the face of a tracked face the detector lost, by frames since it was last found
(replace's HELD_FACE_S, stop 50). `dupes`: pairs of boxes that both get a face and overlap, one labelled face or two
(replace's DUPLICATE_OVERLAP, stop 50); `--video` on the video default's tracked boxes.

    PYTHONPATH=src nice python research/replace_weak.py weak --side tune|held_out [--min-px 0]
    PYTHONPATH=src nice python research/replace_weak.py grey
    PYTHONPATH=src nice python research/replace_weak.py video|lost [--labelled --side tune|held_out]
    PYTHONPATH=src nice python research/replace_weak.py dupes [--video [--labelled]] --side tune|held_out
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


OVERLAPS = (0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.95)


def dupes(side: str) -> None:
    """Two boxes that both get a new face and overlap: one face boxed twice (a second face drawn over it) or two
    faces? The default preset on one half of faceveil.eval.splits; pairs of boxes scoring >= replace's min_score
    (neither nested in a larger one), each matched to the label it meets best (IoU >= 0.3, else none); overlap =
    intersection over the smaller box's area. Per overlap bin: pairs on one label, on two labels, with one box on
    no label; then per rule "the weaker of a pair overlapping >= t gets no face": faces of their own lost (the
    pair on two labels) and duplicates left (pairs on one label under t)."""
    from faceveil.anonymize.methods.replace import NESTED_INSIDE, _nested

    gate = get_method("replace").Params().min_score
    for name, (gt, root) in SETS.items():
        ims = [im for im in read_labels(DATA / gt).images if (DATA / root / im.path).exists()]
        chosen = set(split([im.path for im in ims])[0 if side == "tune" else 1])
        pairs = []  # (overlap, kind: 0 one label, 1 two labels, 2 a box on no label, smaller box's height)
        for im in ims:
            if im.path not in chosen:
                continue
            img = read_rgb(DATA / root / im.path)
            d = faceveil.detect(img)
            boxes = d.xyxy.astype(np.float64)
            strong = np.flatnonzero(d.score >= gate)
            strong = np.array([i for i in strong if not _nested(boxes, i, strong)], int)
            if len(strong) < 2:
                continue
            labels = im.xywh.astype(np.float64).copy()
            labels[:, 2:] += labels[:, :2]
            pairs += _overlapping_pairs(boxes, strong, labels)
        _print_pairs(f"{name} {side}", pairs, NESTED_INSIDE)


def dupes_video(side: str | None) -> None:
    """``dupes`` on the video default's tracked boxes, each scored as the video path scores it (its track's best):
    bench_video.py's labelled (a) clips of ``side`` against their labels, or (None) the shared clips against the
    `thorough` reference. Nested boxes left out as replace does (only a detected box holds others)."""
    from faceveil.anonymize.methods.replace import NESTED_INSIDE, _nested
    from faceveil.io.video import VideoFrame
    from faceveil.video import VideoOptions, tracked_frames

    det, sets = _video_sets(side)
    gate = get_method("replace").Params().min_score
    for name, frames, fps, ref in sets:
        pairs = []
        for item in tracked_frames((VideoFrame(f, i, i, i / fps) for i, f in enumerate(frames)), det.detect,
                                   VideoOptions(), fps):
            d = item.detections
            boxes = d.xyxy.astype(np.float64)
            guessed = np.isin(np.asarray(d.sources), ("held", "backfilled"))
            holders = np.flatnonzero((d.score >= gate) & ~guessed)
            strong = np.array([i for i in np.flatnonzero(d.score >= gate) if not _nested(boxes, i, holders)], int)
            if len(strong) >= 2:
                pairs += _overlapping_pairs(boxes, strong, np.asarray(ref[item.frame.index], np.float64).reshape(-1, 4))
        _print_pairs(f"{name} ({len(frames)} frames)", pairs, NESTED_INSIDE)


def _overlapping_pairs(boxes: np.ndarray, strong: np.ndarray, labels: np.ndarray) -> list:
    """(overlap, kind: 0 one label, 1 two labels, 2 a box on no label) per pair of ``strong`` boxes overlapping
    >= OVERLAPS[0] of the smaller one's area."""
    iou = box_iou(boxes, labels) if len(labels) else np.zeros((len(boxes), 1))
    match = np.where(iou.max(axis=1) >= 0.3, iou.argmax(axis=1), -1)
    area = np.prod(boxes[:, 2:] - boxes[:, :2], axis=1)
    pairs = []
    for a_, i in enumerate(strong):
        for j in strong[a_ + 1:]:
            wh = np.minimum(boxes[i, 2:], boxes[j, 2:]) - np.maximum(boxes[i, :2], boxes[j, :2])
            ov = float(np.prod(np.clip(wh, 0, None))) / min(area[i], area[j])
            if ov >= OVERLAPS[0]:
                pairs.append((ov, 2 if min(match[i], match[j]) < 0 else int(match[i] != match[j])))
    return pairs


def _print_pairs(name: str, pairs: list, nested: float) -> None:
    a = np.array(pairs, dtype=float).reshape(-1, 2)
    print(f"{name}: {len(a)} pairs of boxes given faces overlapping >= {OVERLAPS[0]} (nested >= {nested} left out)")
    edges = OVERLAPS + (1.01,)
    for lo, hi in zip(edges, edges[1:]):
        m = (a[:, 0] >= lo) & (a[:, 0] < hi)
        print(f"  overlap {lo}-{hi}: one label {int((m & (a[:, 1] == 0)).sum())}, two labels "
              f"{int((m & (a[:, 1] == 1)).sum())}, a box on none {int((m & (a[:, 1] == 2)).sum())}")
    for t in OVERLAPS:
        m = a[:, 0] >= t
        print(f"  rule t={t}: faces of their own lost {int((m & (a[:, 1] == 1)).sum())}, duplicates left "
              f"{int((~m & (a[:, 1] == 0)).sum())}, pairs with a box on no label resolved "
              f"{int((m & (a[:, 1] == 2)).sum())}")


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


def _video_sets(side: str | None):
    """(the video default's detector, [(name, frames, fps, reference boxes per frame)]): ``side`` None, the shared
    clips against bench_video.py's cached `thorough` reference; else bench_video.py's labelled (a) clips of that side
    (full sizes) against their labels."""
    import sys
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
    import bench_video as bv
    from faceveil.api import resolved_detector
    from faceveil.detect.presets import VIDEO_PRESET

    det = resolved_detector(None, VIDEO_PRESET, {})
    if side is None:
        sets = []
        for name, seconds in CLIPS:
            frames, fps = bv.shared_frames(name, seconds)
            sets.append((name, frames, fps, bv.thorough_reference(name, frames)))
    else:
        sets = [(f"{c.name} ({side})", c.frames, float(bv.FPS), c.boxes) for c in bv.labelled_clips(side, False)]
    return det, sets


def video(side: str | None) -> None:
    """``side`` None: the shared clips against the `thorough` reference; else bench_video.py's labelled (a) clips
    of that side (full sizes), against their labels."""
    from faceveil.io.video import VideoFrame
    from faceveil.video import VideoOptions, tracked_frames

    det, sets = _video_sets(side)
    from faceveil.track import Tracker

    log = []  # (track, frame, raw detection score, shot): every detection the tracker matched or started a track with
    step = Tracker.step

    def logged(self, index, detections, hold=None):
        out = step(self, index, detections, hold)
        log.extend((int(t), index, float(s), self.shot) for t, s, src in zip(out.track_id, out.score, out.sources)
                   if src == "detected")
        return out

    Tracker.step = logged
    ahead = VideoOptions().frames_ahead
    for name, frames, fps, ref in sets:
        rows = []  # (track, frame, score, height, detected, meets the reference)
        log.clear()
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
        # each track's detections per shot, in frame order: the k-th best score so far, as of the newest frame
        # tracked when a frame leaves the look-ahead buffer (frame + look-ahead, or the clip's last frame)
        hist: dict = {}
        for t, i, s, sh in log:
            hist.setdefault((t, sh), []).append((i, s))
        newest = np.minimum(a[:, 1] + ahead(fps), len(frames) - 1)

        def kth(k: int) -> np.ndarray:
            out = np.zeros(len(a))
            for r, (t, sh, top) in enumerate(zip(tid, shot, newest)):
                got = sorted((s for i, s in hist.get((int(t), int(sh)), ()) if i <= top), reverse=True)
                out[r] = got[k - 1] if len(got) >= k else 0.0
            return out

        score = a[:, 2]  # as the video path scores a tracked box: its track's best detection so far in the shot
        second, third = kth(2), kth(3)
        assert np.allclose(kth(1), score, atol=1e-6), "the log does not replay the video path's scores"
        real = {t: bool(((tid == t) & detected).any() and meets[(tid == t) & detected].mean() >= 0.5) for t in ids}
        is_real = np.array([real[t] for t in tid])
        # a box carried over a scene cut (its track has no detection in the frame's shot): no face of its track
        # there, whatever the track is; counted apart (it scores 0, so replace blurs it)
        seen = {(t, s) for t, s, dt in zip(tid, shot, detected) if dt}
        carried = np.array([(t, s) not in seen for t, s in zip(tid, shot)])
        # rules: (label, which boxes get a face)
        rules = [(f"best >= {g}", score >= g) for g in VIDEO_GATES]
        rules += [(f"2nd best >= {g}", second >= g) for g in (0.3, 0.4)]
        rules += [(f"3rd best >= {g}", third >= g) for g in (0.3, 0.4)]
        rules += [(f"2nd best >= 0.4 or best >= {s}", (second >= 0.4) | (score >= s)) for s in (0.6, 0.8)]
        for lo in (0, 24):
            big = (h >= lo) & ~carried
            print(f"{name} ({len(frames)} frames), boxes >= {lo} px high: face-frames on real tracks "
                  f"{int((big & is_real).sum())}, on false tracks {int((big & ~is_real).sum())}; carried over a cut "
                  f"{int(((h >= lo) & carried).sum())}; tracks real {sum(real.values())}, "
                  f"false {len(real) - sum(real.values())}")
            for label, gets in rules:
                face = big & gets
                # tracks blurred at first and given a face later (their score passed the gate)
                late = sum(1 for t in ids if (face & (tid == t)).any() and (big & ~face & (tid == t)).any())
                false_tracks = len({t for t in tid[face & ~is_real]})
                print(f"  {label}: faces drawn on false tracks {int((face & ~is_real).sum())} ({false_tracks} "
                      f"tracks), real face-frames blurred {int((big & ~face & is_real).sum())}, tracks blurred then "
                      f"given a face {late}")
    Tracker.step = step


# ages (frames since a track's face was last found) after which a lost face is blurred; None: never (before)
LOST_AFTER = (None, 2, 4, 5, 6, 8, 12, 15)


def lost(side: str | None) -> None:
    """Held boxes of tracks whose face the detector lost (no detection, no interpolated landmarks), each scored as
    the video path scores it: where replace draws a face (track score >= its min_score), is a reference face there?
    The face is drawn at the track's last detected size (x HELD_GROW) centred in the held box (Replace._held_face),
    so that box is compared (IoU >= 0.3) with the `thorough` reference (shared clips) or the labels (``side``).
    Per age bucket, then per LOST_AFTER: faces drawn on no reference face, reference faces blurred, and tracks
    that go face -> blur -> face."""
    from faceveil.anonymize.methods.replace import HELD_GROW
    from faceveil.io.video import VideoFrame
    from faceveil.video import VideoOptions, tracked_frames

    det, sets = _video_sets(side)
    gate = get_method("replace").Params().min_score
    total = Counter()
    for name, frames, fps, ref in sets:
        found: dict[int, int] = {}  # track -> the last frame its face was found on (in emit order)
        size: dict[int, np.ndarray] = {}  # track -> its last detected box's width and height
        rows = []  # (track, frame, age or -1 when found, on a reference face)
        for item in tracked_frames((VideoFrame(f, i, i, i / fps) for i, f in enumerate(frames)), det.detect,
                                   VideoOptions(), fps):
            d, i = item.detections, item.frame.index
            r = np.asarray(ref[i], np.float64).reshape(-1, 4)
            for k in range(len(d)):
                t, src, b = int(d.track_id[k]), d.sources[k], d.xyxy[k].astype(np.float64)
                has_lm = bool(d.has_landmarks[k])
                if src == "detected":
                    size[t] = b[2:] - b[:2]
                if src == "detected" or (src == "held" and has_lm):
                    found[t] = i
                if d.score[k] < gate:
                    continue
                age = -1
                if src == "held" and not has_lm and t in found:
                    age = i - found[t]
                    if t in size:  # where replace draws the face in the held box
                        wh = np.minimum(b[2:] - b[:2], size[t] * HELD_GROW)
                        c = (b[:2] + b[2:]) / 2
                        b = np.r_[c - wh / 2, c + wh / 2]
                meets = bool(len(r)) and box_iou(b[None], r).max() >= 0.3
                rows.append((t, i, age, meets))
        a = np.array(rows, dtype=float).reshape(-1, 4)
        tid, age, meets = a[:, 0], a[:, 2], a[:, 3] > 0
        held = age >= 0
        print(f"{name} ({len(frames)} frames): face-frames {len(a)}, held boxes of lost faces {int(held.sum())}")
        edges = (0, 2, 4, 8, 15, 30, 10**6)
        for lo, hi in zip(edges, edges[1:]):
            m = held & (age > lo) & (age <= hi)
            if m.any():
                print(f"  lost {lo + 1}-{hi} frames: {int(m.sum())}, on a reference face {100 * meets[m].mean():.0f} %")
        for after in LOST_AFTER:
            blur = held & (age > after) if after is not None else np.zeros(len(a), bool)
            drawn_wrong = int((held & ~blur & ~meets).sum())
            blurred_right = int((blur & meets).sum())
            switches = 0
            for t in np.unique(tid):
                seq = blur[tid == t]  # in frame order
                switches += int(np.sum(seq[:-1] & ~seq[1:]) if len(seq) > 1 and (~seq).any() else 0)
            total[(after, "wrong")] += drawn_wrong
            total[(after, "blurred")] += blurred_right
            total[(after, "switches")] += switches
            print(f"  blurred after {after}: faces drawn on no reference face {drawn_wrong}, reference faces "
                  f"blurred {blurred_right}, blur -> face switches {switches}")
    print("all clips:")
    for after in LOST_AFTER:
        w, b, sw = (total[(after, k)] for k in ("wrong", "blurred", "switches"))
        print(f"  blurred after {after}: drawn on no face {w}, faces blurred {b}, sum {w + b}, switches {sw}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("what", choices=["weak", "grey", "video", "lost", "dupes"])
    ap.add_argument("--side", choices=["tune", "held_out"], default="tune")
    ap.add_argument("--labelled", action="store_true", help="video, lost, dupes --video: the labelled (a) clips of "
                    "--side")
    ap.add_argument("--video", action="store_true", help="dupes: the video default's tracked boxes")
    ap.add_argument("--min-px", type=float, default=24.0, help="weak: boxes at least this high (stop 36: 24)")
    a = ap.parse_args()
    {"weak": lambda: weak(a.side, a.min_px), "grey": grey,
     "video": lambda: video(a.side if a.labelled else None),
     "lost": lambda: lost(a.side if a.labelled else None),
     "dupes": lambda: dupes_video(a.side if a.labelled else None) if a.video else dupes(a.side)}[a.what]()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
