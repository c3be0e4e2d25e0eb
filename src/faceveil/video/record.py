"""The track record of an anonymized video: written by the video job, read by `faceveil review`.

One JSON file per output, OUT/.faceveil/<name>.tracks.json, written atomically once the video has its name (the
earlier record is set aside before that, put back if the video does not get it): the exact settings (flat in
``settings`` too, which a resume checks), the boxes anonymized on every frame (``Detections.to_dict``'s faces: box,
score, track id and where the box came from; a tracked box's score is its track's best detection so far in its shot,
held boxes included) and the frames that failed.
Format 2; ``read_record`` also reads format 1 (faceveil 0.1.0), whose boxes were lists
``[x1, y1, x2, y2, track id, "d" detected | "h" held or back-filled | "m" manual]``.
"""
from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np

from .. import __version__
from ..detections import Detections
from ..errors import FaceveilError, UsageError
from ..io.atomic import fit_name, write_atomic
from ..io.manifest import check_settings, sample_sha256, settings_key
from ..io.video import ENCODER_MODE
from ..pipeline import settings_of
from .options import VideoOptions, options_json

FORMAT = 2
_OLD_KINDS = {"d": "detected", "h": "held", "m": "manual"}  # format 1's box kinds


def tracks_path(dst: str | os.PathLike) -> Path:
    """Where the track record of output ``dst`` goes: a hidden sidecar beside it (read by `faceveil review`)."""
    dst = Path(dst)
    return dst.parent / ".faceveil" / fit_name(dst.name, ".tracks.json")  # a long video name: cut, and hashed


def frame_faces(dets: Detections) -> list[dict]:
    """One frame's boxes as the record keeps them: to 0.1 px, scores to 1e-4, no landmarks (nor their null)."""
    plain = Detections(dets.xyxy, dets.score, None, dets.track_id, dets.source, dets.sources)
    faces = plain.to_dict(1, 4)["faces"]
    for f in faces:
        del f["landmarks"]
    return faces


def temp_write_failed(source, what: str, folder, exc: OSError) -> FaceveilError:
    """A write to an unnamed temporary file in ``folder`` refused (a full disk) as the one line that says so, naming
    what could not be written and where: before, "<video>: OSError: [Errno 28] No space left on device", as if the
    video (``source``) were at fault."""
    return FaceveilError(f"{source}: cannot write {what} (an unnamed temporary file in {folder}): "
                         f"{exc.strerror or exc}")


class FrameLog:
    """The record's "frames", one ``frame_faces`` list per written frame, kept as JSON in an unnamed temporary file
    in ``folder`` (the output's), not in memory: an hour of a crowd held ~3 GB of boxes until the record's write.
    ``source`` (the video) and ``what`` name it in the error of a write refused (``temp_write_failed``)."""

    def __init__(self, folder: Path, source=None, what: str = "the track record's boxes"):
        self.folder, self.frames, self._file = folder, 0, None
        self.source, self.what = source, what

    def append(self, faces: list[dict]) -> None:
        self.append_raw(json.dumps(faces, separators=(",", ":")))

    def append_raw(self, text: str) -> None:
        """One item, already JSON (KeptLog's are an object's "key":value pairs)."""
        try:
            if self._file is None:  # gone when closed or the process ends (O_TMPFILE, or removed once open)
                self._file = tempfile.TemporaryFile(dir=self.folder)
            self._file.write((b"," if self.frames else b"") + text.encode())
        except OSError as exc:
            raise temp_write_failed(self.source, self.what, self.folder, exc) from None
        self.frames += 1

    def flush(self) -> None:
        """What is buffered to the disk: a full disk fails here, before the video gets its name, not after."""
        if self._file is not None:
            try:
                self._file.flush()
            except OSError as exc:
                raise temp_write_failed(self.source, self.what, self.folder, exc) from None

    def __len__(self) -> int:
        return self.frames

    def copy_to(self, f, brackets: bytes = b"[]") -> int:
        """Write the frames into ``f`` as one JSON list (``brackets`` b"{}": an object); return the bytes written."""
        f.write(brackets[:1])
        if self._file is not None:
            self.flush()
            self._file.seek(0)
            shutil.copyfileobj(self._file, f)
        f.write(brackets[1:])
        return 2 + (self._file.tell() if self._file is not None else 0)

    def close(self) -> None:
        if self._file is not None:
            with contextlib.suppress(OSError):  # its last writes, of no use now, fail again on a full disk: said once
                self._file.close()
            self._file = None


class KeptLog:
    """The record's "kept" part under --keep-* (and the review's Apply), streamed as ``FrameLog`` streams the boxes:
    each frame's kept boxes and their track ids go, as JSON, to unnamed temporary files in ``folder``; in memory
    stay only the summary's counts (``summary``: per kept track its first and last frame and count, per region its
    faces), one entry per track or region. Before, every frame's entry was held to the end of the video (an hour
    of a kept speaker: 90,000 entries). ``tracks`` (the kept tracks, id -> whom) is set before the first entry.

    ``append`` takes the entries ``video.keep`` logs: {"frame": i, "kept": [{"box": [...], ...}], "track_ids": [...]},
    one per frame, in frame order."""

    def __init__(self, folder: Path, source=None):
        self.tracks: dict[int, dict] = {}
        what = "the track record's kept boxes (--keep-*)"
        self._boxes, self._ids = FrameLog(folder, source, what), FrameLog(folder, source, what)
        self._frames: dict[int, list[int]] = {}  # kept track -> [first frame, last frame, boxes]
        self._regions: dict[str, dict] = {}  # "by" + region -> its first box's record (less the box), "faces"

    def append(self, entry: dict) -> None:
        key = json.dumps(str(entry["frame"]))
        self._boxes.append_raw(f"{key}:{json.dumps([k['box'] for k in entry['kept']], separators=(',', ':'))}")
        self._ids.append_raw(f"{key}:{json.dumps(entry.get('track_ids', []), separators=(',', ':'))}")
        f = entry["frame"]
        for k in entry["kept"]:
            if "track" in k and k["track"] in self.tracks:
                got = self._frames.get(k["track"])
                self._frames[k["track"]] = [min(got[0], f), max(got[1], f), got[2] + 1] if got else [f, f, 1]
            else:
                r = self._regions.setdefault(k["by"] + k.get("region", ""),
                                             {**{a: b for a, b in k.items() if a != "box"}, "faces": 0})
                r["faces"] += 1

    def summary(self) -> list[dict]:
        """Per kept track: whom it matched, at what distance, on which frames (first, last, count: the whole list
        would swamp the report); per region: its faces."""
        tracks = [{**{a: b for a, b in rec.items() if a != "frames"}, "frames": self._frames.get(tid, [])}
                  for tid, rec in self.tracks.items()]
        return [*tracks, *(dict(r) for r in self._regions.values())]

    def copy_to(self, f) -> int:
        """Write the record's "kept" as one JSON object: {"tracks": summary, "frames": {frame: [boxes]},
        "frame_tracks": {frame: [track ids]}} (the bytes json.dumps gave when it was all in memory)."""
        n = f.write(b'{"tracks":' + json.dumps(self.summary(), separators=(",", ":")).encode() + b',"frames":')
        n += self._boxes.copy_to(f, b"{}") + f.write(b',"frame_tracks":') + self._ids.copy_to(f, b"{}")
        return n + f.write(b"}")

    def flush(self) -> None:
        self._boxes.flush()
        self._ids.flush()

    def close(self) -> None:
        self._boxes.close()
        self._ids.close()


def _describe(anonymizer) -> dict | None:
    try:
        return settings_of(anonymizer)
    except AttributeError:  # a stand-in detector without params (tests, the Python API): no Apply from the review
        return None


def video_settings(anonymizer, options: VideoOptions) -> dict | None:
    """What decides a video output's bytes, flat, as the dataset mode records its settings (dataset/job.py):
    the anonymizer (as described, without its thread count), the video options (not --preview, whose stills
    are extra files), the encoder's mode (io.video.ENCODER_MODE) and faceveil's version. None for a stand-in
    detector that cannot describe itself."""
    return _settings(_describe(anonymizer), options)


def _settings(desc: dict | None, options: VideoOptions) -> dict | None:
    """``video_settings`` from the anonymizer's description."""
    if desc is None:
        return None
    js = options_json(options)
    opts = {k: v for k, v in js.items() if k not in ("preview", "encode")}
    enc = {("encoder_threads" if k == "threads" else k): v for k, v in js["encode"].items()}
    return {**desc, **opts, **enc, "encoder_mode": ENCODER_MODE, "faceveil": __version__}


def check_resume(outputs: list[Path], anonymizer, options: VideoOptions, sources: list[Path] | None = None) -> None:
    """Refuse (UsageError, before any work) to leave existing video ``outputs`` alone (--skip-existing) unless
    their track records say they were made with these settings: the dataset mode's resume check
    (io.manifest.check_settings) on each output's record. An output with no settings on record (written
    by another program or an earlier faceveil, or its record lost) is refused too: nothing says it matches.
    ``sources`` (each output's input): one whose content is not the one the record's key was taken from (the
    default key, ``io.manifest.sample_sha256``) is refused too: a clip replaced under the same name kept the old
    clip's output, said to be left "as it was"."""
    settings = video_settings(anonymizer, options)
    if settings is None:
        return
    key = settings_key(settings)
    advice = "use the same settings, a new output folder or --overwrite"
    for dst, src in zip(outputs, sources or [None] * len(outputs)):
        path = tracks_path(dst)
        try:
            rec = json.loads(path.read_text())
        except FileNotFoundError:
            rec = {}
        except (OSError, ValueError) as exc:
            raise UsageError(f"{dst}: cannot read its track record {path} ({exc}); {advice}") from None
        if not isinstance(rec, dict) or "settings" not in rec or "job" not in rec:
            raise UsageError(f"{dst}: output exists with no record of its settings ({path}); {advice}")
        check_settings([rec], settings, key, dst, path, advice)
        now = _content_key(src) if src is not None else None
        if now is not None and rec.get("key") != now:
            raise UsageError(f"{dst}: made from another video than {src} is now ({src} changed since, says {path}); "
                             "--overwrite redoes it, or use a new output folder")


def _content_key(src: Path) -> str | None:
    """The key a run records for ``src`` (job.py's default), or None where it cannot be read (nothing to compare:
    the settings alone decide, as before)."""
    try:
        return sample_sha256(src)
    except OSError:
        return None


def write_record(dst: Path, anonymizer, options: VideoOptions, key: str, info, frames: FrameLog,
                 errors: dict, failed: int, decode_errors: int, report=None, kept: KeptLog | dict | None = None
                 ) -> None:
    """The track record `faceveil review` reads: one JSON file, written atomically (the video job writes it
    once the video has its name).

    ``frames``: per written frame, ``frame_faces`` of the boxes anonymized on it ([] for a failed frame), copied
    into the file last, without passing through memory.
    ``kept`` (--keep-*): {"tracks": whom each kept track matched, "frames": {index: kept boxes}, "frame_tracks":
    {index: their track ids}}, or the KeptLog that streams it (copied in the same way).
    """
    desc = _describe(anonymizer)
    settings = _settings(desc, options)
    data = {"format": FORMAT, "faceveil": __version__, "video": dst.name, "key": key, "config": desc,
            "options": options_json(options), "fps": float(info.fps), "size": None,
            "errors": errors, "failed_frames": failed, "decode_errors": decode_errors,
            "hold": options.frames_held(float(info.fps)),
            "announced_frames": report.announced if report else 0, "truncated": report.shortfall if report else None}
    if kept is not None:
        data["kept"] = kept
    if settings is not None:  # what a resume with --skip-existing checks (check_resume)
        data["job"], data["settings"] = settings_key(settings), settings
    data["size"] = [info.height, info.width] if info.rotation in (90, -90, 270) else [info.width, info.height]
    data["frames"] = frames
    path = tracks_path(dst)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, lambda f: _write_object(f, data))


def _write_object(f, data: dict) -> int:
    """``data`` as json.dumps(data, separators=(",", ":")) writes it, a value with a ``copy_to`` (FrameLog,
    KeptLog) copying itself in; the bytes written."""
    n = f.write(b"{")
    for i, (k, v) in enumerate(data.items()):
        n += f.write((b"," if i else b"") + json.dumps(k).encode() + b":")
        n += v.copy_to(f) if hasattr(v, "copy_to") else f.write(json.dumps(v, separators=(",", ":")).encode())
    return n + f.write(b"}")


def _old_frame(boxes: list) -> Detections:
    """A format-1 frame ([[x1, y1, x2, y2, track id, kind], ...]) as Detections; held boxes had score 0."""
    if not boxes:
        return Detections.empty()
    sources = [_OLD_KINDS.get(b[5], "detected") for b in boxes]
    return Detections(np.asarray([b[:4] for b in boxes], np.float32),
                      np.asarray([0.0 if s == "held" else 1.0 for s in sources], np.float32), None,
                      np.asarray([int(b[4]) for b in boxes], np.int64), "track", sources)


def parse_record(data: dict) -> dict:
    """A record as read from its file, with "frames" as one ``Detections`` per frame (either format)."""
    data = dict(data)
    if data.get("format", 1) == 1:
        data["frames"] = [_old_frame(f) for f in data["frames"]]
    else:
        data["frames"] = [Detections.from_dict(f) for f in data["frames"]]
    return data


def read_record(out: Path, root: Path | None = None) -> dict | None:
    """The run's track record of output ``out`` (None when there is none); with ``root``, refused when
    it resolves outside it. Its "frames" are one ``Detections`` per frame."""
    p = tracks_path(out)
    if root is not None and (p.exists() or p.is_symlink()):
        real = p.resolve()
        try:
            real.relative_to(root)
        except ValueError:
            raise FaceveilError(f"{p}: refused, a link leading out of OUT") from None
    try:
        return parse_record(json.loads(p.read_text()))
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError, IndexError) as exc:
        raise FaceveilError(f"{p}: cannot read the track record ({exc})")
