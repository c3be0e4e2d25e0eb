"""How a video is processed: the options, the result, and the options as the track record stores them."""
from __future__ import annotations

import math
import numbers
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field

from ..detect.presets import VIDEO_DETECT_EVERY, VIDEO_HOLD_S, VIDEO_LOOKAHEAD_S, VIDEO_PRESET
from ..errors import UsageError, check_bool
from ..io.images import is_image_path
from ..io.video import EncodeOptions, crf_range
from ..pipeline import ItemResult


@dataclass(frozen=True)
class VideoOptions:
    tracking: bool = True
    hold: int | None = None  # frames; None: VIDEO_HOLD_S seconds (detect/presets.py)
    lookahead: int | None = None  # frames; None: VIDEO_LOOKAHEAD_S seconds
    detect_every: int = VIDEO_DETECT_EVERY  # the detector on every Nth frame and on scene cuts (detect/presets.py)
    # full-frame detection every Nth frame and on scene cuts; on the frames between, the detector runs on
    # crops around live tracks (``crop_margin`` face sizes around each) at full resolution (video/schedule.py)
    full_every: int = 1
    crop_margin: float = 1.0
    smoothing: float = 0.5
    on_error: str = "blur"  # "blur" | "drop"
    preview: float = 0.0  # seconds between preview stills (0: none)
    allow_truncated: bool = False  # write what decodes of a truncated or corrupt file (else it fails)
    encode: EncodeOptions = field(default_factory=EncodeOptions)

    def __post_init__(self):
        for name in ("tracking", "allow_truncated"):  # 'false' was true: a truncated video written as a success
            check_bool(name, getattr(self, name))
        if isinstance(self.encode, Mapping):  # options={"encode": {"crf": 20}} raised AttributeError
            try:
                object.__setattr__(self, "encode", EncodeOptions(**self.encode))
            except TypeError as exc:
                raise UsageError(f"encode: {exc}") from None
        elif not isinstance(self.encode, EncodeOptions):
            raise UsageError(f"encode: expected an EncodeOptions or a dict of its fields, got {self.encode!r}")
        for name in ("hold", "lookahead", "detect_every", "full_every"):  # frames: whole numbers (the API took 1.5)
            v = getattr(self, name)
            if v is not None and (isinstance(v, bool) or not isinstance(v, numbers.Integral)):
                raise UsageError(f"--{name.replace('_', '-')} is a number of frames: a whole number, got {v!r}")
        for name in ("crop_margin", "smoothing", "preview"):  # nan passed every comparison below
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, numbers.Real) or not math.isfinite(v):
                raise UsageError(f"--{name.replace('_', '-')} must be a finite number, got {v!r}")
        if self.detect_every < 1:
            raise UsageError("--detect-every must be at least 1")
        if self.full_every < 1:
            raise UsageError("--full-every must be at least 1")
        if self.crop_margin < 0:
            raise UsageError("--crop-margin must be >= 0")
        if self.on_error not in ("blur", "drop"):
            raise UsageError("--on-error must be blur or drop")
        if (self.hold is not None and self.hold < 0) or (self.lookahead is not None and self.lookahead < 0):
            raise UsageError("--hold and --lookahead must be >= 0")
        if self.preview < 0:
            raise UsageError("--preview must be >= 0 seconds")
        low, high = crf_range(self.encode.codec)
        if not low <= self.encode.crf <= high:
            raise UsageError(f"--crf must be between {low} and {high} for {self.encode.codec or 'the default codec'}")

    @property
    def detector_every(self) -> int:
        """Frames between detector runs: ``detect_every``, or 1 without tracking. Nothing carries a face over a skipped
        frame then: the last run's boxes stood for it, and a face that moved or appeared there was left visible."""
        return self.detect_every if self.tracking else 1

    def frames_held(self, fps: float) -> int:
        return self.hold if self.hold is not None else max(1, round(VIDEO_HOLD_S * fps))

    def frames_ahead(self, fps: float) -> int:
        if not self.tracking:
            return 0
        if self.lookahead is not None:
            return self.lookahead
        # A face that appears between two full passes is first seen by the second: the look-ahead
        # back-fills it over the frames before (video/schedule.py).
        return max(1, round(VIDEO_LOOKAHEAD_S * fps), self.unseen_gap if self.full_every > 1 else 0)

    @property
    def unseen_gap(self) -> int:
        """The most frames a face that appears away from the tracked ones can go before a detector run sees it:
        full passes come every ``full_every`` detector runs, and those every ``detect_every`` frames. (The
        default look-ahead covered ``full_every - 1`` frames: with --detect-every 2 --full-every 8, 7 of 15.)"""
        return self.full_every * self.detector_every - 1


@dataclass
class VideoResult(ItemResult):
    frames: int = 0  # frames written
    failed_frames: int = 0  # frames whose processing raised (written fully blurred, or dropped)
    dropped_frames: int = 0
    decode_errors: int = 0  # packets left out, frames missing or flagged corrupt (io.video.read_frames)
    announced_frames: int = 0  # frames the container announces (0: unknown)
    truncated: str | None = None  # with allow_truncated: what is missing ("decoded 48 of 521 frames ...")
    tracks: int = 0
    fps: float = 0.0  # processing speed (its warnings: ItemResult.warnings)
    # busy seconds per stage (decode, detect, anonymize, encode); decode and encode run in their own
    # threads, so they overlap detection: fps ~ frames / the largest of them when the cores suffice
    stages: dict | None = None


def video_preset(detector: str | None, preset: str | None) -> str | None:
    """The preset a video gets: the one asked for, none when a detector is named, else presets.VIDEO_PRESET."""
    return preset if preset or detector else VIDEO_PRESET


def misplaced_option(exc: UsageError, given: dict) -> UsageError:
    """``exc`` (a method's "unknown parameter 'crf'", or VideoOptions' own) with where that name goes, when it is a
    video or encoder option given in the wrong place: anonymize_video(..., crf=30) took crf for a parameter of the
    method, options={"crf": 30} for one of VideoOptions (it is the encoder's)."""
    for key, value in given.items():
        name = str(key).replace("-", "_")
        if f"{name!r}" not in str(exc):
            continue
        if name in EncodeOptions.__dataclass_fields__:
            return UsageError(f"{exc}; {name} is an encoder option: options={{'encode': {{'{name}': {value!r}}}}}")
        if name in VideoOptions.__dataclass_fields__:
            return UsageError(f"{exc}; {name} is a video option: options={{'{name}': {value!r}}}")
    return exc


def as_video_options(options) -> VideoOptions:
    """The Python API's ``options``: a VideoOptions, a dict of its fields, or None (the defaults)."""
    if options is None:
        return VideoOptions()
    if isinstance(options, dict):
        try:
            return VideoOptions(**options)
        except TypeError as exc:
            raise misplaced_option(UsageError(f"options: {exc}"), options) from None
    if not isinstance(options, VideoOptions):
        raise UsageError(f"options: expected a VideoOptions or a dict of its fields, got {type(options).__name__}")
    return options


def refuse_photo(src) -> None:
    """The Python API given a photo as a video: it became a 1-frame video (on its side when its EXIF turns it)."""
    if is_image_path(src):
        raise UsageError(f"{src}: is an image, not a video; faceveil.anonymize or Anonymizer.process_file take photos")


def options_json(options: VideoOptions) -> dict:
    return asdict(options)


def options_from_json(d: dict) -> VideoOptions:
    return VideoOptions(**{k: v for k, v in d.items() if k in VideoOptions.__dataclass_fields__})
