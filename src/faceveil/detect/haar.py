"""OpenCV Haar cascades (Viola-Jones): the literature's baseline detector."""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Literal

import numpy as np

from ..detections import Detections
from ..errors import ModelError
from ..registry import param
from .base import DETECTORS, Detector, downscale


@lru_cache(maxsize=4)
def _cascade(name: str):
    import cv2

    path = Path(cv2.data.haarcascades) / f"haarcascade_{name}.xml"
    if not path.is_file():
        raise ModelError(f"{path}: Haar cascade missing (OpenCV 5.x wheels ship none: install opencv<5)")
    return cv2.CascadeClassifier(str(path))


@DETECTORS.register("haar")
class Haar(Detector):
    """OpenCV Haar cascade (frontal face or eyes): weak, for baselines and comparisons."""

    @dataclass(frozen=True)
    class Params:
        cascade: Literal["frontalface_default", "frontalface_alt2", "profileface", "eye"] = param(
            "frontalface_default", "which cascade file shipped with OpenCV"
        )
        scale_factor: float = param(1.1, "image pyramid step")
        min_neighbors: int = param(5, "how many overlapping hits a face needs (lower: more recall)")
        min_size: int = param(16, "smallest face in pixels")
        max_size: int = param(1280, "downscale so the longer side is at most this (0: never)")

    def __init__(self, params=None):
        super().__init__(params)
        self._cascade = _cascade(self.params.cascade)

    def detect(self, image: np.ndarray) -> Detections:
        import cv2

        p = self.params
        small, factor = downscale(image, p.max_size)
        gray = cv2.equalizeHist(cv2.cvtColor(small, cv2.COLOR_RGB2GRAY))
        rects, _, weights = self._cascade.detectMultiScale3(
            gray, p.scale_factor, p.min_neighbors, minSize=(p.min_size, p.min_size), outputRejectLevels=True
        )
        rects = np.asarray(rects, np.float32).reshape(-1, 4)
        scores = np.asarray(weights, np.float32).reshape(-1)
        dets = Detections.from_xywh(rects, scores, None, "haar")
        return dets.scaled(1.0 / factor).clipped(image.shape[1], image.shape[0])
