"""Recall-first detection: CenterFace at several scales, optionally flipped, optionally with YuNet.

A missed face is a leak, a false alarm only hides some background, and the
background it hides grows with the false box's area. So the score cut depends on
the box size: small boxes are kept at a lower score (a false one costs a few
pixels), large ones need the normal score. Passes are pooled and merged with NMS.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ..detections import Detections, box_iou, nms
from ..registry import param
from .base import DETECTORS, Detector, downscale, tile_factor


def flip_detections(d: Detections, width: int) -> Detections:
    """Map detections found on a horizontally flipped image back onto the original."""
    b = d.xyxy.copy()
    b[:, [0, 2]] = width - d.xyxy[:, [2, 0]]
    lm = d.landmarks.copy()
    lm[:, :, 0] = width - lm[:, :, 0]
    lm = lm[:, [1, 0, 2, 4, 3]]  # the eyes and the mouth corners change sides
    return Detections(b, d.score, lm, d.track_id, d.source)


def size_threshold(size: np.ndarray, small: float, large: float, small_px: float, large_px: float) -> np.ndarray:
    """Score cut per box: ``small`` at or below ``small_px``, ``large`` from ``large_px``, log-linear between."""
    size = np.asarray(size, np.float64)
    if large_px <= small_px:
        return np.where(size <= small_px, small, large)
    t = (np.log(np.maximum(size, 1e-6)) - math.log(small_px)) / (math.log(large_px) - math.log(small_px))
    return small + (large - small) * np.clip(t, 0.0, 1.0)


def calibrate(d: Detections, dy: float, grow: float, small_px: float, large_px: float) -> Detections:
    """Shift boxes down by ``dy`` of their height; enlarge small ones up to ``grow`` (1 from ``large_px``)."""
    if len(d) == 0 or (dy == 0 and grow == 1):
        return d
    size = np.sqrt(d.areas)
    g = size_threshold(size, grow, 1.0, small_px, large_px)
    b = d.xyxy.astype(np.float64)
    c = (b[:, :2] + b[:, 2:]) / 2
    half = (b[:, 2:] - b[:, :2]) / 2 * g[:, None]
    c[:, 1] += dy * (b[:, 3] - b[:, 1])
    return Detections(np.concatenate([c - half, c + half], axis=1), d.score, d.landmarks, d.track_id, d.source)


def add_masked(cf: Detections, mk: Detections, same: float = 0.6, extend: float = 0.5, nms_iou: float = 0.4,
               add: bool = True) -> Detections:
    """CenterFace's fused boxes plus the masked-face detector's, where those add recall.

    A masked box that overlaps a CenterFace box of a similar size (intersection over the smaller box's
    area >= ``same``, sizes within 2x) is the same face: it adds no box, but when it reaches lower it
    extends that box's bottom down to its own (by at most ``extend`` of the box's height; 0: never),
    for CenterFace's boxes of masked faces stop at the mask's top edge. A masked box no CenterFace box
    matches is added as it is (``add=False``: never). Hand-written: a few lines of box logic no fusion library does this way.
    """
    if len(mk) == 0:
        return cf
    mk = nms(mk, nms_iou)
    if len(cf) == 0:
        return Detections.merge([cf, mk], cf.source) if add else cf
    a, b = cf.xyxy.astype(np.float64), mk.xyxy.astype(np.float64)
    iw = np.clip(np.minimum(a[:, None, 2], b[None, :, 2]) - np.maximum(a[:, None, 0], b[None, :, 0]), 0, None)
    ih = np.clip(np.minimum(a[:, None, 3], b[None, :, 3]) - np.maximum(a[:, None, 1], b[None, :, 1]), 0, None)
    area_a, area_b = cf.areas.astype(np.float64), mk.areas.astype(np.float64)
    inter_small = iw * ih / np.maximum(np.minimum(area_a[:, None], area_b[None, :]), 1e-9)
    ratio = np.sqrt(np.maximum(area_a[:, None], 1e-9) / np.maximum(area_b[None, :], 1e-9))
    match = (inter_small >= same) & (ratio >= 0.5) & (ratio <= 2.0)  # C x M
    new = ~match.any(axis=0)
    if extend > 0 and match.any():
        iou = np.where(match, box_iou(a, b), -1.0)
        a = a.copy()
        for j in np.flatnonzero(~new):
            i = int(np.argmax(iou[:, j]))
            h = a[i, 3] - a[i, 1]
            a[i, 3] = max(a[i, 3], min(b[j, 3], a[i, 3] + extend * h))
        cf = Detections(a, cf.score, cf.landmarks, cf.track_id, cf.source, cf.sources)
    return Detections.merge([cf, mk[new]], cf.source) if add else cf


@DETECTORS.register("multiscale")
class MultiScale(Detector):
    """CenterFace at several scales (+ flip, + YuNet), size-aware score cut: the recall-first presets (the default)."""

    @dataclass(frozen=True)
    class Params:
        threshold: float = param(0.2, "score cut for large boxes (>= large_px); lower finds more faces")
        small_threshold: float = param(0.2, "score cut for small boxes (<= small_px): a false small box hides little")
        small_px: float = param(16.0, "boxes up to this size (sqrt of area, image pixels) use small_threshold")
        large_px: float = param(64.0, "boxes from this size use threshold; log-linear in between")
        min_side: int = param(0, "upscale images whose longer side is below this to this (0: never)")
        zoom: float = param(1.0, "extra pass on the original enlarged this much, for faces under ~16 px (1: off)")
        zoom_max_side: int = param(2048, "cap on the zoomed image's longer side")
        zoom_min_score: float = param(0.0, "zoomed-pass boxes need at least this score too (it sees more false faces)")
        zoom_max_px: float = param(64.0, "zoomed-pass boxes larger than this (sqrt of area, image pixels) are dropped: "
                                   "enlarged, a big face breaks into part-face boxes that could win the merge")
        flip: bool = param(False, "also detect on the mirrored image (main pass)")
        yunet: bool = param(False, "add YuNet as a second, independent detector (needs yuface)")
        yunet_threshold: float = param(0.6, "YuNet's score cut")
        max_size: int = param(1920, "downscale so the longer side is at most this first (0: never)")
        min_factor: float = param(0.5, "never shrink a photo more than this for max_size: a wide panorama or huge "
                                  "photo also gets a pass in tiles of max_size, at the factor that keeps a "
                                  "max_size square's pixel count (at least this), for its small faces (0: off)")
        coarse_size: int = param(640, "also detect on a copy shrunk to this longer side, for very large faces (0: off)")
        big_scales: tuple[float, ...] = param((), "photos enlarged by min_side also get passes at these factors of "
                                              "their own size (e.g. 0.6,0.9), for big faces: enlarged, CenterFace "
                                              "boxes a big face short, above its chin or mask")
        big_min_px: float = param(48.0, "big-face passes keep boxes from this size (sqrt of area, image pixels)")
        big_min_score: float = param(0.5, "big-face passes keep boxes from this score (a false big box hides much)")
        nms_iou: float = param(0.3, "boxes overlapping more than this are merged")
        box_dy: float = param(0.0, "shift boxes down by this fraction of their height (CenterFace's boxes sit "
                              "high: forehead in, chin and face masks partly out)")
        small_grow: float = param(1.0, "enlarge boxes up to small_px by this factor (their outline is noisier), "
                                  "tapering to 1 at large_px")
        masked: bool = param(False, "add the masked-face detector (faceveil/data/masked.onnx, docs/masked-detector.md) "
                             "where it adds recall: a box where CenterFace has none, or a CenterFace box "
                             "extended down to its bottom")
        masked_threshold: float = param(0.5, "masked-face boxes from large_px need this score")
        masked_small_threshold: float = param(0.3, "masked-face boxes up to small_px need this score (log-linear "
                                              "between, like threshold and small_threshold)")
        masked_min_side: int = param(0, "run the masked-face detector on photos enlarged to this longer side "
                                     "(0: at their own size, shrunk to 1024)")
        masked_same: float = param(0.6, "a masked-face box and a CenterFace box overlapping this much (of the "
                                   "smaller box) are one face")
        masked_add: bool = param(True, "add masked-face boxes no CenterFace box matches (false: only extend)")
        masked_extend: float = param(0.5, "extend a CenterFace box down to its masked-face box's bottom by at most "
                                     "this share of its height (0: never)")
        threads: int = param(0, "onnxruntime threads (0: all cores)")
        precision: str = param("fp32", "CenterFace weights: fp32 (the original) or int8 (quantized: "
                                "faster, a little less accurate, docs/int8.md)")

        def __post_init__(self):
            for name in ("threshold", "small_threshold", "masked_threshold", "masked_small_threshold"):
                if not 0.0 < getattr(self, name) < 1.0:
                    raise ValueError(f"{name} must be between 0 and 1")
            if self.zoom < 1.0 or self.min_side < 0 or self.max_size < 0:
                raise ValueError("zoom must be >= 1 and sizes >= 0")
            if not 0.0 <= self.min_factor <= 1.0:
                raise ValueError("min_factor must be between 0 and 1")
            if not all(0.0 < s <= 1.0 for s in self.big_scales):
                raise ValueError("big_scales must be factors in (0, 1]")
            from .centerface import PRECISIONS

            if self.precision not in PRECISIONS:
                raise ValueError(f"precision must be one of: {', '.join(PRECISIONS)}")

    def __init__(self, params=None):
        super().__init__(params)
        from .centerface import CenterFace

        p = self.params
        self.cf = CenterFace(CenterFace.Params(threshold=min(p.threshold, p.small_threshold), threads=p.threads,
                                             precision=p.precision))
        self.yn = None
        if p.yunet:
            from .yunet import YuNet

            self.yn = YuNet(YuNet.Params(threshold=p.yunet_threshold))
        self.mk = None
        if p.masked:
            from .masked import MaskedFace

            self.mk = MaskedFace(MaskedFace.Params(threshold=self.masked_floor, min_side=p.masked_min_side,
                                                   threads=p.threads))

    @property
    def floor(self) -> float:
        return min(self.params.threshold, self.params.small_threshold)

    @property
    def masked_floor(self) -> float:
        return min(self.params.masked_threshold, self.params.masked_small_threshold)

    def _pass(self, image: np.ndarray, factor: float, floor: float, flip: bool = False) -> Detections:
        """Raw CenterFace detections (before NMS) on ``image`` resized by ``factor``, in ``image``'s pixels."""
        import cv2

        h, w = image.shape[:2]
        img = image[:, ::-1] if flip else image
        if factor != 1.0:
            interp = cv2.INTER_AREA if factor < 1 else cv2.INTER_LINEAR
            img = cv2.resize(img, (max(1, round(w * factor)), max(1, round(h * factor))), interpolation=interp)
        elif flip:
            img = np.ascontiguousarray(img)
        d = self.cf.detect_raw(img, floor).scaled(1.0 / factor)
        return flip_detections(d, w) if flip else d

    def main_factor(self, image: np.ndarray) -> float:
        """The main pass's resize factor: down to ``max_size``, or up to ``min_side`` for small photos."""
        p = self.params
        side = max(image.shape[:2])
        _, f = downscale(image, p.max_size)
        return p.min_side / side if p.min_side and side < p.min_side else f

    def passes(self, image: np.ndarray, floor: float | None = None) -> list[Detections]:
        """Every pass's raw detections in image pixels, cut at ``floor`` (default: the lowest threshold)."""
        p = self.params
        floor = self.floor if floor is None else floor
        side = max(image.shape[:2])
        f = self.main_factor(image)
        out = [self._pass(image, f, floor)]
        if p.flip:
            out.append(self._pass(image, f, floor, flip=True))
        # zoom is relative to the original: a small photo already enlarged by min_side gets no second pass
        zf = min(p.zoom, p.zoom_max_side / side)
        if p.zoom > 1.0 and zf > f * 1.05:
            z = self._pass(image, zf, floor)
            z = z[np.sqrt(z.areas) <= p.zoom_max_px]
            out.append(Detections(z.xyxy, z.score, z.landmarks, None, "zoom"))
        # Shrunk to max_size, a panorama's or huge photo's small faces fall under what CenterFace finds;
        # the tiled pass sees them at (nearly) their own size. Photos max_size shrinks less than min_factor
        # never take it, so their detections stay exactly what they were.
        t = tile_factor(*image.shape[:2], p.max_size, p.min_factor)
        if t is not None:
            out.append(self.cf.detect_tiled(image, t, floor, p.max_size))
        if p.coarse_size and side * f > 1.5 * p.coarse_size:
            out.append(self._pass(image, p.coarse_size / side, floor))
        out += self.big_passes(image, floor)
        if self.yn is not None:
            out.append(self.yn.detect(image))
        if self.mk is not None:
            out.append(self.masked_pass(image, min(floor, self.masked_floor)))
        return out

    def masked_pass(self, image: np.ndarray, floor: float) -> Detections:
        """The masked-face detector's raw peaks (before NMS), source "masked"; ``fuse`` adds them last."""
        return self.mk.detect_raw(image, floor)

    def big_passes(self, image: np.ndarray, floor: float, scales: tuple[float, ...] | None = None,
                   min_px: float | None = None) -> list[Detections]:
        """Passes at ``scales`` (default ``big_scales``) of a photo's own size, boxes from ``min_px`` only.

        Run only when the main pass enlarged the photo: enlarged for its small faces, a photo's big
        faces outgrow the sizes CenterFace boxes well and their boxes stop above the chin or mask
        (masked profiles most of all). At or under the photo's own size the same faces get taller
        boxes with higher scores.
        """
        p = self.params
        if self.main_factor(image) <= 1.0:
            return []
        min_px = p.big_min_px if min_px is None else min_px
        return [self.as_big(self._pass(image, s, floor), min_px) for s in (p.big_scales if scales is None else scales)]

    @staticmethod
    def as_big(d: Detections, min_px: float) -> Detections:
        """A big-face pass's boxes from ``min_px`` (sqrt of area) on, marked for ``keep``'s big_min_score."""
        d = d[np.sqrt(d.areas) >= min_px]
        return Detections(d.xyxy, d.score, d.landmarks, None, "big")

    def cut(self, d: Detections) -> np.ndarray:
        """The score each box needs, by its size (sqrt of area)."""
        p = self.params
        return size_threshold(np.sqrt(d.areas), p.small_threshold, p.threshold, p.small_px, p.large_px)

    def keep(self, d: Detections) -> Detections:
        """The operating point: YuNet's own cut, the zoom and big-face passes' minimums, then the size-aware cut."""
        p = self.params
        if d.source == "yunet":
            return d
        if d.source == "masked":
            return d[d.score >= size_threshold(np.sqrt(d.areas), p.masked_small_threshold, p.masked_threshold,
                                               p.small_px, p.large_px)]
        ok = d.score >= self.cut(d)
        if d.source == "zoom":
            ok &= d.score >= p.zoom_min_score
        if d.source == "big":
            ok &= d.score >= p.big_min_score
        return d[ok]

    def fuse(self, parts: list[Detections], width: int, height: int) -> Detections:
        """Merge the passes' kept boxes: NMS, calibration, the masked-face boxes (``add_masked``), clipped."""
        masked = [d for d in parts if d.source == "masked"]
        parts = [d for d in parts if d.source != "masked"]
        merged = Detections.merge(parts, "multiscale")
        p = self.params
        fused = nms(Detections(merged.xyxy, merged.score, merged.landmarks, None, "multiscale"), p.nms_iou)
        fused = calibrate(fused, p.box_dy, p.small_grow, p.small_px, p.large_px)
        if masked:
            fused = add_masked(fused, Detections.merge(masked, "multiscale"), p.masked_same, p.masked_extend,
                               add=p.masked_add)
        return fused.clipped(width, height)

    def detect(self, image: np.ndarray) -> Detections:
        h, w = image.shape[:2]
        return self.fuse([self.keep(d) for d in self.passes(image)], w, h)

    def detect_candidates(self, image: np.ndarray, floor: float) -> tuple[Detections, Detections]:
        """(what ``detect`` returns, every candidate down to ``floor``) from one set of passes (for PR curves)."""
        parts = self.passes(image, min(floor, self.floor))
        h, w = image.shape[:2]
        return self.fuse([self.keep(d) for d in parts], w, h), self.fuse(parts, w, h)
