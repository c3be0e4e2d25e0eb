"""Should a video's tracks end at a scene cut? What holding them across it costs and saves (issue 22, replace in video).

A scene cut forces a detector run, and the tracker goes on: the previous shot's faces are held up to 1 s on the new
shot's pixels and the new shot's faces back-filled 0.5 s into the previous shot; replace drew faces on a curtain
there (since stop 37 those boxes score 0, each shot scored apart: `Tracker.best`, and replace blurs them). This replays the video default
both ways ("ended": every track ends at a cut and none is back-filled across it, patched in here) with the default
method (blur), as bench/bench_video.py replays it, and prints per clip: leaked face-frames (a face less than 80 %
changed) and the share of pixels changed, on the labelled (a) clips of `--side` (full sizes; cuts between photos)
and on the stage clip's first `--seconds` against bench_video.py's `thorough` reference (cached like the bench's).

    PYTHONPATH=src nice python research/shot_cuts.py --side tune --seconds 10
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))

import bench_video as bv  # noqa: E402
from common import synthetic_video  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--side", default="tune", choices=["tune", "held_out"])
    ap.add_argument("--seconds", type=float, default=10.0)
    a = ap.parse_args()
    from faceveil.detect.presets import VIDEO_PRESET
    from faceveil.pipeline import Anonymizer
    from faceveil.track import Tracker
    from faceveil.video import VideoOptions

    changed, leaked = synthetic_video("changed", "leaked")
    anon = Anonymizer(preset=VIDEO_PRESET)
    sets = [(c.name, c.frames, float(bv.FPS), c.boxes) for c in bv.labelled_clips(a.side, False)]
    frames, fps = bv.shared_frames("multi_shot_stage_audience_360p.mp4", a.seconds)
    sets.append(("stage clip", frames, fps, bv.thorough_reference("multi_shot_stage_audience_360p.mp4", frames)))
    new_shot, backfill = Tracker.new_shot, Tracker.backfill

    def ending(self, index):  # every track ends at the cut
        new_shot(self, index)
        self._ended.update((tr.id, index) for tr in self.tracks)
        self.tracks = []

    def within_shot(self, index):  # no track back-filled into the shot before its own
        d = backfill(self, index)
        if not len(d) or index >= self.shot:
            return d
        born = {tr.id: tr.first_index for tr in self.recent}
        return d[np.array([born[int(t)] < self.shot for t in d.track_id])]

    for name, frames, fps, truth in sets:
        det = bv.CachedDetector(anon.detector.detect)
        row = {}
        for how in ("held across", "ended"):
            Tracker.new_shot, Tracker.backfill = (ending, within_shot) if how == "ended" else (new_shot, backfill)
            n = px = 0
            for i, src, out in bv.run_frames(frames, fps, anon, det, VideoOptions()):
                ch = changed(src, out)
                n += leaked(truth[i], ch)
                px += float(ch.mean())
            row[how] = (n, px / len(frames))
        Tracker.new_shot, Tracker.backfill = new_shot, backfill
        faces = sum(int((np.minimum(b[:, 2] - b[:, 0], b[:, 3] - b[:, 1]) >= 10).sum()) for b in truth)
        print(f"{name}: {len(frames)} frames, {faces} face-frames; "
              + ", ".join(f"{k}: leaked {v[0]}, changed {100 * v[1]:.2f} %" for k, v in row.items()), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
