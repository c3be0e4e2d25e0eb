"""Is a face hidden in the output: pixel comparisons, and boxes checked (the page's input, matching).

Shared by the image review (store.py) and the video review (videos.py).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..detections import box_iou
from ..io.images import modern_write_args, opened, webp_is_lossless

# Apply keeps the output's pixel where it differs from the original (re-encoded as the output was)
# by more than this, per channel: what the run changed stays changed. 0 for lossless outputs.
KEEP_TOLERANCE = 6

# A face counts as hidden when the output's pixels in the inner 60 % of its box differ
# from the original's clearly more than re-encoding the original the way the output was
# encoded (its own JPEG tables) does. Measured on 30 WIDER-val photos (JPEG q95 outputs):
# an untouched face has a ratio of 0.97-1.0, every one of 881 blurred faces >= 64.
HIDDEN_RATIO = 4.0
HIDDEN_FLOOR = 2.0  # mean squared error; lossless outputs have a re-encoding error of 0


def hidden(changed: float, baseline: float) -> bool:
    """Whether a face counts as hidden: the output differs from the original inside its box (``changed``,
    a ``mse_inside``) clearly more than encoding alone makes it differ (``baseline``)."""
    return changed > HIDDEN_RATIO * baseline + HIDDEN_FLOOR


def mse_inside(a: np.ndarray, b: np.ndarray, box) -> float:
    """Mean squared error of two same-size images over the inner 60 % of ``box`` (the face, not the hair)."""
    h, w = a.shape[:2]
    x1, y1, x2, y2 = (float(v) for v in box)
    bw, bh = x2 - x1, y2 - y1
    xa, xb = int(np.clip(np.floor(x1 + 0.2 * bw), 0, w)), int(np.clip(np.ceil(x2 - 0.2 * bw), 0, w))
    ya, yb = int(np.clip(np.floor(y1 + 0.2 * bh), 0, h)), int(np.clip(np.ceil(y2 - 0.2 * bh), 0, h))
    if xb <= xa or yb <= ya:
        return 0.0
    d = a[ya:yb, xa:xb].astype(np.float32) - b[ya:yb, xa:xb].astype(np.float32)
    return float((d * d).mean())


def reencoded_like(rgb: np.ndarray, encoded: Path, quality: int) -> np.ndarray:
    """``rgb`` passed through the lossy encoding ``encoded`` has (same JPEG tables and subsampling).

    What the output would look like had nothing been anonymized: the baseline that tells
    "unchanged but re-encoded" from "anonymized". Kept in memory only.
    """
    import io

    from PIL import Image, JpegImagePlugin

    with opened(encoded) as im:  # opened: a HEIC's reader is registered
        fmt, mode = im.format, im.mode
        kwargs: dict = {}
        if fmt == "JPEG":
            sampling = JpegImagePlugin.get_sampling(im)
            kwargs = {"qtables": im.quantization, "subsampling": sampling if sampling != -1 else 0}
        elif fmt == "WEBP" and not webp_is_lossless(encoded):
            kwargs = {"quality": quality}  # WebP keeps no tables: assume our own setting
        elif fmt in ("AVIF", "HEIF"):  # lossy, no tables kept: our own setting, as write_image encodes them
            kwargs = modern_write_args(fmt, encoded, quality)
        else:
            fmt = None
    src = Image.fromarray(rgb)
    if mode in ("L", "LA", "I", "I;16", "F", "1"):
        src = src.convert("L")
    if fmt is None:
        return np.asarray(src.convert("RGB"))
    buf = io.BytesIO()
    src.save(buf, fmt, **kwargs)
    buf.seek(0)
    with Image.open(buf) as back:
        return np.asarray(back.convert("RGB"))


def matches(box, boxes, iou: float = 0.9) -> bool:
    return bool(len(boxes)) and float(box_iou(np.asarray(box), np.asarray(boxes)).max()) >= iou


def clean_boxes(boxes, w: int, h: int, min_size: float = 2.0) -> list[list[float]]:
    """Boxes from the page as [x1, y1, x2, y2] floats inside the image; anything else is a bad request,
    and so is a box covering under ``min_size`` px of the image either way (a box meant to hide something that
    hides nothing is refused, not dropped)."""
    out = []
    if not isinstance(boxes, list):
        raise ValueError("boxes must be a list")
    for b in boxes:
        if not (isinstance(b, (list, tuple)) and len(b) == 4 and all(isinstance(v, (int, float)) for v in b)):
            raise ValueError(f"bad box {short(b)}: expected [x1, y1, x2, y2]")
        x1, x2 = sorted((min(max(float(b[0]), 0), w), min(max(float(b[2]), 0), w)))
        y1, y2 = sorted((min(max(float(b[1]), 0), h), min(max(float(b[3]), 0), h)))
        if not all(np.isfinite([x1, y1, x2, y2])):
            raise ValueError(f"bad box {short(b)}")
        if x2 - x1 >= min_size and y2 - y1 >= min_size:
            out.append([x1, y1, x2, y2])
        else:
            raise ValueError(f"box {short(b)} covers under {min_size:g} px of the {w}x{h} image in width or "
                             "height (after clipping to it): draw it larger")
    return out


def short(value, limit: int = 60) -> str:
    """A value from a request, for a one-line message: its repr, cut short."""
    try:
        text = repr(value)
    except RecursionError:
        text = "<nested too deeply>"
    return text if len(text) <= limit else text[:limit] + "..."
