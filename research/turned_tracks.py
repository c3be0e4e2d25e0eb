"""How often does a video's replaced face switch between a blur and a new face along its track? (issue 22, stop 37)

A face whose landmarks do not fit (a profile) is blurred; its frames without landmarks (skipped by the detector,
back-filled) had no landmarks to judge, and were drawn from the box, a frontal face. Per track of the video default
on the shared clips, replace's draw on each frame is logged (blur or a face; weak tracks, blurred by `min_score`
before any draw, are left out) and this prints: tracked face-frames drawn, blurred, the switches between the two
along tracks, and the frames whose face was drawn from the box while the track's last detection was a profile.
Run it in two checkouts to compare (PYTHONPATH=the checkout's src).

    PYTHONPATH=src nice python research/turned_tracks.py --seconds 10
"""
from __future__ import annotations

import argparse
from collections import defaultdict
from pathlib import Path

import numpy as np

VIDEOS = Path(__file__).resolve().parents[2] / "shared" / "data" / "videos"
CLIPS = ("multi_shot_stage_audience_360p.mp4", "talking_head_speech_844.mp4", "group_hikers_640x480_ccby.mp4")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=10.0)
    a = ap.parse_args()
    from faceveil.anonymize.bank import plausible
    from faceveil.detect.presets import VIDEO_PRESET
    from faceveil.io.video import probe, read_frames
    from faceveil.pipeline import Anonymizer
    from faceveil.video import VideoOptions, tracked_frames

    for clip in CLIPS:
        an = Anonymizer(method="replace", preset=VIDEO_PRESET)
        m = an.method
        log: dict[int, list[tuple[int, bool]]] = defaultdict(list)  # track -> (frame, blurred)
        turned: dict[int, bool] = {}  # track -> its last detection's landmarks did not fit (a profile)
        from_box_turned = 0
        current = {}
        draw = m._draw_face

        def logged(frame, region, box, seed, track=-1, others=None):
            nonlocal from_box_turned
            before = dict(m.counts)
            out = draw(frame, region, box, seed, track, others)
            kind = [k for k, v in m.counts.items() if v != before.get(k, 0)]
            if track >= 0:
                lm = region.landmarks
                if region.source == "detected" and lm is not None and np.isfinite(lm).all():
                    turned[track] = not plausible(lm, box)
                log[track].append((current["i"], kind == ["blurred"]))
                from_box_turned += kind == ["estimated"] and turned.get(track, False)
            return out

        m._draw_face = logged
        fps = float(probe(VIDEOS / clip).fps)
        frames = (f for f in read_frames(VIDEOS / clip) if f.index < a.seconds * fps)
        for it in tracked_frames(frames, an.detector.detect, VideoOptions(), fps):
            current["i"] = it.frame.index
            an.anonymize(it.frame.rgb, it.detections, an.rng_for(f"x#{it.frame.index}"))
        drawn = sum(len(v) for v in log.values())
        blurred = sum(b for v in log.values() for _, b in v)
        switches = sum(sum(x[1] != y[1] for x, y in zip(v, v[1:])) for v in log.values())
        print(f"{clip}: {drawn} tracked face-frames drawn, {blurred} blurred, {switches} switches between a blur and "
              f"a face along {len(log)} tracks; drawn from the box while the track was in profile: {from_box_turned}",
              flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
