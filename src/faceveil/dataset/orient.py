"""EXIF orientation: pixels and boxes between the stored and the upright frame, and writing back in the stored one."""
from __future__ import annotations

import hashlib
import io
import os
from dataclasses import replace
from pathlib import Path

import numpy as np

from ..errors import InputError
from ..io.images import ImageFile, exif_orientation_of, opened, stored_size, write_image

# EXIF orientation. Dataset labels (WIDER, COCO, VOC) address the stored pixels, so dataset mode keeps them:
# it anonymizes the upright view (the detector needs upright faces), turns the result back into the stored
# frame and writes it with the same orientation tag (and no other metadata unless --keep-metadata). The
# output then reads like its input in every loader, and the label files, copied byte for byte, still fit.
# Hand-written: Pillow's exif_transpose only goes one way and knows nothing of boxes. Each orientation is a
# sequence of three involutions (mirror x, mirror y, transpose), applied in the same order to pixels and
# boxes; tests/test_faults_dataset.py checks them against Pillow for all eight.

_STEPS = {1: "", 2: "x", 3: "xy", 4: "y", 5: "t", 6: "yt", 7: "xyt", 8: "xt"}


def exif_orientation(path: str | os.PathLike) -> int:
    """The EXIF orientation (1..8) that ``read_image`` applied; 1 when there is none or it is invalid."""
    with opened(path) as im:
        return exif_orientation_of(im)


def _step(a: np.ndarray, s: str) -> np.ndarray:
    return a[:, ::-1] if s == "x" else a[::-1] if s == "y" else a.swapaxes(0, 1)


def to_oriented(a: np.ndarray, orientation: int) -> np.ndarray:
    for s in _STEPS[orientation]:
        a = _step(a, s)
    return np.ascontiguousarray(a)


def to_stored(a: np.ndarray, orientation: int) -> np.ndarray:
    for s in reversed(_STEPS[orientation]):
        a = _step(a, s)
    return np.ascontiguousarray(a)


def boxes_to_oriented(xyxy: np.ndarray, orientation: int, width: int, height: int) -> np.ndarray:
    """Boxes in stored pixels (image ``width`` x ``height`` as stored) -> boxes in the upright view."""
    b = np.array(xyxy, np.float32).reshape(-1, 4)
    w, h = width, height
    for s in _STEPS[orientation]:
        if s == "x":
            b = np.stack([w - b[:, 2], b[:, 1], w - b[:, 0], b[:, 3]], axis=1)
        elif s == "y":
            b = np.stack([b[:, 0], h - b[:, 3], b[:, 2], h - b[:, 1]], axis=1)
        else:
            b = b[:, [1, 0, 3, 2]]
            w, h = h, w
    return b.astype(np.float32)


def write_checked(dst: str, rgb: np.ndarray, src: ImageFile, orientation: int, keep_metadata: bool,
                   quality: int, region: np.ndarray | None = None) -> str:
    """Write ``rgb`` (upright) in the source's stored frame, read it back, return the SHA-256 of what decoded.

    The manifest only ever records a hash that this check produced: a short or corrupt write is an error
    here (and the file is removed), never a finished image.
    """
    from PIL import Image

    exif = None
    if keep_metadata and src.exif:
        ex = Image.Exif()
        ex.load(src.exif)
        ex[0x0112] = orientation
        exif = ex.tobytes()
    elif orientation != 1:
        ex = Image.Exif()
        ex[0x0112] = orientation  # only the orientation: no camera, time or place
        exif = ex.tobytes()
    alpha = to_stored(src.alpha, orientation) if src.alpha is not None else None
    # A 16-bit grey source keeps its depth: its samples and the anonymized region go to the stored frame too.
    deep = to_stored(src.deep, orientation) if src.deep is not None else None
    target = replace(src, rgb=src.rgb[:0], alpha=alpha, deep=deep, exif=exif, info=src.info if keep_metadata else {})
    stored = to_stored(rgb, orientation)
    if deep is not None and region is None:
        region = (rgb[:, :, 0] != src.rgb[:, :, 0])
    write_image(dst, stored, target, True, quality, to_stored(region, orientation) if region is not None else None)
    data = Path(dst).read_bytes()
    try:
        with opened(io.BytesIO(data)) as im:
            im.load()
            ok = stored_size(im) == (stored.shape[1], stored.shape[0])
    except Exception:
        ok = False
    if not ok:
        Path(dst).unlink(missing_ok=True)
        raise InputError(f"{dst}: the written image does not read back whole (disk full or failing?); "
                         "not recorded as done")
    return hashlib.sha256(data).hexdigest()
