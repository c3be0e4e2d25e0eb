"""Videos on the review page: tracks from the anonymize run's record, flags, frames, Apply.

Why a sidecar rather than recomputing tracks here: ``process_video`` writes
OUT/.faceveil/<video>.tracks.json (per-frame boxes, track ids, held/predicted
boxes, failed frames, the exact settings; its format is video/record.py's, read
here with ``read_record``) atomically after the video. It is what
the run actually did, including failed frames that no recomputation could know
about, and it costs the review nothing; recomputing would mean a full detection
pass over every video at review start. A video without a record is flagged.
"""
from __future__ import annotations

import io
from pathlib import Path

import numpy as np

from ..detections import box_iou
from ..errors import FaceveilError
from ..io.video import read_frames
from ..pipeline import Anonymizer, AnonymizerConfig
from ..video import options_from_json, process_video
from ..video.record import read_record
from .checks import clean_boxes, hidden, mse_inside, short
from .runs import plain_params

SAMPLES = 6  # frames of each video checked by the second detector(s)
GAP_FRACTION = 0.5  # a held run this long (fraction of the hold length, >= 3 frames) is flagged


def _runs(frames: list[int]) -> list[list[int]]:
    """Consecutive runs [first, last] of sorted frame indexes."""
    runs: list[list[int]] = []
    for f in frames:
        if runs and f == runs[-1][1] + 1:
            runs[-1][1] = f
        else:
            runs.append([f, f])
    return runs


def tracks(record: dict) -> list[dict]:
    """Per track: first/last frame, held (predicted) runs, and the frames worth showing.

    ``record``: as ``video.record.read_record`` returns it (one Detections per frame)."""
    by_id: dict[int, dict] = {}
    for i, dets in enumerate(record["frames"]):
        for tid, source in zip(dets.track_id.tolist(), dets.sources.tolist()):
            if tid < 0:
                continue
            t = by_id.setdefault(tid, {"id": tid, "frames": [], "held": []})
            t["frames"].append(i)
            if source in ("held", "backfilled"):  # carried by the tracker, not seen by the detector
                t["held"].append(i)
    out = []
    for t in by_id.values():
        start, end = t["frames"][0], t["frames"][-1]
        held = _runs(t["held"])
        # Held in the middle (the detector lost the face and found it again) or at the ends (look-ahead, hold).
        gaps = [r for r in held if r[0] > start and r[1] < end]
        strip = sorted({start, end, *(r[0] for r in held), *(r[1] for r in held)})
        out.append({"id": t["id"], "start": start, "end": end, "held": held,
                    "longest_gap": max((r[1] - r[0] + 1 for r in gaps), default=0), "strip": strip})
    return sorted(out, key=lambda t: t["start"])


def decode_some(path: Path, indexes: set[int]) -> dict[int, np.ndarray]:
    """The frames with these decode indexes, in one pass (stops after the last one)."""
    got: dict[int, np.ndarray] = {}
    if not indexes:
        return got
    last = max(indexes)
    for vf in read_frames(path):
        if vf.index in indexes:
            got[vf.index] = vf.rgb
        if vf.index >= last:
            break
    return got


def frame_jpeg(path: Path, index: int, width: int | None = None) -> bytes:
    """One decoded frame as JPEG bytes, in memory (an original's frame is never written to disk)."""
    from PIL import Image

    rgb = decode_some(path, {index}).get(index)
    if rgb is None:
        raise KeyError(index)
    im = Image.fromarray(rgb)
    if width and width < im.width:
        im = im.resize((width, max(1, round(im.height * width / im.width))))
    buf = io.BytesIO()
    im.save(buf, "JPEG", quality=85)
    return buf.getvalue()


def _noise(orig: np.ndarray, out: np.ndarray, boxes: list) -> float:
    """Mean squared difference outside every recorded box (grown by half): the codec's noise level."""
    keep = np.ones(orig.shape[:2], bool)
    h, w = keep.shape
    for b in boxes:
        bw, bh = b[2] - b[0], b[3] - b[1]
        keep[max(0, int(b[1] - bh / 2)):min(h, int(b[3] + bh / 2) + 1),
             max(0, int(b[0] - bw / 2)):min(w, int(b[2] + bw / 2) + 1)] = False
    if not keep.any():
        return 0.0
    d = orig[keep].astype(np.float32) - out[keep].astype(np.float32)
    return float((d * d).mean())


def load_record(out: Path | None, root: Path | None = None) -> tuple[dict | None, str | None]:
    """(the track record of output ``out``, or None where it has none; why it cannot be read, or None). A check
    reads it once and hands it to ``analyse`` and to the store's pair check (its content key): each read it, a
    long video's record twice (25 MB) for every changed item."""
    if out is None:
        return None, None
    try:
        return read_record(out, root), None
    except FaceveilError as exc:
        return None, str(exc)


def analyse(orig: Path | None, out: Path | None, detectors: list, match_iou: float,
            root: Path | None = None, loaded: tuple[dict | None, str | None] | None = None) -> dict:
    """Tracks and failed frames from the record; second-detector faces on sampled ORIGINAL frames
    that the output left unchanged (its pixels differ no more than the codec's noise). ``loaded``: what
    ``load_record`` returned for ``out`` (default: read here)."""
    a: dict = {"error": None, "size": None, "frames": 0, "tracks": [], "failed": [], "second": [], "record": False}
    if out is None:
        return a
    rec, error = loaded if loaded is not None else load_record(out, root)
    if error is not None:
        return {**a, "error": error}
    if rec is None:
        return a
    n = len(rec["frames"])
    a.update(record=True, size=rec["size"], frames=n, fps=rec["fps"], hold=rec["hold"], tracks=tracks(rec),
             failed=sorted(int(i) for i in rec.get("errors", {})), decode_errors=rec.get("decode_errors", 0))
    kept = rec.get("kept") if isinstance(rec.get("kept"), dict) else {}
    a["kept"] = [t for t in kept.get("tracks", []) if isinstance(t, dict)]  # --keep-*: whom, what distance
    a["kept_tracks"] = kept_tracks(rec)
    kept_frames = kept.get("frames", {}) if isinstance(kept.get("frames"), dict) else {}
    if orig is None or not detectors or not n:
        return a
    samples = sorted({int(round(i)) for i in np.linspace(0, n - 1, min(SAMPLES, n))})
    try:
        originals, outputs = decode_some(orig, set(samples)), decode_some(out, set(samples))
    except FaceveilError as exc:
        return {**a, "error": str(exc)}
    for i in samples:
        if i not in originals or i not in outputs or originals[i].shape != outputs[i].shape:
            continue
        o, w = originals[i], outputs[i]
        known = [[round(v, 1) for v in b] for b in rec["frames"][i].xyxy.tolist()]  # as the record keeps them
        noise = _noise(o, w, known)
        # faces the run kept on purpose (--keep-*) are not news: the "kept" flag names them
        known = known + [b for b in kept_frames.get(str(i), []) if isinstance(b, list) and len(b) == 4]
        for name, det in detectors:
            d = det.detect(o)
            if len(d) and known:
                d = d[box_iou(d.xyxy, np.asarray(known, np.float32)).max(axis=1) < match_iou]
            for box, score in zip(d.xyxy, d.score):
                box = [float(v) for v in box]
                if not hidden(mse_inside(o, w, box), noise):
                    a["second"].append({"frame": i, "box": box, "score": float(score), "source": name})
    a["samples"] = samples
    return a


def kept_tracks(record: dict) -> list[dict]:
    """Per track the run kept on at least one frame: its frames kept and hidden, and whom it matched (or what
    kept it): one click on the page flips it whole (``flip_tracks``)."""
    from ..video.keep import track_boxes

    hidden, kept = track_boxes(record)
    k = record.get("kept") if isinstance(record.get("kept"), dict) else {}
    whom = {int(t["track"]): t for t in k.get("tracks", []) if isinstance(t, dict) and isinstance(t.get("track"), int)}
    out = []
    for tid in sorted(set(kept) | set(whom)):
        frames = sorted(kept.get(tid, {}))
        t = whom.get(tid, {})
        out.append({"id": tid, "start": frames[0] if frames else None, "end": frames[-1] if frames else None,
                    "kept_frames": len(frames), "hidden_frames": len(hidden.get(tid, {})), "by": t.get("by", "region"),
                    **{x: t[x] for x in ("name", "distance") if x in t}})
    return out


def flags(a: dict, hold_gap: int | None = None) -> list[dict]:
    fl: list[dict] = []
    if a.get("error"):
        fl.append({"kind": "error", "text": a["error"]})
    if not a.get("record"):
        fl.append({"kind": "no-record", "text": "no track record (not made by this faceveil's anonymize): "
                                                "tracks unknown, Apply unavailable"})
        return fl
    if a["failed"]:
        fl.append({"kind": "failed-frames", "text": f"{len(a['failed'])} frames failed and were written fully "
                                                   f"blurred (first: {a['failed'][0]})", "frames": a["failed"]})
    limit = max(3, int(GAP_FRACTION * a.get("hold", 0))) if hold_gap is None else hold_gap
    long = [t for t in a["tracks"] if t["longest_gap"] >= limit]
    if long:
        fl.append({"kind": "held-gap", "count": len(long),
                   "text": f"{len(long)} track(s) held over a gap of >= {limit} frames (detector lost the face): "
                           + ", ".join(f"#{t['id']} ({t['longest_gap']} frames)" for t in long[:5]),
                   "tracks": [t["id"] for t in long]})
    if a.get("kept"):
        k = a["kept"]
        fl.append({"kind": "kept", "count": len(k), "text": "kept as they are (--keep-*): " + ", ".join(
            (f"track #{t['track']} as {t.get('name')} at {t.get('distance', 0):.2f}" if "name" in t else
             f"track #{t['track']} by the reviewer") if "track" in t else
            f"{t.get('faces', 0)} faces by {t.get('by')}" for t in k[:5]) + "; click a track to hide it whole"})
    if a["second"]:
        s = a["second"]
        srcs = ", ".join(sorted({f["source"] for f in s}))
        fl.append({"kind": "second", "count": len(s),
                   "text": f"{len(s)} face(s) found by {srcs} on sampled frames "
                           f"({', '.join(str(f['frame']) for f in s[:5])}) but unchanged in the output",
                   "boxes": [f["box"] for f in s], "frames": [f["frame"] for f in s]})
    return fl


def clean_ranges(manual, w: int, h: int, n: int) -> list[dict]:
    """Video edits from the page: [{box: [x1, y1, x2, y2], from: i, to: j}, ...], clipped to the video."""
    if not isinstance(manual, list):
        raise ValueError("manual must be a list")
    out = []
    for m in manual:
        if not isinstance(m, dict) or not all(isinstance(m.get(k), int) and not isinstance(m.get(k), bool)
                                              for k in ("from", "to")):
            raise ValueError(f"bad video box {short(m)}: expected {{box: [x1, y1, x2, y2], from: frame, to: frame}}")
        boxes = clean_boxes([m.get("box")], w, h)
        a, b = sorted((max(0, m["from"]), min(n - 1, m["to"])))
        if min(m["from"], m["to"]) > n - 1 or max(m["from"], m["to"]) < 0:
            raise ValueError(f"video box {short(m)}: its frames {m['from']}..{m['to']} are outside the video's "
                             f"0..{n - 1}")
        out.append({"box": boxes[0], "from": a, "to": b})
    return out


def manual_ranges(record: dict) -> list[dict]:
    """The manual boxes a track record holds (earlier Applies'), as ranges {box, from, to} of consecutive frames."""
    last: dict[tuple, dict] = {}
    out: list[dict] = []
    for i, dets in enumerate(record["frames"]):
        for box, source in zip(dets.xyxy.tolist(), dets.sources.tolist()):
            if source != "manual":
                continue
            key = tuple(box)
            if key in last and last[key]["to"] == i - 1:
                last[key]["to"] = i
            else:
                last[key] = {"box": list(key), "from": i, "to": i}
                out.append(last[key])
    return out


def apply(orig: Path, out: Path, record: dict, ranges: list[dict], flip: list[int] | None = None) -> dict:
    """Re-anonymize the ORIGINAL with the run's settings plus the manual boxes, held over their ranges;
    written atomically over the output (audio kept as in the run), the record rewritten. ``flip``: track ids
    flipped whole between kept and hidden (``video.keep.flip_tracks``). Returns what review.json records of the
    new output: its frames, failed frames and warnings (the run's own, as re-timed:, come again from the same
    original: [] when there are none, so an earlier Apply's are not left standing)."""
    c = record["config"]
    anonymizer = Anonymizer.from_config(AnonymizerConfig(
        method=c["method"], method_params=plain_params(c["method_params"]), detector=c["detector"],
        detector_params=plain_params(c["detector_params"]), region=c["region"], seed=c["seed"]))
    per_frame: dict[int, list] = {}
    for m in ranges:
        for i in range(m["from"], m["to"] + 1):
            per_frame.setdefault(i, []).append(m["box"])
    kept = record.get("kept") if isinstance(record.get("kept"), dict) else None
    if flip:
        from ..video.keep import flip_tracks

        kept = flip_tracks(record, flip)  # ValueError (a bad request) for a track the record does not have
    # Faces the run kept (--keep-*) stay kept unless a manual box hides them (the box is drawn over them).
    r = process_video(anonymizer, orig, out, options_from_json(record["options"]), progress=False,
                      key=record["key"], manual=per_frame, keep_record=kept)
    if r.status != "written":
        raise FaceveilError(r.error or f"{orig}: re-anonymizing failed")
    return {"frames": r.frames, "failed_frames": r.failed_frames, "warnings": r.warnings or []}
