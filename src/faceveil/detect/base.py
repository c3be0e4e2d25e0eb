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


# A 1-bit (dithered black-and-white) image is dots to CenterFace: on 60 facemask photos converted to 1 bit it found
# 22 % of the faces >= 10 px (grey: 96 %). Smoothed first, sigma 1.2 px (chosen on the tune half: 0.7 69 %, 1.0 89 %,
# 1.2 91 %, 1.5 90 %, 2.0 77 %), it finds 94 % on 60 held-out photos (grey 98 %, unsmoothed 18 %).
TWO_LEVEL_SIGMA = 1.2


def detection_view(image: np.ndarray) -> np.ndarray:
    """What a detector should see of ``image``: the image itself, or, when every value is 0 or 255 (a 1-bit
    photo, dithered), a smoothed copy; faces are still hidden in ``image``'s own pixels."""
    import cv2

    def two_level(a: np.ndarray) -> bool:
        return bool(((a == 0) | (a == 255)).all())

    if image.size == 0 or not two_level(image[::9, ::9]) or not two_level(image):  # the sample answers most at once
        return image
    return cv2.GaussianBlur(image, (0, 0), TWO_LEVEL_SIGMA)


def downscale(image: np.ndarray, max_size: int) -> tuple[np.ndarray, float]:
    """Shrink so the longer side is at most ``max_size``; return image and the factor applied."""
    import cv2

    h, w = image.shape[:2]
    if not max_size or max(h, w) <= max_size:
        return image, 1.0
    f = max_size / max(h, w)
    small = cv2.resize(image, (max(1, round(w * f)), max(1, round(h * f))), interpolation=cv2.INTER_AREA)
    return small, f


def tile_factor(h: int, w: int, max_size: int, min_factor: float, max_pixels: float = 0) -> float | None:
    """The resize factor for a tiled pass, or None when shrinking to ``max_size`` loses little.

    Shrinking so the longer side fits ``max_size`` costs a wide panorama or a huge photo its small
    faces (a 36 px face in a 10000 px panorama becomes 7 px, under CenterFace's ~10 px floor).
    When that shrink would go below ``min_factor``, detect in tiles instead: at the factor that
    keeps the pixel count of a ``max_size`` square (no shrink at all for a long, thin panorama),
    never below ``min_factor``. ``max_pixels`` (0: any) bounds the pixels the tiles hold, shrinking further where
    needed: at its own size a 108 MP photo's 42 tiles took 124 of its 130 s of detection.
    """
    side = max(h, w)
    if not max_size or not min_factor or side <= max_size or max_size / side >= min_factor:
        return None
    factor = min(1.0, max(min_factor, max_size / float(h * w) ** 0.5))
    if max_pixels and factor * factor * h * w > max_pixels:
        factor = (max_pixels / float(h * w)) ** 0.5
    return factor


def fitted_tile(length: int, tile: int, overlap: int, step: int = 32) -> int:
    """The side of the fewest tiles of at most ``tile`` px that cover ``length`` px overlapping by ``overlap``, made
    as small as that count allows (a multiple of ``step``, the network's stride; CenterFace pads to it anyway):
    2250 px in tiles of 1920 takes two either way, of 1248 px rather than 1920 (the network's cost follows the
    pixels: a 3840x2250 photo's tiles held 22 MP at full size, 11 MP fitted)."""
    if length <= tile:
        return length
    n = -(-(length - overlap) // (tile - overlap))
    side = -(-(length + (n - 1) * overlap) // n)
    return min(tile, -(-side // step) * step)


def tile_starts(length: int, tile: int, overlap: int) -> list[int]:
    """Starts of tiles of ``tile`` px covering ``length`` px, neighbours overlapping by at least ``overlap``."""
    if length <= tile:
        return [0]
    n = -(-(length - overlap) // (tile - overlap))
    return [round(i * (length - tile) / (n - 1)) for i in range(n)]
