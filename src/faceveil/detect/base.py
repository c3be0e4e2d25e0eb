"""The detector interface: ``detect(rgb_image) -> Detections``."""
from __future__ import annotations

from abc import ABC, abstractmethod

import numpy as np

from ..detections import Detections
from ..registry import NoParams, Registry

DETECTORS: Registry["Detector"] = Registry("detector")


class Detector(ABC):
    Params = NoParams
    name = "?"

    def __init__(self, params=None):
        self.params = params if params is not None else self.Params()

    @abstractmethod
    def detect(self, image: np.ndarray) -> Detections:
        """Faces in an RGB uint8 HxWx3 image, boxes in that image's pixels."""


def downscale(image: np.ndarray, max_size: int) -> tuple[np.ndarray, float]:
    """Shrink so the longer side is at most ``max_size``; return image and the factor applied."""
    import cv2

    h, w = image.shape[:2]
    if not max_size or max(h, w) <= max_size:
        return image, 1.0
    f = max_size / max(h, w)
    small = cv2.resize(image, (max(1, round(w * f)), max(1, round(h * f))), interpolation=cv2.INTER_AREA)
    return small, f


def tile_factor(h: int, w: int, max_size: int, min_factor: float) -> float | None:
    """The resize factor for a tiled pass, or None when shrinking to ``max_size`` loses little.

    Shrinking so the longer side fits ``max_size`` costs a wide panorama or a huge photo its small
    faces (a 36 px face in a 10000 px panorama becomes 7 px, under CenterFace's ~10 px floor).
    When that shrink would go below ``min_factor``, detect in tiles instead: at the factor that
    keeps the pixel count of a ``max_size`` square (no shrink at all for a long, thin panorama),
    never below ``min_factor``.
    """
    side = max(h, w)
    if not max_size or not min_factor or side <= max_size or max_size / side >= min_factor:
        return None
    return min(1.0, max(min_factor, max_size / float(h * w) ** 0.5))


def tile_starts(length: int, tile: int, overlap: int) -> list[int]:
    """Starts of tiles of ``tile`` px covering ``length`` px, neighbours overlapping by at least ``overlap``."""
    if length <= tile:
        return [0]
    n = -(-(length - overlap) // (tile - overlap))
    return [round(i * (length - tile) / (n - 1)) for i in range(n)]
