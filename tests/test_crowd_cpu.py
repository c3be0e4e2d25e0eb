"""The crowd path's per-face work done for all faces at once (issue 20, CPU per video frame): the same results as
the one-face-at-a-time code it replaced, kept here as the reference, and hand-computed values."""
from __future__ import annotations

import numpy as np

from faceveil.anonymize.compositor import Compositor, RegionParams
from faceveil.detections import Detections, box_iou
from faceveil.track import Tracker, TrackParams
from faceveil.track.tracker import _to_cxcywh, _to_xyxy


def _crowd(n: int, seed: int, jitter: float = 6.0) -> tuple[np.ndarray, np.ndarray]:
    """n faces of 8-60 px on a 1280x720 frame, and the same faces a frame later, moved a little."""
    rng = np.random.default_rng(seed)
    xy = rng.uniform(0, [1220, 660], (n, 2))
    wh = rng.uniform(8, 60, (n, 2))
    a = np.concatenate([xy, xy + wh], 1)
    b = a + rng.normal(0, jitter, (n, 1)) + rng.normal(0, 1, (n, 4))
    return a, b


def _reference_match(tracker: Tracker, index: int, det_boxes: np.ndarray) -> list[tuple[int, int]]:
    """Tracker._match as it was: per-track predictions, numpy scalar indexing in the greedy loop."""
    p = tracker.params
    pred = np.stack([_to_xyxy(t.predict(index)) for t in tracker.tracks])
    iou = box_iou(pred, det_boxes)
    pc, dc = _to_cxcywh(pred), _to_cxcywh(det_boxes)
    size = np.maximum(pc[:, None, 2:].max(-1), dc[None, :, 2:].max(-1))
    dist = np.linalg.norm(pc[:, None, :2] - dc[None, :, :2], axis=-1) / np.maximum(size, 1.0)
    score = np.where(iou >= p.iou, 1.0 + iou,
                     np.where(dist <= p.max_jump, 1.0 - dist / (p.max_jump + 1e-9) * 0.999, -1.0))
    pairs, used_t, used_d = [], set(), set()
    for flat in np.argsort(-score, axis=None):
        ti, di = np.unravel_index(flat, score.shape)
        if score[ti, di] < 0:
            break
        if ti in used_t or di in used_d:
            continue
        used_t.add(ti)
        used_d.add(di)
        pairs.append((int(ti), int(di)))
    return pairs


def test_crowd_matching_equals_the_one_by_one_greedy():
    for seed, (n, m) in enumerate([(300, 300), (200, 260), (250, 120), (1, 3)]):
        a, b = _crowd(max(n, m), seed)
        tr = Tracker(TrackParams(hold=5), (1280, 720))
        tr.step(0, Detections.from_boxes(a[:n]))
        tr.step(2, Detections.from_boxes(b[:n]))  # velocities
        noise = np.random.default_rng(seed + 10).normal(0, 4, (m, 4))
        det = (2 * b[:m] - a[:m] + noise).astype(np.float32).astype(np.float64)  # moving on, a few px off
        pairs = tr._match(4, det)
        assert pairs == _reference_match(tr, 4, det)
        assert len(pairs) > 0.5 * min(n, m)  # a real crowd: most faces continue their tracks


def test_held_box_by_hand():
    """One face detected at frames 0 and 2 (moving 10 px right a frame), lost: at frame 5 its held box is the
    union of the last box, the last box moved 3 frames on and the smoothed prediction, each grown 4 % a frame."""
    tr = Tracker(TrackParams(hold=10, smoothing=0.5, grow=0.04), (1280, 720))
    tr.step(0, Detections.from_boxes([[100, 100, 140, 150]]))
    tr.step(2, Detections.from_boxes([[120, 100, 160, 150]]))
    out = tr.step(5, None)
    assert out.sources.tolist() == ["held"]
    # state after frame 2: 0.5 * detection (140, 125, 40, 50) + 0.5 * prediction (120 + 2*0, ...) -> cx 130;
    # velocity (20 px / 2 frames) = 10 px a frame; age 3, grow 1.12
    raw = [140.0, 125.0, 40.0, 50.0]
    moved = [170.0, 125.0, 40.0, 50.0]
    pred = [160.0, 125.0, 40.0, 50.0]  # state cx 130 + 10 * 3
    half = [40 * 1.12 / 2, 50 * 1.12 / 2]
    xs = [c[0] for c in (raw, moved, pred)]
    expect = [min(xs) - half[0], 125 - half[1], max(xs) + half[0], 125 + half[1]]
    assert np.allclose(out.xyxy[0], expect, atol=1e-4)
    assert np.allclose(tr.expected(5)[0], expect, atol=1e-4)


def _reference_to_dict(d: Detections, decimals, score_decimals) -> dict:
    def rnd(v, n):
        return float(v) if n is None else round(float(v), n)

    faces = []
    for i in range(len(d)):
        lm = d.landmarks[i]
        item = {"box": [rnd(v, decimals) for v in d.xyxy[i]], "score": rnd(d.score[i], score_decimals),
                "landmarks": None if np.isnan(lm).any() else [[rnd(v, decimals) for v in p] for p in lm]}
        if d.track_id[i] >= 0:
            item["track_id"] = int(d.track_id[i])
        item["source"] = str(d.sources[i])
        faces.append(item)
    return {"detector": d.source, "faces": faces}


def test_to_dict_equals_the_per_value_form():
    rng = np.random.default_rng(3)
    for n in (0, 1, 9, 400):
        lm = rng.normal(0, 500, (n, 5, 2)).astype(np.float32)
        lm[::3] = np.nan
        lm[1::7, 2, 1] = np.nan  # one NaN makes the whole face's landmarks null
        d = Detections(rng.normal(0, 500, (n, 4)), rng.random(n), lm, rng.integers(-1, 5, n), "track",
                       rng.choice(["held", "detected", "backfilled"], n))
        for dec in ((None, None), (1, 4), (2, None)):
            got, ref = d.to_dict(*dec), _reference_to_dict(d, *dec)
            assert got == ref
            assert all(type(f["box"][0]) is float for f in got["faces"])
            assert all(type(f["track_id"]) is int for f in got["faces"] if "track_id" in f)


def test_regions_landmarks_and_full_box_blend():
    """Regions take each face's landmarks as landmarks_at gives them; a box region without feather is marked
    full, and blending it writes the patch exactly as the weighted path would, and nothing outside."""
    rng = np.random.default_rng(5)
    frame = rng.integers(0, 256, (120, 160, 3), dtype=np.uint8)
    lm = rng.uniform(0, 100, (3, 5, 2)).astype(np.float32)
    lm[1] = np.nan
    d = Detections.from_boxes([[10, 10, 40, 50], [60, 20, 90, 70], [100.5, 30.2, 150.7, 90.1]], landmarks=lm)
    comp = Compositor(RegionParams(shape="box", mask_scale=1.0))
    regions = comp.regions(d, frame.shape)
    for r in regions:
        ref = d.landmarks_at(r.index)
        assert (r.landmarks is None) == (ref is None)
        if ref is not None:
            assert np.array_equal(r.landmarks, ref)
        assert r.full and (r.weight == 1).all()
        patch = np.full((r.y2 - r.y1, r.x2 - r.x1, 3), 7, np.uint8)
        out = frame.copy()
        comp.blend(out, r, patch)
        assert (out[r.slices] == 7).all()
        outside = np.ones(frame.shape[:2], bool)
        outside[r.slices] = False
        assert np.array_equal(out[outside], frame[outside])
    assert [r.x1 for r in regions] == [10, 60, 100] and regions[2].x2 == 151  # floor / ceil of the box
    assert not any(r.full for r in Compositor(RegionParams(shape="box", feather=0.1)).regions(d, frame.shape))
    assert not any(r.full for r in Compositor(RegionParams(shape="ellipse")).regions(d, frame.shape))


def _reference_rects(comp: Compositor, d: Detections, shape) -> list[tuple]:
    """Compositor.regions' rectangles as the per-face loop computed them (math.floor/ceil on each box)."""
    import math

    h, w = shape[:2]
    out = []
    for i, box in enumerate(comp.scaled_boxes(d).tolist()):
        fw, fh = box[2] - box[0], box[3] - box[1]
        if not (math.isfinite(fw) and math.isfinite(fh) and fw > 0 and fh > 0):
            continue
        margin = comp.params.feather * max(fw, fh)
        x1 = min(max(math.floor(box[0] - margin), 0), w)
        y1 = min(max(math.floor(box[1] - margin), 0), h)
        x2 = min(max(math.ceil(box[2] + margin), 0), w)
        y2 = min(max(math.ceil(box[3] + margin), 0), h)
        if x2 > x1 and y2 > y1:
            out.append((i, x1, y1, x2, y2))
    return out


def test_region_rectangles_equal_the_per_face_loop():
    rng = np.random.default_rng(11)
    boxes = np.concatenate([rng.uniform(-50, 700, (300, 2)), rng.uniform(0.2, 80, (300, 2))], 1)
    boxes[:, 2:] += boxes[:, :2]
    boxes[:4] = [[np.nan, 1, 5, 5], [1, 1, 5, np.nan], [10, 10, 10, 20], [700, 500, 720, 530]]  # skipped, off-frame
    d = Detections.from_boxes(boxes)
    for params in (RegionParams(shape="box", mask_scale=1.25), RegionParams(shape="box", feather=0.2),
                   RegionParams(shape="ellipse", mask_scale="1.3,1.4@40", feather=0.1)):
        comp = Compositor(params)
        regions = comp.regions(d, (480, 640, 3))
        assert [(r.index, r.x1, r.y1, r.x2, r.y2) for r in regions] == _reference_rects(comp, d, (480, 640))
        assert all(r.weight.shape == (r.y2 - r.y1, r.x2 - r.x1) for r in regions)
        assert all(r.full == (params.shape == "box" and params.feather == 0) for r in regions)
    assert 100 < len(regions) <= 297  # the NaN and zero-width boxes and the one below the frame are left out


def test_box_diff_grey_equals_numpy_mean():
    """video.tracking._grey (the pixel checks' grey levels) gives ``astype(int16).mean(2)``'s float64 values to the
    bit, so the checks against MOVED_DIFF and CROSS_RATIO decide as before."""
    from faceveil.video.tracking import _grey

    rng = np.random.default_rng(3)
    frame = rng.integers(0, 256, (64, 80, 3), dtype=np.uint8)
    for _ in range(200):
        y1, x1 = rng.integers(0, 60, 2)
        h, w = rng.integers(1, 40, 2)
        patch = frame[y1:y1 + h, x1:x1 + w]
        assert np.array_equal(_grey(patch), patch.astype(np.int16).mean(2))


def test_face_generators_only_for_methods_that_draw():
    """A method without ``uses_rng`` gets None per face (making a generator costs ~20 us a face), and the frame's
    stream is drawn from as before, so a caller's later draws (learnedblur's priors after its blur) are the same."""
    from faceveil.anonymize.base import face_rngs

    comp = Compositor(RegionParams())
    boxes, _ = _crowd(12, 0)
    regions = comp.regions(Detections.from_boxes(boxes), (720, 1280, 3))
    a, b = np.random.default_rng(7), np.random.default_rng(7)
    drawn = face_rngs(a, regions)
    assert face_rngs(b, regions, used=False) == [None] * len(regions)
    assert a.integers(2**62) == b.integers(2**62)  # the same state after either
    assert all(isinstance(g, np.random.Generator) for g in drawn)
