"""Video files in and out with PyAV: RGB frames with their timestamps; H.264 out, audio copied.

Reading yields ``VideoFrame`` records (RGB uint8 HxWx3, upright: a display
rotation in the file is applied to the pixels, as images apply EXIF). Writing
puts the frames back in the stored orientation with the same rotation flag,
time base (a coarse one's ticks split: _subticks), frame timestamps and frame
rate, and remuxes the audio stream packet for packet (no re-encode). The output
is a temporary file in the target folder, renamed at the end: a failure leaves
nothing under the final name.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Iterator

import numpy as np

from ..errors import InputError, UsageError, check_bool
from .atomic import atomic_path
from .images import VIDEO_EXTENSIONS, check_file, format_suffix


def is_video_path(path: str | os.PathLike) -> bool:
    return Path(path).suffix.lower() in VIDEO_EXTENSIONS


@dataclass(frozen=True)
class VideoInfo:
    path: Path
    width: int  # stored size (before rotation)
    height: int
    fps: Fraction  # average frame rate
    time_base: Fraction  # the frames' (VideoFrame.pts): the stream's, its ticks split where coarse (_subticks)
    frames: int  # from the container; 0 when unknown (then estimated from duration)
    duration: float  # seconds of the video stream
    rotation: int  # degrees counter-clockwise that the display applies (0, 90, 180, -90)
    codec: str
    has_audio: bool
    audio_codec: str | None = None
    opened: str | None = None  # what the writer opens to copy the audio: the VideoSource's name (default: path)
    # the source's colour primaries and transfer (FFmpeg's AVColorPrimaries / AVColorTransferCharacteristic; 2:
    # unspecified): the writer tags its output with them (colour_tags)
    color_primaries: int = 2
    color_trc: int = 2
    # the stored pixels' width / height as displayed (sample aspect ratio) where it is not 1 (anamorphic DV, HDV,
    # DVD): the writer keeps it, or a 1440x1080 HDV clip played squeezed at 4:3 instead of 16:9
    sar: Fraction | None = None
    # bits per sample of the decoded pixels (10 for a 10-bit HDR or log clip): faceveil's frames are 8-bit RGB, so
    # the output is 8-bit, and the writer says so where the source had more
    bits: int = 8

    @property
    def estimated_frames(self) -> int:
        return self.frames or max(1, round(self.duration * float(self.fps)))


# RGB -> Y'CbCr for the encoder, written here rather than left to swscale (PyAV's reformat on the way into
# the encoder), because that conversion was not deterministic. Measured on the loaded 2-core test machine
# (a 330x240 clip, 8 runs per process, one encoder thread, rgb24 rows zero-padded, the very same RGB frames
# handed to the writer in every run): with swscale, 6 of 14 processes wrote other bytes in some run (8 of 112
# runs, in the bottom-right macroblock from frame 0 on) and tests/test_video_determinism.py's byte-identity
# tests failed 2 runs in 5; with this conversion 0 of 112 runs (one output in all 14 processes) and the tests
# passed 10 of 10. (Alone, swscale gave the same planes whatever the row padding held: the memory state it
# depends on was not found.) Every byte the encoder gets, padding included, is now set here.
# BT.601 limited range ("studio swing": Y 16-235, Cb/Cr 16-240, what players assume for untagged video and
# what swscale wrote before, the same values on flat colours), in integer fixed point so that the result is
# the same on every machine and numpy build (no float rounding, no BLAS), chroma 4:2:0 as the mean of each
# 2x2 block. The stream is tagged with this matrix and range (VideoWriter._open), and the frame handed to the
# encoder is already in its pixel format, so PyAV converts nothing (checked in VideoWriter.write). Cost:
# about twice swscale's time, in the encoder's own thread (wall time, best of 15 on the busy test machine:
# 640x480 2.1 ms a frame, swscale 1.0; 1920x1080 65 ms, swscale 32; measured as CPU time alone, 14-15 ms at
# 1080p, docs/video.md).
_Q = 16  # fixed-point bits
_BT601 = np.array([[65.481, 128.553, 24.966],  # Y  (rows sum to 219: 16-235)
                   [-37.797, -74.203, 112.0],  # Cb (rows sum to 0: grey has no chroma)
                   [112.0, -93.786, -18.214]]) / 255  # Cr
_K = np.round(_BT601 * (1 << _Q)).astype(np.int64)
_K[1:, 0] -= _K[1:].sum(axis=1)  # keep the chroma rows' sums exactly 0 after rounding
_K = _K.astype(np.int32)
AVCOL_RANGE_MPEG = 1  # FFmpeg's AVColorRange: limited range
AVCOL_SPC_SMPTE170M = 6  # FFmpeg's AVColorSpace: the BT.601 matrix
# FFmpeg's defined AVColorPrimaries and AVColorTransferCharacteristic values (2 is "unspecified", 0 and 3 reserved)
_PRIMARIES = {1, 4, 5, 6, 7, 8, 9, 10, 11, 12, 22}
_TRANSFERS = {1, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18}


def colour_tags(info: "VideoInfo") -> dict[str, int]:
    """The source's primaries and transfer where it states them, for the output's stream. The pixels keep the
    source's R'G'B' values (decoded with its own matrix, encoded with BT.601's, tagged so): untagged, an HDR clip
    (an iPhone's HLG, BT.2020) played as SDR BT.709, flat and washed out, and a BT.2020 one lost its gamut."""
    tags = {}
    if info.color_primaries in _PRIMARIES:
        tags["color_primaries"] = info.color_primaries
    if info.color_trc in _TRANSFERS:
        tags["color_trc"] = info.color_trc
    return tags


ENCODER_PIX_FMTS = ("yuv420p", "yuv444p")  # what _yuv_frame builds


# Y in float32 through OpenCV's transform: the weights _K[0] / 2**16 (a power of two: exact), the offset 16 and the
# rounding's half one constant. Every product (a 16-bit weight times an 8-bit value) and every partial sum is a
# multiple of 2**-16 under 256: 24 significant bits, which float32 holds exactly whatever the order of the sums (SIMD,
# FMA), so truncating gives the integer formula's bytes (tests/test_video_determinism.py checks all 2**24 colours) in
# about half its CPU (720p: ~1.3 against ~2.7 ms a frame). Chroma stays in integers: a 4-pixel sum (10 bits) times a
# 15-bit weight needs 25 bits.
_Y_AFFINE = np.array([[*(_K[0] / (1 << _Q)), 16.5]])


def _component(k: int, rgb, shift: int) -> np.ndarray:
    """Y (k=0), Cb (1) or Cr (2), uint8, of the planes ``rgb`` (R, G, B: each HxW, each value a sum of 2**shift
    pixels), in integers."""
    q = _Q + shift
    acc = np.multiply(rgb[0], _K[k, 0], dtype=np.int32)
    acc += np.multiply(rgb[1], _K[k, 1], dtype=np.int32)
    acc += np.multiply(rgb[2], _K[k, 2], dtype=np.int32)
    acc += ((16 if k == 0 else 128) << q) + (1 << (q - 1))  # offset, and round to nearest
    acc >>= q
    # in range by construction (Y 16-235, Cb/Cr 16-240): the clip only guards the coefficients' rounding
    return np.clip(acc, 16, 240 if k else 235, out=acc).astype(np.uint8)


_LUMA_ROWS = 64  # rows converted at a time: the float32 copy stays in the cache (720p: ~1.4x faster than whole
# frames) and small on 4K/8K frames (a whole 8K frame's float32 copy is ~400 MB)


def _luma(rgb: np.ndarray) -> np.ndarray:
    """Y of RGB uint8 HxWx3: ``_component(0, ...)``'s bytes, in float32 (_Y_AFFINE), a strip of rows at a time."""
    import cv2

    y = np.empty(rgb.shape[:2], np.uint8)
    for r in range(0, rgb.shape[0], _LUMA_ROWS):
        # 16.5 to 235.5 by construction: truncating (the unsafe cast) is the integer formula's shift, no clip needed
        strip = cv2.transform(rgb[r:r + _LUMA_ROWS].astype(np.float32), _Y_AFFINE)
        np.copyto(y[r:r + _LUMA_ROWS], strip.reshape(-1, y.shape[1]), casting="unsafe")
    return y


def _yuv_planes(rgb: np.ndarray, pix_fmt: str) -> list[np.ndarray]:
    """The Y, U (Cb), V (Cr) planes of RGB uint8 HxWx3 in ``pix_fmt`` (yuv420p or yuv444p)."""
    import cv2

    if pix_fmt not in ENCODER_PIX_FMTS:
        raise ValueError(f"no RGB conversion to {pix_fmt}")
    rgb = np.ascontiguousarray(rgb, dtype=np.uint8)
    y = _luma(rgb)
    if pix_fmt == "yuv444p":
        planes = cv2.split(rgb)  # one contiguous plane each: cheaper than numpy's strided transpose
        return [y, _component(1, planes, 0), _component(2, planes, 0)]
    h, w = rgb.shape[:2]
    if h % 2 or w % 2:  # an odd last row/column: its chroma sample covers it twice (edge replication)
        rgb = np.pad(rgb, ((0, h % 2), (0, w % 2), (0, 0)), mode="edge")
    # each 2x2 block's sum per channel: the rows in pairs (OpenCV, into uint16), then the columns in pairs (half as
    # wide, each pixel pair as 6 channels): a third of the CPU of numpy's four strided views per plane
    rows = cv2.add(rgb[0::2], rgb[1::2], dtype=cv2.CV_16U)
    pairs = rows.reshape(rows.shape[0], rows.shape[1] // 2, 6)
    quad = [np.add(pairs[..., k], pairs[..., k + 3]) for k in range(3)]
    return [y, _component(1, quad, 2), _component(2, quad, 2)]


def _yuv_frame(rgb: np.ndarray, pix_fmt: str):
    """An ``av.VideoFrame`` in ``pix_fmt`` holding ``rgb`` (converted by _yuv_planes), each plane's row
    padding zeros (not whatever the allocator left there), tagged BT.601 limited range."""
    import av

    h, w = rgb.shape[:2]
    frame = av.VideoFrame(w, h, pix_fmt)
    for plane, data in zip(frame.planes, _yuv_planes(rgb, pix_fmt)):
        assert data.shape == (plane.height, plane.width), (data.shape, plane.height, plane.width)
        rows = np.frombuffer(plane, np.uint8).reshape(plane.height, plane.line_size)  # the frame's own buffer
        rows[:, : plane.width] = data
        rows[:, plane.width:] = 0
    frame.color_range = AVCOL_RANGE_MPEG
    frame.colorspace = AVCOL_SPC_SMPTE170M
    return frame


@dataclass
class VideoFrame:
    rgb: np.ndarray  # HxWx3 uint8, upright
    index: int  # 0-based decode order
    pts: int | None  # in VideoInfo.time_base: the stream's, its ticks split where coarse (_subticks)
    time: float  # seconds
    # How long it shows, in VideoInfo.time_base: to the next frame's pts; the last frame, the decoder's (its
    # packet's). None: unknown (the writer then gives it one frame at the average rate)
    duration: int | None = None


def identity(st: os.stat_result) -> tuple:
    """A file's identity and version: another file renamed over its path, or a write to it, changes it."""
    return st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns


class VideoSource:
    """A video opened once for every read of one job (probe, key, both decodes of --keep-people, the audio copy).

    Each read opens ``name``: on Linux ``/proc/self/fd/N``, this open file again (its own read position), so a file
    renamed over the path meanwhile is never read; its frames were written with the first file's boxes, faces
    left visible (an audit). Elsewhere ``name`` is the path and ``check`` is what guards. ``check``: the open file
    is still the one at the path, not written to since: else InputError (the job writes nothing).
    """

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        check_file(self.path, "a video")
        try:
            self._fd = os.open(self.path, os.O_RDONLY)
        except PermissionError:
            raise InputError(f"{self.path}: permission denied") from None
        except OSError as exc:
            raise InputError(f"{self.path}: cannot read ({exc.strerror})") from None
        self._id = identity(os.fstat(self._fd))
        again = f"/proc/self/fd/{self._fd}"
        self.name = again if os.path.exists(again) else str(self.path)

    def check(self) -> None:
        try:
            same = identity(os.fstat(self._fd)) == self._id == identity(os.stat(self.path))
        except OSError:
            same = False
        if not same:
            raise InputError(f"{self.path}: changed while being read (replaced or written to)")

    def close(self) -> None:
        os.close(self._fd)

    def __enter__(self) -> "VideoSource":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _open_input(src: Path | VideoSource):
    import av

    if isinstance(src, VideoSource):
        path, name = src.path, src.name
    else:
        path, name = src, str(src)
        check_file(path, "a video")
    try:
        return av.open(name, "r")
    except PermissionError:
        raise InputError(f"{path}: permission denied") from None
    except (av.FFmpegError, OSError, ValueError) as exc:
        raise InputError(f"{path}: not a video or unsupported format ({_short(exc)})") from None


def _short(exc: BaseException) -> str:
    if getattr(exc, "strerror", None):  # FFmpegError: the message without errno and file name
        return str(exc.strerror)[:160]
    text = str(exc).strip().splitlines()
    return (text[0] if text else exc.__class__.__name__)[:160]


_ATTACHED_PIC = 1024  # AV_DISPOSITION_ATTACHED_PIC: a cover picture of an audio file, one frame, not a video


def _video_stream(container, path: Path):
    fmt = container.format.name
    if fmt == "image2" or fmt.endswith("_pipe"):  # FFmpeg's readers of single pictures (jpeg_pipe, png_pipe ...)
        container.close()  # it went through as a video of one frame, written as .mp4
        kind = fmt.removesuffix("_pipe").upper() if fmt != "image2" else "picture"
        try:  # FFmpeg's picture readers are named as Pillow's formats are (JPEG, PNG, WEBP, BMP, TIFF)
            todo = f"rename it to {path.stem}{format_suffix(kind)}"
        except InputError:  # one faceveil does not write (GIF, "picture")
            todo = "give it a photo's extension"
        raise InputError(f"{path}: a {kind} photo named {path.suffix or 'without an extension'}, not a video; "
                         f"{todo} to anonymize it")
    if not container.streams.video:
        container.close()
        raise InputError(f"{path}: no video stream")
    if all(int(v.disposition) & _ATTACHED_PIC for v in container.streams.video):
        container.close()  # it read as a truncated video of one frame among the audio's announced thousands
        raise InputError(f"{path}: no video stream (only a cover picture: an audio file)")
    return next(v for v in container.streams.video if not int(v.disposition) & _ATTACHED_PIC)


def _source(path: str | os.PathLike | VideoSource) -> tuple[Path, Path | VideoSource]:
    """(the path for messages, what _open_input opens)."""
    return (path.path, path) if isinstance(path, VideoSource) else (Path(path), Path(path))


def probe(path: str | os.PathLike | VideoSource) -> VideoInfo:
    path, src = _source(path)
    c = _open_input(src)
    try:
        v = _video_stream(c, path)
        fps = v.average_rate or v.guessed_rate or v.base_rate or Fraction(25)
        tb = Fraction(v.time_base or Fraction(1, 90000))
        if v.duration is not None:
            duration = float(v.duration * tb)
        elif c.duration is not None:
            duration = c.duration / 1_000_000
        else:
            duration = 0.0
        rotation = 0
        try:
            for frame in c.decode(v):
                rotation = int(round(frame.rotation or 0))
                break
        except Exception:
            pass  # the reader reports undecodable data; probing only reads metadata
        audio = c.streams.audio[0] if c.streams.audio else None
        return VideoInfo(path, v.codec_context.width, v.codec_context.height, Fraction(fps), tb / _subticks(tb),
                         int(v.frames or 0), duration, rotation, v.codec_context.name, audio is not None,
                         audio.codec_context.name if audio is not None else None,
                         src.name if isinstance(src, VideoSource) else None,
                         int(v.codec_context.color_primaries or 2), int(v.codec_context.color_trc or 2),
                         _sar(v.sample_aspect_ratio), _bits(v.codec_context.pix_fmt))
    finally:
        c.close()


def _bits(pix_fmt: str | None) -> int:
    """Bits per sample of a pixel format ("yuv420p10le": 10); 8 where unknown."""
    import av

    try:
        return max(8, max(c.bits for c in av.VideoFormat(pix_fmt).components)) if pix_fmt else 8
    except (ValueError, TypeError, av.FFmpegError):
        return 8


def _sar(value) -> Fraction | None:
    """A stream's sample aspect ratio, None where it is square or unknown (0/1)."""
    return Fraction(value) if value and value > 0 and value != 1 else None


def upright(rgb: np.ndarray, rotation: int) -> np.ndarray:
    """The stored frame as displayed: rotated ``rotation`` degrees counter-clockwise."""
    k = (round(rotation / 90)) % 4
    return np.ascontiguousarray(np.rot90(rgb, k)) if k else rgb


def stored(rgb: np.ndarray, rotation: int) -> np.ndarray:
    """Inverse of ``upright``."""
    k = (round(rotation / 90)) % 4
    return np.ascontiguousarray(np.rot90(rgb, -k)) if k else rgb


class DecodeReport:
    """Counts what could not be decoded, so the caller can report it."""

    def __init__(self) -> None:
        self.errors: list[str] = []
        self.retimed = 0  # frames whose timestamp repeated or went back, given a time between their neighbours
        self.decoded = 0  # frames decoded
        self.announced = 0  # frames the container announces (0: unknown)
        self.shortfall: str | None = None  # "decoded 48 of 521 frames ..." when fewer than announced


# Slack for frames an MP4 edit list legitimately trims from the decoded stream.
_FRAME_SLACK = 2
# Matroska (and WebM) has no frame count, and its demuxer reads past damage: a file with 20 % of it zeroed lost
# 10 of 50 frames, FFmpeg read on without an error (it only logs one, and forwarding libav's log from its decoder
# threads deadlocked PyAV) and the frame rate's timestamps cannot tell a hole from a variable-frame-rate pause (a
# browser's WebM of a still screen). What shows it is the bytes the demuxer skipped: consecutive packets of a whole
# file lie a block header apart (6-24 bytes in the shared and audit clips), the zeroed file's around its hole 10 kB.
_SKIPPED_BYTES = 4096
# A video stream may end before the container's duration (audio running on): with nothing
# but the container's duration to go by, a shorter gap than this is no truncation.
_CONTAINER_SLACK_S = 1.0


def _last_packet_end(path: str) -> float | None:
    """The latest end time (s) of any packet of any stream, from a demux-only pass (no decoding)."""
    import av

    end = None
    try:
        with av.open(path) as c:
            for packet in c.demux():
                if packet.pts is None or packet.time_base is None:
                    continue
                t = float((packet.pts + (packet.duration or 0)) * packet.time_base)
                end = t if end is None else max(end, t)
    except av.FFmpegError:  # damaged past some point: what was read before it counts
        pass
    return end


def _matroska(container) -> bool:
    """Matroska or WebM (FFmpeg's one demuxer "matroska,webm")."""
    return container.format.name.startswith("matroska")


def _shortfall(v, container, decoded: int, last_end: float | None) -> tuple[int, str | None]:
    """(announced frames, description of the shortfall or None) for ``decoded`` frames ending at ``last_end``."""
    tb = v.time_base or Fraction(1, 90000)
    fps = float(v.average_rate or v.guessed_rate or 25)
    if v.frames:
        # An MP4 cut with stream copy counts the frames its edit list trims (52) while its duration is the
        # kept part (39.5 frames): the smaller of the two is what plays.
        announced = int(v.frames) if v.duration is None else min(int(v.frames), max(1, round(v.duration * tb * fps)))
        if decoded < announced - _FRAME_SLACK:
            return announced, f"decoded {decoded} of {announced} frames the container announces"
        return announced, None
    if v.duration is not None:
        end = float(((v.start_time or 0) + v.duration) * tb)
        slack = _FRAME_SLACK / fps
    elif container.duration is not None:
        # Matroska's duration runs from 0, not from the first timestamp (a clip of 2 s starting at 5 s says 7 s)
        start = 0 if _matroska(container) else container.start_time or 0
        end = (start + container.duration) / 1_000_000
        slack = _FRAME_SLACK / fps
        # Matroska/WebM announce only the whole file's duration, which audio may run past the video: the
        # file is whole when some stream's packets reach that end (a cut file stops every stream early).
        streams_end = _last_packet_end(container.name)
        if streams_end is not None:
            last_end = streams_end if last_end is None else max(last_end, streams_end)
        else:
            slack = max(slack, _CONTAINER_SLACK_S)
    else:
        return 0, None
    announced = max(1, round((end - float((v.start_time or 0) * tb)) * fps))
    if last_end is None or last_end < end - slack:
        got = 0.0 if last_end is None else last_end
        return announced, (f"decoded {decoded} of about {announced} frames the container announces "
                           f"({got:.2f} of {end:.2f} s)")
    return announced, None


# The longest tick the frames' timestamps have (VideoInfo.time_base): a stream's coarser time base is split (_subticks).
_TICK = Fraction(1, 1000)


def _subticks(tb: Fraction) -> int:
    """The frames' ticks per tick of a stream's time base ``tb``: 1, or where a tick is longer than ``_TICK`` (1/25
    or 1/30 s, one a frame: an AVI's time base, some MP4s') the least power of two that brings it to ``_TICK`` or
    under. With a tick a frame, a frame that repeats a timestamp had no room before the next frame (_Timing): it
    took that frame's tick, and that frame and every frame after it, to the next gap (the end of a constant rate's
    video), were pushed a tick (a frame) late. Split, the frame goes between its neighbours and they keep their
    times. A power of two: MP4 stores a time base 1/N under 1/10000 doubled until it is not (1/25 as 1/12800), so
    such an MP4 output keeps its time scale (and Matroska's is 1 ms whatever the source's)."""
    m = 1
    while tb / m > _TICK:
        m *= 2
    return m


# A run of frames with repeated timestamps is held (RGB, in memory) until the next later timestamp shows the gap to
# spread them over: at most this many, then they take one tick each after the frame before.
_RETIME_RUN = 8


class _Timing:
    """The frames' timing on their way out of the decoder: each frame's duration (to the next frame's pts; the
    last keeps the decoder's), and a frame whose pts repeats or goes back before the frame before it re-timed.

    A re-timed frame takes a time between its neighbours: a run of k of them after a frame at p, before the next
    frame at q, is spread evenly over p..q (one tick each where the gap has fewer than k + 1); the frames after the
    run keep their own times, and so their sync with the audio. Before, the writer numbered such a frame at the
    frame rate after the last and every frame after it was pushed one frame late in turn (the rest of the video,
    its end too, a frame behind its audio), without a word; FFmpeg drops such frames. Nothing is dropped here:
    every frame is anonymized and written, and the count goes to ``DecodeReport.retimed`` (a warning)."""

    def __init__(self, tb: Fraction, report: DecodeReport):
        self.tb, self.report = tb, report
        self.prev: VideoFrame | None = None  # the last frame with its final time; its duration waits for the next
        self.run: list[VideoFrame] = []  # frames after prev whose pts is not above prev's

    def push(self, f: VideoFrame) -> Iterator[VideoFrame]:
        """The frames whose timing is settled once ``f`` is known."""
        prev = self.prev
        if prev is not None and f.pts is not None and prev.pts is not None and f.pts <= prev.pts:
            self.run.append(f)
            if len(self.run) >= _RETIME_RUN:
                yield from self._settle(None)
            return
        if self.run:
            yield from self._settle(f.pts)
            prev = self.prev
            if f.pts is not None and f.pts <= prev.pts:  # no room before f: it moves on a tick after the run
                self.run.append(f)
                return
        if prev is not None:
            if f.pts is not None and prev.pts is not None:
                prev.duration = f.pts - prev.pts
            yield prev
        self.prev = f

    def flush(self) -> Iterator[VideoFrame]:
        """The frames still held, at the end of the stream."""
        if self.run:  # spread up to where the last frame ended in the source, where it says
            last, d = self.run[-1], self.run[-1].duration or self.prev.duration
            yield from self._settle(last.pts + d if d else None)
        if self.prev is not None:
            yield self.prev
            self.prev = None

    def _settle(self, end: int | None) -> Iterator[VideoFrame]:
        """Re-time ``run`` between ``prev`` and ``end`` (the next frame's pts; None: unknown), and yield all but
        the last of them, which becomes ``prev``."""
        p, k = self.prev.pts, len(self.run) + 1
        spread = end is not None and end - p >= k
        for j, f in enumerate(self.run, 1):
            f.pts = p + j * (end - p) // k if spread else p + j
            f.time = float(f.pts * self.tb)
        self.report.retimed += len(self.run)
        chain = [self.prev, *self.run]
        for a, b in zip(chain, chain[1:]):
            a.duration = b.pts - a.pts
            yield a
        self.prev, self.run = chain[-1], []
        if spread:
            self.prev.duration = end - self.prev.pts


def read_frames(path: str | os.PathLike | VideoSource, report: DecodeReport | None = None,
                threads: int = 0, allow_truncated: bool = False) -> Iterator[VideoFrame]:
    """Decode the first video stream to upright RGB frames.

    A truncated or corrupt file raises InputError (after the frames before the damage were
    yielded, so a writer must discard its output): a packet that cannot be demuxed or
    decoded, a frame the decoder flags as corrupt (it concealed damage), bytes a Matroska
    demuxer skipped (_SKIPPED_BYTES), or fewer
    frames (or seconds) than the container announces. With ``allow_truncated`` bad packets
    are skipped (their pixels do not exist, so nothing from them can leak), corrupt frames
    are kept (anonymized as any other), and everything is recorded in ``report``. A file
    that yields no frame at all always raises InputError.
    """
    import av

    path, src = _source(path)
    c = _open_input(src)
    try:
        v = _video_stream(c, path)
        v.thread_type = "AUTO"  # frame threading: decoding is 2-3x faster on 2 cores
        if threads:
            v.codec_context.thread_count = threads
        tb = Fraction(v.time_base or Fraction(1, 90000))
        m = _subticks(tb)  # the frames' ticks per tick of the stream's (VideoInfo.time_base)
        report = report if report is not None else DecodeReport()
        hint = " (--allow-truncated writes the frames that decode)"
        index = 0
        bad = 0
        last_end = None
        step = 1 / float(v.average_rate or v.guessed_rate or 25)
        mkv = _matroska(c)
        end_of_last = None  # where the previous packet (of any stream) ended: Matroska's skipped bytes
        timing = _Timing(tb / m, report)

        def damaged(what: str) -> None:
            report.errors.append(what)
            if not allow_truncated:
                raise InputError(f"{path}: truncated or corrupt video: {what}{hint}")
        packets = c.demux() if mkv else c.demux(v)  # every stream's packets, to see the bytes between them
        while True:
            try:
                packet = next(packets)
            except StopIteration:
                break
            except av.FFmpegError as exc:  # a broken container: stop
                report.errors.append(f"demux: {_short(exc)}")
                if not allow_truncated:
                    raise InputError(f"{path}: truncated or corrupt video: cannot read past frame {index} "
                                     f"({_short(exc)}){hint}") from None
                break
            if mkv and packet.pos is not None and packet.pos >= 0 and packet.size:
                if end_of_last is not None and packet.pos - end_of_last > _SKIPPED_BYTES:
                    damaged(f"{packet.pos - end_of_last:,} bytes unreadable before frame {index}")
                end_of_last = packet.pos + packet.size
            if packet.stream is not v:
                continue
            try:
                frames = packet.decode()
            except av.FFmpegError as exc:
                bad += 1
                report.errors.append(f"packet pts={packet.pts}: {_short(exc)}")
                if not allow_truncated:
                    raise InputError(f"{path}: truncated or corrupt video: frame {index} cannot be decoded "
                                     f"({_short(exc)}){hint}") from None
                continue
            for frame in frames:
                if frame.is_corrupt:
                    damaged(f"frame {index} is damaged (the decoder flags it corrupt)")
                t = float(frame.pts * tb) if frame.pts is not None else index * step
                rgb = frame.to_ndarray(format="rgb24")
                rot = int(round(frame.rotation or 0))
                last_end = t + step
                pts = None if frame.pts is None else frame.pts * m
                yield from timing.push(VideoFrame(upright(rgb, rot), index, pts, t, (frame.duration or 0) * m or None))
                index += 1
                report.decoded = index
        yield from timing.flush()
        if index == 0:
            why = f"no frame could be decoded ({bad} bad packets)" if bad else "no video frames"
            raise InputError(f"{path}: {why}")
        report.announced, report.shortfall = _shortfall(v, c, index, last_end)
        if report.shortfall and not allow_truncated:
            raise InputError(f"{path}: truncated video: {report.shortfall}{hint}")
    except av.FFmpegError as exc:
        raise InputError(f"{path}: cannot decode video ({_short(exc)})") from None
    finally:
        c.close()


# Output ------------------------------------------------------------------

_CODEC_ALIASES = {"h264": "libx264", "x264": "libx264", "h265": "libx265", "hevc": "libx265", "x265": "libx265",
                  "vp9": "libvpx-vp9", "vp8": "libvpx", "av1": "libaom-av1"}


def encoder_name(name: str) -> str:
    """A --codec as FFmpeg names its encoder (h264 -> libx264, ...)."""
    return _CODEC_ALIASES.get(name.lower(), name)


def check_codec(name: str) -> None:
    """Refuse (bad usage, before any work) a --codec this PyAV build cannot encode video with."""
    import av

    codec = encoder_name(name)
    try:
        kind = av.codec.Codec(codec, "w").type
    except (av.FFmpegError, ValueError):  # UnknownCodecError is a ValueError
        raise UsageError(f"--codec {name}: no such encoder in this build (e.g. libx264, libx265, libvpx-vp9)") from None
    if kind != "video":
        raise UsageError(f"--codec {name}: an {kind} encoder, not a video one (e.g. libx264, libx265, libvpx-vp9)")


# VP8/VP9/AV1 take --crf + 11 (their scale is 0-63, x264's and x265's 0-51)
_CRF_OFFSET = {"libvpx-vp9": 11, "libvpx": 11, "libaom-av1": 11}


def crf_range(codec: str | None) -> tuple[int, int]:
    """The --crf values ``codec`` (None: the default, H.264) takes."""
    name = encoder_name(codec) if codec else "libx264"
    return 0, 51 if name in ("libx264", "libx265") else 63 - _CRF_OFFSET.get(name, 0)


# Encoders whose bitstream holds no sample aspect ratio, by a part of their name (libvpx, libvpx-vp9, vp9_vaapi,
# libaom-av1, librav1e, libsvtav1): in Matroska/WebM it is lost (VideoWriter)
_NO_SAR_CODECS = ("vpx", "vp8", "vp9", "av1")


def default_codec(suffix: str) -> str:
    # WebM allows only VP8/VP9/AV1; everything else gets H.264.
    return "libvpx-vp9" if suffix.lower() == ".webm" else "libx264"


# x264's settings for bytes that depend only on the frames and the settings (issue 20; measured with the same RGB
# frames encoded 5 times in each of 5-7 processes at once on 2 loaded cores, tests/test_video_encode_threads.py):
# - cpu-independent: x264 picks CPU-specific code paths (its assembly) for some of its work, and on this AVX-512
#   machine they did not even repeat within one process: one thread, 336x240 and 330x240 pans over a photo
#   gave 11 and 6 different files in 35 runs (330x256: 4; 640x360 and 720p: one). With cpu-independent=1 (x264:
#   "ensure exact reproducibility across different cpus") every setting tried gave one file (35 of 35 runs:
#   1, 2 and 4 threads, frame or sliced, 330x240 to 1080p), the same as x264 without assembly (asm=0), so
#   also the same on another CPU; size, quality and speed unchanged (1080p: 386,462 bytes against 387,099,
#   Y PSNR 50.13 against 50.14 dB). The run-to-run differences once put down to threads came from here.
# - a fixed thread count, never the codec's own choice (x264 left to choose took a thread per CPU the run may
#   use, so the bytes followed the CPU count: a taskset, a container's cpuset or another machine gave other
#   bytes): ENCODE_THREADS frame threads (x264's default kind: same size as one thread; sliced threads cost
#   ~1 %). x264 stays deterministic unless told --non-deterministic, which faceveil never sets.
# Other codecs keep one thread. EncodeOptions.threads > 0 sets another count (and so other bytes).
ENCODE_THREADS = 4
ENCODE_THREAD_TYPE = "FRAME"
X264_PARAMS = "cpu-independent=1"
# How the encoder was run, as video track records store it (video/record.py): outputs written another way have
# other bytes, so a resume (--skip-existing) must not take them for this run's.
ENCODER_MODE = f"x264 {X264_PARAMS}, {ENCODE_THREADS} {ENCODE_THREAD_TYPE.lower()} threads"


@dataclass(frozen=True)
class EncodeOptions:
    codec: str | None = None  # None: by the output's extension (H.264, VP9 for .webm)
    crf: int = 20
    preset: str = "veryfast"  # measured: 'medium' (x264's default) encodes ~2.5x slower than veryfast
    audio: bool = True
    threads: int = 0  # encoder threads; 0: ENCODE_THREADS for x264, one for other codecs (a fixed count: fixed bytes)

    def __post_init__(self):
        check_bool("audio", self.audio)
        for name in ("crf", "threads"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)):
                raise UsageError(f"--{name} must be a whole number, got {v!r}")


class VideoWriter:
    """Encode frames into ``target`` atomically; copy the source's audio packets.

    Use as a context manager; call ``write(frame)`` with upright RGB frames and
    the pts from the reader. On an exception inside the block the temporary
    file is deleted and nothing appears under ``target``.
    """

    def __init__(self, target: str | os.PathLike, info: VideoInfo, options: EncodeOptions = EncodeOptions(),
                 replace: bool = True):
        self.target = Path(target)
        self.replace = replace  # False: a target another writer made meanwhile is not replaced (FileExistsError)
        self.info = info
        self.options = options
        self.frames = 0
        self._ctx = None
        self.tmp: Path | None = None  # __enter__: the temporary file that gets the target's name at the commit
        self._out = None
        self._audio_in = None
        self._audio_packets = None
        self._audio_next = None
        self._amap: dict = {}  # input stream index -> output stream (audio, subtitles)
        self.left_out: list[str] = []  # streams of the input not in the output, and why (the job warns of each)
        self._last_pts = None
        self._held = None  # (frame, pts, duration) written, encoded when the next one comes (write)
        self._durations: dict[int, int] = {}  # pts -> the frame's duration, for its packet (write)
        # called after the last frame is encoded and muxed, before the output gets its name (the video job
        # moves its --preview stills into place and its earlier track record aside there)
        self.before_commit = None

    # context management ------------------------------------------------
    def __enter__(self) -> "VideoWriter":
        self._ctx = atomic_path(self.target, self.replace)
        self.tmp = tmp = self._ctx.__enter__()  # the output till its commit (the video job's stills journal names it)
        try:
            self._open(tmp)
        except BaseException as exc:
            self._close_quietly()
            self._ctx.__exit__(type(exc), exc, exc.__traceback__)
            raise
        return self

    def __exit__(self, exc_type, exc, tb) -> bool:
        if exc_type is None:
            try:
                self._finish()
                if self.before_commit is not None:
                    self.before_commit()
            except BaseException as err:
                self._close_quietly()
                self._ctx.__exit__(type(err), err, err.__traceback__)
                raise
            self._ctx.__exit__(None, None, None)
            return False
        self._close_quietly()
        self._ctx.__exit__(exc_type, exc, tb)
        return False

    # setup ------------------------------------------------------------------
    def _open(self, tmp: Path) -> None:
        import av

        info, opt = self.info, self.options
        fmt = {".mkv": "matroska", ".webm": "webm", ".mov": "mov", ".mp4": "mp4", ".m4v": "mp4", ".avi": "avi"}
        # bitexact: the same frames give the same bytes (Matroska/WebM otherwise write random segment and
        # track UIDs, so every run of a .mkv or .webm differed; tests/test_video_determinism.py).
        self._out = av.open(str(tmp), "w", format=fmt.get(self.target.suffix.lower()),
                            options={"fflags": "+bitexact"})
        codec = encoder_name(opt.codec) if opt.codec else default_codec(self.target.suffix)
        try:
            v = self._out.add_stream(codec, rate=info.fps)
        except (av.FFmpegError, ValueError) as exc:
            raise UsageError(f"video codec {codec!r} not available ({_short(exc)})") from None
        # AVI has no rotation flag (a rotated phone clip played sideways): its frames are stored upright instead
        avi = self.target.suffix.lower() == ".avi"
        self._rotation = 0 if avi else info.rotation
        turned = avi and round(info.rotation / 90) % 2 == 1
        v.width, v.height = (info.height, info.width) if turned else (info.width, info.height)
        if info.sar is not None:  # x264/x265 write it in the stream, MP4 and MOV in the container (not VP9 in WebM)
            v.codec_context.sample_aspect_ratio = 1 / info.sar if turned else info.sar
            if self._out.format.name in ("matroska", "webm") and any(k in codec for k in _NO_SAR_CODECS):
                # FFmpeg's Matroska muxer takes it from a field PyAV cannot set, and these bitstreams hold none:
                # the video would play squeezed without a word (checked: VP9 in .webm and .mkv reads back 1:1)
                self.left_out.append(f"the pixels' aspect ratio {info.sar.numerator}:{info.sar.denominator} "
                                     f"({codec} in {self.target.suffix} cannot carry it: the video plays squeezed; "
                                     "write .mp4, or .mkv with H.264)")
        if info.bits > 8:
            self.left_out.append(f"the source's {info.bits}-bit depth (faceveil's frames are 8-bit: the video is "
                                 "written 8-bit, smooth gradients may show steps)")
        # yuv420p is what players accept; x264 needs even sizes for it.
        even = v.width % 2 == 0 and v.height % 2 == 0
        v.pix_fmt = "yuv420p" if even or codec not in ("libx264", "libx265") else "yuv444p"
        # the frames come converted by _yuv_frame: BT.601 matrix, limited range; the stream says so
        v.codec_context.color_range = AVCOL_RANGE_MPEG
        v.codec_context.colorspace = AVCOL_SPC_SMPTE170M
        for name, value in colour_tags(info).items():  # the source's primaries and transfer (an HDR clip's)
            setattr(v.codec_context, name, value)
        # AVI declares a frame rate, not timestamps: its time base is one frame (with the source's 1/12800 it
        # declared 600 frames a second, and a reader counted 600 frames where 25 were: faceveil called its own
        # output truncated). Frames are numbered in order there; other containers keep the source's timestamps.
        self._frame_tb = Fraction(info.fps.denominator, info.fps.numerator) if avi else None
        v.time_base = self._frame_tb or info.time_base
        v.codec_context.time_base = self._frame_tb or info.time_base
        options = {}
        if codec in ("libx264", "libx265"):
            options = {"crf": str(opt.crf), "preset": opt.preset}
            if codec == "libx264":
                # see ENCODE_THREADS; AVI stores no presentation times apart from decoding order: no B-frames there
                # (with them the first frame sat 80 ms late and players read the frames out of order)
                options["x264-params"] = X264_PARAMS + (":bframes=0" if avi else "")
            if codec == "libx265":  # x265 prints its own info lines to stderr (FFmpeg's log level does not reach them)
                options["x265-params"] = "log-level=error"
        elif codec in ("libvpx-vp9", "libvpx"):
            options = {"crf": str(opt.crf + _CRF_OFFSET[codec]), "b": "0", "deadline": "realtime", "cpu-used": "8"}
        elif codec == "libaom-av1":
            options = {"crf": str(opt.crf + _CRF_OFFSET[codec]), "cpu-used": "8"}
        v.options = options
        # Never the codec's own choice (a thread per CPU): see ENCODE_THREADS.
        v.codec_context.thread_count = opt.threads or (ENCODE_THREADS if codec == "libx264" else 1)
        v.codec_context.thread_type = ENCODE_THREAD_TYPE if codec == "libx264" else "SLICE"  # SLICE: PyAV's default
        if self._rotation:
            v.set_display_rotation(self._rotation)
        self._vstream = v
        copied = []
        try:
            self._audio_in = av.open(info.opened or str(info.path), "r")
        except (OSError, av.FFmpegError):
            if opt.audio and info.has_audio:
                raise
            self._audio_in = None  # frames from elsewhere (the API, tests): nothing to copy
        src = self._audio_in.streams if self._audio_in is not None else None
        if opt.audio and src is not None:
            for a_in in src.audio:  # every audio stream (a second language, a commentary)
                try:
                    self._amap[a_in.index] = self._out.add_stream_from_template(a_in)
                except (av.FFmpegError, ValueError) as exc:
                    raise InputError(f"{info.path}: audio codec {a_in.codec_context.name!r} cannot be copied into "
                                     f"{self.target.suffix} ({_short(exc)}); use --no-audio") from None
                copied.append(a_in)
        for s_in in src.subtitles if src is not None else ():  # words, not faces: copied where the container takes them
            try:
                self._amap[s_in.index] = self._out.add_stream_from_template(s_in)
                copied.append(s_in)
            except (av.FFmpegError, ValueError):
                self.left_out.append(f"a subtitle stream ({s_in.codec_context.name}): {self.target.suffix} cannot "
                                     "hold it")
        if src is not None and len(src.video) > 1:  # the one anonymized is the first that is not a cover picture
            covers = sum(bool(int(v.disposition) & _ATTACHED_PIC) for v in src.video)
            others = len(src.video) - 1 - covers  # probe refused a file of covers only (_video_stream)
            what = [f"{n} {kind}{'s' if n > 1 else ''}" for n, kind in ((others, "other video stream"),
                                                                         (covers, "cover picture")) if n]
            self.left_out.append(f"{' and '.join(what)} (only the first video stream is anonymized)")
        n_data = len(src.data) + len(src.attachments) if src is not None else 0
        if n_data:  # timecodes, GPS tracks (GoPro's gpmd), fonts: metadata, stripped as a photo's is
            self.left_out.append(f"{n_data} data stream{'s' if n_data > 1 else ''} (timecode, GPS, ...): metadata is "
                                 "not copied")
        try:  # the container's header now: a stream it cannot hold fails here with its name, not at the first frame
            self._out.start_encoding()
            if copied:
                self._trial_copy(copied)
        except (av.FFmpegError, ValueError) as exc:
            kinds = ", ".join(f"{st.type} {st.codec_context.name}" for st in [self._vstream] + copied)
            raise InputError(f"{info.path}: {self.target.suffix} cannot hold these streams ({kinds}: {_short(exc)}); "
                             "use --no-audio or another container (.mkv)") from None
        if copied:
            self._audio_packets = self._audio_in.demux(*copied)
            self._pull_audio()
        elif self._audio_in is not None:
            self._audio_in.close()
            self._audio_in = None

    def _trial_copy(self, copied: list) -> None:
        """Mux the first packet of each copied stream into a container of the output's format in memory, and close
        it. A muxer may take a stream in its header and refuse it only in its trailer, after the whole video was
        encoded: stereo PCM from a Matroska source (its layout read as "2 channels") into .mp4 ended a 40 s
        encode with "Invalid argument: '.../.x.mp4.faceveil.<pid>.<random>.tmp.mp4' returned 22" (an audit)."""
        import io

        import av

        with av.open(self.info.opened or str(self.info.path), "r") as src:
            trial = av.open(io.BytesIO(), "w", format=self._out.format.name, options={"fflags": "+bitexact"})
            try:
                streams = {s.index: trial.add_stream_from_template(src.streams[s.index]) for s in copied}
                trial.start_encoding()
                todo = set(streams)
                for n, packet in enumerate(src.demux(*(src.streams[i] for i in streams))):
                    index = packet.stream.index
                    if index in todo and packet.dts is not None and packet.size:
                        todo.discard(index)
                        packet.stream = streams[index]
                        trial.mux(packet)
                    if not todo or n >= 256:  # a subtitle stream's first packet may come late: not waited for
                        break
                trial.close()
            except BaseException:
                try:
                    trial.close()
                except Exception:
                    pass
                raise

    # audio remux ----------------------------------------------------------------
    def _pull_audio(self) -> None:
        self._audio_next = None
        if self._audio_packets is None:
            return
        for packet in self._audio_packets:
            if packet.dts is None and packet.size == 0:
                continue  # the demuxer's flush packet
            self._audio_next = packet
            return
        self._audio_packets = None

    def _mux_audio_until(self, seconds: float | None) -> None:
        """Copy audio (and subtitle) packets up to ``seconds`` (all remaining ones when None), keeping the streams
        interleaved."""
        while self._audio_next is not None:
            p = self._audio_next
            t = float(p.dts * p.stream.time_base) if p.dts is not None else None
            if seconds is not None and t is not None and t > seconds:
                return
            p.stream = self._amap[p.stream.index]
            self._out.mux(p)
            self._pull_audio()

    # frames ---------------------------------------------------------------------
    def write(self, rgb: np.ndarray, pts: int | None, duration: int | None = None) -> None:
        """Encode one frame; ``duration`` (the source frame's, VideoFrame.duration) goes to its packet if it is the
        last. Each frame is encoded when the next one comes (the last at the end), and lasts until that one: a frame
        left out (``--on-error drop``) leaves no gap. MP4 always did so (a sample lasts until the next one's
        decoding time: the frame before the dropped ones shows through their time); a Matroska block kept the
        duration it was given, and the dropped frames' time was a hole in the video (40 ms frame, 80 ms nothing)."""
        pix_fmt = self._vstream.codec_context.pix_fmt
        frame = _yuv_frame(stored(rgb, self._rotation), pix_fmt)
        if frame.format.name != pix_fmt:  # PyAV would convert it with swscale (see _yuv_frame)
            raise RuntimeError(f"frame in {frame.format.name}, encoder takes {pix_fmt}")
        if pts is None or (self._last_pts is not None and pts <= self._last_pts):
            # Timestamps must rise; synthesize from the frame rate when missing or out of order.
            step = max(1, round(1 / (self.info.fps * self.info.time_base)))
            pts = 0 if self._last_pts is None else self._last_pts + step
        self._last_pts = pts
        if self._frame_tb is not None:  # AVI: frame n at n / fps (the rate it declares)
            frame.pts, frame.time_base = self.frames, self._frame_tb
        else:
            frame.pts, frame.time_base = pts, self.info.time_base
        if self._held is not None:
            self._encode(*self._held, pts)
        self._held = frame, pts, duration
        self.frames += 1

    def _encode(self, frame, pts: int, duration: int | None, until: int | None) -> None:
        """Encode ``frame`` (``write``'s, at ``pts``), lasting until ``until`` (the next frame's pts; None: the last
        frame, ``duration``)."""
        if self._frame_tb is None:
            duration = duration if until is None else until - pts
            if duration:
                self._durations[pts] = duration
                if len(self._durations) > 256:  # an encoder that renumbers its packets: none is found, none kept
                    del self._durations[next(iter(self._durations))]
        if self._audio_packets is not None or self._audio_next is not None:
            self._mux_audio_until(float(pts * self.info.time_base))
        self._mux_video(self._vstream.encode(frame))

    def _mux_video(self, packets) -> None:
        """Mux the encoder's packets, each with its source frame's duration where known. The encoder gives every
        packet one frame at the average rate: a variable frame rate's last frame (MP4's last sample, Matroska's
        last block: where the video ends) lasted that long instead of its own time, a 2.820 s clip came out
        2.855 s. FFmpeg passes frame durations through the encoder (AV_CODEC_FLAG_FRAME_DURATION); set here on
        the packets, what the encoder is given stays as it was (a constant rate's MP4 or MOV source gives the same
        bytes as before; a Matroska source's last frame lasts its stored whole milliseconds, not 1 / rate). The
        codec's time base is the frame's (the source's), so the packet's pts finds its frame."""
        for packet in packets:
            duration = self._durations.pop(packet.pts, None) if packet.pts is not None else None
            if duration:
                packet.duration = duration
            self._out.mux(packet)

    def _finish(self) -> None:
        if self.frames == 0:
            raise InputError(f"{self.info.path}: no frame to write")
        self._encode(*self._held, None)
        self._held = None
        self._mux_video(self._vstream.encode(None))
        self._mux_audio_until(None)
        self._out.close()
        self._out = None
        if self._audio_in is not None:
            self._audio_in.close()
            self._audio_in = None

    def _close_quietly(self) -> None:
        for c in (self._out, self._audio_in):
            if c is not None:
                try:
                    c.close()
                except Exception:
                    pass
        self._out = self._audio_in = None
