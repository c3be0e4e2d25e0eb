"""Where the detector looks on each frame: the whole frame every Nth frame and on scene cuts, crops around
live tracks on the frames between (issue 20, lever 4).

A face between two full passes is where its track predicts it, so on those frames the detector runs at full
resolution on crops around the tracks' expected boxes (a margin of face sizes around each, overlapping crops
merged where that saves pixels). A face that appears between full passes is found by the next full pass and back-filled over the
frames before it by the tracker's look-ahead, so ``full_every * every - 1`` frames must not exceed the look-ahead
(VideoOptions.unseen_gap; the default look-ahead is raised to it).
A scene cut moves every face at once: a cheap thumbnail comparison forces a full pass there.
"""
from __future__ import annotations

from typing import Callable

import cv2
import numpy as np

from ..detections import Detections, nms

# A crop no smaller than this (pixels): CenterFace sees a face with its surroundings at stride 4.
MIN_CROP = 96
# When the crops would cover this much of the frame, one full pass sees everything for little more.
# CenterFace's cost on a CPU follows the pixels (4 crops of 160 px: 25.6 ms each alone, 144 ms as one batch
# of 4; a whole 1280x736 frame ~55x one crop), so crops pay up to most of the frame.
MAX_CROP_SHARE = 0.8


class SceneCuts:
    """A cut: the 16x9 grey thumbnail's mean absolute difference from the previous frame's, or its 16-bin
    histogram's L1 distance, above a threshold.

    Hand-written (a few lines of OpenCV) rather than PySceneDetect: that library decodes the file itself
    and runs as a separate pass; here frames are already decoded and one comparison per frame is enough.
    A false cut only costs one full pass; a missed cut is what the thresholds are set against. The histogram's
    0.3 (0.5 before stop 37, which missed two of the stage clip's three cuts: 0.38 and 0.41, thumbnails 28.5 and
    23.6): every cut of the shared clips and of bench_video.py's labelled clips reads 0.38 or more, no frame
    without one more than 0.20 (the hikers clip's last frames; the labelled clips' pans and zooms 0.13).
    """

    def __init__(self, diff: float = 30.0, hist: float = 0.3):
        self.diff, self.hist = diff, hist
        self.prev: tuple[np.ndarray, np.ndarray] | None = None

    def __call__(self, rgb: np.ndarray) -> bool:
        small = cv2.resize(rgb, (64, 36), interpolation=cv2.INTER_AREA)
        grey = cv2.cvtColor(small, cv2.COLOR_RGB2GRAY)
        thumb = cv2.resize(grey, (16, 9), interpolation=cv2.INTER_AREA).astype(np.float32)
        h = np.bincount((grey >> 4).ravel(), minlength=16).astype(np.float32)
        h /= h.sum()
        prev, self.prev = self.prev, (thumb, h)
        if prev is None:
            return True
        return float(np.abs(thumb - prev[0]).mean()) > self.diff or float(np.abs(h - prev[1]).sum()) > self.hist


def crop_boxes(expected: np.ndarray, width: int, height: int, margin: float) -> list[tuple[int, int, int, int]]:
    """Integer crops (x1, y1, x2, y2) around ``expected`` boxes: ``margin`` face sizes on each side,
    at least MIN_CROP wide and high, inside the frame; overlapping crops merged where their bounding
    rectangle has no more pixels than the two apart (else both stay, and NMS merges a face seen twice)."""
    rects = []
    for x1, y1, x2, y2 in np.asarray(expected, np.float64).reshape(-1, 4):
        side = max(x2 - x1, y2 - y1, 1.0)
        cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
        half_w = max((x2 - x1) / 2 + margin * side, MIN_CROP / 2)
        half_h = max((y2 - y1) / 2 + margin * side, MIN_CROP / 2)
        r = [int(np.floor(max(0, cx - half_w))), int(np.floor(max(0, cy - half_h))),
             int(np.ceil(min(width, cx + half_w))), int(np.ceil(min(height, cy + half_h)))]
        if r[2] > r[0] and r[3] > r[1]:
            rects.append(r)
    return merge_crops(rects)


def merge_crops(rects) -> list[tuple[int, int, int, int]]:
    """Overlapping crops merged where their bounding rectangle has no more pixels than the two apart (else both
    stay, and NMS merges a face seen twice)."""
    rects = [list(r) for r in rects]
    merged = True
    while merged:  # few crops per frame: the quadratic merge is cheap
        merged = False
        out: list[list[int]] = []
        for r in rects:
            for o in out:
                u = [min(o[0], r[0]), min(o[1], r[1]), max(o[2], r[2]), max(o[3], r[3])]
                if r[0] < o[2] and o[0] < r[2] and r[1] < o[3] and o[1] < r[3] and _area(u) <= _area(o) + _area(r):
                    o[:] = u
                    merged = True
                    break
            else:
                out.append(list(r))
        rects = out
    return [tuple(r) for r in rects]


def _area(r) -> int:
    return (r[2] - r[0]) * (r[3] - r[1])


def detect_in_crops(detect: Callable[[np.ndarray], Detections], rgb: np.ndarray,
                    crops: list[tuple[int, int, int, int]]) -> Detections:
    """The detector on each crop (full resolution), boxes moved back into frame pixels."""
    parts = []
    for x1, y1, x2, y2 in crops:
        d = detect(np.ascontiguousarray(rgb[y1:y2, x1:x2]))
        if len(d):
            parts.append(d.translated(x1, y1))
    if not parts:
        return Detections.empty("crops")
    d = Detections.merge(parts, "crops")
    return nms(d, 0.3) if len(parts) > 1 else d  # overlapping crops: one box per face (one track)


class DetectSchedule:
    """Per frame: a full pass, crops around the tracks, or nothing (``every``); see the module doc.

    ``every`` N: the detector runs on every Nth frame and on every scene cut (the count starts again there),
    the tracker carries the faces over the frames between. Without the cut check a cut on a skipped frame
    left that frame with the previous shot's boxes (tests/test_video_speed_settings.py).
    """

    def __init__(self, detect: Callable[[np.ndarray], Detections], full_every: int, margin: float,
                 cuts: bool = True, every: int = 1):
        self.detect, self.full_every, self.margin, self.every = detect, full_every, margin, every
        # cuts are checked with every = full_every = 1 too: a cut starts a new shot, scored apart (video/tracking.py)
        self.cuts = SceneCuts() if cuts else None
        self.since_full = full_every  # the first frame gets a full pass
        self.since_run = every  # and runs the detector
        self.full = self.crops = self.cut = self.skipped = 0  # counts, for the result and the bench
        self.at_cut = False  # whether the last frame started a new shot (not the video's first frame)

    def __call__(self, rgb: np.ndarray, expected: np.ndarray | None, last: bool = False) -> Detections | None:
        """``expected``: the live tracks' boxes on this frame (None: no tracker, always a full pass).
        None: the detector skips this frame (``every``). ``last``: the video's last frame, which gets a full pass
        (no later detection looks back to it: a face there alone was never seen)."""
        cut = self.cuts(rgb) if self.cuts is not None else False
        self.at_cut = bool(cut) and self.full + self.skipped + self.crops > 0
        if self.every > 1 and not cut and not last and self.since_run < self.every:
            self.since_run += 1
            self.skipped += 1
            return None
        self.since_run = 1
        h, w = rgb.shape[:2]
        crops = None
        if self.full_every > 1 and expected is not None and not cut and not last and self.since_full < self.full_every:
            crops = crop_boxes(expected, w, h, self.margin)
            if sum(_area(c) for c in crops) > MAX_CROP_SHARE * w * h:
                crops = None
        if crops is None:
            self.since_full = 1
            self.full += 1
            self.cut += bool(cut) and self.full > 1
            return self.detect(rgb)
        self.since_full += 1
        self.crops += 1
        return detect_in_crops(self.detect, rgb, crops) if crops else Detections.empty("crops")
