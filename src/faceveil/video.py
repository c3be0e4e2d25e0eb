"""The path of a video: decode -> detect (every Nth frame) -> track -> anonymize -> encode.

>>> import faceveil.video
>>> for frame, faces in faceveil.video.track("clip.mp4"):
...     print(faces.xyxy, faces.track_id)

Fails closed per frame: a frame whose detection, tracking or anonymization
raises is written fully blurred (``on_error="blur"``, the default) or left out
(``"drop"``), and counted in the result. Decoding runs in a background thread
and encoding in another, so the detector (onnxruntime releases the GIL) never
waits on I/O.
"""
from __future__ import annotations

import os
import queue
import sys
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Iterator

import cv2
import numpy as np

from .detections import Detections
from .errors import FaceveilError, InputError, UsageError
from .io.video import DecodeReport, EncodeOptions, VideoFrame, VideoWriter, probe, read_frames
from .pipeline import Anonymizer, ItemResult
from .track import Tracker, TrackParams


@dataclass(frozen=True)
class VideoOptions:
    tracking: bool = True
    hold: int | None = None  # frames; None: half a second
    lookahead: int | None = None  # frames; None: a quarter of a second
    detect_every: int = 1
    smoothing: float = 0.5
    on_error: str = "blur"  # "blur" | "drop"
    preview: float = 0.0  # seconds between preview stills (0: none)
    allow_truncated: bool = False  # write what decodes of a truncated or corrupt file (else it fails)
    encode: EncodeOptions = field(default_factory=EncodeOptions)

    def __post_init__(self):
        if self.detect_every < 1:
            raise UsageError("--detect-every must be at least 1")
        if self.on_error not in ("blur", "drop"):
            raise UsageError("--on-error must be blur or drop")
        if (self.hold is not None and self.hold < 0) or (self.lookahead is not None and self.lookahead < 0):
            raise UsageError("--hold and --lookahead must be >= 0")
        if self.preview < 0:
            raise UsageError("--preview must be >= 0 seconds")
        if not 0 <= self.encode.crf <= 63:
            raise UsageError("--crf must be between 0 and 63")

    def frames_held(self, fps: float) -> int:
        return self.hold if self.hold is not None else max(1, round(0.5 * fps))

    def frames_ahead(self, fps: float) -> int:
        if not self.tracking:
            return 0
        return self.lookahead if self.lookahead is not None else max(1, round(0.25 * fps))


@dataclass
class VideoResult(ItemResult):
    frames: int = 0  # frames written
    failed_frames: int = 0  # frames whose processing raised (written fully blurred, or dropped)
    dropped_frames: int = 0
    decode_errors: int = 0  # packets that could not be decoded (no pixels exist for them)
    announced_frames: int = 0  # frames the container announces (0: unknown)
    truncated: str | None = None  # with allow_truncated: what is missing ("decoded 48 of 521 frames ...")
    tracks: int = 0
    fps: float = 0.0  # processing speed
    warnings: list | None = None


@dataclass
class TrackedFrame:
    frame: VideoFrame
    detections: Detections
    error: str | None = None


def full_blur(rgb: np.ndarray) -> np.ndarray:
    """The whole frame reduced to about 32 px across and scaled back: no face survives this."""
    h, w = rgb.shape[:2]
    f = 32 / max(h, w)
    small = cv2.resize(rgb, (max(1, round(w * f)), max(1, round(h * f))), interpolation=cv2.INTER_AREA)
    return cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR)


def tracked_frames(frames: Iterable[VideoFrame], detect: Callable[[np.ndarray], Detections],
                   options: VideoOptions, fps: float) -> Iterator[TrackedFrame]:
    """Frames with their final detections, in order, ``lookahead`` frames behind the input."""
    n = options.detect_every
    hold = options.frames_held(fps)
    ahead = options.frames_ahead(fps)
    tracker: Tracker | None = None
    last_raw = Detections.empty()
    buffer: deque[TrackedFrame] = deque()

    def emit(item: TrackedFrame) -> TrackedFrame:
        if tracker is not None and ahead and item.error is None:
            extra = tracker.backfill(item.frame.index)
            if len(extra):
                item.detections = Detections.merge([item.detections, extra], "track")
        return item

    for vf in frames:
        error = None
        dets = Detections.empty()
        try:
            raw = detect(vf.rgb) if vf.index % n == 0 else None
            if options.tracking:
                if tracker is None:
                    h, w = vf.rgb.shape[:2]
                    tracker = Tracker(TrackParams(hold=hold, lookahead=ahead, smoothing=options.smoothing), (w, h))
                # A skipped frame is no miss: tracks live `hold` frames past the next detection run.
                dets = tracker.step(vf.index, raw, hold + n - 1)
            else:
                last_raw = raw if raw is not None else last_raw
                dets = last_raw
        except (KeyboardInterrupt, SystemExit, MemoryError):
            raise
        except Exception as exc:
            error = f"frame {vf.index}: {exc.__class__.__name__}: {exc}"
        buffer.append(TrackedFrame(vf, dets, error))
        while len(buffer) > ahead:
            yield emit(buffer.popleft())
    while buffer:
        yield emit(buffer.popleft())


def _video_preset(detector: str | None, preset: str | None) -> str | None:
    from .detect.presets import VIDEO_PRESET

    return preset if preset or detector else VIDEO_PRESET


def track(path: str | os.PathLike, detector: str | None = None, options: VideoOptions | None = None,
          preset: str | None = None, **detector_params) -> Iterator[tuple[np.ndarray, Detections]]:
    """Iterate ``(frame, detections)`` over a video: upright RGB frames, tracked faces with ids.

    Detection defaults to the CLI's for videos (presets.VIDEO_PRESET). A frame whose
    detection failed comes with ``detections.source == "error"`` and no boxes; treat it as
    "anything may be a face there".
    """
    from .api import resolved_detector

    det = resolved_detector(detector, _video_preset(detector, preset), detector_params)
    info = probe(path)
    for item in tracked_frames(read_frames(path), det.detect, options or VideoOptions(), float(info.fps)):
        if item.error is not None:
            yield item.frame.rgb, Detections.empty("error")
        else:
            yield item.frame.rgb, item.detections


# threads ---------------------------------------------------------------------------

_END = object()


def _background(iterable: Iterable, size: int = 8) -> Iterator:
    """Run ``iterable`` in a thread, ``size`` items ahead; its exceptions re-raise here."""
    q: queue.Queue = queue.Queue(size)
    stop = threading.Event()

    def run():
        try:
            for item in iterable:
                while not stop.is_set():
                    try:
                        q.put(item, timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
            q.put(_END)
        except BaseException as exc:  # handed to the consumer
            q.put(exc)

    t = threading.Thread(target=run, daemon=True, name="faceveil-decode")
    t.start()
    try:
        while True:
            item = q.get()
            if item is _END:
                return
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        t.join(timeout=5)


class _EncoderThread:
    """Feeds a VideoWriter from a queue, so encoding overlaps detection."""

    def __init__(self, writer: VideoWriter, size: int = 8):
        self.writer = writer
        self.q: queue.Queue = queue.Queue(size)
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, daemon=True, name="faceveil-encode")
        self.thread.start()

    def _run(self):
        while True:
            item = self.q.get()
            if item is _END:
                return
            if self.error is None:
                try:
                    self.writer.write(*item)
                except BaseException as exc:
                    self.error = exc

    def write(self, rgb: np.ndarray, pts: int | None) -> None:
        if self.error is not None:
            raise self.error
        self.q.put((rgb, pts))

    def close(self) -> None:
        self.q.put(_END)
        self.thread.join()
        if self.error is not None:
            raise self.error


# the whole file --------------------------------------------------------------------

def preview_path(dst: Path, seconds: float) -> Path:
    return dst.parent / f"{dst.stem}_preview" / f"{dst.stem}_{seconds:08.2f}s.jpg"


def _write_preview(dst: Path, rgb: np.ndarray, seconds: float) -> None:
    from .io.images import write_image

    write_image(preview_path(dst, seconds), rgb, None, False, 90)


def tracks_path(dst: str | os.PathLike) -> Path:
    """Where the track record of output ``dst`` goes: a hidden sidecar beside it (read by `faceveil review`)."""
    dst = Path(dst)
    return dst.parent / ".faceveil" / f"{dst.name}.tracks.json"


def _options_json(options: VideoOptions) -> dict:
    from dataclasses import asdict

    return asdict(options)


def options_from_json(d: dict) -> VideoOptions:
    d = dict(d)
    enc = EncodeOptions(**d.pop("encode", {}))
    return VideoOptions(**{k: v for k, v in d.items() if k in VideoOptions.__dataclass_fields__}, encode=enc)


def process_video(anonymizer: Anonymizer, src: str | os.PathLike, dst: str | os.PathLike,
                  options: VideoOptions | None = None, progress: bool = True, key: str | None = None,
                  threaded: bool = True, manual: dict[int, list] | None = None,
                  record: bool = True) -> VideoResult:
    """Anonymize one video into ``dst``. Never raises for bad input: the result says why.

    ``manual``: frame index -> extra boxes [[x1, y1, x2, y2], ...] anonymized on that frame
    (a reviewer's boxes). ``record``: also write the per-frame boxes, track ids and failed
    frames to ``tracks_path(dst)``, atomically, after the video itself.
    """
    t0 = time.perf_counter()
    src, dst = Path(src), Path(dst)
    options = options or VideoOptions()
    try:
        return _process(anonymizer, src, dst, options, progress, key or src.name, threaded, t0, manual or {},
                        record)
    except FaceveilError as exc:
        return VideoResult(str(src), None, "failed", 0, time.perf_counter() - t0, str(exc))
    except (KeyboardInterrupt, SystemExit):
        raise
    except MemoryError:
        return VideoResult(str(src), None, "failed", 0, time.perf_counter() - t0, f"{src}: out of memory")
    except Exception as exc:  # fail closed on anything unexpected, and say what it was
        return VideoResult(str(src), None, "failed", 0, time.perf_counter() - t0,
                           f"{src}: {exc.__class__.__name__}: {exc}")


def _process(anonymizer, src, dst, options, progress, key, threaded, t0, manual, record) -> VideoResult:
    from .progress import tqdm

    info = probe(src)
    report = DecodeReport()
    frames: Iterable[VideoFrame] = read_frames(src, report, allow_truncated=options.allow_truncated)
    if threaded:
        frames = _background(frames)
    detect = anonymizer.detector.detect
    face_frames = failed = dropped = 0
    track_ids: set[int] = set()
    warnings: list[str] = []
    next_preview = 0.0
    # Per written frame: [[x1, y1, x2, y2, track id, "d" detected | "h" held/predicted | "m" manual], ...]
    boxes_log: list[list] = []
    errors_log: dict[str, str] = {}
    bar = tqdm(total=info.estimated_frames, unit="frame", disable=not progress, file=sys.stderr,
               dynamic_ncols=True, desc=key[-30:], leave=False)
    previews: list[Path] = []
    try:
        with VideoWriter(dst, info, options.encode) as writer:
            sink = _EncoderThread(writer) if threaded else writer
            try:
                for item in tracked_frames(frames, detect, options, float(info.fps)):
                    vf = item.frame
                    out = None
                    error = item.error
                    dets = item.detections
                    if vf.index in manual:
                        dets = Detections.merge([dets, Detections.from_boxes(manual[vf.index], source="manual")],
                                                "track+manual")
                    if error is None:
                        try:
                            out = anonymizer.anonymize(vf.rgb, dets, anonymizer.rng_for(f"{key}#{vf.index}"))
                        except (KeyboardInterrupt, SystemExit, MemoryError):
                            raise
                        except Exception as exc:
                            error = f"frame {vf.index}: {exc.__class__.__name__}: {exc}"
                    n_auto = len(item.detections)
                    boxes_log.append([] if error is not None else [
                        [*(round(float(v), 1) for v in b), int(t), "m" if i >= n_auto else ("h" if sc == 0 else "d")]
                        for i, (b, t, sc) in enumerate(zip(dets.xyxy, dets.track_id, dets.score))])
                    if error is not None:
                        failed += 1
                        errors_log[str(vf.index)] = error
                        if len(warnings) < 20:
                            warnings.append(error)
                        if options.on_error == "drop":
                            dropped += 1
                            bar.update(1)
                            continue
                        out = full_blur(vf.rgb)
                    else:
                        face_frames += len(item.detections)
                        track_ids.update(int(t) for t in item.detections.track_id if t >= 0)
                    if options.preview and vf.time >= next_preview:
                        previews.append(preview_path(dst, vf.time))
                        _write_preview(dst, out, vf.time)
                        next_preview = vf.time + options.preview
                    sink.write(out, vf.pts)
                    bar.update(1)
                    bar.set_postfix(faces=len(item.detections), failed=failed, refresh=False)
            finally:
                if threaded:
                    sink.close()
            written = writer.frames
    except BaseException:
        _remove_previews(previews)  # the video failed: its stills go with it
        raise
    finally:
        bar.close()
    if report.errors:
        warnings.extend(f"undecodable: {e}" for e in report.errors[:5])
    if report.shortfall:
        warnings.append(f"truncated: {report.shortfall}")
    if record:
        try:
            _write_tracks(dst, anonymizer, options, key, info, boxes_log, errors_log, failed, len(report.errors),
                          report)
        except OSError as exc:  # the video is fine; only the review loses its track view
            warnings.append(f"track record not written: {exc}")
    seconds = time.perf_counter() - t0
    n = written + dropped
    return VideoResult(str(src), str(dst), "written", face_frames, seconds, None, None,
                       [info.width, info.height], frames=written, failed_frames=failed, dropped_frames=dropped,
                       decode_errors=len(report.errors), announced_frames=report.announced,
                       truncated=report.shortfall, tracks=len(track_ids), fps=round(n / max(seconds, 1e-9), 2),
                       warnings=warnings or None)


def _remove_previews(paths: list[Path]) -> None:
    import contextlib

    for p in paths:
        with contextlib.suppress(OSError):
            p.unlink()
    if paths:
        with contextlib.suppress(OSError):
            paths[0].parent.rmdir()  # only when empty


def _write_tracks(dst: Path, anonymizer: Anonymizer, options: VideoOptions, key: str, info, boxes: list,
                  errors: dict, failed: int, decode_errors: int, report: DecodeReport | None = None) -> None:
    """The track record `faceveil review` reads: one JSON file, written atomically after the video."""
    import json

    from . import __version__
    from .io.atomic import write_bytes_atomic

    try:
        desc = anonymizer.describe()
        desc["detector_params"].pop("threads", None)
    except AttributeError:  # a stand-in detector without params (tests, the Python API): no Apply from the review
        desc = None
    data = {"format": 1, "faceveil": __version__, "video": dst.name, "key": key, "config": desc,
            "options": _options_json(options), "fps": float(info.fps), "size": None, "frames": boxes,
            "errors": errors, "failed_frames": failed, "decode_errors": decode_errors,
            "hold": options.frames_held(float(info.fps)),
            "announced_frames": report.announced if report else 0, "truncated": report.shortfall if report else None}
    data["size"] = [info.height, info.width] if info.rotation in (90, -90, 270) else [info.width, info.height]
    path = tracks_path(dst)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_bytes_atomic(path, json.dumps(data, separators=(",", ":")).encode())


def anonymize_video(src: str | os.PathLike, dst: str | os.PathLike, method: str = "blur",
                    detector: str | None = None, options: VideoOptions | None = None, progress: bool = False,
                    preset: str | None = None, **method_params) -> VideoResult:
    """Python API: anonymize ``src`` into ``dst``; raises FaceveilError if nothing could be written.

    Detection and region default to the CLI's for videos (presets.VIDEO_PRESET).
    """
    anonymizer = Anonymizer(method=method, method_params=method_params, detector=detector,
                            preset=_video_preset(detector, preset))
    result = process_video(anonymizer, src, dst, options, progress)
    if result.status == "failed":
        raise InputError(result.error)
    return result
