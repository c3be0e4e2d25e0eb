"""The path of one image: detect -> anonymize (compositor) -> write.

``Anonymizer`` loads its models once and is reused for many images; it is the
object behind the CLI, the batch runner and the Python API.
"""
from __future__ import annotations

import hashlib
import os
import sys
import time
import zlib
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from .anonymize import Compositor, RegionParams, get_method
from .detect import get_detector
from .detect.base import detection_view
from .detections import Detections, box_iou, given_boxes, nms
from .errors import FaceveilError, InputError, UsageError, check_bool
from .io.atomic import write_bytes_atomic
from .io.images import (GREY16_MODES, ImageFile, NotAnImage, decoded_rgb, encode_image, format_suffix, read_file,
                        read_image, transparency_dropped)
from .io.video import is_video_path
from .registry import make_params


@dataclass(frozen=True)
class AnonymizerConfig:
    """Everything needed to rebuild an Anonymizer (picklable, for worker processes)."""

    method: str = "blur"
    method_params: dict = field(default_factory=dict)
    detector: str | None = None  # None: the default preset's (detect/presets.py), as the CLI
    detector_params: dict = field(default_factory=dict)
    region: dict = field(default_factory=dict)
    seed: int = 0
    keep_metadata: bool = False
    jpeg_quality: int = 95
    keep: Any = None  # a people.KeepPolicy (who and which regions are left as they are), or None

    def __post_init__(self):
        check_bool("keep_metadata", self.keep_metadata)
        check_jpeg_quality(self.jpeg_quality)
        # Resolved at once (a preset's detector, parameters and region), so every reader of
        # the config sees the detector that runs, and the defaults are the CLI's.
        from .detect.presets import resolve

        name, params, region = resolve(None, self.detector, self.detector_params, self.region)
        object.__setattr__(self, "detector", name)
        object.__setattr__(self, "detector_params", params)
        object.__setattr__(self, "region", region)


@dataclass
class ItemResult:
    input: str
    output: str | None
    status: str  # "written" | "failed" | "detected"
    faces: int = 0
    seconds: float = 0.0
    error: str | None = None
    detections: list | None = None
    size: list | None = None  # width, height
    kept: list | None = None  # faces left as they are (--keep-people, regions): box, by, name, distance
    input_sha256: str | None = None  # of the bytes read: the review pairs an output with its original by it
    # a file not written: the output it was to be (the CLI's, in its report), where the review's Apply writes it
    target: str | None = None
    warnings: list | None = None  # a written file's losses worth a line: its transparency in a .jpg

    def to_json(self) -> dict:
        return {k: v for k, v in asdict(self).items() if v is not None or k in ("output", "error")}


def _plain(value: Any) -> Any:
    """Parameter values as JSON values, for reports and manifests: tuples as lists (which the
    registry reads back), anything else that JSON has no type for as text."""
    if isinstance(value, (tuple, list)):
        return [_plain(v) for v in value]
    return value if isinstance(value, (int, float, str, bool, type(None))) else str(value)


def _seed(seed) -> int:
    """A seed as numpy's generators take it: a whole number >= 0 (before, -1 failed every file at its first face)."""
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise UsageError(f"seed must be a whole number >= 0, got {seed!r}")
    return int(seed)


def check_jpeg_quality(quality, name: str = "jpeg_quality") -> int:
    """A JPEG/WebP quality, 1..100 (before, the API wrote 0 or -5 as a 1.9 kB JPEG, took 101 for 100, and failed every
    file late with a TypeError for 'high' or 95.5)."""
    if isinstance(quality, bool) or not isinstance(quality, (int, np.integer)) or not 1 <= quality <= 100:
        raise UsageError(f"{name} must be an integer between 1 and 100, got {quality!r}")
    return int(quality)


def settings_of(anonymizer) -> dict:
    """``anonymizer.describe()`` without the detector's thread count and spinning (resource settings, not
    result-changing ones): what dataset manifests and video track records store, and what a resume compares."""
    d = anonymizer.describe()
    dp = d["detector_params"]
    dp.pop("threads", None)
    dp.pop("spin", None)
    if "int8_passes" in dp and dp.get("precision") != "mixed":
        # used only with precision=mixed: elsewhere it changes no byte, so runs recorded before it existed
        # (or with another value) still resume
        dp.pop("int8_passes")
    return d


class Anonymizer:
    """Detect and anonymize faces; models load once.

    >>> anon = Anonymizer(method="pixelate", method_params={"cells": 10})
    >>> out = anon.anonymize(image)             # RGB uint8 HxWx3 in, same out
    >>> result = anon.process_file("in.jpg", "out/in.jpg")

    Detection and region default to the CLI's: the ``balanced`` preset (``preset`` picks
    another); an explicit ``detector`` runs with its own defaults plus ``detector_params``.
    ``load_detector=False`` defers building the detector until something needs it (callers
    that pass their own detections never do).

    ``keep``: a ``people.People`` (or a ``KeepPolicy`` with regions) whose faces are left as they
    are (byte-identical); every other face is anonymized. It is applied where the Anonymizer
    detects (``anonymize(image)``, ``process_file``); detections a caller passes are anonymized as
    given (the video job decides per track itself).
    """

    def __init__(self, method: str = "blur", method_params: dict | None = None, detector: str | None = None,
                 detector_params: dict | None = None, region: dict | RegionParams | None = None, seed: int = 0,
                 keep_metadata: bool = False, jpeg_quality: int = 95, preset: str | None = None,
                 load_detector: bool = True, keep=None):
        from .detect.presets import resolve

        for name, value in (("method_params", method_params), ("detector_params", detector_params),
                            ("region", region)):  # a list raised AttributeError or TypeError, a region was ignored
            if value is not None and not isinstance(value, (dict, RegionParams) if name == "region" else dict):
                raise UsageError(f"{name}: expected a dict of name: value, got {type(value).__name__}")
        self.method = get_method(method, method_params)
        given_region = region if isinstance(region, dict) else None
        detector, detector_params, region_dict = resolve(preset, detector, detector_params, given_region)
        self.detector_name = detector
        self._detector_params = detector_params
        self._detector = None
        if isinstance(region, RegionParams):
            region_params = region
        else:
            region_params = make_params(_RegionHolder, region_dict, "region")
        self.compositor = Compositor(region_params)
        self.seed = _seed(seed)
        self.keep_metadata = check_bool("keep_metadata", keep_metadata)  # 'false' kept the GPS position
        self.jpeg_quality = check_jpeg_quality(jpeg_quality)
        self.keep = _keep_policy(keep)
        if check_bool("load_detector", load_detector):  # build it now so a bad name or parameter fails before any work
            _ = self.detector

    @classmethod
    def from_config(cls, cfg: AnonymizerConfig) -> "Anonymizer":
        return cls(cfg.method, cfg.method_params, cfg.detector, cfg.detector_params, cfg.region, cfg.seed,
                   cfg.keep_metadata, cfg.jpeg_quality, keep=cfg.keep)

    @property
    def detector(self):
        if self._detector is None:
            self._detector = get_detector(self.detector_name, self._detector_params)
        return self._detector

    def describe(self) -> dict:
        return {
            "method": self.method.name,
            "method_params": {k: _plain(v) for k, v in asdict(self.method.params).items()},
            "detector": self.detector_name,
            "detector_params": {k: _plain(v) for k, v in asdict(self.detector.params).items()},
            "region": asdict(self.compositor.params),
            "seed": self.seed,
            **({"keep": self.keep.describe()} if self.keep else {}),
            # other bytes than where the 8-bit build runs: recorded, so a resume on another kind of CPU is refused
            **({"detector_runs": "int8 with 7-bit weights (this CPU has no VNNI)"}
               if getattr(self.detector, "int8_7bit", False) else {}),
        }

    def rng_for(self, key: str) -> np.random.Generator:
        """A generator that depends only on the seed and ``key``, not on processing order. Files are keyed on their
        content, not their path (a folder run, the folder renamed and the file alone give the same bytes): a
        photo on its SHA-256 (``io.manifest.sha256_file``), a video on ``io.manifest.sample_sha256``."""
        return np.random.default_rng([self.seed, zlib.crc32(key.encode())])

    def detect(self, image: np.ndarray) -> Detections:
        return self.detector.detect(detection_view(check_image(image)))

    def split(self, image: np.ndarray, detections: Detections) -> tuple[Detections, list | None]:
        """(faces to hide, kept faces as records or None without ``keep``): the keep step."""
        if not self.keep:
            return detections, None
        return self.keep.decide(image, detections)

    def anonymize(self, image: np.ndarray, detections: Detections | None = None,
                  rng: np.random.Generator | None = None) -> np.ndarray:
        """``image`` with its faces hidden: ``detections`` (a Detections, or rows of x1, y1, x2, y2, checked as
        ``faceveil.anonymize`` checks them), or the faces this Anonymizer detects (and does not keep)."""
        image = check_image(image)
        if detections is None:
            detections, _ = self.split(image, self.detect(image))
        else:  # a caller's faces: x, y, w, h rows or a NaN box hid nothing, a list raised AttributeError
            detections = given_boxes(detections)
        if rng is None:
            rng = np.random.default_rng(self.seed)
        out = self.method.apply(image, detections, self.compositor, rng)
        if out.shape != image.shape or out.dtype != np.uint8:
            raise FaceveilError(f"method {self.method.name!r} returned {out.shape} {out.dtype}")
        return out

    # Transparency. A viewer shows an image with alpha over a background, so a face can be drawn by the alpha channel
    # alone (line art or a stencil: flat colour, the face in the alpha) where the colour channels show the detector
    # nothing, and hiding a face in the colour channels leaves what the alpha draws of it. So such an image is also
    # searched over white and over black (as viewers show it), and the alpha is blurred wherever a face is hidden
    # (the default blur, over the same region): what a cut-out's edge loses there is what the face loses.
    def drawn_by_alpha(self, img: ImageFile, found: Detections) -> Detections:
        """Faces the image shows over white or black (``img``'s transparency) that are none of ``found``
        (IoU < 0.3); none for an opaque image."""
        if img.alpha is None or int(img.alpha.min()) == 255:
            return Detections.empty(found.source)
        a = img.alpha[:, :, None].astype(np.float32) / 255
        more = [self.detect((img.rgb * a + bg * (1 - a) + 0.5).astype(np.uint8)) for bg in (255.0, 0.0)]
        more = nms(Detections.merge(more, found.source))
        if len(found) and len(more):
            more = more[box_iou(more.xyxy, found.xyxy).max(axis=1) < 0.3]
        return more

    def hide_in_alpha(self, img: ImageFile, dets: Detections) -> ImageFile:
        """``img`` with its alpha blurred where ``dets`` are hidden (unchanged when it has no transparency)."""
        if img.alpha is None or not len(dets) or int(img.alpha.min()) == 255:
            return img
        blur = get_method("blur")
        alpha = blur.apply(np.repeat(img.alpha[:, :, None], 3, axis=2), dets, self.compositor,
                           np.random.default_rng(0))[:, :, 0]
        return replace(img, alpha=np.ascontiguousarray(alpha))

    def process_file(self, src: str | Path, dst: str | Path, key: str | None = None,
                     overwrite: bool = False) -> ItemResult:
        """Anonymize one file into ``dst``. Never raises for bad input: the result says why.

        ``key``: the random stream's (``rng_for``); default, the file's SHA-256. Fails closed: nothing is written
        unless detection and anonymization both succeeded. ``dst`` that is
        ``src`` itself (also through a link or another spelling of the path) is refused; a ``dst`` that exists
        is replaced only with ``overwrite=True``.
        """
        src, dst = Path(src), Path(dst)
        try:
            check_output(src, dst, overwrite)
        except UsageError as exc:  # before: the original was overwritten, and any existing output replaced
            return ItemResult(str(src), None, "failed", error=str(exc))

        def work() -> ItemResult:
            try:
                return self._write(src, dst, key, overwrite)
            except NotAnImage:  # a video (a photo named .mp4 is read as the photo it is)
                if is_video_path(src):
                    raise InputError(f"{src}: is a video, not an image; faceveil.video.anonymize_video takes "
                                     "videos") from None
                raise

        return _guarded(src, work)

    def write_file(self, src: Path, dst: Path, key: str | None = None, replace: bool = True) -> ItemResult:
        """``process_file`` without its checks on ``dst``: for the CLI's --in-place, its own explicit policy.
        ``replace=False``: a ``dst`` that another writer made meanwhile is not replaced (the file fails)."""
        return _guarded(src, lambda: self._write(src, dst, key, replace))

    def _write(self, src: Path, dst: Path, key: str | None, replace: bool) -> ItemResult:
        result, encoded = self._encoded(src, read_file(src), dst, key)  # read once: the seed key is of its pixels
        write_bytes_atomic(dst, encoded, replace)
        return result

    def encode_bytes(self, data: bytes, name: str | Path, target: str | Path | None = None,
                     key: str | None = None) -> tuple[ItemResult, bytes | None]:
        """``write_file`` for a photo's bytes (standard input, a buffer): the result, named ``name``, and the output
        file's bytes (None when it failed), in the format of ``target``'s extension (default: the input's own
        format). The same bytes ``write_file`` writes for the same input, key and target format."""
        name = Path(name)
        encoded: list[bytes] = []

        def work() -> ItemResult:
            result, out = self._encoded(name, data, target, key)
            encoded.append(out)
            return result

        result = _guarded(name, work)
        return result, (encoded[0] if encoded else None)

    def _encoded(self, src: Path, data: bytes, dst: str | Path | None, key: str | None) -> tuple[ItemResult, bytes]:
        """Detect and anonymize a photo's bytes, and encode the output for ``dst`` (None: the input's format)."""
        img = read_image(src, data=data)
        found = self.detect(img.rgb)
        dets, kept = self.split(img.rgb, found)
        drawn = self.drawn_by_alpha(img, found)  # hidden whatever --keep-* says: nobody's face to compare
        dets = Detections.merge([dets, drawn], dets.source) if len(drawn) else dets
        sha = hashlib.sha256(data).hexdigest()
        out = self.anonymize(img.rgb, dets, self.rng_for(key or sha))
        # A 16-bit source keeps its depth outside the faces; inside, the whole region is replaced.
        region = self.compositor.mask(dets, out.shape) > 0 if img.deep is not None else None
        target = Path(dst) if dst is not None else Path(src.stem + format_suffix(img.encoding.get("format")))
        encoded = encode_image(target, out, self.hide_in_alpha(img, dets), self.keep_metadata, self.jpeg_quality,
                               region)
        lost = transparency_dropped(target, img)  # -o x.jpg of a transparent PNG: it went silently
        return ItemResult(str(src), str(dst) if dst is not None else None, "written", len(found) + len(drawn),
                          detections=dets.to_dict(2, 4)["faces"], size=list(img.rgb.shape[1::-1]), kept=kept,
                          input_sha256=sha, warnings=[lost] if lost else None), encoded

    def detect_file(self, src: str | Path) -> ItemResult:
        src = Path(src)

        def work() -> ItemResult:
            img = read_image(src)
            dets = self.detect(img.rgb)
            return ItemResult(str(src), None, "detected", len(dets),
                              detections=dets.to_dict(2, 4)["faces"], size=list(img.rgb.shape[1::-1]))

        return _guarded(src, work)


def check_output(src: Path, dst: Path, overwrite: bool) -> None:
    """Refuse (UsageError) an output that is the input itself, or one that exists unless ``overwrite``."""
    check_bool("overwrite", overwrite)  # 'false' replaced an existing output
    try:
        same = dst.resolve() == src.resolve() or (dst.exists() and os.path.samefile(src, dst))
    except OSError:  # src missing or unreadable: reading it says so
        same = False
    if same:
        raise UsageError(f"{dst}: output is the input itself; write to another file")
    if not overwrite and (dst.exists() or dst.is_symlink()):
        raise UsageError(f"{dst}: output exists; not replaced (overwrite=True replaces it)")


def _guarded(src: Path, work) -> ItemResult:
    """Run one item; turn any failure into a failed result with a one-line reason."""
    t0 = time.perf_counter()
    try:
        result = work()
    except FaceveilError as exc:
        result = ItemResult(str(src), None, "failed", error=str(exc))
    except (KeyboardInterrupt, SystemExit):
        raise
    except MemoryError:
        result = ItemResult(str(src), None, "failed", error=f"{src}: out of memory")
    except Exception as exc:  # fail closed on anything unexpected, and say what it was
        result = ItemResult(str(src), None, "failed", error=f"{src}: {exc.__class__.__name__}: {exc}")
    result.seconds = time.perf_counter() - t0
    return result


def _keep_policy(keep):
    """A KeepPolicy (or None) from a KeepPolicy, a People, or a path to a folder or .npz."""
    if keep is None:
        return None
    from .people import KeepPolicy, People

    if isinstance(keep, KeepPolicy):
        return keep if keep else None
    return KeepPolicy(People.open(keep))


class _RegionHolder:
    Params = RegionParams


def check_image(image: np.ndarray) -> np.ndarray:
    # A PIL image can only come from a loaded Pillow; one half loaded by another thread has no Image class yet (a
    # video's --preview thread imported it while a frame was checked: AttributeError, the frame failed)
    pil = getattr(sys.modules.get("PIL.Image"), "Image", None)
    if isinstance(pil, type) and isinstance(image, pil):
        image = _pil_rgb(image)
    if isinstance(image, (str, bytes, os.PathLike)) or image is None:  # "expected a uint8 image, got <U11"
        what = "None" if image is None else f"a path or bytes ({str(image)[:60]!r})"
        raise InputError(f"expected an image (RGB uint8 HxWx3 array, or a PIL image), got {what}; "
                         "Anonymizer.process_file takes files")
    a = np.asarray(image)
    if a.dtype != np.uint8:
        raise InputError(f"expected a uint8 image, got {a.dtype}")
    if a.ndim == 2:
        a = np.repeat(a[:, :, None], 3, axis=2)
    if a.ndim != 3 or a.shape[2] not in (3, 4) or a.shape[0] == 0 or a.shape[1] == 0:
        raise InputError(f"expected an RGB image HxWx3, got shape {a.shape}")
    if a.shape[2] == 4:
        a = a[:, :, :3]
    return np.ascontiguousarray(a)


def _pil_rgb(img) -> np.ndarray:
    """A PIL image's pixels as RGB uint8, as files are read (io.images.decoded_rgb): upright (its EXIF orientation
    applied, so faces lying on their side are found and the result is the CLI's upright output; before, an
    orientation 6 photo lost 4 of 6 faces) and in sRGB (its colour profile applied: a Display P3 image's values
    were taken as sRGB), np.asarray took CMYK for RGBA (colours inverted) and a palette ("P") image's indices for
    grey levels. Alpha is dropped; 16-bit grey is scaled to 8 bits by its maximum; what has no faithful 8-bit RGB
    (floating point, 32-bit) is refused."""
    from PIL import ImageOps

    try:
        img = ImageOps.exif_transpose(img)
    except (ValueError, OSError, SyntaxError) as exc:
        raise InputError(f"a PIL image's EXIF orientation cannot be applied ({exc})") from None
    mode = img.mode
    if mode in GREY16_MODES:
        a = np.asarray(img)  # read_image clips a file's; a PIL image's out of range values are refused
        if a.size and (a.min() < 0 or a.max() > 65535):
            raise InputError(f"a PIL image in mode {mode} with values outside 0..65535 is not supported; "
                             "convert it to 8 bit first")
    if mode == "F" or mode.startswith("I;32"):
        raise InputError(f"a PIL image in mode {mode} (floating point or 32-bit) is not supported; "
                         "convert it to 8 bit first")
    try:
        return decoded_rgb(img)[0]
    except (ValueError, OSError) as exc:
        raise InputError(f"a PIL image in mode {mode} cannot be converted to RGB ({exc}); "
                         "convert it first") from None
