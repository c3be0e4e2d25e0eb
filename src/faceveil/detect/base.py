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
