"""The video job: one file decoded, tracked, anonymized and encoded into its output, failing closed per frame.

Fails closed per frame: a frame whose detection, tracking or anonymization
raises is written fully blurred (``on_error="blur"``, the default) or left out
(``"drop"``), and counted in the result. Decoding runs in a background thread
and encoding in another, so the detector (onnxruntime releases the GIL) never
waits on I/O.
"""
from __future__ import annotations

import contextlib
import errno
import glob
import math
import os
import shutil
import sys
import time
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Iterable

import cv2
import numpy as np

from ..detections import Detections
from ..errors import FaceveilError, InputError, UsageError, check_bool
from ..io.images import write_image
from ..io.manifest import sample_sha256, sha256_file
from ..io.video import (DecodeReport, VideoFrame, VideoSource, VideoWriter, is_video_path, probe,
                        read_frames)
from ..pipeline import Anonymizer, check_output
from ..progress import tqdm
from ..signals import deferred
from .options import VideoOptions, VideoResult, as_video_options, misplaced_option, refuse_photo, video_preset
from ..io.atomic import (NAME_MAX, cut_name, exists_now, fit_name, journal_mkdir, journal_move, journal_start,
                         make_temporary, release, undo_moves)
from .record import FrameLog, KeptLog, frame_faces, tracks_path, write_record
from .threads import EncoderThread, StageClock, background
from .tracking import tracked_frames


def full_blur(rgb: np.ndarray) -> np.ndarray:
    """The whole frame reduced to about 32 px across and scaled back: no face survives this."""
    h, w = rgb.shape[:2]
    f = 32 / max(h, w)
    small = cv2.resize(rgb, (max(1, round(w * f)), max(1, round(h * f))), interpolation=cv2.INTER_AREA)
    return cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR)


_PREVIEW = "_preview"  # a stills folder's name: the video's whole name and this


def preview_dir(dst: Path) -> Path:
    """Where --preview writes a video's stills (the CLI refuses an output inside it): named after the video's whole
    name (``clip.mp4_preview``), a long one cut to fit and hashed (``fit_name``). Named after the stem, clip.mov's
    and clip.mp4's stills shared a folder: a run of one replaced the other's stills of one name, and an overwrite
    of one removed the other's as its own earlier ones."""
    return dst.parent / fit_name(dst.name, _PREVIEW)


def preview_path(dst: Path, seconds: float, frame: int | None = None) -> Path:
    """The still --preview writes of ``dst`` at ``seconds`` (``preview_video`` tells such a still from a photo). The
    stem is cut to fit a name: a video named 246-255 bytes failed at its first still, after all its frames were
    decoded and encoded (exit 1, nothing written); the seconds keep the names of one video's stills apart, and
    ``frame`` (the frame's index, ``_f<index>`` after them) those of stills whose seconds have one name: stills
    under 0.01 s apart replaced each other (8 frames at 200 fps, --preview 0.001: 5 stills, no message)."""
    tail = f"_{seconds:08.2f}s{'' if frame is None else f'_f{frame}'}.jpg"
    return preview_dir(dst) / f"{cut_name(dst.stem, NAME_MAX - len(tail))}{tail}"


def preview_video(still: Path) -> Path | None:
    """The video beside ``still``'s folder whose --preview still it is (``preview_path`` of that video gives its
    path), or None. The one test of a still's name: `faceveil review` restated the format in a pattern of its own,
    which would miss any name preview_path changes."""
    return _still_video(still, None)


def _still_video(still: Path, videos: list[Path] | None) -> Path | None:
    """``preview_video``, the videos beside the stills' folder whose names start with its prefix listed once by
    the caller (``videos``, sorted), or here (None)."""
    if not still.name.endswith(".jpg"):
        return None
    stem, sep, tail = still.name[: -len(".jpg")].rpartition("_")
    frame = None
    if sep and tail.startswith("f") and tail[1:].isdigit():  # a still with a frame index (preview_path)
        frame = int(tail[1:])
        stem, sep, tail = stem.rpartition("_")
    if not sep or not tail.endswith("s") or not stem:
        return None
    try:
        seconds = float(tail[: -len("s")])
    except ValueError:
        return None
    if videos is None:
        videos = _prefixed_videos(still.parent)
    for video in videos:
        if preview_path(video, seconds, frame) == still:
            return video
    return None


def _prefixed_videos(folder: Path) -> list[Path]:
    """The videos beside the stills folder ``folder`` whose --preview stills lie in it (``preview_dir``; sorted, one
    but for a clash of hashes), looked for among the names that start with its name up to its last dot."""
    prefix = folder.name[: -len(_PREVIEW)] if folder.name.endswith(_PREVIEW) else ""
    prefix = prefix.rpartition(".")[0] or prefix  # clip.mp4: clip; a cut name: the cut name, less its hash
    if not prefix:
        return []
    return [v for v in sorted(folder.parent.glob(f"{glob.escape(prefix)}*")) if is_video_path(v)
            and preview_dir(v) == folder]


def _stale_stills(dst: Path, written: set[str]) -> list[Path]:
    """The files in ``dst``'s stills folder that ``preview_video`` gives to ``dst`` and whose names are not in
    ``written`` (this run's stills): an earlier run's, at other times or another interval. Other files (a photo of
    the user's, another video's stills) are not listed."""
    folder = preview_dir(dst)
    try:
        entries = sorted(folder.iterdir()) if folder.is_dir() else []
    except OSError:
        return []
    videos = _prefixed_videos(folder)
    return [p for p in entries if p.name not in written and not p.is_dir()
            and _still_video(p, videos) == dst]


def _preview_slack(interval: float) -> float:
    """How far before a --preview grid time (k * interval) a frame still counts as at it: float error (3 * 0.1 is
    0.30000000000000004, after the frame at 0.3), far under any frame step or interval."""
    return min(1e-6, interval / 1000)


def _next_preview(seconds: float, interval: float) -> float:
    """The grid time (a multiple of ``interval``) whose still is the next to write after a still at ``seconds``: the
    first past every grid time that still stands for (those at or before it, within ``_preview_slack``). Each still
    is the first frame at or after its grid time: before, the next still was due ``interval`` after the last, and
    float drift skipped one (a 5-frame 10 fps clip, --preview 0.1: stills at 0, 0.1, 0.2, 0.4, not 0.3)."""
    due = ((seconds + _preview_slack(interval)) // interval + 1) * interval
    return due if math.isfinite(due) else seconds  # a grid finer than floats count: every frame is due


_REPLACED = "replaced"  # in a stills' temporary folder: the earlier stills that this run's replace, till the commit
_RECORD = "record"  # in it too: the earlier track record, till the commit


class _Stills:
    """--preview's stills, written into a temporary folder beside the output (atomic's naming: a later run removes
    it when its writer is gone), moved into ``preview_dir`` just before the video gets its name (``publish``), and
    left there only once it has it (``commit``; else ``discard`` puts the earlier ones back): a killed run left its
    first stills in place for good (an audit), and stills moved in after the video had its name failed the file
    (ENOSPC, a folder that refused them) with the new video in place and an earlier still gone.

    ``record``: the output's track record, whose earlier version ``publish`` moves aside into that folder too, and
    ``discard`` puts back byte for byte: the new one is written once the video has its name (``_process``)."""

    def __init__(self, dst: Path, record: Path | None = None):
        self.dst, self.record, self.tmp, self.lock = dst, record, None, None
        self.names: set[str] = set()
        self.published = False  # publish moved things (in the folder's journal), till commit or discard

    def _folder(self) -> Path:
        """The temporary folder, made at its first use."""
        if self.tmp is None:  # locked while this writer lives: no sweep removes it, whatever its pid says there
            self.tmp, self.lock = make_temporary(self.dst.parent, preview_dir(self.dst).name, directory=True)
        return self.tmp

    def write(self, rgb: np.ndarray, seconds: float, frame: int) -> None:
        """A still named by its seconds, and by its frame's index too where an earlier still of this video has that
        name (its seconds the same to 0.01 s): the names a run wrote before stay those of any run without such."""
        folder = self._folder()
        name = preview_path(self.dst, seconds).name
        if name in self.names:
            name = preview_path(self.dst, seconds, frame).name
        self.names.add(name)
        write_image(folder / name, rgb, None, False, 90)

    def publish(self, pending: Path) -> None:
        """Called just before the video (``pending``: its temporary) gets its name: the earlier track record moved
        aside into the temporary folder, this run's stills moved into ``preview_dir``, an earlier still of one of
        their names moved aside too. Each move is noted in the folder's journal first (io.atomic.journal_move):
        ``discard`` puts them back, and so does the next run's sweep where this one was killed before the video had
        its name (before, the earlier video was left without its record and beside this run's stills). Where that
        cannot be done, all is put back and a one-line FaceveilError raised: the file fails, the earlier output
        whole."""
        final, where = preview_dir(self.dst), self.record
        has_record = self.record is not None and os.path.lexists(self.record) and not self.record.is_dir()
        if not has_record and not self.names:
            return
        try:
            journal_start(self._folder(), pending)
            self.published = True
            if has_record:  # a rename: the same bytes, no space needed
                journal_move(self.tmp, self.record, self.tmp / _RECORD)
            if not self.names:
                return
            where, old = final, self.tmp / _REPLACED
            if not os.path.lexists(final):
                journal_mkdir(self.tmp, final)
            old.mkdir()
            for name in sorted(self.names):
                if os.path.lexists(final / name) and not (final / name).is_dir():  # a folder there fails the move
                    journal_move(self.tmp, final / name, old / name)
                journal_move(self.tmp, self.tmp / name, final / name)
        except OSError as exc:
            self._put_back()
            raise FaceveilError(f"{where}: cannot write: {exc.strerror or exc}") from None

    def commit(self) -> list[str]:
        """Called once the video has its name: the earlier stills this run's replaced removed with the temporary
        folder, and an earlier run's stills of this video that this run did not write removed (``_stale_stills``): a
        rerun with another interval or none left the old ones beside the new (a weaker method's, as if of this
        run). The folder goes too where that left it empty. A still that cannot be removed is returned as a
        warning."""
        self.published = False  # theirs for good: nothing to put back
        left = []
        stale = _stale_stills(self.dst, self.names)
        for p in stale:
            try:
                p.unlink()
            except FileNotFoundError:
                pass
            except OSError as exc:
                left.append(f"old still not removed: {p}: {exc.strerror or exc}")
        if stale and not self.names and not left:
            with contextlib.suppress(OSError):
                preview_dir(self.dst).rmdir()  # only if empty: nothing but the earlier stills was there
        self.discard()
        return left

    def _put_back(self) -> None:
        """``publish`` undone from its journal: this run's stills back out of ``preview_dir``, the earlier ones
        back, the folder gone if publish made it, the earlier record back."""
        if self.published:
            undo_moves(self.tmp)
        self.published = False

    def discard(self) -> None:
        """The temporary folder removed; a ``publish`` not committed (the video did not get its name) undone first."""
        self._put_back()
        if self.tmp is not None:
            shutil.rmtree(self.tmp, ignore_errors=True)
            release(self.lock)  # once the folder is gone
            self.tmp = self.lock = None


def process_video(anonymizer: Anonymizer, src: str | os.PathLike, dst: str | os.PathLike,
                  options: VideoOptions | None = None, progress: bool = True, key: str | None = None,
                  threaded: bool = True, manual: dict[int, list] | None = None,
                  record: bool = True, keep_record: dict | None = None, replace: bool = True) -> VideoResult:
    """Anonymize one video into ``dst``. Never raises for bad input: the result says why.

    ``manual``: frame index -> extra boxes [[x1, y1, x2, y2], ...] anonymized on that frame
    (a reviewer's boxes). ``record``: also write the per-frame boxes, track ids and failed
    frames to ``tracks_path(dst)``, atomically, once the video has its name. ``keep_record``: the ``kept``
    part of an earlier run's record (the review's Apply): the boxes it kept stay kept, nothing else. ``key``: the
    random stream's (the record keeps it); default, the video's ``sample_sha256``.
    """
    t0 = time.perf_counter()
    src, dst = Path(src), Path(dst)
    options = options or VideoOptions()
    try:
        with VideoSource(src) as source:  # every read of the video reads this open file (VideoSource)
            return _process(anonymizer, source, dst, options, progress, key, threaded, t0, manual or {},
                            record, keep_record, replace)
    except FaceveilError as exc:
        return VideoResult(str(src), None, "failed", 0, time.perf_counter() - t0, str(exc))
    except (KeyboardInterrupt, SystemExit):
        raise
    except MemoryError:
        return VideoResult(str(src), None, "failed", 0, time.perf_counter() - t0, f"{src}: out of memory")
    except Exception as exc:  # fail closed on anything unexpected, and say what it was
        if _writing_failed(exc, dst):  # a full disk, a folder made read-only: the output named, as for images
            return VideoResult(str(src), None, "failed", 0, time.perf_counter() - t0,
                               f"{dst}: cannot write: {exc.strerror}")
        return VideoResult(str(src), None, "failed", 0, time.perf_counter() - t0,
                           f"{src}: {exc.__class__.__name__}: {exc}")


def _lock_records(dst: Path, held: list) -> None:
    """An flock on the records' folder, from before the video's rename to its record's write: of two runs into
    one output, the later one waits, then finds the video there and leaves the record alone (or, replacing it,
    sets aside the record that goes with the video it replaces). Before, both looked, both wrote, and the loser's
    put-back removed the winner's record (1 run in 46). None where no locks exist (Windows), or without the folder
    (the record's own write then says why)."""
    try:
        import fcntl
    except ImportError:
        return
    folder = tracks_path(dst).parent
    try:
        folder.mkdir(parents=True, exist_ok=True)
        held.append(os.open(folder, os.O_RDONLY))
    except OSError:
        return
    fcntl.flock(held[-1], fcntl.LOCK_EX)


def _writing_failed(exc: Exception, dst: Path) -> bool:
    """Whether ``exc`` is the output's folder refusing a write (its temporary file or the record beside it), or
    an output another run made meanwhile (``replace=False``)."""
    if not (isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES,
                                                         errno.EPERM, errno.EEXIST)
            and exc.strerror and exc.filename is not None):
        return False
    folder = dst.parent.resolve()  # the error's path is absolute (mkstemp's), an -o may be relative
    return Path(exc.filename).resolve().parent in (folder, folder / ".faceveil")


# The look-ahead buffers its frames in memory (1080p RGB: 6 MB a frame): at most this many seconds of them.
MAX_LOOKAHEAD_S = 10.0


def check_lookahead(options: VideoOptions, fps: float, src) -> None:
    """The look-ahead against the video's frame rate: at most MAX_LOOKAHEAD_S seconds (a UsageError naming the option
    that asks for more; the CLI checks this before any work)."""
    ahead = options.frames_ahead(fps)
    if ahead > MAX_LOOKAHEAD_S * fps:
        # without --lookahead, only --full-every N raises it (to N-1 frames); it was named as a --lookahead not given
        why = (f"--lookahead {ahead} frames is" if options.lookahead is not None
               else f"--full-every {options.full_every} needs a look-ahead of {ahead} frames,")
        raise UsageError(f"{src}: {why} more than {MAX_LOOKAHEAD_S:g} s of this video (every frame waits in memory)")


def schedule_warnings(options: VideoOptions, fps: float) -> list[str]:
    """The "risk: ..." lines of settings that leave a face visible by design."""
    out = []
    n = options.detector_every
    held = max(options.frames_held(fps), 1)
    if n > held + 1:  # a face that enters and leaves between two detector runs is never seen
        out.append(f"risk: --detect-every {n} leaves {n - 1} frames between detector runs, more than the {held} a "
                   "lost face is held: a face seen only there stays visible")
    ahead, gap = options.frames_ahead(fps), options.unseen_gap
    if options.tracking and ahead < gap:  # a face appearing after a full pass is first seen up to ``gap`` later
        what = f"--detect-every {n} skips between detector runs" if options.full_every == 1 else \
            f"--full-every {options.full_every} leaves between full passes"
        out.append(f"risk: --lookahead {ahead} is less than the frames {what} ({gap}): a face that appears there "
                   "stays visible until it is first detected")
    return out


def _process(anonymizer, source, dst, options, progress, key, threaded, t0, manual, record,
             keep_record=None, replace=True) -> VideoResult:
    src = source.path
    info = probe(source)
    fps = float(info.fps)
    check_lookahead(options, fps, src)  # the settings against this video's frame rate, before any decoding starts
    warnings = schedule_warnings(options, fps)
    key = key or sample_sha256(source.name)  # the random stream's key: the video's content, not its path (rng_for)
    anonymizer.method.begin_stream(anonymizer.rng_for(f"{key}#stream"), fps)  # this video's tracks are new
    if options.preview:
        # Pillow (the stills' writer) loaded before the helper threads start: its first import in this thread
        # raced the anonymizing thread's look at PIL.Image (pipeline.check_image) and failed a frame at random
        import PIL.Image  # noqa: F401
    report = DecodeReport()
    clock = StageClock()  # busy seconds per stage: the result's "stages" (bench/bench_video.py prints them)
    frames: Iterable[VideoFrame] = clock.iterate("decode", read_frames(source, report,
                                                                         allow_truncated=options.allow_truncated))
    if threaded:
        frames = background(frames)
    detect = clock.timed("detect", anonymizer.detector.detect)
    anonymize = clock.timed("anonymize", anonymizer.anonymize)
    face_frames = failed = dropped = 0
    track_ids: set[int] = set()
    preview_due = 0.0  # the grid time of the next --preview still (_next_preview)
    boxes_log = FrameLog(dst.parent, src)  # per written frame: the boxes anonymized on it (record.frame_faces)
    errors_log: dict[str, str] = {}
    kept_log = KeptLog(dst.parent, src)  # per frame: the boxes kept (--keep-*), on disk; their summary in memory
    kept_tracks: dict[int, dict] | None = None
    plan = None  # --keep-people: the first pass's boxes (keep.PlanLog), closed with the logs
    if keep_record is not None:  # the review's Apply: what the run kept, box by box, and the tracks it flipped
        from .keep import recorded_splitter

        kept_tracks, split = recorded_splitter(keep_record, kept_log)
        items = (split(it) for it in tracked_frames(frames, detect, options, fps))
    elif anonymizer.keep and anonymizer.keep.people is None:  # regions only: decided per frame
        from .keep import split_frame

        kept_tracks = {}
        items = (split_frame(it, {}, anonymizer.keep, kept_log)
                 for it in tracked_frames(frames, detect, options, fps))
    elif anonymizer.keep:  # one decision per track: a first pass decides, this one renders (video/keep.py)
        from .keep import plan_tracks, replay

        first = read_frames(source, DecodeReport(), allow_truncated=options.allow_truncated)
        # the boxes on disk till the next pass
        plan, kept_tracks = plan_tracks(background(first) if threaded else first, detect, options,
                                        fps, anonymizer.keep, dst.parent, src)
        items = replay(frames, plan, kept_tracks, anonymizer.keep, kept_log)
    else:
        items = tracked_frames(frames, detect, options, fps)
    kept_log.tracks = kept_tracks or {}
    bar = tqdm(total=info.estimated_frames, unit="frame", disable=not progress, file=sys.stderr,
               dynamic_ncols=True, desc=src.name[-30:], leave=False)
    record_warnings: list[str] = []
    held: list = []  # the records' lock (_lock_records), from before the video's commit to its record's write

    stills = _Stills(dst, tracks_path(dst) if record else None)
    window = contextlib.ExitStack()  # the deferred signals' window (before_commit), closed once the record is written

    def before_commit() -> None:
        # Called by the writer before the video gets its name (VideoWriter.before_commit): its stills moved into
        # place, and its earlier track record set aside: whatever fails until the video has its name puts both
        # back (stills.discard; a run killed then: the next run's sweep, from the moves' journal), the earlier
        # output whole. Moved in after the video had its name, stills failed a
        # file whose new video was in place. The new record is written once the video has its name: a run killed
        # in between leaves a video without a record (the review flags it, a resume refuses it), never one beside
        # the record of another render (written first, a failed commit left it beside the earlier video, whose
        # settings a resume then took for checked and whose boxes the review showed and Apply rendered).
        if record:
            # the logs' last buffered boxes on the disk: a full disk fails the video here, its earlier output whole,
            # not its record after the video had its name
            boxes_log.flush()
            kept_log.flush()
            _lock_records(dst, held)
        if not replace and dst.exists():  # another run's output, made meanwhile: its record and stills stay its own
            raise exists_now(dst)
        stills.publish(writer.tmp)
        if record:  # from the video's rename to its record's write, Ctrl-C and SIGTERM wait (signals.deferred)
            window.enter_context(deferred())

    try:
        with VideoWriter(dst, info, options.encode, replace) as writer:
            writer.before_commit = before_commit
            write = clock.timed("encode", writer.write)
            sink = EncoderThread(writer, write=write) if threaded else writer

            def begin(item):
                """The frame's boxes, and its anonymizing started: in the helper thread when threaded, so that it
                overlaps the next frames' detection (the same bytes: it depends only on the frame, boxes and key)."""
                dets = item.detections
                if item.frame.index in manual:
                    dets = Detections.merge([dets, Detections.from_boxes(manual[item.frame.index], source="manual")],
                                            "track+manual")
                if item.error is not None:
                    return item, dets, None
                args = (item.frame.rgb, dets, anonymizer.rng_for(f"{key}#{item.frame.index}"))
                return item, dets, pool.submit(anonymize, *args) if pool else _run_now(anonymize, *args)

            def finish(item, dets, future) -> None:
                """Wait for the frame's pixels and write them, or its fallback when anything failed."""
                nonlocal failed, dropped, face_frames, preview_due
                vf = item.frame
                out = None
                error = item.error
                if future is not None:
                    try:
                        out = future.result()
                    except (KeyboardInterrupt, SystemExit, MemoryError):
                        raise
                    except Exception as exc:
                        error = f"frame {vf.index}: {exc.__class__.__name__}: {exc}"
                if record:
                    boxes_log.append([] if error is not None else frame_faces(dets))
                if error is not None:
                    failed += 1
                    errors_log[str(vf.index)] = error
                    if len(warnings) < 20:
                        warnings.append(error)
                    if options.on_error == "drop":
                        dropped += 1
                        bar.update(1)
                        return
                    out = full_blur(vf.rgb)
                else:
                    face_frames += len(item.detections)
                    track_ids.update(int(t) for t in item.detections.track_id if t >= 0)
                if options.preview and vf.time >= preview_due - _preview_slack(options.preview):
                    stills.write(out, vf.time, vf.index)
                    preview_due = _next_preview(vf.time, options.preview)
                (sink.write if threaded else write)(out, vf.pts, vf.duration)
                bar.update(1)
                bar.set_postfix(faces=len(item.detections), failed=failed, refresh=False)

            pool = ThreadPoolExecutor(1, thread_name_prefix="faceveil-anonymize") if threaded else None
            try:
                pending = None
                for item in items:  # detection of the frames ahead runs here, beside the pending frame's anonymizing
                    started = begin(item)
                    if pending is not None:
                        finish(*pending)
                    pending = started
                if pending is not None:
                    finish(*pending)
                source.check()  # what was read is what the path holds: else the output is not committed
            finally:
                if pool is not None:
                    pool.shutdown(wait=True, cancel_futures=True)
                if threaded:
                    sink.close()
            written = writer.frames
            warnings.extend(f"not copied: {x}" for x in writer.left_out)
            t_flush = time.perf_counter()
        clock.busy["encode"] += time.perf_counter() - t_flush  # the encoder's delayed frames, the mux, the rename
        record_warnings.extend(stills.commit())  # the video has its name: the earlier stills and record go
        if record:
            try:
                # kept: whom each kept track matched, each frame's kept boxes and their track ids (the review flips
                # whole tracks)
                write_record(dst, anonymizer, options, key, info, boxes_log, errors_log, failed, len(report.errors),
                             report, None if kept_tracks is None else kept_log)
            except Exception as exc:  # the video is in place: it has no record, as after a kill before this write
                record_warnings.append(f"track record not written: {exc}")  # (the review flags it, a resume refuses it)
    except BaseException:
        stills.discard()  # the video failed: its stills go with it, the earlier ones and the record back in place
        raise
    finally:
        for fd in held:
            os.close(fd)  # drops the records' flock, once the record is written or the earlier one put back
        bar.close()
        boxes_log.close()
        kept_log.close()
        if plan is not None:
            plan.close()
        window.close()  # a signal that came while the video got its name and record acts now
    if report.errors:
        warnings.extend(f"damaged: {e}" for e in report.errors[:5])
    if report.shortfall:
        warnings.append(f"truncated: {report.shortfall}")
    if report.retimed:  # io.video._Timing: before, renumbered without a word and the rest pushed late
        n = report.retimed
        warnings.append(f"re-timed: {n} frame{'s' if n > 1 else ''} repeating an earlier frame's timestamp (or going "
                        "back) placed between their neighbours; the other frames and the audio keep their times")
    warnings.extend(record_warnings)
    seconds = time.perf_counter() - t0
    n = written + dropped
    # the whole file's SHA-256 (the key above samples it): the review proves a report's pair by it, as for photos
    sha = sha256_file(source.name)
    return VideoResult(str(src), str(dst), "written", face_frames, seconds, None, None,
                       [info.width, info.height], input_sha256=sha, frames=written, failed_frames=failed,
                       dropped_frames=dropped,
                       decode_errors=len(report.errors), announced_frames=report.announced,
                       truncated=report.shortfall, tracks=len(track_ids), fps=round(n / max(seconds, 1e-9), 2),
                       warnings=warnings or None, stages=clock.as_json(),
                       kept=None if kept_tracks is None else kept_log.summary())


def _run_now(fn, *args) -> Future:
    """``fn(*args)`` run here, as a finished Future (the unthreaded path takes the threaded one's code)."""
    future: Future = Future()
    try:
        future.set_result(fn(*args))
    except (KeyboardInterrupt, SystemExit, MemoryError):
        raise
    except Exception as exc:
        future.set_exception(exc)
    return future


def anonymize_video(src: str | os.PathLike, dst: str | os.PathLike, method: str = "blur",
                    detector: str | None = None, options: VideoOptions | None = None, progress: bool = False,
                    preset: str | None = None, overwrite: bool = False, seed: int = 0,
                    detector_params: dict | None = None, region: dict | None = None, keep=None,
                    **method_params) -> VideoResult:
    """Python API: anonymize ``src`` into ``dst``; raises FaceveilError if nothing could be written.

    Detection and region default to the CLI's for videos (presets.VIDEO_PRESET). ``options``: a VideoOptions or
    a dict of its fields (``encode`` too: an EncodeOptions or a dict). ``seed``, ``detector_params``, ``region``
    and ``keep`` as in ``Anonymizer`` (the CLI's --seed, --dp, region options, --keep-people). ``dst`` that is
    ``src`` itself is refused; one that exists is replaced only with ``overwrite=True``.
    """
    check_output(Path(src), Path(dst), overwrite)  # the CLI refuses these too; the API overwrote the original
    refuse_photo(src)
    if not is_video_path(dst):
        raise UsageError(f"{dst}: not a video file name (e.g. .mp4, .mkv, .mov, .webm)")
    check_bool("progress", progress)
    options = as_video_options(options)
    try:
        anonymizer = Anonymizer(method=method, method_params=method_params, detector=detector,
                                detector_params=detector_params, region=region, seed=seed,
                                preset=video_preset(detector, preset), keep=keep)
    except UsageError as exc:  # crf=30 said only "unknown parameter 'crf' for method 'blur' (known: ...)"
        raise misplaced_option(exc, method_params) from None
    result = process_video(anonymizer, src, dst, options, progress, replace=overwrite)
    if result.status == "failed":
        raise InputError(result.error)
    return result
