"""Image files in and out, as RGB uint8 arrays.

Pillow reads every format we promise (JPEG, PNG, WebP, BMP, TIFF), applies the
EXIF orientation to the pixels, and writes without metadata unless asked.
"""
from __future__ import annotations

import io
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import InputError
from .atomic import write_bytes_atomic

IMAGE_EXTENSIONS = {".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff"}
_FORMATS = {".jpg": "JPEG", ".jpeg": "JPEG", ".png": "PNG", ".webp": "WEBP", ".bmp": "BMP", ".tif": "TIFF", ".tiff": "TIFF"}


def is_image_path(path: str | os.PathLike) -> bool:
    return Path(path).suffix.lower() in IMAGE_EXTENSIONS


@dataclass
class ImageFile:
    """Pixels plus what is needed to write them back in the same form."""

    rgb: np.ndarray  # HxWx3 uint8, orientation already applied
    path: Path
    mode: str  # Pillow mode of the source: "RGB", "L", "RGBA", ...
    alpha: np.ndarray | None = None  # HxW uint8 when the source had transparency
    exif: bytes | None = None  # source EXIF with orientation reset (used only with keep_metadata)
    info: dict = field(default_factory=dict)  # icc_profile, dpi (kept only with keep_metadata)


def _open(path: Path):
    from PIL import Image, ImageOps, UnidentifiedImageError

    if not path.exists():
        raise InputError(f"{path}: no such file")
    if path.is_dir():
        raise InputError(f"{path}: is a folder, not an image")
    try:
        img = Image.open(path)
        img.load()  # decode now, so truncated files fail here
        img = ImageOps.exif_transpose(img)  # orientation goes into the pixels
    except UnidentifiedImageError:
        raise InputError(f"{path}: not an image or unsupported format") from None
    except PermissionError:
        raise InputError(f"{path}: permission denied") from None
    except (OSError, ValueError, SyntaxError) as exc:
        raise InputError(f"{path}: cannot decode image ({exc})") from None
    except Image.DecompressionBombError as exc:
        raise InputError(f"{path}: refused, {exc}") from None
    return img


def read_image(path: str | os.PathLike) -> ImageFile:
    path = Path(path)
    img = _open(path)
    mode = img.mode
    alpha = None
    if "A" in img.getbands() or (mode == "P" and "transparency" in img.info):
        rgba = img.convert("RGBA")
        alpha = np.asarray(rgba)[:, :, 3].copy()
        rgb = np.asarray(rgba.convert("RGB"))
    else:
        rgb = np.asarray(img.convert("RGB"))
    exif = None
    try:
        ex = img.getexif()
        if len(ex):
            ex[0x0112] = 1  # orientation already applied to the pixels
            exif = ex.tobytes()
    except Exception:
        exif = None
    info = {k: img.info[k] for k in ("icc_profile", "dpi") if k in img.info}
    return ImageFile(np.ascontiguousarray(rgb), path, mode, alpha, exif, info)


def read_image_rgba(path: str | os.PathLike) -> np.ndarray:
    return np.asarray(_open(Path(path)).convert("RGBA")).copy()


def read_rgb(path: str | os.PathLike) -> np.ndarray:
    """Just the RGB pixels (orientation applied)."""
    return read_image(path).rgb


def write_image(
    target: str | os.PathLike,
    rgb: np.ndarray,
    source: ImageFile | None = None,
    keep_metadata: bool = False,
    jpeg_quality: int = 95,
) -> None:
    """Write atomically in the format of the target's extension, in the source's colour mode.

    Metadata (EXIF, GPS, XMP, ICC, comments) is dropped unless ``keep_metadata``.
    """
    from PIL import Image

    target = Path(target)
    fmt = _FORMATS.get(target.suffix.lower())
    if fmt is None:
        raise InputError(f"{target}: unsupported output format {target.suffix!r}")
    img = Image.fromarray(np.ascontiguousarray(rgb, dtype=np.uint8), "RGB")
    if source is not None:
        if source.alpha is not None and fmt in ("PNG", "WEBP", "TIFF"):
            img.putalpha(Image.fromarray(source.alpha, "L"))
        elif source.mode in ("L", "1", "I", "I;16", "F") or source.mode == "LA" and fmt not in ("PNG", "WEBP", "TIFF"):
            img = img.convert("L")
    kwargs: dict = {}
    if fmt == "JPEG":
        kwargs.update(quality=jpeg_quality, subsampling=0 if jpeg_quality >= 90 else 2)
    elif fmt == "WEBP":
        kwargs.update(quality=jpeg_quality)
    if keep_metadata and source is not None:
        if source.exif:
            kwargs["exif"] = source.exif
        kwargs.update(source.info)
    # Encoded in memory, then written and size-checked: on a nearly full disk Pillow's JPEG encoder
    # returned without raising and left a truncated file that was reported (and hashed) as written.
    buf = io.BytesIO()
    img.save(buf, format=fmt, **kwargs)
    write_bytes_atomic(target, buf.getvalue())
