"""--keep-people in video: one decision per track, made before any frame is written.

Two passes (the simplest correct way: a track's decision needs the whole track, and a look-ahead
buffer as long as the longest track would hold the whole video): the first decodes, detects and
tracks every frame, keeps only each frame's boxes (no pixels), and describes the detected faces of
each track on every 5th detection until one matches a person, then on every detection until one does
not; it then decides each track. The second decodes again and hands each frame its boxes from the
first pass, less the kept tracks'. Cost: one more decode of the video and the descriptors; detection
runs once. The boxes wait between the passes on disk (``PlanLog``), not in memory.

A track is decided apart in each shot, and kept only from its first detection that matched a person
through the unbroken run of detections after it that each matched that person, with the frames between
them (``keep_span``): at least ``TRACK_MIN_FRAMES`` of them, the median distance of its best frames
under the threshold, none nearer to anybody else; everything else (too small, blurred, profile, too
short, ambiguous, another face after a cut or a swap, a box without a track id) is hidden. Regions
(--keep-region, --only-region) are applied per frame, at its time.
"""
from __future__ import annotations

import contextlib
import json
import struct
import tempfile
from pathlib import Path
from typing import Callable, Iterable, Iterator

import numpy as np

from ..detections import _SOURCE_DTYPE, Detections
from ..errors import FaceveilError
from ..io.video import VideoFrame
from ..people import TRACK_MIN_FRAMES, TRACK_SAMPLES, KeepPolicy, match
from .options import VideoOptions
from .record import temp_write_failed
from .tracking import TrackedFrame, tracked_frames


class PlanLog:
    """The first pass's boxes, one entry per frame (its index, ``Detections`` and error), in frame order, in an
    unnamed temporary file in ``folder`` (the output's, as ``record.FrameLog``), read back in that order by the
    second pass. Held in memory to the second pass they grew with the video (48 faces a frame: 5.7 MB per 1,000
    frames, ~620 MB an hour at 30 fps). The arrays go as their bytes: the second pass gets the very boxes, scores,
    landmarks (NaN included), track ids and sources the first pass found."""

    _HEAD = struct.Struct("<qqI")  # frame index, boxes, bytes of the JSON [error, source]
    _ARRAYS = (("xyxy", "<f4", (4,)), ("score", "<f4", ()), ("landmarks", "<f4", (5, 2)), ("track_id", "<i8", ()),
               ("sources", _SOURCE_DTYPE, ()))

    def __init__(self, folder: Path, source: Path):
        self.folder, self.source, self.frames, self._file = Path(folder), source, 0, None  # source: the video

    def append(self, index: int, dets: Detections, error: str | None) -> None:
        try:
            if self._file is None:  # the folder atomic_path makes for the video a moment later (VideoWriter)
                self.folder.mkdir(parents=True, exist_ok=True)
                self._file = tempfile.TemporaryFile(dir=self.folder)  # gone when closed or the process ends
            meta = json.dumps([error, dets.source]).encode()
            self._file.write(self._HEAD.pack(index, len(dets), len(meta)) + meta)
            for name, dtype, _ in self._ARRAYS:
                self._file.write(np.ascontiguousarray(getattr(dets, name), dtype).tobytes())
        except OSError as exc:
            raise self._failed(exc) from None
        self.frames += 1

    def _failed(self, exc: OSError) -> FaceveilError:
        """A write of the plan refused (a full disk) as the one line that says so (record.temp_write_failed)."""
        return temp_write_failed(self.source, "the --keep-people plan", self.folder, exc)

    def __len__(self) -> int:
        return self.frames

    def __iter__(self) -> Iterator[tuple[int, Detections, str | None]]:
        """(frame index, its boxes, its error) of each frame, in the order appended."""
        if self._file is None:
            return
        try:
            self._file.flush()
        except OSError as exc:
            raise self._failed(exc) from None
        self._file.seek(0)
        for _ in range(self.frames):
            index, n, size = self._HEAD.unpack(self._file.read(self._HEAD.size))
            error, source = json.loads(self._file.read(size))
            arrays = []
            for _, dtype, shape in self._ARRAYS:
                dt = np.dtype(dtype)
                # a writable copy, as the first pass's arrays were
                arrays.append(np.frombuffer(bytearray(self._file.read(n * dt.itemsize * int(np.prod(shape)))),
                                            dt).reshape(n, *shape))
            xyxy, score, landmarks, track_id, sources = arrays
            yield index, Detections(xyxy, score, landmarks, track_id, source, sources), error

    def close(self) -> None:
        if self._file is not None:
            with contextlib.suppress(OSError):  # its last writes, of no use now, fail again on a full disk: said once
                self._file.close()
            self._file = None


def plan_tracks(frames: Iterable[VideoFrame], detect: Callable, options: VideoOptions, fps: float,
                policy: KeepPolicy, folder: Path, source: Path) -> tuple[PlanLog, dict[int, dict]]:
    """First pass: every frame's boxes (a ``PlanLog`` in ``folder``, in frame order; ``source``: the video, named in
    its errors) and the kept tracks (track id -> record, its kept frames in ``spans``). A track is decided apart in
    each shot (scene cuts); ``keep_span`` says on which frames.

    A track's detections are described on every ``fps / 5``-th one until one matches a person, then every one
    until one does not (only that run can be kept: a frame is kept only where the face on it was described)."""
    plan = PlanLog(folder, source)
    try:
        kept = _plan(frames, detect, options, fps, policy, plan)
    except BaseException:
        plan.close()
        raise
    return plan, kept


def _plan(frames: Iterable[VideoFrame], detect: Callable, options: VideoOptions, fps: float, policy: KeepPolicy,
          plan: PlanLog) -> dict[int, dict]:
    """``plan_tracks``'s pass: the boxes into ``plan``, the kept tracks returned."""
    # Only what the decisions need, not a list per track of every frame it was detected on and every row
    # described (a crowd of 48 strangers: ~1.1 KB a frame, ~120 MB an hour at 30 fps): the rows from the row that
    # starts a track's run, where every detection is described (keep_span reads no row, and no detection, before
    # the run's first match), and before that a count (the describing step).
    detected: dict[tuple, int] = {}  # (track id, shot) -> its detections so far
    rows: dict[tuple, list[tuple[int, np.ndarray]]] = {}  # (track id, shot) -> (frame, distance row) of its run
    run: dict[tuple, int | None] = {}  # (track id, shot) -> the person its run matches (None: run over)
    step = max(1, int(round(fps / 5)))
    people = policy.people

    for item in tracked_frames(frames, detect, options, fps):
        plan.append(item.frame.index, item.detections, item.error)
        dets = item.detections
        if people is None or item.error is not None:
            continue
        todo = []
        for i, (tid, src) in enumerate(zip(dets.track_id, dets.sources)):
            key = (int(tid), item.shot)
            if key[0] < 0 or src != "detected":
                continue
            detected[key] = detected.get(key, 0) + 1
            if key in run and run[key] is not None or key not in run and (detected[key] - 1) % step == 0:
                todo.append(i)
        if not todo:
            continue
        desc, _ = policy.describe_faces(item.frame.rgb, dets[np.asarray(todo)])
        for i, d in zip(todo, people.distances(desc)):  # NaN rows (not describable) end a run, as a mismatch does
            key = (int(dets.track_id[i]), item.shot)
            m = match(d, policy.threshold, policy.margin)
            if key not in run and m is not None:
                run[key] = m[0]
            elif key in run and (m is None or m[0] != run[key]):
                run[key] = None
            # in the order first described (the kept tracks' order: the record's and the result's); a row before
            # the run matched nobody, and so cannot be in it
            got = rows.setdefault(key, [])
            if key in run:
                got.append((item.frame.index, d))
    kept: dict[int, dict] = {}
    for key, r in rows.items():
        # the run's detections were all described (its rows' frames); the one after it ends it, as its row does
        decision = keep_span(r, [f for f, _ in r], policy)
        if decision is not None:
            (p, dist, n), span = decision
            rec = kept.setdefault(key[0], {"track": key[0], "by": "person", "name": people.names[p],
                                           "distance": round(dist, 4), "described_frames": n, "spans": []})
            if rec["name"] == people.names[p]:  # a track kept as two people in two shots: the first only
                rec["spans"].append(span)
    return kept


def keep_span(rows: list[tuple[int, np.ndarray]], detected: list[int], policy: KeepPolicy,
              ) -> tuple[tuple[int, float, int], list[int]] | None:
    """((person, distance, frames described), [first, last] frame kept) for a track in one shot, or None (hidden).

    A frame is kept only where the face on it was described and matched: from the first detection that matched a
    person through the detections after it as long as each one was described and matched that person (a detection
    not described, not describable, or matching nobody or another person ends the keep: that face may be somebody
    else). The frames between two kept detections are kept; those before the first and after the last are not.
    ``decide_track`` decides on the kept detections' rows."""
    matched = {f: m[0] for f, r in rows if (m := match(r, policy.threshold, policy.margin)) is not None}
    first = min(matched, default=None)
    if first is None:
        return None
    p, last = matched[first], first
    for f in (f for f in sorted(detected) if f > first):
        if matched.get(f) != p:
            break
        last = f
    inside = [r for f, r in rows if first <= f <= last]
    decision = decide_track(np.asarray(inside), policy)
    if decision is None:
        return None
    return (decision[0], decision[1], len(inside)), [first, last]


def decide_track(rows: np.ndarray, policy: KeepPolicy) -> tuple[int, float] | None:
    """(person, median distance of the best frames) for a track's distance rows, or None (hidden)."""
    if len(rows) < TRACK_MIN_FRAMES:
        return None
    matches = [match(r, policy.threshold, policy.margin) for r in rows]
    who = {m[0] for m in matches if m is not None}
    if len(who) != 1:
        return None  # nobody, or two people: hidden
    p = who.pop()
    if sum(m is not None for m in matches) < TRACK_MIN_FRAMES:
        return None
    # no frame of it nearer to somebody else than to p
    if len(policy.people.names) > 1 and (np.argmin(rows, axis=1) != p).any():
        return None
    best = np.sort(rows[:, p])[:max(TRACK_MIN_FRAMES, min(TRACK_SAMPLES, len(rows)) // 2)]
    med = float(np.median(best))
    return (p, med) if med <= policy.threshold else None


def replay(frames: Iterable[VideoFrame], plan: Iterable[tuple[int, Detections, str | None]], kept: dict[int, dict],
           policy: KeepPolicy, log: list) -> Iterator[TrackedFrame]:
    """Second pass: each frame with the boxes to hide; ``log`` gets the per-frame kept records. ``plan``: the
    first pass's (frame index, boxes, error), in frame order (a ``PlanLog``), read along with the frames."""
    entries = iter(plan)
    entry = next(entries, None)
    for vf in frames:
        while entry is not None and entry[0] < vf.index:  # a frame the second decode skips: its boxes unused
            entry = next(entries, None)
        if entry is None or entry[0] != vf.index:  # the second decode must see the frames the first saw
            raise FaceveilError(f"frame {vf.index} was not seen by the first pass (the video decodes differently)")
        _, dets, error = entry
        entry = next(entries, None)
        yield split_frame(TrackedFrame(vf, dets, error), kept, policy, log)


def split_frame(item: TrackedFrame, kept: dict[int, dict], policy: KeepPolicy, log: list) -> TrackedFrame:
    """The frame with the boxes to hide: kept tracks' and kept regions' boxes taken out."""
    dets, vf = item.detections, item.frame
    if item.error is not None or not len(dets):
        return item
    h, w = vf.rgb.shape[:2]
    reasons = policy.by_region(dets, w, h, vf.time)
    # a kept track's box only on the frames its record's spans give (none: hidden)
    by_track = np.asarray([any(a <= vf.index <= b for a, b in kept.get(int(t), {}).get("spans", ()))
                           for t in dets.track_id], bool)
    hide = np.asarray([r is None for r in reasons]) & ~by_track
    if (~hide).any():
        log.append({"frame": vf.index, "kept": [
            {"box": [round(float(v), 1) for v in dets.xyxy[i]],
             **(kept[int(dets.track_id[i])] if by_track[i] else reasons[i])}
            for i in np.flatnonzero(~hide)], "track_ids": [int(dets.track_id[i]) for i in np.flatnonzero(~hide)]})
    return TrackedFrame(vf, dets[hide], item.error)


def split_as_recorded(item: TrackedFrame, boxes: list, tracks: dict[int, dict], log: list,
                      hide_tracks: frozenset = frozenset()) -> TrackedFrame:
    """The review's Apply: a box is kept only when it is (IoU >= 0.9) a box the run kept on this frame
    (the record's ``kept``); the run is redone deterministically, so the same boxes come back, and
    anything else (another box, a changed detection) is hidden. A box of a track in ``hide_tracks``
    (the reviewer hid the whole track) is hidden whatever it matches."""
    from ..detections import box_iou

    dets = item.detections
    if item.error is not None or not len(dets) or not boxes:
        return item
    ok = box_iou(dets.xyxy, np.asarray(boxes, np.float32).reshape(-1, 4)).max(axis=1) >= 0.9
    if hide_tracks:
        ok &= ~np.isin(dets.track_id, np.asarray(sorted(hide_tracks), np.int64))
    if ok.any():
        log.append({"frame": item.frame.index, "kept": [
            {"box": [round(float(v), 1) for v in dets.xyxy[i]],
             **(tracks.get(int(dets.track_id[i])) or {"by": "run"})} for i in np.flatnonzero(ok)],
            "track_ids": [int(dets.track_id[i]) for i in np.flatnonzero(ok)]})
    return TrackedFrame(item.frame, dets[~ok], item.error)


def recorded_splitter(keep_record: dict, log: list) -> tuple[dict[int, dict], Callable[[TrackedFrame], TrackedFrame]]:
    """The review's Apply from the ``kept`` part of a track record (possibly edited by the review: see
    ``flip_tracks``): the kept tracks (id -> whom) and the per-frame split (``split_as_recorded``)."""
    tracks = {int(t["track"]): {k: v for k, v in t.items() if k != "frames"}
              for t in keep_record.get("tracks", []) if isinstance(t, dict) and "track" in t}
    boxes = keep_record.get("frames", {}) if isinstance(keep_record.get("frames"), dict) else {}
    hide = frozenset(int(t) for t in keep_record.get("hide_tracks", []))

    def split(item: TrackedFrame) -> TrackedFrame:
        return split_as_recorded(item, boxes.get(str(item.frame.index), []), tracks, log, hide)

    return tracks, split


def track_boxes(record: dict) -> tuple[dict[int, dict[int, list]], dict[int, dict[int, list]]]:
    """Per track id, per frame: its boxes the run hid (``record["frames"]``, one Detections per frame) and
    the boxes it kept (``record["kept"]["frames"]`` with their ``frame_tracks``)."""
    hidden: dict[int, dict[int, list]] = {}
    for i, dets in enumerate(record.get("frames", [])):
        for box, tid in zip(dets.xyxy.tolist(), dets.track_id.tolist()):
            if tid >= 0:
                hidden.setdefault(int(tid), {}).setdefault(i, []).append([round(v, 1) for v in box])
    kept: dict[int, dict[int, list]] = {}
    k = record.get("kept") if isinstance(record.get("kept"), dict) else {}
    frames, ids = k.get("frames") or {}, k.get("frame_tracks") or {}
    for i, boxes in frames.items():
        for box, tid in zip(boxes, ids.get(i, [])):
            if isinstance(tid, int) and tid >= 0:
                kept.setdefault(tid, {}).setdefault(int(i), []).append(box)
    return hidden, kept


def flip_tracks(record: dict, ids: list[int]) -> dict:
    """The ``kept`` part of ``record`` with each track in ``ids`` flipped whole: a track the run kept on any
    frame is hidden on every frame (its kept boxes dropped, and whatever box of it the redone run finds is
    hidden by its id); a track it hid everywhere is kept on every frame (each of its recorded boxes added
    to the kept ones, and recorded as kept by the reviewer). Raises ValueError for an unknown track."""
    hidden, kept = track_boxes(record)
    k = record.get("kept") if isinstance(record.get("kept"), dict) else {}
    kept_ids = set(kept) | {int(t["track"]) for t in k.get("tracks", []) if isinstance(t, dict) and "track" in t}
    frames = {i: list(b) for i, b in (k.get("frames") or {}).items()}
    frame_tracks = {i: list(t) for i, t in (k.get("frame_tracks") or {}).items()}
    tracks = [t for t in k.get("tracks", []) if isinstance(t, dict)]
    hide = {int(t) for t in k.get("hide_tracks", [])}
    for tid in ids:
        if not isinstance(tid, int) or isinstance(tid, bool) or (tid not in kept_ids and tid not in hidden):
            raise ValueError(f"no track #{tid} in the record")
        if tid in kept_ids:  # kept (on some frames at least): hidden on every frame
            hide.add(tid)
            tracks = [t for t in tracks if t.get("track") != tid]
            for i in list(frames):
                ft = frame_tracks.get(i, [])
                keep = [j for j in range(len(frames[i])) if j >= len(ft) or ft[j] != tid]
                frames[i] = [frames[i][j] for j in keep]
                frame_tracks[i] = [ft[j] for j in keep if j < len(ft)]
        else:  # hidden on every frame: kept on every frame
            hide.discard(tid)
            tracks.append({"track": tid, "by": "review"})
            for i, boxes in hidden[tid].items():
                frames.setdefault(str(i), []).extend(boxes)
                frame_tracks.setdefault(str(i), []).extend([tid] * len(boxes))
    return {**k, "tracks": tracks, "frames": frames, "frame_tracks": frame_tracks, "hide_tracks": sorted(hide)}
