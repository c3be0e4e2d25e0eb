"""A small IoU tracker with constant-velocity hold and look-ahead back-fill.

Hand-written on purpose: Roboflow's ``trackers`` pulls in ``supervision`` and
with it opencv-python 5 (which clashes with our opencv-python-headless<5, both
install ``cv2``), and ``norfair`` pins numpy<2 and adds filterpy and rich; neither
back-fills a track over the frames before its first detection nor grows a held
box, which is what keeps a video from leaking. Faces are few per frame, so a
greedy match (scipy's Hungarian solver is not a core dependency) is enough.

Privacy rules baked in: every detection is anonymized from its first frame (no
"confirmed after k hits"), a smoothed box is never smaller than the raw
detection (their union is used), and a held box grows with the time it is held.
For videos, a detection beside a track (not overlapping it) whose size differs from
the track's by more than ``max_ratio`` starts its own track, and a held box follows its
velocity ``coast`` frames at most.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..detections import Detections, box_iou
from ..registry import param


@dataclass(frozen=True)
class TrackParams:
    hold: int = param(15, "frames a lost face stays anonymized at its predicted position")
    lookahead: int = param(0, "frames a new track is extended backwards before its first detection")
    smoothing: float = param(0.5, "box smoothing, 0 (raw boxes) .. 0.9 (heavy); the raw box is always covered")
    iou: float = param(0.1, "minimum IoU between a prediction and a detection to continue a track")
    max_jump: float = param(1.0, "else: maximum centre distance, in face sizes, to continue a track")
    grow: float = param(0.04, "a held or back-filled box grows by this fraction per frame")
    max_ratio: float = param(float("inf"), "a detection larger or smaller than a track's predicted box by more than "
                                           "this factor (in side length), matched to it by centre distance only "
                                           "(IoU under iou), does not continue it: it starts a track")
    ratio_all: bool = param(False, "max_ratio on every pair, not only on those matched by centre distance "
                                   "(IoU under iou): fewer leaks, but a face whose box changes size splits into tracks")
    coast: float = param(float("inf"), "a held box follows its track's velocity for at most this many frames, "
                                       "then stays there (and still grows)")

    def __post_init__(self):
        if self.hold < 0 or self.lookahead < 0:
            raise ValueError("hold and lookahead must be >= 0")
        if self.max_ratio < 1 or self.coast < 0:
            raise ValueError("max_ratio must be >= 1 and coast >= 0")
        if not 0 <= self.smoothing < 1:
            raise ValueError("smoothing must be in [0, 1)")


def _to_cxcywh(xyxy: np.ndarray) -> np.ndarray:
    xyxy = np.asarray(xyxy, np.float64)
    return np.concatenate([(xyxy[..., :2] + xyxy[..., 2:]) / 2, xyxy[..., 2:] - xyxy[..., :2]], axis=-1)


def _hull(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """The smallest xyxy box holding boxes ``a`` and ``b``."""
    return np.concatenate([np.minimum(a[:2], b[:2]), np.maximum(a[2:], b[2:])])


def _next_to(recent: list, index: int) -> tuple:
    """(the detection just before ``index``, the one just after it) among a track's ``recent`` (in frame order),
    None where there is none. Plain loops: called per track several times a frame (a crowd has ~1,000 tracks), where
    ``next`` over generator expressions cost 3-5x the CPU."""
    before = after = None
    for r in reversed(recent):
        if r[0] < index:
            before = r
            break
    for r in recent:
        if r[0] > index:
            after = r
            break
    return before, after


def _to_xyxy(s: np.ndarray, grow: float = 0.0) -> np.ndarray:
    half = np.maximum(s[..., 2:], 1.0) * (1.0 + grow) / 2
    return np.concatenate([s[..., :2] - half, s[..., :2] + half], axis=-1)


@dataclass
class Track:
    id: int
    state: np.ndarray  # cx, cy, w, h (smoothed)
    velocity: np.ndarray  # per frame
    last_index: int  # frame of the last detection
    last_box: np.ndarray  # the raw last detection, xyxy
    first_index: int
    first_state: np.ndarray
    landmarks: np.ndarray
    hits: int = 1
    history: list = field(default_factory=list)  # (index, cx, cy, w, h) of the first detections
    recent: list = field(default_factory=list)  # (index, raw xyxy, landmarks) of the last few detections (``between``)
    fast: tuple = (-1, 0.0)  # (frame, speed) of a detection that ended a jump too fast to bridge (``far_pairs``)

    def predict(self, index: int) -> np.ndarray:
        s = self.state + self.velocity * (index - self.last_index)
        s[2:] = np.maximum(s[2:], 1.0)
        return s

    def backward(self, index: int) -> np.ndarray:
        """Where the face probably was at ``index`` < first_index (constant velocity, backwards)."""
        v = self.birth_velocity()
        s = self.first_state + v * (index - self.first_index)
        s[2:] = np.maximum(s[2:], 1.0)
        return s

    def birth_velocity(self) -> np.ndarray:
        if len(self.history) < 2:
            return np.zeros(4)
        h = np.asarray(self.history, np.float64)
        dt = h[-1, 0] - h[0, 0]
        return (h[-1, 1:] - h[0, 1:]) / dt if dt > 0 else np.zeros(4)


def _predict_all(tracks: list[Track], index: int, coast: float = float("inf")) -> np.ndarray:
    """``Track.predict(index)`` of every track at once, Nx4 cxcywh: the same element-wise operations, so the same
    floats (a crowd has up to ~1,000 tracks a frame, and numpy calls per track on 4 numbers cost more than the
    arithmetic). ``coast``: the velocity is followed that many frames at most."""
    age = np.array([index - tr.last_index for tr in tracks], np.float64)[:, None]
    steps = np.minimum(age, coast)
    s = np.array([tr.state for tr in tracks], np.float64) + np.array([tr.velocity for tr in tracks], np.float64) * steps
    s[:, 2:] = np.maximum(s[:, 2:], 1.0)
    return s


class Tracker:
    """Feed frames in order with ``step``; get that frame's boxes with track ids.

    ``step(index, detections)``: ``detections`` is None on frames the detector
    skipped (``--detect-every``): tracks are carried without ageing on them.
    ``backfill(index)``: extra boxes for an earlier frame from tracks born within
    ``lookahead`` frames after it; ask once the frame is about to leave the buffer.
    ``best(ids, shot)``: each track's best detection score so far in a shot (held and back-filled boxes score 0 in
    ``step``); ``new_shot(index)`` tells it of a scene cut.
    """

    def __init__(self, params: TrackParams | None = None, frame_size: tuple[int, int] | None = None):
        self.params = params or TrackParams()
        self.frame_size = frame_size  # (width, height): tracks that leave it end
        self.tracks: list[Track] = []
        self.recent: list[Track] = []  # tracks born in the last `lookahead` frames
        self._next_id = 0
        # track id -> {shot: its best detection score in that shot so far}. An ended track's stays until no frame
        # that can still show it waits to be emitted (``_forget``): a video's frames leave ``lookahead`` frames
        # after they came in.
        self._best: dict[int, dict[int, float]] = {}
        self._ended: dict[int, int] = {}  # track id -> the frame it ended on
        self._shot = 0  # the frame the current shot started on (``new_shot``)
        self._pairs_key, self._pairs = None, []  # _lost_and_found's last answer

    def step(self, index: int, detections: Detections | None, hold: int | None = None) -> Detections:
        p = self.params
        hold = p.hold if hold is None else hold
        out_boxes, out_ids, out_scores, out_lms = [], [], [], []
        held: set[int] = set()  # indexes of boxes carried over a miss
        matched_tracks: set[int] = set()
        if detections is not None and len(detections):
            det_boxes = detections.xyxy.astype(np.float64)
            pairs = self._match(index, det_boxes)
            matched_dets = set()
            for ti, di in pairs:
                tr = self.tracks[ti]
                self._update(tr, index, det_boxes[di], detections.landmarks[di])
                shots = self._best[tr.id]
                shots[self._shot] = max(shots.get(self._shot, 0.0), float(detections.score[di]))
                matched_tracks.add(ti)
                matched_dets.add(di)
                out_boxes.append(self._edge_extend(self._output_box(tr, det_boxes[di]), tr))
                out_ids.append(tr.id)
                out_scores.append(detections.score[di])
                out_lms.append(detections.landmarks[di])
            for di in range(len(det_boxes)):
                if di in matched_dets:
                    continue
                tr = self._new_track(index, det_boxes[di], detections.landmarks[di])
                self._best[tr.id] = {self._shot: float(detections.score[di])}
                out_boxes.append(self._edge_extend(det_boxes[di], tr))
                out_ids.append(tr.id)
                out_scores.append(detections.score[di])
                out_lms.append(detections.landmarks[di])
        keep: list[Track] = []
        new_ids = set(out_ids)
        # the tracks missed on this frame but younger than ``hold``: their held boxes, all at once
        missed = [tr for ti, tr in enumerate(self.tracks) if not (ti in matched_tracks or tr.id in new_ids)
                  and index - tr.last_index <= hold]
        held_boxes = dict(zip((tr.id for tr in missed), self._held_boxes(missed, index)))
        for ti, tr in enumerate(self.tracks):
            if ti in matched_tracks or tr.id in new_ids:
                keep.append(tr)
                continue
            box = held_boxes.get(tr.id)
            if box is None:
                continue  # lost for good: older than hold
            if not self._visible(box):
                continue
            keep.append(tr)
            out_boxes.append(box)
            out_ids.append(tr.id)
            out_scores.append(0.0)
            out_lms.append(np.full((5, 2), np.nan, np.float32))
            held.add(len(out_boxes) - 1)
        kept_ids = {tr.id for tr in keep}
        self._ended.update((tr.id, index) for tr in self.tracks if tr.id not in kept_ids)
        self.tracks = keep
        self.recent = [t for t in self.recent if index - t.first_index <= p.lookahead]
        self._forget(index)
        if not out_boxes:
            return Detections.empty("track")
        return Detections(np.asarray(out_boxes, np.float32), np.asarray(out_scores, np.float32),
                          np.asarray(out_lms, np.float32), np.asarray(out_ids, np.int64), "track",
                          ["held" if i in held else "detected" for i in range(len(out_boxes))])

    def new_shot(self, index: int) -> None:
        """A scene cut on frame ``index`` (call before ``step(index, ...)``). Tracks go on across it (a held box
        there hides what a missed face of the new shot may be), but ``best`` counts each shot's detections apart:
        a box carried over the cut (held from the shot before, back-filled into it) has no score in its frame's
        shot."""
        self._shot = index

    @property
    def shot(self) -> int:
        """The frame the current shot started on (0 before the first cut)."""
        return self._shot

    def backfill(self, index: int) -> Detections:
        """Boxes for frame ``index`` from tracks first seen within ``lookahead`` frames after it."""
        p = self.params
        boxes, ids = [], []
        for tr in self.recent:
            gap = tr.first_index - index
            if 0 < gap <= p.lookahead:
                box = _to_xyxy(tr.backward(index), p.grow * gap)
                if self._visible(box):
                    boxes.append(box)
                    ids.append(tr.id)
        if not boxes:
            return Detections.empty("track")
        n = len(boxes)
        return Detections(np.asarray(boxes, np.float32), np.zeros(n, np.float32), None,
                          np.asarray(ids, np.int64), "track", ["backfilled"] * n)

    def best(self, ids: np.ndarray, shot: int = 0) -> np.ndarray:
        """Each track's best detection score so far in the shot that started on frame ``shot`` (float32; 0 for a
        track without a detection there): in a video, for a frame leaving the look-ahead buffer, the best its
        track scored in the frame's shot up to the newest frame tracked."""
        return np.asarray([self._best.get(int(t), {}).get(shot, 0.0) for t in ids], np.float32)

    def _forget(self, index: int) -> None:
        """Drop the best scores of tracks that ended more than ``lookahead`` + 1 frames ago: the frames that
        could still show them (held boxes up to their end) have left the look-ahead buffer."""
        old = [t for t, end in self._ended.items() if index - end > self.params.lookahead + 1]
        for t in old:
            del self._ended[t]
            self._best.pop(t, None)

    def between(self, index: int, max_gap: int) -> dict[int, np.ndarray]:
        """Track id -> the box on frame ``index`` interpolated between the track's detections just before and
        just after it (at most ``max_gap`` frames apart), for tracks detected on both sides: on a frame the
        detector skipped, once a later frame has been tracked (the look-ahead buffer holds it), the face
        lies between two detections rather than where the earlier one extrapolates."""
        return {tid: a + (b - a) * t for tid, (t, (a, b), _) in self._around(index, max_gap).items()}

    def landmarks_between(self, index: int, max_gap: int) -> dict[int, np.ndarray]:
        """Track id -> the 5x2 landmarks on frame ``index`` interpolated as ``between`` interpolates boxes, for
        tracks whose detections on both sides have landmarks."""
        return {tid: la + (lb - la) * t for tid, (t, _, (la, lb)) in self._around(index, max_gap).items()
                if not (np.isnan(la).any() or np.isnan(lb).any())}

    def _around(self, index: int, max_gap: int) -> dict:
        """Track id -> (where ``index`` lies from 0 to 1, the two boxes, the two landmark sets) of the track's
        detections just before and just after ``index``, at most ``max_gap`` frames apart."""
        out = {}
        for tr in self.tracks:
            before, after = _next_to(tr.recent, index)
            if before and after and after[0] - before[0] <= max_gap:
                (i, a, la), (j, b, lb) = before, after
                out[tr.id] = ((index - i) / (j - i), (a, b), (la, lb))
        return out

    def bridges(self, index: int, max_gap: int) -> dict[int, np.ndarray]:
        """Track id -> a box on frame ``index`` covering both a track's detection just before ``index`` and another
        track's detection just after it (at most ``max_gap`` frames apart), where the face seen on one detector run
        may have moved to the other: the first track not detected on the later run, the other not on the earlier,
        their centres at most twice the link distance (2 * ``max_jump`` face sizes a frame) apart, their sizes within
        ``max_ratio`` (a face and a body, a backpack beside it, are two things). A face too fast
        to continue its track (or one that turned) lies somewhere between: fail closed, the hull of both boxes
        (before, the skipped frame held each box where it was, and the face between them was left visible)."""
        out: dict[int, np.ndarray] = {}
        for a_id, _, box_a, _, _, box_b, speed in self._lost_and_found(index, max_gap):
            if speed <= 2 * self.params.max_jump:
                hull = _hull(box_a, box_b)
                prev = out.get(a_id, hull)
                out[a_id] = _hull(prev, hull)
        return out

    def far_pairs(self, index: int, max_gap: int, reach: float, moved=None,
                  max_lost: int = 8) -> list[tuple[np.ndarray, float]]:
        """(box, margin in pixels) on frame ``index`` where a face may be that moved faster than ``bridges``
        reaches: the hull of a lost track's detection just before ``index`` and another track's just after it (as
        in ``bridges``), their centres more than 2 * ``max_jump`` but at most ``reach`` face sizes a frame apart, a
        third of the hull around it; and on the next gap, where the detection that ended such a jump links on, around
        both its detections as far as that speed reaches (a fast face that turned back links to its last sighting
        and lies anywhere between). The hull is too coarse a guess at that speed; the video loop runs the detector
        there. ``moved(i, box_a, j, box_b)``: whether the pixels say a face left ``box_a`` and one came to ``box_b``
        between frames i and j (None: always); in a crowd most such pairs are a face missed on one run and another
        found on the next, both where they were. Where more than ``max_lost`` tracks have such a partner (a crowd
        whose faces come and go from one run to the next), none: there it would run the detector on every frame."""
        out = []
        far = [p for p in self._lost_and_found(index, max_gap) if 2 * self.params.max_jump < p[-1] <= reach]
        if len({p[0] for p in far}) > max_lost:
            far = []
        if not far and not any(tr.fast[0] >= 0 for tr in self.tracks):
            return out
        for _, i, box_a, b, j, box_b, speed in far:
            if moved is None or moved(i, box_a, j, box_b):
                hull = _hull(box_a, box_b)
                out.append((hull, float(max(hull[2:] - hull[:2])) / 3))
                b.fast = (j, max(speed, b.fast[1] if b.fast[0] == j else 0.0))
        fast = {tr.id: tr for tr in self.tracks if tr.fast[0] >= 0}
        for tid, (t, (a, b), _) in self._around(index, max_gap).items() if fast else ():
            tr = fast.get(tid)
            if tr is None:
                continue
            i = _next_to(tr.recent, index)[0][0]
            if tr.fast[0] == i:  # the detection before this gap ended a fast jump
                hull = _hull(a, b)
                size = float(max(hull[2:] - hull[:2]))
                out.append((hull, tr.fast[1] * max_gap * size))
        return out

    def edge_crossings(self, index: int, max_gap: int, reach: float, changed=None,
                       max_tracks: int = 8, run: bool = False) -> list[tuple[np.ndarray, float, list[np.ndarray]]]:
        """(box, margin in pixels, cut boxes) on frame ``index`` where a fast face may be that enters or leaves the
        picture there: a track first detected on the run just after ``index`` (it entered) or last detected on the
        run just before it and not on the next (it left), with no partner on the other run up to ``reach`` face
        sizes a frame away (``_lost_and_found``: ``bridges`` and ``far_pairs`` cover those). Its box is extended
        toward each side of the picture it could have come from or gone to (at most ``reach`` face sizes a frame
        over ``max_gap`` frames away), as far as ``reach`` goes from the box's frame to ``index``, a third of that
        around it (as ``far_pairs``). The cut boxes: the box moved against each side it reaches (a third of that
        reach along the side), where the side would cut the face; the detector does not find a sliver of one.
        ``changed(i, box)``: whether the pixels say the face came to ``box`` (or left it) between frame ``i``, its
        detection's, and ``index`` (None: always); a face missed on one run where it stood did not, nor one moving
        steadily through its box. Where more than ``max_tracks`` tracks qualify (a crowd's faces come and go),
        none.
        ``run``: ``index`` is a detector run's own frame, where a face cut to a sliver by the side was not found: a
        track first detected on the next run (within ``max_gap``) or last detected on the one before, and not on
        this one (its detections here are no crossing; no pairing: a run shows where the faces are)."""
        if self.frame_size is None:
            return []
        W, H = self.frame_size
        paired = [] if run else [(p[0], p[3].id) for p in self._lost_and_found(index, max_gap) if p[-1] <= reach]
        lost, found = {a for a, _ in paired}, {b for _, b in paired}
        ends = []  # (frame, box) of each track's detection next to ``index``
        for tr in self.tracks:
            before, after = _next_to(tr.recent, index)
            if run:
                if any(r[0] == index for r in tr.recent):
                    continue  # found on this run
                if before is None and after is not None and after[0] - index <= max_gap:
                    ends.append(after[:2])  # entered: first detected on the next run
                elif before is not None and index - before[0] <= max_gap:
                    ends.append(before[:2])  # left: detected on the run before, not on this one
            elif before is None and after is not None and after[0] - index < max_gap and tr.id not in found:
                ends.append(after[:2])  # entered: first detected on the next run
            elif (before is not None and index - before[0] < max_gap and tr.id not in lost
                  and (after is None or after[0] > before[0] + max_gap)):
                ends.append(before[:2])  # left: detected on the run before, not on the next
        ends = [(i, box) for i, box in ends if changed is None or changed(i, box)]
        if len(ends) > max_tracks:
            return []
        out = []
        for i, box in ends:
            x1, y1, x2, y2 = (float(v) for v in box)
            w, h = x2 - x1, y2 - y1
            far, step = reach * max_gap * max(w, h), reach * abs(index - i) * max(w, h)
            dist = (max(x1, 0.0), max(y1, 0.0), max(W - x2, 0.0), max(H - y2, 0.0))  # to the left, top, right, bottom
            ext = [min(d, step) if d <= far else 0.0 for d in dist]
            if max(ext) == 0:
                continue
            cuts = [np.array([[0.0, y1 - e / 3, w, y2 + e / 3], [x1 - e / 3, 0.0, x2 + e / 3, h],
                              [W - w, y1 - e / 3, W, y2 + e / 3], [x1 - e / 3, H - h, x2 + e / 3, H]][side])
                    for side, (d, e) in enumerate(zip(dist, ext)) if d <= step]
            out.append((np.array([x1 - ext[0], y1 - ext[1], x2 + ext[2], y2 + ext[3]]), max(ext) / 3, cuts))
        return out

    def _lost_and_found(self, index: int, max_gap: int) -> list:
        # bridges and far_pairs ask for the same skipped frame: the pairs are found once (a crowd has ~1,000 tracks)
        key = (index, max_gap, len(self.tracks))
        if self._pairs_key != key:
            self._pairs_key, self._pairs = key, list(self._find_lost_and_found(index, max_gap))
        return self._pairs

    def _find_lost_and_found(self, index: int, max_gap: int):
        """(lost track id, the frame and box of its detection just before ``index``, the other track, the frame
        and box of its detection just after ``index``, their centres' distance in face sizes a frame) for each pair
        of a track detected before ``index`` but not on the next run (within ``max_gap`` frames) and a track first
        detected after ``index`` (within ``max_gap`` of the first), sizes within ``max_ratio``."""
        near = {tr.id: _next_to(tr.recent, index) for tr in self.tracks}
        last = {tid: before for tid, (before, _) in near.items()}
        # The tracks a lost one may have become, each with its first detection after ``index``, as arrays: a crowd
        # has ~1,000 tracks, and a loop over pairs in Python took 150 of 170 s of a 5 s crowd clip (the marathon);
        # the same arithmetic on each pair, in the same order.
        found = [(b, near[b.id][1]) for b in self.tracks if near[b.id][1] is not None]
        if not found:
            return
        after_at = np.array([r[0] for _, r in found])
        after_box = np.array([r[1] for _, r in found], np.float64)
        cb = _to_cxcywh(after_box)
        last_at = np.array([last[b.id][0] if last[b.id] is not None else -1 for b, _ in found])
        for a in self.tracks:
            before = last[a.id]
            if before is None or any(index < r[0] <= before[0] + max_gap for r in a.recent):
                continue  # no detection before, or detected again on the next run (``between``)
            i, box_a = before[0], before[1]
            ca = _to_cxcywh(box_a)
            # first seen after ``index`` within max_gap of i, and not detected on or after i (a itself is: at i);
            # every such track at once (a crowd: ~16,000 pairs a skipped frame)
            ks = np.flatnonzero((after_at <= i + max_gap) & (last_at < i))
            cbk = cb[ks]
            size = np.maximum(np.maximum(np.maximum(np.maximum(ca[2], ca[3]), cbk[:, 2]), cbk[:, 3]), 1.0)
            ratio = (ca[2] * ca[3]) / np.maximum(cbk[:, 2] * cbk[:, 3], 1e-9)  # of areas, as in _match
            speed = np.linalg.norm(ca[:2] - cbk[:, :2], axis=1) / ((after_at[ks] - i) * size)
            ok = (self.params.max_ratio ** -2 <= ratio) & (ratio <= self.params.max_ratio ** 2)  # sizes gated
            for k, v in zip(ks[ok].tolist(), speed[ok].tolist()):
                b, (j, box_b) = found[k][0], found[k][1][:2]
                yield a.id, i, box_a, b, j, box_b, v

    def expected(self, index: int) -> np.ndarray:
        """Where each live track's face should be on frame ``index`` (as a held box would be), Kx4 xyxy:
        the video's detection schedule looks there on frames without a full pass (video/schedule.py)."""
        return self._held_boxes(self.tracks, index)

    # internals ------------------------------------------------------------------
    def _held_boxes(self, tracks: list[Track], index: int) -> np.ndarray:
        # Cover both "kept moving" and "stopped": the union of the last detection, where
        # it would be at constant velocity, and the smoothed prediction, grown with age.
        # All tracks at once (Nx4): a crowd has tens to a thousand tracks a frame, and numpy calls per track on 4
        # numbers cost more than the arithmetic; the same element-wise operations, so the same floats.
        p = self.params
        if not tracks:
            return np.zeros((0, 4), np.float64)
        age = np.array([index - tr.last_index for tr in tracks], np.float64)[:, None]
        raw = _to_cxcywh(np.array([tr.last_box for tr in tracks], np.float64))
        velocity = np.array([tr.velocity for tr in tracks], np.float64)
        # A velocity is followed `coast` frames at most: measured from two noisy boxes (or a jump to another
        # object), it carried a box across the frame over a 1 s hold (the hikers clip, docs/video.md).
        steps = np.minimum(age, p.coast)
        moved = raw + velocity * steps
        moved[:, 2:] = np.maximum(moved[:, 2:], raw[:, 2:])
        pred = _predict_all(tracks, index, p.coast)
        grow = p.grow * age
        cands = np.stack([_to_xyxy(raw, grow), _to_xyxy(moved, grow), _to_xyxy(pred, grow)])
        return np.concatenate([cands[:, :, :2].min(0), cands[:, :, 2:].max(0)], axis=1)

    def _match(self, index: int, det_boxes: np.ndarray) -> list[tuple[int, int]]:
        if not self.tracks:
            return []
        p = self.params
        pred = _to_xyxy(_predict_all(self.tracks, index))
        iou = box_iou(pred, det_boxes)
        pc, dc = _to_cxcywh(pred), _to_cxcywh(det_boxes)
        size = np.maximum(pc[:, None, 2:].max(-1), dc[None, :, 2:].max(-1))
        dist = np.linalg.norm(pc[:, None, :2] - dc[None, :, :2], axis=-1) / np.maximum(size, 1.0)
        # One score: IoU first, centre distance as the tie-breaker and fallback for small fast faces.
        score = np.where(iou >= p.iou, 1.0 + iou, np.where(dist <= p.max_jump, 1.0 - dist / (p.max_jump + 1e-9) * 0.999, -1.0))
        if p.max_ratio != float("inf"):
            # A face's box does not jump to a box beside it of another size between two detector runs: such a pair
            # is two objects (a small face's track and a body, a backpack, a face behind it), and continuing the
            # track gave it a size and position velocity that a long hold extrapolated into boxes of 200-500 px.
            # Overlapping pairs (IoU >= iou) continue whatever their sizes (ratio_all: those too; docs/video.md).
            # (only the candidate pairs: a crowd's matrix is ~1,000 x 1,000 and nearly all of it already negative)
            cand = score >= 0 if p.ratio_all else (score >= 0) & (iou < p.iou)  # by default: matched by distance
            ti, di = np.nonzero(cand)
            ratio = (pc[ti, 2] * pc[ti, 3]) / np.maximum(dc[di, 2] * dc[di, 3], 1e-9)  # of areas: side ratio squared
            far = (ratio > p.max_ratio ** 2) | (ratio * p.max_ratio ** 2 < 1)
            score[ti[far], di[far]] = -1.0
        pairs = []
        used_t, used_d = set(), set()
        order = np.argsort(-score, axis=None)
        # Greedy, best score first, in plain Python numbers: a crowd has ~1,000 tracks and boxes, and numpy's
        # scalar indexing per candidate cost more than the rest. Only the pairs before the first negative score
        # can match (NaN sorts last, and counts here as in the sorted order).
        m = int(np.count_nonzero(~(score < 0)))
        cols = score.shape[1]
        for flat, value in zip(order[:m].tolist(), score.ravel()[order[:m]].tolist()):
            if value < 0:
                break
            ti, di = divmod(flat, cols)
            if ti in used_t or di in used_d:
                continue
            used_t.add(ti)
            used_d.add(di)
            pairs.append((ti, di))
            if len(used_t) == score.shape[0] or len(used_d) == cols:
                break  # nothing left to pair
        return pairs

    def _update(self, tr: Track, index: int, box: np.ndarray, landmarks: np.ndarray) -> None:
        a = 1.0 - self.params.smoothing
        gap = max(index - tr.last_index, 1)
        det = _to_cxcywh(box)
        pred = tr.predict(index)
        measured = (det - _to_cxcywh(tr.last_box)) / gap
        tr.velocity = measured if tr.hits == 1 else 0.5 * measured + 0.5 * tr.velocity
        tr.state = a * det + (1 - a) * pred
        tr.last_index = index
        tr.last_box = box.copy()
        tr.landmarks = landmarks
        tr.hits += 1
        tr.recent = [*tr.recent[-15:], (index, box.copy(), np.asarray(landmarks, np.float64))]
        if len(tr.history) < 6:
            tr.history.append((index, *det))

    def _output_box(self, tr: Track, det_box: np.ndarray) -> np.ndarray:
        smooth = _to_xyxy(tr.state)
        # Union: smoothing may steady the region but never uncover part of the detection.
        return _hull(smooth, det_box)

    def _edge_extend(self, box: np.ndarray, tr: Track) -> np.ndarray:
        """A face cut by the frame edge: extend its box past that edge to a whole face's size.

        The detector sees only the visible part, and a region drawn in that part
        (an ellipse) misses the corners along the edge; the track's earlier size,
        or a face's usual 4:5 shape, says how far the face reaches.
        """
        if self.frame_size is None:
            return box
        W, H = self.frame_size
        x1, y1, x2, y2 = (float(v) for v in box)
        w, h = x2 - x1, y2 - y1
        tw, th = (float(v) for v in np.maximum(tr.state[2:], 1.0))
        full_w, full_h = max(w, tw, 0.8 * h), max(h, th, 1.25 * w)
        edge = 2.0
        if x1 <= edge and x2 < W - edge:
            x1 = x2 - full_w
        elif x2 >= W - edge and x1 > edge:
            x2 = x1 + full_w
        if y1 <= edge and y2 < H - edge:
            y1 = y2 - full_h
        elif y2 >= H - edge and y1 > edge:
            y2 = y1 + full_h
        return np.array([x1, y1, x2, y2])

    def _new_track(self, index: int, box: np.ndarray, landmarks: np.ndarray) -> Track:
        s = _to_cxcywh(box)
        tr = Track(self._next_id, s.copy(), np.zeros(4), index, box.copy(), index, s.copy(), landmarks,
                   history=[(index, *s)], recent=[(index, box.copy(), np.asarray(landmarks, np.float64))])
        self._next_id += 1
        self.tracks.append(tr)
        if self.params.lookahead:
            self.recent.append(tr)
        return tr

    def _visible(self, box: np.ndarray) -> bool:
        if self.frame_size is None:
            return True
        w, h = self.frame_size
        return box[2] > 0 and box[3] > 0 and box[0] < w and box[1] < h

