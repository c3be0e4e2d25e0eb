"""Can a second look tell a weak video detection that is a face from one that is a texture (issue 20, video looks)?

The video default holds every track 1 s and grows its box; on the hikers clip a fifth of each frame ends up hidden,
in blocks of trees, mostly from tracks with one weak detection. Holding weak tracks less leaks more (docs/video.md):
many of them are faces. A second opinion on each weak detection could keep the hold for those and drop it for the
rest. Per weak detection of the video preset (score under --weak, on the frames its schedule detects: every 2nd),
this runs CenterFace (fp32) again on a crop around the box, enlarged so the box measures --px pixels (never shrunk
below the frame's own size for small boxes, at most --max-zoom), and takes the best score of a candidate overlapping
the box (IoU >= 0.3). A detection is a *face* when a `thorough` reference box on that frame overlaps it (IoU >= 0.3),
else a *texture*. Prints, per clip and in all, the faces and textures, and for a few confirm cuts the share of faces
the second look confirms and of textures it rejects.

  python research/weak_confirm.py --clips hikers,marathon,stage --seconds 3
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))

import bench_video as bv  # noqa: E402

CLIPS = {"hikers": "group_hikers_640x480_ccby.mp4", "marathon": "crowd_marathon_960x540_pd.mkv",
         "stage": "multi_shot_stage_audience_360p.mp4", "head": "talking_head_speech_844.mp4"}
CUTS = (0.1, 0.2, 0.3, 0.4, 0.5)


def second_look(cf, frame: np.ndarray, box: np.ndarray, px: float, max_zoom: float, context: float) -> float:
    """The best CenterFace score overlapping ``box`` on a crop ``context`` x its size a side, resized so the box
    measures ``px`` (zoom between 1 and ``max_zoom``)."""
    import cv2

    from faceveil.detections import box_iou

    h, w = frame.shape[:2]
    size = float(np.sqrt(max((box[2] - box[0]) * (box[3] - box[1]), 1.0)))
    c = (box[:2] + box[2:]) / 2
    half = max(context * size, 32.0) / 2
    x1, y1 = int(max(c[0] - half, 0)), int(max(c[1] - half, 0))
    x2, y2 = int(min(c[0] + half, w)), int(min(c[1] + half, h))
    if x2 - x1 < 8 or y2 - y1 < 8:
        return 0.0
    zoom = float(np.clip(px / size, 1.0, max_zoom))
    crop = cv2.resize(frame[y1:y2, x1:x2], (round((x2 - x1) * zoom), round((y2 - y1) * zoom)),
                      interpolation=cv2.INTER_LINEAR)
    d = cf.detect_raw(np.ascontiguousarray(crop), 0.01)
    if not len(d):
        return 0.0
    d = d.scaled(1.0 / zoom).translated(x1, y1)
    iou = box_iou(box[None].astype(np.float64), d.xyxy.astype(np.float64))[0]
    ok = iou >= 0.3
    return float(d.score[ok].max()) if ok.any() else 0.0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--clips", default="hikers,marathon,stage")
    ap.add_argument("--seconds", type=float, default=3.0)
    ap.add_argument("--weak", type=float, default=0.3, help="detections under this score are weak")
    ap.add_argument("--px", type=float, default=40.0, help="the box's size in the second look")
    ap.add_argument("--max-zoom", type=float, default=3.0)
    ap.add_argument("--context", type=float, default=4.0, help="crop side in box sizes")
    args = ap.parse_args()
    from faceveil.api import resolved_detector
    from faceveil.detect.centerface import CenterFace
    from faceveil.detections import box_iou

    det = resolved_detector(None, "video", {})
    cf = CenterFace(CenterFace.Params(threshold=0.01, precision="fp32"))
    everything = {"face": [], "texture": []}
    for name in args.clips.split(","):
        frames, fps = bv.shared_frames(CLIPS[name], args.seconds)
        ref = bv.thorough_reference(CLIPS[name], frames)
        got = {"face": [], "texture": []}
        for i in range(0, len(frames), 2):
            d = det.detect(frames[i])
            weak = np.flatnonzero(d.score < args.weak)
            if not len(weak):
                continue
            iou = box_iou(d.xyxy[weak].astype(np.float64), ref[i]) if len(ref[i]) else np.zeros((len(weak), 1))
            for k, j in enumerate(weak):
                kind = "face" if iou[k].max() >= 0.3 else "texture"
                got[kind].append((float(d.score[j]), second_look(cf, frames[i], d.xyxy[j].astype(np.float64),
                                                                  args.px, args.max_zoom, args.context)))
        for kind in got:
            everything[kind] += got[kind]
        report(f"{name} ({len(frames)} frames)", got)
    report("all", everything)


def report(title: str, got: dict) -> None:
    f = np.asarray(got["face"]).reshape(-1, 2)
    t = np.asarray(got["texture"]).reshape(-1, 2)
    line = f"{title}: weak detections {len(f)} on faces, {len(t)} on textures"
    if len(f) and len(t):
        line += "; second look median face / texture {:.2f} / {:.2f}".format(np.median(f[:, 1]), np.median(t[:, 1]))
        for c in CUTS:
            line += f"; cut {c}: faces confirmed {np.mean(f[:, 1] >= c):.0%}, textures rejected {np.mean(t[:, 1] < c):.0%}"
    print(line, flush=True)


if __name__ == "__main__":
    main()
