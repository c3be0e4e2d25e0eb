"""The video default's tracker on the two patterns that blurred whole bodies on the hikers clip (docs/video.md,
"False positives held by tracking"): a small face's track continued by a box several times its size (a body, a
backpack), and a held box following a velocity over the whole 1 s hold (now 0.5 s at most). Synthetic detections, no network."""
from __future__ import annotations

import numpy as np
import pytest

from faceveil.detections import Detections
from faceveil.track import Tracker, TrackParams
from faceveil.video import VideoOptions
from faceveil.video.tracking import video_track_params

FPS = 30.0


def _video_tracker() -> tuple[Tracker, int]:
    """The video default's tracker (detector on every 2nd frame) and the hold it is stepped with."""
    opts = VideoOptions()
    return Tracker(video_track_params(opts, FPS), (640, 480)), opts.frames_held(FPS) + opts.detect_every - 1


def _run(tracker: Tracker, hold: int, dets: dict[int, list], frames: int) -> list[Detections]:
    """Steps like the video loop: the detector on even frames (its boxes, or none), skipped on odd ones."""
    out = []
    for i in range(frames):
        raw = Detections.from_boxes(dets[i], score=[0.3] * len(dets[i])) if i in dets else (
            Detections.empty() if i % 2 == 0 else None)
        out.append(tracker.step(i, raw, hold))
    return out


def test_a_box_far_larger_than_the_track_starts_its_own_and_held_boxes_stay_face_sized():
    t, hold = _video_tracker()
    small = [[100, 100, 112, 114]]  # a 12 px face, far away
    dets = {0: small, 2: small, 4: small, 6: [[112, 96, 182, 176]]}  # then one 70 px box beside it (a body)
    out = _run(t, hold, dets, 6 + hold + 1)
    first, jump = out[4], out[6]
    small_id = int(first.track_id[0])
    big = [k for k, s in enumerate(jump.sources) if s == "detected"]
    assert len(big) == 1 and int(jump.track_id[big[0]]) != small_id  # not the small face's track
    held = [d.xyxy[k] for d in out[7:] for k, s in enumerate(d.sources) if s == "held"]
    assert held
    sides = np.array([[b[2] - b[0], b[3] - b[1]] for b in held])
    # the 70 px box held ~1 s grows to ~2.2x; before, the pair's size and position velocity made boxes of 400+ px
    assert sides.max() < 200, sides.max()
    small_held = [d.xyxy[list(d.track_id).index(small_id)] for d in out[7:] if small_id in d.track_id]
    assert small_held and max(b[2] - b[0] for b in small_held) < 40  # the small face stays held, face-sized


def test_a_held_box_follows_its_velocity_half_a_second_then_stays():
    t, hold = _video_tracker()
    dets = {i: [[100 + 4 * i, 200, 130 + 4 * i, 236]] for i in range(0, 12, 2)}  # 4 px a frame to the right
    out = _run(t, hold, dets, 10 + hold + 1)
    last_x2 = 130 + 4 * 10
    coast = video_track_params(VideoOptions(), FPS).coast
    assert 1 <= coast <= 20
    right = max(float(d.xyxy[0, 2]) for d in out[11:] if len(d))
    # it keeps moving with the face for `coast` frames (covers a face that walks on) ...
    assert right >= last_x2 + 4 * coast
    # ... and no further: the rest of the hold it only grows (before: 4 px x 31 frames to the right, plus growth)
    assert right <= last_x2 + 4 * coast + 30 * 0.04 * (hold + 1) / 2 + 5, right


def test_params_are_checked():
    with pytest.raises(ValueError):
        TrackParams(max_ratio=0.9)
    with pytest.raises(ValueError):
        TrackParams(coast=-1)


@pytest.mark.slow
def test_hikers_clip_hides_less_around_its_faces():
    """The first 60 frames of the hikers clip with the video default (detector and tracking): the share of the
    frame changed. Held boxes of tracks continued by bodies and carried by noisy velocities hid 23.2 % of it
    before (research/hikers.py: 18.2 % away from every `thorough` face box, enlarged 1.5x); 20.0 % now (coasting
    0.5 s; 18.1 % with 0.25 s, which leaked more on the whole clip). The away share needs thorough's reference, too
    slow for a test; the changed share moves with it here."""
    from conftest import shared_path
    from faceveil.io.video import probe, read_frames
    from faceveil.pipeline import Anonymizer
    from faceveil.video import tracked_frames

    path = shared_path("videos", "group_hikers_640x480_ccby.mp4")
    an = Anonymizer(preset="video")

    def frames():
        for k, f in enumerate(read_frames(path)):
            if k == 60:
                return
            yield f

    shares = []
    for item in tracked_frames(frames(), an.detector.detect, VideoOptions(), float(probe(path).fps)):
        out = an.anonymize(item.frame.rgb, item.detections, an.rng_for(str(item.frame.index)))
        shares.append(float((np.abs(out.astype(np.int16) - item.frame.rgb.astype(np.int16)) > 3).any(2).mean()))
    assert len(shares) == 60
    assert np.mean(shares) < 0.215, np.mean(shares)
