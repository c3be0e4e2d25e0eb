"""Image files in and out, as RGB uint8 arrays.

Pillow reads every format we promise (JPEG, PNG, WebP, BMP, TIFF, AVIF; HEIC/HEIF through the optional
pillow-heif, ``pip install 'faceveil[heif]'``), applies the EXIF orientation to the pixels, and writes without
metadata unless asked.
"""
from __future__ import annotations

import contextlib
import functools
import io
import os
import re
import threading
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import InputError
from .atomic import write_bytes_atomic

IMAGE_EXTENSIONS = {".jpg", ".jpeg", ".jpe", ".jfif", ".jif", ".png", ".webp", ".bmp", ".tif", ".tiff", ".avif",
                    ".heic", ".heif"}
_FORMATS = {".jpg": "JPEG", ".jpeg": "JPEG", ".jpe": "JPEG", ".jfif": "JPEG", ".jif": "JPEG", ".png": "PNG",
            ".webp": "WEBP", ".bmp": "BMP", ".tif": "TIFF", ".tiff": "TIFF", ".avif": "AVIF", ".heic": "HEIF",
            ".heif": "HEIF"}
# HEIC/HEIF (the iPhone camera's format) is read and written by pillow-heif, an optional extra: its wheels bundle
# the x265 encoder (GPL). Its Pillow plugin is registered the first time a HEIF file is read or written.
HEIF_EXTENSIONS = {".heic", ".heif"}
HEIF_INSTALL = "pip install 'faceveil[heif]'"
# ftyp brands of HEVC-coded HEIF files (the container brands mif1/msf1 are AVIF's too, so they say nothing)
_HEIF_BRANDS = {b"heic", b"heix", b"heim", b"heis", b"hevc", b"hevx"}
_HEIF_LOCK = threading.Lock()
_HEIF_READY: list = []  # [pillow_heif] once its opener is registered
# Pillow's notes on a damaged EXIF or TIFF tag block ("Corrupt EXIF data. Expecting to read 12 bytes but only got 8",
# "Tag data larger than file"): Python printed each as two raw lines with Pillow's source path among faceveil's
# one-line messages. What such a block holds is read as far as it goes (an unreadable orientation is 1) and is
# stripped from the output by default; the note says nothing a user can act on. Every process that reads images
# (the pool's spawned workers too) imports this module.
warnings.filterwarnings("ignore", category=UserWarning, module=r"PIL\.TiffImagePlugin")
# What the review page shows as a PNG (display_png): browsers show no HEIC, and ignore an AVIF's EXIF orientation,
# which faceveil applies.
NOT_FOR_BROWSERS = {".avif", ".heic", ".heif"}


def format_suffix(fmt: str | None) -> str:
    """The extension faceveil writes a Pillow format under (an MPO, a phone's JPEG: .jpg); InputError for one it does
    not write (an image read from standard input: its output's format is its own)."""
    if fmt == "MPO":
        return ".jpg"
    for suffix in (".jpg", ".png", ".webp", ".bmp", ".tif", ".avif", ".heic"):
        if _FORMATS[suffix] == fmt:
            return suffix
    raise InputError(f"faceveil does not write {fmt or 'this'} images")


def is_image_path(path: str | os.PathLike) -> bool:
    return Path(path).suffix.lower() in IMAGE_EXTENSIONS


def is_heif(path: str | os.PathLike | None, data: bytes | None = None) -> bool:
    """Whether a file is HEIC/HEIF: by its name, or by its bytes' ftyp box (a .jpg that holds a HEIC): its major
    or a compatible brand an HEVC one."""
    if path is not None and Path(path).suffix.lower() in HEIF_EXTENSIONS:
        return True
    if data is None or data[4:8] != b"ftyp":
        return False
    end = min(int.from_bytes(data[:4], "big"), len(data), 256)
    return data[8:12] in _HEIF_BRANDS or any(data[i:i + 4] in _HEIF_BRANDS for i in range(16, end - 3, 4))


def avif_ready(path: str | os.PathLike) -> None:
    """InputError naming ``path`` when this Pillow reads and writes no AVIF (an old one, or built without libavif)."""
    from PIL import features

    if not features.check("avif"):
        raise InputError(f"{path}: this Pillow has no AVIF support (PIL.features.check('avif') is False): "
                         "pip install -U pillow")


def heif_plugin(path: str | os.PathLike):
    """pillow-heif, its Pillow opener and saver registered (once, on first use); InputError naming ``path`` when
    it is not installed."""
    if _HEIF_READY:
        return _HEIF_READY[0]
    try:
        import pillow_heif
    except ImportError:
        raise InputError(f"{path}: HEIC/HEIF photos need pillow-heif, which is not installed: {HEIF_INSTALL}") \
            from None
    with _HEIF_LOCK:
        if not _HEIF_READY:
            pillow_heif.register_heif_opener()
            _HEIF_READY.append(pillow_heif)
    return pillow_heif


@dataclass
class ImageFile:
    """Pixels plus what is needed to write them back in the same form."""

    rgb: np.ndarray  # HxWx3 uint8, orientation already applied
    path: Path
    mode: str  # Pillow mode of the source: "RGB", "L", "RGBA", ...
    alpha: np.ndarray | None = None  # HxW uint8 when the source had transparency
    exif: bytes | None = None  # source EXIF with orientation reset (used only with keep_metadata)
    info: dict = field(default_factory=dict)  # icc_profile, dpi (kept only with keep_metadata)
    deep: np.ndarray | None = None  # HxW uint16 of a 16-bit grey source; ``rgb`` is its 8-bit view
    deep_max: int = 255  # the 16-bit value that ``rgb``'s 255 stands for
    encoding: dict = field(default_factory=dict)  # how the source was stored: {"format", "lossless", "compression"}
    orientation: int = 1  # the EXIF orientation applied to the pixels (1..8)


# Pillow's modes of 16-bit grey ("I": a 16-bit PNG on some Pillow versions)
GREY16_MODES = ("I;16", "I;16L", "I;16B", "I;16N", "I")


def grey16_view(deep: np.ndarray) -> tuple[np.ndarray, int]:
    """An 8-bit view of 16-bit grey samples, scaled by their own maximum (12-bit data in a 16-bit file stays
    visible), and that maximum: what the 8-bit view's 255 stands for."""
    top = max(int(deep.max()) if deep.size else 0, 1)
    return ((deep.astype(np.uint32) * 255 + top // 2) // top).astype(np.uint8), top


# Above Pillow's MAX_IMAGE_PIXELS, a file declaring more pixels than this per byte is refused as a bomb:
# camera JPEGs hold 2-10 pixels per byte, even flat PNG screenshots well under 50.
_BOMB_PIXELS_PER_BYTE = 64
# Pillow refuses outright over twice its limit (179 MP): a 200 MP phone photo (5 pixels a byte) was refused as a
# bomb. faceveil reads photos up to this many times Pillow's limit (358 MP, 1 GB of RGB) that pass the test above.
_MAX_PHOTO_FACTOR = 4
_LIMIT_LOCK = threading.Lock()
# Set (e.g. FACEVEIL_MAX_PIXELS=400000000), images up to this many pixels are read whatever their pixels a byte
# (a trusted 100 MP white-backdrop PNG is 68 a byte) and larger ones refused: it replaces both limits above.
MAX_PIXELS_ENV = "FACEVEIL_MAX_PIXELS"


def max_pixels() -> int | None:
    """The pixel limit ``FACEVEIL_MAX_PIXELS`` sets, or None when it is unset (the limits above apply)."""
    from ..errors import UsageError

    value = os.environ.get(MAX_PIXELS_ENV, "").strip()
    if not value:
        return None
    try:
        n = int(value.replace(",", "").replace("_", ""))
    except ValueError:
        n = 0
    if n < 1:
        raise UsageError(f"{MAX_PIXELS_ENV}={value!r}: give a whole number of pixels, e.g. 400000000")
    return n


def check_file(path: Path, kind: str) -> None:
    """InputError naming ``path`` when it is no file to read as ``kind`` ("an image", "a video"): missing, a folder,
    or inside a folder that cannot be entered (chmod 000), where Path.exists raises PermissionError: eval privacy
    printed "PermissionError: [Errno 13] ...", the library's bank builder "cannot read image ([Errno 13] ...)"."""
    try:
        there, folder = path.exists(), path.is_dir()
    except PermissionError:  # looking the name up needs every folder on the way; the file itself is not looked at
        raise InputError(f"{path}: a folder on the way to it cannot be entered (permission denied)") from None
    except OSError as exc:  # a name too long, say: as reading it would
        raise InputError(f"{path}: cannot read ({exc.strerror or exc})") from None
    if not there:
        raise InputError(f"{path}: no such file")
    if folder:
        raise InputError(f"{path}: is a folder, not {kind}")


# The videos faceveil reads (io.video names them too: it imports this module).
VIDEO_EXTENSIONS = {".mp4", ".mov", ".mkv", ".avi", ".webm", ".m4v"}


class NotAnImage(InputError):
    """A file Pillow reads as no image it knows (``read_image``): callers that can take it as something else (a video
    named .mp4) decide by this type, not by the message's words. ``video``: the container its first bytes say it is
    (``video_container``), or None."""

    def __init__(self, message: str, video: tuple[str, str | None] | None = None):
        super().__init__(message)
        self.video = video


# A video container's first bytes: (name, the extension faceveil reads it under, or None where faceveil does not).
# MP4's ftyp box also starts HEIF/AVIF photos: their brands are not videos.
_STILL_BRANDS = _HEIF_BRANDS | {b"mif1", b"msf1", b"mif2", b"avif", b"avis", b"crx "}


def video_container(head: bytes) -> tuple[str, str | None] | None:
    """What video container ``head`` (a file's first bytes, 64 are enough) starts, as (name, extension), or None."""
    if head[4:8] == b"ftyp":
        brand = head[8:12]
        if brand in _STILL_BRANDS:
            return None
        if brand == b"qt  ":
            return "QuickTime (MOV)", ".mov"
        if brand.startswith(b"3g"):
            return "3GP", None
        return "MP4", ".mp4"
    if head[:4] == b"\x1aE\xdf\xa3":  # EBML
        return ("WebM", ".webm") if b"webm" in head[:64] else ("Matroska (MKV)", ".mkv")
    if head[:4] == b"RIFF" and head[8:12] == b"AVI ":
        return "AVI", ".avi"
    if head[:3] == b"FLV":
        return "FLV", None
    if head[:4] == b"\x30\x26\xb2\x75":
        return "WMV/ASF", None
    if head[:4] == b"\x00\x00\x01\xba":
        return "MPEG program stream", None
    return None


def _not_an_image(path: Path, data: bytes) -> NotAnImage:
    """The typed error for a file Pillow cannot identify, saying what it really is when its bytes are a video's."""
    video = video_container(data[:64])
    if video is None:
        return NotAnImage(f"{path}: not an image or unsupported format")
    name, ext = video
    article = "an" if name in ("MP4", "AVI", "FLV", "MPEG program stream") else "a"
    if path.suffix.lower() in VIDEO_EXTENSIONS:
        return NotAnImage(f"{path}: is {article} {name} video, not an image", video)
    named = f"named {path.suffix}" if path.suffix else "without an extension"
    todo = f"rename it to {path.stem}{ext} to anonymize it as a video" if ext else \
        "faceveil does not read this video format"
    return NotAnImage(f"{path}: is {article} {name} video {named}, not an image; {todo}", video)


def is_image_file(path: str | os.PathLike) -> bool:
    """Whether Pillow (with faceveil's HEIF/AVIF plugins) knows ``path``'s bytes as a picture, whatever its name (a
    photo named .mp4): its header only is read. False for a file that cannot be opened."""
    from PIL import Image

    try:
        _heif_opener_for(path)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with Image.open(path):
                return True
    except Exception:  # not an image, unreadable, a decompression bomb: the reader says which when it is read
        return False


def read_file(path: str | os.PathLike) -> bytes:
    """A photo's bytes, read once: a caller that hashes them too gives them to ``read_image`` (``data``), so the
    hash, the pixels and the EXIF orientation are of one file even if another is moved over the path meanwhile."""
    path = Path(path)
    check_file(path, "an image")
    try:
        data = path.read_bytes()
    except PermissionError:
        raise InputError(f"{path}: permission denied") from None
    except OSError as exc:
        raise InputError(f"{path}: cannot read ({exc.strerror or exc})") from None
    if not data:
        raise InputError(f"{path}: empty file (0 bytes)")
    return data


def _open(path: Path, data: bytes | None = None):
    from PIL import Image, ImageOps, UnidentifiedImageError

    data = read_file(path) if data is None else data
    if is_heif(path, data):
        heif_plugin(path)
    elif path.suffix.lower() == ".avif":
        avif_ready(path)
    trusted = max_pixels()
    try:
        with warnings.catch_warnings(record=True) as caught:
            # Pillow only warns between MAX_IMAGE_PIXELS (89 MP) and twice that (where it refuses), then
            # decodes: a 350 kB PNG declaring 12000x10000 took 2.1 GB and 36 s. Real photos of that size
            # (100+ MP phone and camera sensors) hold a few pixels per byte of file; a bomb holds hundreds.
            # So in that band, and up to _MAX_PHOTO_FACTOR times the limit, a file is refused only when it is
            # that suspiciously small (trusted bigger photos: FACEVEIL_MAX_PIXELS, or PIL.Image.MAX_IMAGE_PIXELS).
            warnings.simplefilter("always", Image.DecompressionBombWarning)
            big = False
            try:
                img = Image.open(io.BytesIO(data))
            except Image.DecompressionBombError as exc:  # over twice Pillow's limit: our own test decides
                pixels, limit = _declared_pixels(exc), Image.MAX_IMAGE_PIXELS
                if pixels is None or not limit or pixels > _pixel_limit(trusted):
                    raise
                with _LIMIT_LOCK:
                    Image.MAX_IMAGE_PIXELS = None
                    try:
                        img = Image.open(io.BytesIO(data))
                    finally:
                        Image.MAX_IMAGE_PIXELS = limit
                big = True
        pixels = img.size[0] * img.size[1]
        if trusted is not None and pixels > trusted:
            img.close()
            raise Image.DecompressionBombError(f"({pixels} pixels)")
        if trusted is None and (big or any(issubclass(w.category, Image.DecompressionBombWarning) for w in caught)):
            if pixels > _BOMB_PIXELS_PER_BYTE * len(data):
                img.close()
                raise Image.DecompressionBombWarning(f"({pixels} pixels)")
        frames = getattr(img, "n_frames", 1)
        refusal = None
        # Only the first frame would be anonymized and written, the rest silently dropped: refuse.
        # MPO (phone cameras' JPEG) is exempt while its extra images are previews (under half its area), dropped
        # like metadata; a second photo (a stereo camera's other eye, a panorama's next frame) is refused.
        # HEIF likewise: its top-level images other than the primary are dropped while they are previews; its
        # thumbnails, depth maps and auxiliary images (gain maps, mattes) are never read nor written.
        if frames > 1 and img.format not in ("MPO", "HEIF"):
            refusal = f"animated/multi-page images are not supported ({frames} frames)"
        elif frames > 1 and (big := _mpo_photos(img)) > 1:
            what, which = ("an MPO", "the first") if img.format == "MPO" else ("a HEIF", "the primary")
            guess = "a stereo pair?" if img.format == "MPO" else "a burst? a stereo pair?"
            refusal = (f"{what} holding {big} full-size images ({guess}) is not supported: only {which} would be "
                       "written; split them first")
        elif img.mode == "F" or img.mode.startswith("I;32") or (img.mode == "I" and img.format != "PNG") \
                or _deep_colour(img, data):
            refusal = (f"{_depth_name(img, data)} images are not supported (the bit depth would be lost); convert to "
                       "8 bit first")
        if refusal:
            img.close()
            raise InputError(f"{path}: {refusal}")
        img.load()  # decode now, so truncated files fail here
        encoding = _encoding(img, data)
        orientation = exif_orientation_of(img)
        img = ImageOps.exif_transpose(img)  # orientation goes into the pixels
        img.encoding, img.orientation = encoding, orientation
    except UnidentifiedImageError:
        raise _not_an_image(path, data) from None
    except PermissionError:
        raise InputError(f"{path}: permission denied") from None
    except (OSError, ValueError, SyntaxError) as exc:
        # libheif's messages end in a newline: "...outside of file bounds (points to file position 3655)\n"
        raise InputError(f"{path}: cannot decode image ({' '.join(str(exc).split())})") from None
    except Image.DecompressionBombWarning as exc:
        size = _size_text(exc)
        raise InputError(f"{path}: refused as a decompression bomb: {size} in a {len(data):,}-byte file (over "
                         f"{_BOMB_PIXELS_PER_BYTE} pixels a byte; a trusted file: set {MAX_PIXELS_ENV})") from None
    except Image.DecompressionBombError as exc:
        size = _size_text(exc)
        raise InputError(f"{path}: refused, {size} is over faceveil's {_pixel_limit(trusted):,}-pixel limit "
                         f"(a trusted file: set {MAX_PIXELS_ENV} higher)") from None
    return img


@contextlib.contextmanager
def opened(src):
    """``PIL.Image.open(src)`` (a path or a buffer) for what faceveil reads whole only through ``read_image``: a
    header (size, EXIF orientation) or an output it wrote, with Pillow's pixel limit raised to faceveil's own
    (FACEVEIL_MAX_PIXELS, else _MAX_PHOTO_FACTOR x Pillow's). Pillow's 179 MP refused a photo ``read_image`` takes
    (and FACEVEIL_MAX_PIXELS promised to take): a YOLO dataset failed with a traceback, a checked output was deleted."""
    from PIL import Image

    _heif_opener_for(src)
    with _LIMIT_LOCK, warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        limit = Image.MAX_IMAGE_PIXELS
        Image.MAX_IMAGE_PIXELS = _pixel_limit(max_pixels()) // 2 if limit else None  # Pillow refuses at twice it
        try:
            img = Image.open(src)
        finally:
            Image.MAX_IMAGE_PIXELS = limit
    with img:
        yield img


def _heif_opener_for(src) -> None:
    """pillow-heif's opener registered when ``src`` (a path or a seekable buffer) is a HEIF file."""
    if _HEIF_READY:
        return
    if isinstance(src, (str, os.PathLike)):
        if Path(src).suffix.lower() in HEIF_EXTENSIONS:
            heif_plugin(src)
            return
        try:
            with open(src, "rb") as f:
                head = f.read(256)
        except OSError:
            return  # Pillow's own error follows
    else:
        pos = src.tell()
        head = src.read(256)
        src.seek(pos)
    if is_heif(None, head):
        heif_plugin(getattr(src, "name", "a HEIF image"))


def _pixel_limit(trusted: int | None) -> int:
    """The most pixels an image may have: ``FACEVEIL_MAX_PIXELS``, else _MAX_PHOTO_FACTOR x Pillow's limit."""
    from PIL import Image

    return trusted if trusted is not None else _MAX_PHOTO_FACTOR * (Image.MAX_IMAGE_PIXELS or 0)


def _mpo_photos(img) -> int:
    """How many of an MPO's (a HEIF's) images are at least half as large (by area) as its first (its primary, which
    need not be the first); the file is left at that image."""
    first = img.tell()  # an MPO opens at 0, a HEIF at its primary
    w, h = img.size
    n = 0
    for i in range(img.n_frames):
        img.seek(i)
        n += img.size[0] * img.size[1] * 2 >= w * h
    img.seek(first)
    return n


def stored_size(img) -> tuple[int, int]:
    """Width and height of an opened image's pixels as the file stores them (before its EXIF orientation). Pillow
    (13) turns a TIFF with orientation 5-8 upright as it opens it, so its ``size`` is the upright one there."""
    tags = getattr(img, "tag_v2", None)
    if img.format == "TIFF" and tags is not None and 256 in tags and 257 in tags:
        return int(tags[256]), int(tags[257])
    return img.size


def _declared_pixels(exc: Exception) -> int | None:
    """The pixel count a decompression-bomb warning or error of Pillow's names, e.g. "(120000000 pixels)"."""
    m = re.search(r"\((\d+) pixels\)", str(exc))
    return int(m.group(1)) if m else None


def _size_text(exc: Exception) -> str:
    pixels = _declared_pixels(exc)
    return f"{pixels:,} pixels" if pixels is not None else "its declared size"


# TIFF compressions that lose nothing: an output in the source's format keeps the source's (a LZW TIFF came out
# uncompressed, 3x larger); a JPEG-in-TIFF is written uncompressed rather than losing more.
_LOSSLESS_TIFF = ("tiff_lzw", "tiff_adobe_deflate", "tiff_deflate", "packbits")


def exif_orientation_of(img) -> int:
    """The EXIF orientation (1..8) of an opened image, what ``read_image`` applies; 1 when none or invalid."""
    try:
        o = int(img.getexif().get(0x0112, 1))
    except Exception:  # a broken EXIF block: Pillow's exif_transpose ignores it too
        return 1
    return o if 1 <= o <= 8 else 1


def webp_is_lossless(path: str | os.PathLike | bytes) -> bool:
    """Whether a WebP file's image is VP8L (lossless): Pillow does not say. Walks the RIFF chunks to the image's.
    ``path``: the file, or its bytes."""
    with io.BytesIO(path) if isinstance(path, bytes) else open(path, "rb") as f:
        head = f.read(12)
        if head[:4] != b"RIFF" or head[8:12] != b"WEBP":
            return False
        while chunk := f.read(8):
            if len(chunk) < 8:
                return False
            kind, size = chunk[:4], int.from_bytes(chunk[4:], "little")
            if kind in (b"VP8 ", b"VP8L"):
                return kind == b"VP8L"
            f.seek(size + (size & 1), 1)
    return False


def _encoding(img, data: bytes) -> dict:
    """How ``img`` (just opened from ``data``) is stored, for write_image to store an output in the same format."""
    enc: dict = {"format": img.format}
    if img.format == "WEBP":
        enc["lossless"] = webp_is_lossless(data)
    elif img.format == "TIFF" and img.info.get("compression") in _LOSSLESS_TIFF:
        enc["compression"] = img.info["compression"]
    return enc


def _deep_colour(img, data: bytes = b"") -> bool:
    """A colour image with more than 8 bits a channel: Pillow reads it as 8-bit RGB, so it cannot be written back."""
    if img.format == "AVIF":  # libavif hands 10- and 12-bit AVIF over as 8-bit, grey ones too
        return avif_bits(data) > 8
    if img.mode not in ("RGB", "RGBA", "CMYK", "LA", "P"):
        return False
    if img.format == "TIFF":
        return _tiff_bits(img, 8) > 8
    if img.format == "HEIF":  # pillow-heif hands 10- and 12-bit HEIC over as 8-bit
        return int(img.info.get("bit_depth", 8)) > 8
    if img.format == "PNG" and img.fp is not None:
        # Pillow keeps no bit depth for PNG: read it from the IHDR chunk (byte 24 of every PNG).
        pos = img.fp.tell()
        try:
            img.fp.seek(24)
            return img.fp.read(1) == b"\x10"
        finally:
            img.fp.seek(pos)
    return False


def _tiff_bits(img, default: int) -> int:
    """A TIFF's bits per sample (tag 258: a number, or one per channel), the largest."""
    bits = img.tag_v2.get(258, (default,))
    return max(bits if isinstance(bits, tuple) else (bits,))


def avif_bits(data: bytes) -> int:
    """The largest bit depth (8, 10, 12) that an AVIF file's AV1 configurations (its meta box's av1C properties,
    one per coded image: the primary, its alpha, thumbnails) declare; 8 when there is none. Pillow does not say."""
    pos, bits = 0, 8
    while pos + 8 <= len(data):  # the file's top-level boxes: size, type
        size, kind = int.from_bytes(data[pos:pos + 4], "big"), data[pos + 4:pos + 8]
        if size == 1:
            size = int.from_bytes(data[pos + 8:pos + 16], "big")
        elif size == 0:
            size = len(data) - pos
        if size < 8:
            break
        if kind == b"meta":
            meta = data[pos:pos + size]
            i = meta.find(b"av1C")
            while 4 <= i and i + 7 <= len(meta):
                # av1C: marker and version (0x81), profile and level, then tier, high_bitdepth, twelve_bit, ...
                if meta[i + 4] == 0x81:
                    flags = meta[i + 6]
                    bits = max(bits, 12 if flags & 0x20 else 10 if flags & 0x40 else 8)
                i = meta.find(b"av1C", i + 4)
            return bits
        pos += size
    return bits


def _depth_name(img, data: bytes = b"") -> str:
    if img.format == "HEIF" and img.mode in ("RGB", "RGBA", "L", "LA"):
        return f"{img.info.get('bit_depth')}-bit HEIF"
    if img.format == "AVIF":
        return f"{avif_bits(data)}-bit AVIF"
    if img.mode.startswith("I;16") or (img.mode == "I" and img.format == "TIFF" and _tiff_bits(img, 32) == 16):
        return "signed 16-bit"  # the unsigned ones are read; a signed 16-bit TIFF was called 32-bit
    return {"F": "floating-point"}.get(img.mode, "32-bit" if img.mode.startswith("I") else "16-bit colour")


def decoded_rgb(img, to_srgb: bool = True) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None, int, bool]:
    """An opened (upright) image's pixels as read_image reads them, also a PIL image the API is given: (RGB uint8,
    alpha or None, 16-bit grey samples or None, what the RGB's 255 stands for, whether its colour profile was
    converted to sRGB)."""
    mode = img.mode
    alpha = None
    deep, deep_max = None, 255
    if mode in GREY16_MODES:
        # 16-bit grey: Pillow's convert("RGB") clips every value over 255 to white (a face became
        # a white sheet, "0 faces"). Detect on an 8-bit view scaled by the image's own maximum
        # (12-bit data in a 16-bit file stays visible); write_image puts the faces back in 16 bit.
        deep = np.clip(np.asarray(img), 0, 65535).astype(np.uint16)
        view, deep_max = grey16_view(deep)
        rgb = np.repeat(view[:, :, None], 3, axis=2)
    elif mode == "LAB":
        # CIELAB (a TIFF from Photoshop or a scanner): its bands are L, A, B, and that A (green-red) was taken for an
        # alpha channel: the output came out RGBA. Converted to sRGB by LittleCMS (Pillow's ImageCms; D50 Lab, as
        # ICC and Photoshop's Lab TIFFs use), written as RGB.
        rgb = np.asarray(_lab_to_srgb(img))
    elif mode == "CMYK" and to_srgb and _cmyk_transform(img.info.get("icc_profile") or b"") is not None:
        # A CMYK photo (print work, a stock photo) with its press profile: converted by it, as a colour-managed viewer
        # shows it. Pillow's convert("RGB") ignores the profile (R = (255 - C)(255 - K) / 255 ...): colours on
        # Artifex's SWOP profile were off by 12 levels on average (a skin tone redder, blacks lighter).
        from PIL import ImageCms

        rgb = np.asarray(ImageCms.applyTransform(img, _cmyk_transform(img.info["icc_profile"])))
        return rgb, None, None, 255, True
    elif "A" in img.getbands() or "transparency" in img.info:  # a palette's or a colour key's (tRNS) too
        rgba = img.convert("RGBA")
        alpha = np.asarray(rgba)[:, :, 3].copy()
        rgb = np.asarray(rgba.convert("RGB"))
    else:
        rgb = np.asarray(img.convert("RGB"))
    icc = img.info.get("icc_profile")
    srgb = _to_srgb(rgb, icc) if to_srgb and icc and mode in ("RGB", "RGBA", "P", "PA") else None
    return (rgb if srgb is None else srgb), alpha, deep, deep_max, srgb is not None or mode == "LAB"


def _lab_to_srgb(img):
    """A LAB image in sRGB (relative colorimetric: colours outside sRGB clipped)."""
    from PIL import ImageCms

    transform = ImageCms.buildTransform(ImageCms.createProfile("LAB"), ImageCms.createProfile("sRGB"), "LAB", "RGB",
                                        ImageCms.Intent.RELATIVE_COLORIMETRIC)
    return ImageCms.applyTransform(img, transform)


def read_image(path: str | os.PathLike, to_srgb: bool = True, data: bytes | None = None) -> ImageFile:
    """The image's pixels, upright, in sRGB (``to_srgb=False``: as stored, whatever their colour profile).
    ``data``: the file's bytes if already read (``read_file``)."""
    path = Path(path)
    img = _open(path, data)
    mode = img.mode
    rgb, alpha, deep, deep_max, srgb = decoded_rgb(img, to_srgb)
    exif = None
    try:
        ex = img.getexif()
        if len(ex):
            ex[0x0112] = 1  # orientation already applied to the pixels
            _drop_exif_blobs(ex)
            exif = ex.tobytes()
    except Exception:
        exif = None
    info = {k: img.info[k] for k in ("icc_profile", "dpi", "xmp", "comment") if k in img.info}
    if isinstance(info.get("xmp"), (bytes, str)):
        info["xmp"] = drop_xmp_blobs(info["xmp"])
    if "comment" in info and holds_picture(info["comment"]):
        del info["comment"]
    if mode == "CMYK" or srgb:  # written as (s)RGB: the source's profile would misdescribe the pixels
        info.pop("icc_profile", None)
    return ImageFile(np.ascontiguousarray(rgb), path, mode, alpha, exif, info, deep, deep_max, img.encoding,
                     img.orientation)


# Metadata kept with --keep-metadata must not carry a picture of the face: cameras and editors put previews of the
# whole photo in the EXIF MakerNote (Canon, Nikon, Sony previews), in XMP (xmp:Thumbnails, Google's GImage/GDepth
# data) and in the blocks below, none of which the anonymization touches. They are dropped (EXIF's own thumbnail,
# IFD1, is never written). Fail closed: so is any other metadata value (EXIF, any IFD, text or binary; an XMP value;
# the JPEG comment) that holds a picture (an image file's signature, or a run of XMP_BLOB_CHARS base64 characters,
# a data: URI's too), and any EXIF value over EXIF_BLOB_BYTES (an audit hid a JPEG in each of these) unless it reads
# as written text (``_written_text``: a long caption or copyright notice is kept).
_EXIF_BLOB_TAGS = {0x927C: "MakerNote", 0x02BC: "XMP (TIFF)", 0x83BB: "IPTC", 0x8649: "Photoshop",
                   0xC4A5: "PrintIM", 0xC634: "DNGPrivateData"}
EXIF_BLOB_BYTES = 256
XMP_BLOB_CHARS = 200
# base64 broken into lines (newlines or their XML entities), not by spaces: written text has spaces
_B64_RUN = re.compile(rb"(?:[A-Za-z0-9+/=]|[\r\n\t]|&#x?[0-9A-Fa-f]+;){%d,}" % XMP_BLOB_CHARS)
_SIGNATURES = (b"\xff\xd8\xff", b"\x89PNG", b"GIF87a", b"GIF89a", b"WEBPVP8", b"\x00\x00\x00\x0cjP", b"ftypheic",
               b"ftypavif", b"II*\x00", b"MM\x00*")
_XMP_ELEMENT = re.compile(rb"<([\w.-]+:[\w.-]+)\b[^<>]*>([^<]*)</\1\s*>")
_XMP_ATTRIBUTE = re.compile(rb"\s[\w.-]+:[\w.-]+\s*=\s*(\"|')([^\"']*)\1")


def holds_picture(value) -> bool:
    """Whether a metadata value (bytes or text) may hold an image: a file signature or a long base64 run."""
    data = value.encode("utf-8", "surrogateescape") if isinstance(value, str) else bytes(value)
    return any(sig in data for sig in _SIGNATURES) or any(
        len(re.sub(rb"\s|&#x?[0-9A-Fa-f]+;", b"", m.group())) >= XMP_BLOB_CHARS for m in _B64_RUN.finditer(data))


# Written text: printable characters and whitespace, words at most TEXT_WORD characters long (an encoded picture,
# base64, hex or Ascii85, is one long word), at most TEXT_BYTES in all. EXIF's UserComment starts with its charset.
TEXT_WORD, TEXT_BYTES = 64, 1 << 16
_USER_COMMENT = {b"ASCII\0\0\0": "ascii", b"UNICODE\0": "utf-16", b"\0" * 8: "utf-8"}


def _written_text(value) -> bool:
    """Whether an EXIF value (text or bytes) is written text, not data (see TEXT_WORD)."""
    if isinstance(value, (bytes, bytearray)):
        value = bytes(value)
        if len(value) > TEXT_BYTES:
            return False
        codec = _USER_COMMENT.get(value[:8])
        try:
            value = value[8:].decode(codec) if codec else value.decode("utf-8")
        except UnicodeDecodeError:
            return False
    text = value.rstrip("\0")
    return len(text) <= TEXT_BYTES and all(c.isprintable() or c.isspace() for c in text) and \
        max(map(len, text.split()), default=0) <= TEXT_WORD


def _drop_exif_blobs(ex) -> None:
    """Remove previews and other blobs from a Pillow ``Exif``: its main IFD and its Exif, GPS and Interop IFDs."""
    from PIL import ExifTags

    for ifd in (ex, *(ex.get_ifd(k) for k in (ExifTags.IFD.Exif, ExifTags.IFD.GPSInfo, ExifTags.IFD.Interop))):
        for tag in list(ifd):
            value = ifd[tag]
            if isinstance(value, dict):
                continue  # a sub-IFD: checked on its own
            if tag in _EXIF_BLOB_TAGS or (isinstance(value, (bytes, bytearray, str)) and (
                    holds_picture(value) or (len(value) > EXIF_BLOB_BYTES and not _written_text(value)))):
                del ifd[tag]


def drop_xmp_blobs(xmp: bytes | str) -> bytes | str:
    """``xmp`` without its embedded pictures (every element or attribute whose value holds one)."""
    data = xmp.encode("utf-8", "surrogateescape") if isinstance(xmp, str) else xmp
    data = _XMP_ELEMENT.sub(lambda m: b"" if holds_picture(m.group(2)) else m.group(), data)
    data = _XMP_ATTRIBUTE.sub(lambda m: b"" if holds_picture(m.group(2)) else m.group(), data)
    return data.decode("utf-8", "surrogateescape") if isinstance(xmp, str) else data


def _to_srgb(rgb: np.ndarray, icc: bytes) -> np.ndarray | None:
    """``rgb`` converted from its embedded colour profile to sRGB, or None when it is sRGB already or the profile
    cannot be read. Pixels are read in sRGB because the profile is dropped with the metadata (a device's own
    profile names the device): writing Adobe RGB or Display P3 values without it shifted colours by up to Delta-E 9.
    Colours outside sRGB are clipped (relative colorimetric)."""
    transform = _srgb_transform(icc)
    if transform is None:
        return None
    from PIL import Image, ImageCms

    return np.asarray(ImageCms.applyTransform(Image.fromarray(np.ascontiguousarray(rgb), "RGB"), transform))


@functools.lru_cache(maxsize=8)
def _srgb_transform(icc: bytes):
    from PIL import ImageCms

    try:
        src = ImageCms.ImageCmsProfile(io.BytesIO(icc))
        if "srgb" in ImageCms.getProfileDescription(src).lower().replace(" ", ""):
            return None
        return ImageCms.buildTransform(src, ImageCms.createProfile("sRGB"), "RGB", "RGB",
                                       ImageCms.Intent.RELATIVE_COLORIMETRIC)
    except (ImageCms.PyCMSError, OSError, ValueError, TypeError):
        return None  # an unreadable or non-RGB profile: the pixels as stored (dropped with the metadata, as before)


@functools.lru_cache(maxsize=8)
def _cmyk_transform(icc: bytes):
    """LittleCMS's CMYK -> sRGB transform for a CMYK profile, or None (no profile, an unreadable one, not CMYK: the
    pixels then go through Pillow's naive formula, as before). Perceptual, Pillow's ImageCms.profileToProfile
    default: a press profile's perceptual table maps its paper and its black to sRGB's (relative colorimetric
    left a SWOP black at 39, not 17, and round-tripped sRGB 7.7 levels off instead of 5.8)."""
    from PIL import ImageCms

    if not icc:
        return None
    try:
        src = ImageCms.ImageCmsProfile(io.BytesIO(icc))
        if src.profile.xcolor_space.strip() != "CMYK":
            return None
        return ImageCms.buildTransform(src, ImageCms.createProfile("sRGB"), "CMYK", "RGB",
                                       ImageCms.Intent.PERCEPTUAL)
    except (ImageCms.PyCMSError, OSError, ValueError, TypeError):
        return None


def display_png(path: str | os.PathLike) -> bytes:
    """An image as the review page shows it: upright, in sRGB, as a PNG (for the formats in NOT_FOR_BROWSERS)."""
    from PIL import Image

    img = read_image(path)
    shown = Image.fromarray(img.rgb, "RGB")
    if img.alpha is not None:
        shown.putalpha(Image.fromarray(img.alpha, "L"))
    buf = io.BytesIO()
    shown.save(buf, "PNG", compress_level=1)  # 12 MP: about 2 s, 15 MB; only this page's browser reads it
    return buf.getvalue()


def read_image_rgba(path: str | os.PathLike) -> np.ndarray:
    img = _open(Path(path))
    if img.mode in GREY16_MODES:
        # 16-bit grey: Pillow's convert clips every value over 255 to white (an overlay became a white sheet)
        grey = (np.clip(np.asarray(img), 0, 65535).astype(np.uint32) * 255 + 32767) // 65535
        return np.dstack([grey.astype(np.uint8)] * 3 + [np.full(grey.shape, 255, np.uint8)])
    return np.asarray(img.convert("RGBA")).copy()


def read_rgb(path: str | os.PathLike) -> np.ndarray:
    """Just the RGB pixels (orientation applied)."""
    return read_image(path).rgb


_ALPHA_FORMATS = ("PNG", "WEBP", "TIFF", "AVIF", "HEIF")


def takes_quality(target: str | os.PathLike) -> bool:
    """Whether a file of ``target``'s name is written at a quality (--jpeg-quality): JPEG, WebP, AVIF, HEIC."""
    return _FORMATS.get(Path(target).suffix.lower()) in ("JPEG", "WEBP", "AVIF", "HEIF")


def transparency_dropped(target: str | os.PathLike, source: ImageFile) -> str | None:
    """Why ``source``'s transparency is lost when written to ``target`` (a format with no alpha channel: JPEG,
    BMP), or None where it is kept or there is none. ``encode_image`` writes the colour channels alone: what was
    transparent comes out opaque, showing the colours stored under it (a face there is anonymized all the same)."""
    fmt = _FORMATS.get(Path(target).suffix.lower())
    if source.alpha is None or int(source.alpha.min()) == 255 or fmt is None or fmt in _ALPHA_FORMATS:
        return None
    return (f"{target}: {fmt} has no transparency: the transparent pixels of the input were written opaque (their "
            f"stored colours show){', and lossily' if fmt == 'JPEG' else ''}; name it .png or .webp to keep them")


def modern_write_args(fmt: str, target: str | os.PathLike, quality: int) -> dict:
    """Pillow's save arguments for an AVIF or HEIF ``target`` at ``quality`` (--jpeg-quality: both encoders take
    0-100, higher better), or InputError naming it when this Pillow (AVIF) or pillow-heif (HEIF: not installed, or
    built without an HEVC encoder) cannot write it: no other format is written under that name. Measured on a
    12 MP photo (docs/formats.md): x265's ultrafast preset took 4 s instead of 38 s (libheif's default, slow) and
    libavif's speed 8 4 s instead of 13 s (Pillow's default, 6), at the same error and within 5 % of the size."""
    if fmt == "AVIF":  # 4:2:0, libavif's default
        avif_ready(target)
        return {"quality": quality, "speed": 8}
    # HEIF as a phone writes it: HEVC Main, 4:2:0 (4:4:4 needs a decoder few phones have)
    encoder = heif_plugin(target).libheif_info().get("HEIF") or ""
    if not encoder:
        raise InputError(f"{target}: this pillow-heif has no HEVC encoder, so faceveil cannot write HEIC/HEIF; "
                         "install its wheel (pip install --force-reinstall pillow-heif) or give -o NAME.jpg")
    return {"quality": quality, **({"enc_params": {"preset": "ultrafast"}} if "x265" in encoder else {})}


def write_image(
    target: str | os.PathLike,
    rgb: np.ndarray,
    source: ImageFile | None = None,
    keep_metadata: bool = False,
    jpeg_quality: int = 95,
    region: np.ndarray | None = None,
    replace: bool = True,
) -> None:
    """Write atomically in the format of the target's extension, in the source's colour mode (``encode_image``)."""
    # Encoded in memory, then written and size-checked: on a nearly full disk Pillow's JPEG encoder
    # returned without raising and left a truncated file that was reported (and hashed) as written.
    write_bytes_atomic(target, encode_image(target, rgb, source, keep_metadata, jpeg_quality, region), replace)


def encode_image(
    target: str | os.PathLike,
    rgb: np.ndarray,
    source: ImageFile | None = None,
    keep_metadata: bool = False,
    jpeg_quality: int = 95,
    region: np.ndarray | None = None,
) -> bytes:
    """The file's bytes in the format of the target's extension, in the source's colour mode.

    Metadata (EXIF, GPS, XMP, ICC, comments) is dropped unless ``keep_metadata``.
    A 16-bit grey source written as PNG or TIFF stays 16-bit: pixels in ``region`` (HxW bool,
    where the faces were anonymized; default: where ``rgb`` differs from the source's 8-bit view)
    take the anonymized value scaled up, every other pixel keeps its 16-bit value.
    """
    from PIL import Image

    target = Path(target)
    fmt = _FORMATS.get(target.suffix.lower())
    if fmt is None:
        raise InputError(f"{target}: unsupported output format {target.suffix!r}")
    img = Image.fromarray(np.ascontiguousarray(rgb, dtype=np.uint8), "RGB")
    if source is not None and source.deep is not None and fmt in ("PNG", "TIFF"):
        grey = np.asarray(img.convert("L"))
        if region is None:
            region = grey != source.rgb[:, :, 0]
        up = ((grey.astype(np.uint32) * source.deep_max + 127) // 255).astype(np.uint16)
        img = Image.fromarray(np.where(region, up, source.deep))  # uint16: mode I;16
    elif source is not None:
        if source.alpha is not None and fmt in _ALPHA_FORMATS:
            img.putalpha(Image.fromarray(source.alpha, "L"))
            if source.mode in ("LA", "L") and fmt != "HEIF":  # grey with a colour key: grey and alpha
                img = img.convert("LA")
        elif source.mode in ("L", "1", "I", "I;16", "F") or source.mode == "LA" and fmt not in _ALPHA_FORMATS:
            img = img.convert("L")
    kwargs: dict = {}
    if fmt == "JPEG":
        kwargs.update(quality=jpeg_quality, subsampling=0 if jpeg_quality >= 90 else 2)
    elif fmt == "WEBP":
        kwargs.update(quality=jpeg_quality)
    elif fmt in ("AVIF", "HEIF"):
        kwargs.update(modern_write_args(fmt, target, jpeg_quality))
    same = source is not None and source.encoding.get("format") == fmt
    if same and source.encoding.get("lossless"):  # a lossless WebP stays lossless (it became quality 95)
        kwargs = {"lossless": True}  # Pillow's default effort
    elif same and source.encoding.get("compression"):
        kwargs.update(compression=source.encoding["compression"])
    if keep_metadata and source is not None:
        if source.exif:
            kwargs["exif"] = source.exif
        # HEIF and AVIF take the profile, not dpi; never a thumbnail (pillow-heif writes info["thumbnails"])
        kwargs.update({k: v for k, v in source.info.items() if k not in ("xmp", "comment")
                       and (fmt not in ("AVIF", "HEIF") or k == "icc_profile")})
        xmp = source.info.get("xmp")
        if xmp and fmt in ("JPEG", "WEBP", "AVIF", "HEIF"):
            kwargs["xmp"] = xmp
        elif xmp and fmt == "PNG":
            from PIL.PngImagePlugin import PngInfo

            kwargs["pnginfo"] = PngInfo()
            kwargs["pnginfo"].add_itxt("XML:com.adobe.xmp", xmp.decode("utf-8", "replace"))
        if source.info.get("comment") and fmt == "JPEG":
            kwargs["comment"] = source.info["comment"]
    buf = io.BytesIO()
    img.save(buf, format=fmt, **kwargs)
    return buf.getvalue()
