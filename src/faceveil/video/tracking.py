"""The tracking loop: frames in, each frame's final detections out (detect every Nth frame, track, hold, backfill)."""
from __future__ import annotations

import os
from collections import deque
from dataclasses import dataclass
from typing import Callable, Iterable, Iterator

import numpy as np

from ..api import resolved_detector
from ..detect.presets import VIDEO_COAST_S, VIDEO_FAST_REACH, VIDEO_MAX_RATIO
from ..detections import Detections
from ..io.video import VideoFrame, VideoSource, probe, read_frames
from ..track import Tracker, TrackParams
from .options import VideoOptions, as_video_options, refuse_photo, video_preset
from .schedule import MAX_CROP_SHARE, DetectSchedule, _area, detect_in_crops, merge_crops


@dataclass
class TrackedFrame:
    frame: VideoFrame
    detections: Detections
    error: str | None = None
    skipped: bool = False  # the detector did not run on this frame (``detect_every``)
    shot: int = 0  # the frame this frame's shot started on (scene cuts; tracking)


def video_track_params(options: VideoOptions, fps: float) -> TrackParams:
    """The tracker's parameters for a video: hold and look-ahead from the options, a detection's size jump and a
    held box's coasting from presets.VIDEO_MAX_RATIO / VIDEO_COAST_S."""
    return TrackParams(hold=options.frames_held(fps), lookahead=options.frames_ahead(fps), smoothing=options.smoothing,
                       max_ratio=VIDEO_MAX_RATIO, coast=max(1, round(VIDEO_COAST_S * fps)))


def tracked_frames(frames: Iterable[VideoFrame], detect: Callable[[np.ndarray], Detections],
                   options: VideoOptions, fps: float) -> Iterator[TrackedFrame]:
    """Frames with their final detections, in order, ``lookahead`` frames behind the input."""
    n = options.detector_every
    hold = options.frames_held(fps)
    ahead = options.frames_ahead(fps)
    tracker: Tracker | None = None
    buffer: deque[TrackedFrame] = deque()
    schedule = DetectSchedule(detect, options.full_every if options.tracking else 1, options.crop_margin, every=n)

    last_run: list = []  # [frame, shot] of the last detector run emitted

    def emit(item: TrackedFrame) -> TrackedFrame:
        if tracker is not None and item.skipped and item.error is None and len(item.detections):
            # A skipped frame's held boxes (extrapolated) grow to cover where the face lies between the
            # detections around it, now that the later one is known (never smaller: the union). They also get
            # the landmarks interpolated between those detections: a method may draw by them (replace draws its
            # face there over a region it first fills wholly from the context), but must cover the box as for
            # a face without landmarks (their source stays "held"). A track lost on the next run, where another
            # was found near enough to be its face moved further than a track links, covers both (``bridges``).
            between = {**tracker.bridges(item.frame.index, n), **tracker.between(item.frame.index, n)}
            marks = tracker.landmarks_between(item.frame.index, n)
            d = item.detections
            rows = [k for k, t in enumerate(d.track_id) if int(t) in between]
            if rows:
                xyxy = d.xyxy.astype(np.float64)
                lms = d.landmarks.copy()
                for k in rows:
                    t = int(d.track_id[k])
                    b = between[t]
                    xyxy[k] = [min(xyxy[k, 0], b[0]), min(xyxy[k, 1], b[1]), max(xyxy[k, 2], b[2]), max(xyxy[k, 3], b[3])]
                    if t in marks and d.sources[k] == "held":
                        lms[k] = marks[t]
                item.detections = Detections(xyxy, d.score, lms, d.track_id, d.source, d.sources)
        nxt = next((b for b in buffer if not b.skipped and b.error is None), None)  # the next detector run
        if tracker is not None and item.skipped and item.error is None:
            # A face faster than a bridge reaches: the hull of its two sightings is a poor guess (it may bounce),
            # so the detector looks on this frame around both; its boxes are added (untracked) to what is held.
            around = (last_run[0], nxt.frame) if last_run and nxt is not None else None
            # A face that entered or left the picture that fast: the detector looks toward the sides it may have
            # crossed, once the next run is known (not across a scene cut: the faces found or lost there are not on
            # this frame).
            edges = nxt is not None and nxt.shot == item.shot
            try:
                found = _between_runs(tracker, detect, item.frame, n, around, edges)
            except (KeyboardInterrupt, SystemExit, MemoryError):
                raise
            except Exception as exc:  # fail closed: the frame fails as a failed detector run fails it
                item.error = f"frame {item.frame.index}: {exc.__class__.__name__}: {exc}"
                found = None
            if found is not None and len(found):
                item.detections = Detections.merge([item.detections, found], "track")
        if tracker is not None and not item.skipped and item.error is None and n > 1 and last_run:
            # A face that entered or left the picture so fast that on this run the side cut it to a sliver (the
            # detector finds none): first detected on the next run, or last on the one before, near a side it
            # could have crossed. The face-sized boxes against that side are hidden here too, as on the skipped
            # frames around (_between_runs), where nothing of this run lies (the audit clips of fast faces left
            # 3 of 744 entering face-frames and 1 leaving one visible on such run frames). The pixel check and
            # the crowd limit are _between_runs' (a scene cut on either side: none).
            # At the end of the video (no next run) a face leaving on the last run is checked against the one before.
            if (nxt is None or nxt.shot == item.shot) and item.shot == last_run[1]:
                edge = tracker.edge_crossings(item.frame.index, n, VIDEO_FAST_REACH,
                                              _crossed(last_run[0], item.frame, nxt and nxt.frame), run=True)
                d = item.detections
                seen = d.xyxy[np.asarray(d.sources) == "detected"] if len(d) else d.xyxy  # not its own held box
                cut = _cut_boxes(edge, seen)
                if len(cut):
                    item.detections = Detections.merge([d, cut], "track")
        if not item.skipped:
            last_run[:] = [item.frame, item.shot]  # the last detector run emitted: the pixel check's "before"
        if tracker is not None and ahead and item.error is None:
            extra = tracker.backfill(item.frame.index)
            if len(extra):
                item.detections = Detections.merge([item.detections, extra], "track")
        if tracker is not None and item.error is None and len(item.detections):
            # A tracked box scores its track's best detection so far, up to the newest frame tracked (the
            # look-ahead): held and back-filled boxes too (the tracker gives them 0), and the same on every frame
            # of a track whose detections' scores go up and down: a method that treats weak detections apart
            # (replace's min_score) decides per track, not per frame, and before the track's first detection.
            # Each shot apart (scene cuts): a box carried over a cut (held from the shot before, or back-filled into
            # it) scores 0, for it hides what it covers but no face of its track is there (replace drew faces on
            # the stage clip's curtain there).
            d = item.detections
            best = np.maximum(d.score, tracker.best(d.track_id, item.shot)).astype(np.float32)
            item.detections = Detections(d.xyxy, best, d.landmarks, d.track_id, d.source, d.sources)
        return item

    failed_run: int | None = None  # the frame of the detector's last run, when that run failed
    for vf, last in _with_last(frames):
        error = None
        dets = Detections.empty()
        skips = schedule.skipped
        raw = None
        try:
            # None on the frames the schedule skips (every nth frame and scene cuts run the detector)
            # where the tracks expect their faces: only crops (full_every > 1) look there
            expected = tracker.expected(vf.index) if tracker is not None and schedule.full_every > 1 else None
            raw = schedule(vf.rgb, expected, last)
            if raw is None and failed_run is not None:
                # Fail closed: where the faces are is unknown until the detector runs again, so the frames
                # a failed run stood for fail too (before, they were written with stale boxes or none).
                raise RuntimeError(f"no detection since the detector failed on frame {failed_run}")
            if options.tracking:
                if tracker is None:
                    h, w = vf.rgb.shape[:2]
                    tracker = Tracker(video_track_params(options, fps), (w, h))
                elif schedule.at_cut:
                    tracker.new_shot(vf.index)
                # A skipped frame is no miss: tracks live `hold` frames past the next detection run.
                dets = tracker.step(vf.index, raw, hold + n - 1)
            else:
                dets = raw  # the detector runs on every frame (VideoOptions.detector_every)
            if raw is not None:
                failed_run = None
        except (KeyboardInterrupt, SystemExit, MemoryError):
            raise
        except Exception as exc:
            if schedule.skipped == skips:  # this frame's detector run (or its tracking) failed
                failed_run = vf.index
            error = f"frame {vf.index}: {exc.__class__.__name__}: {exc}"
        buffer.append(TrackedFrame(vf, dets, error, raw is None, tracker.shot if tracker is not None else 0))
        while len(buffer) > ahead:
            yield emit(buffer.popleft())
    while buffer:
        yield emit(buffer.popleft())


# A face that left a box between two detector runs changes its pixels there by more than this (mean absolute
# difference of grey levels, 0-255) from one run's frame to the next; a face missed on one run, or found on the
# next, where it stood changes them less (measured on the shared clips: see docs/video.md).
MOVED_DIFF = 20.0


# A face that came to its box (or left it) between a detector run's frame and a skipped frame changed that box on that
# side more than this many times as much as on the skipped frame's other side; a face moving steadily through its box,
# or the camera's motion, changes it about as much on both sides. Reasoned, not fitted (on the shared clips the boxes
# that changed over MOVED_DIFF measured 1.1-1.7, walkers and runners, and one 12 px box 2.3: docs/video.md).
CROSS_RATIO = 2.0


def _box_diff(rgb_a: np.ndarray, rgb_b: np.ndarray, box) -> float:
    """The mean absolute difference of grey levels (0-255) in ``box`` between two frames."""
    h, w = rgb_a.shape[:2]
    x1, y1 = max(0, int(box[0])), max(0, int(box[1]))
    x2, y2 = min(w, int(np.ceil(box[2]))), min(h, int(np.ceil(box[3])))
    if x2 <= x1 or y2 <= y1:
        return 0.0
    return float(np.abs(_grey(rgb_a[y1:y2, x1:x2]) - _grey(rgb_b[y1:y2, x1:x2])).mean())


def _grey(rgb: np.ndarray) -> np.ndarray:
    """The mean of each pixel's three channels, float64: ``rgb.astype(np.int16).mean(2)``'s values to the bit (the
    sum of three bytes is exact in float64 in any order, then one division by 3), in a quarter of its CPU (numpy
    reduces a 3-long axis slowly)."""
    s = np.add(rgb[..., 0], rgb[..., 1], dtype=np.float64)
    s += rgb[..., 2]
    s /= 3
    return s


def _moved(rgb_i: np.ndarray, rgb_j: np.ndarray):
    """``Tracker.far_pairs``'s ``moved``: whether a face left ``box_a`` and another came to ``box_b`` between the
    two frames, by their pixels (both boxes changed by more than MOVED_DIFF)."""
    return lambda i, box_a, j, box_b: (_box_diff(rgb_i, rgb_j, box_a) > MOVED_DIFF
                                       and _box_diff(rgb_i, rgb_j, box_b) > MOVED_DIFF)


def _crossed(prev: VideoFrame, frame: VideoFrame, nxt: VideoFrame | None):
    """``Tracker.edge_crossings``'s ``changed``: whether a face seen in ``box`` on the run on frame ``i`` (``prev``
    or ``nxt``) came there, or left, between that frame and ``frame``: the box changed by more than MOVED_DIFF on
    that side of ``frame`` and by more than CROSS_RATIO times as much as on the other side (without ``nxt``, the
    video's end: by more than MOVED_DIFF)."""
    def changed(i: int, box) -> bool:
        if i not in (prev.index, nxt.index if nxt is not None else prev.index):
            return True
        own, other = (prev, nxt) if i == prev.index else (nxt, prev)
        d = _box_diff(own.rgb, frame.rgb, box)
        return d > MOVED_DIFF and (other is None or d > CROSS_RATIO * _box_diff(frame.rgb, other.rgb, box))

    return changed


def _between_runs(tracker, detect: Callable[[np.ndarray], Detections], frame: VideoFrame, gap: int,
                  around: tuple[VideoFrame, VideoFrame] | None, edges: bool = True) -> Detections | None:
    """The detector on a skipped frame where a face may be that moved faster than a bridge reaches
    (``Tracker.far_pairs``) or entered or left the picture that fast (``Tracker.edge_crossings``, with ``edges``):
    on crops around each (merged where they overlap), or on the whole frame when the crops would cover most of it.
    None where there is none. ``around``: the frames of the detector runs before and after this one, for the
    pixel checks; None: no check."""
    moved = _moved(around[0].rgb, around[1].rgb) if around is not None else None
    pairs = tracker.far_pairs(frame.index, gap, VIDEO_FAST_REACH, moved)
    crossed = _crossed(around[0], frame, around[1]) if around is not None else None
    edge = tracker.edge_crossings(frame.index, gap, VIDEO_FAST_REACH, crossed) if edges else []
    pairs += [(box, m) for box, m, _ in edge]
    if not pairs:
        return None
    h, w = frame.rgb.shape[:2]
    crops = []
    for (x1, y1, x2, y2), m in pairs:
        crop = (max(0, int(x1 - m)), max(0, int(y1 - m)), min(w, int(np.ceil(x2 + m))), min(h, int(np.ceil(y2 + m))))
        if crop[2] > crop[0] and crop[3] > crop[1]:
            crops.append(crop)
    crops = merge_crops(crops)
    if sum(_area(c) for c in crops) > MAX_CROP_SHARE * w * h:
        found = detect(frame.rgb)  # one full pass costs less than crops covering most of the frame
    else:
        found = detect_in_crops(detect, frame.rgb, crops)
    # A face entering or leaving the picture whose crop shows none may be cut by the picture's side there, too
    # little of it left for the detector: the boxes against the sides it reaches are hidden (held, untracked).
    found = Detections.merge([
        Detections(found.xyxy, found.score, found.landmarks, None, "track", ["detected"] * len(found)),
        _cut_boxes(edge, found.xyxy)])
    return found if len(found) else None


def _cut_boxes(edge: list, seen: np.ndarray) -> Detections:
    """``Tracker.edge_crossings``' cut boxes (held, untracked) of each crossing whose region (less its margin)
    holds none of ``seen`` (the faces the detector found there): the side may have cut that face to a sliver."""
    cut = [c for box, m, cuts in edge if not _any_in(seen, box - [m, m, -m, -m]) for c in cuts]
    return Detections(np.reshape(cut, (-1, 4)), np.zeros(len(cut)), None, None, "track", ["held"] * len(cut))


def _any_in(boxes: np.ndarray, region: np.ndarray) -> bool:
    """Whether any of ``boxes`` (Nx4 xyxy) overlaps ``region``."""
    return bool(np.any((boxes[:, 0] < region[2]) & (boxes[:, 2] > region[0]) & (boxes[:, 1] < region[3])
                       & (boxes[:, 3] > region[1])))


def _with_last(items: Iterable) -> Iterator[tuple]:
    """``(item, is_last)`` for each of ``items``: one item read ahead."""
    it = iter(items)
    for prev in it:
        for item in it:
            yield prev, False
            prev = item
        yield prev, True


def track(path: str | os.PathLike, detector: str | None = None, options: VideoOptions | None = None,
          preset: str | None = None, **detector_params) -> Iterator[tuple[np.ndarray, Detections]]:
    """Iterate ``(frame, detections)`` over a video: upright RGB frames, tracked faces with ids, each scored by
    its track's best detection so far in its shot (held and back-filled boxes too; 0 carried over a cut).

    Detection defaults to the CLI's for videos (presets.VIDEO_PRESET). A frame whose
    detection failed comes with ``detections.source == "error"`` and no boxes; treat it as
    "anything may be a face there". ``options``: a VideoOptions or a dict of its fields. Raises InputError
    when the file changes while it is read.
    """
    refuse_photo(path)
    options = as_video_options(options)
    det = resolved_detector(detector, video_preset(detector, preset), detector_params)
    with VideoSource(path) as source:  # one open file for the probe and the frames (VideoSource)
        info = probe(source)
        for item in tracked_frames(read_frames(source), det.detect, options, float(info.fps)):
            if item.error is not None:
                yield item.frame.rgb, Detections.empty("error")
            else:
                yield item.frame.rgb, item.detections
        source.check()
