"""YuNet (libfacedetection, BSD-3) through the ``yuface`` wheel: fast, 5 landmarks."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..detections import Detections, nms
from ..errors import ModelError
from ..registry import param
from .base import DETECTORS, Detector, downscale


@DETECTORS.register("yunet")
class YuNet(Detector):
    """YuNet via yuface: a fast second detector with 5 landmarks (pip install 'faceveil[yunet]')."""

    @dataclass(frozen=True)
    class Params:
        threshold: float = param(0.5, "minimum confidence (0..1)")
        max_size: int = param(960, "downscale so the longer side is at most this (YuNet degrades above 960)")
        nms_iou: float = param(0.3, "boxes overlapping more than this are merged")

    def __init__(self, params=None):
        super().__init__(params)
        try:
            import yuface
        except ImportError:
            raise ModelError("detector 'yunet' needs the yuface package (pip install 'faceveil[yunet]')") from None
        self._detect = yuface.c_detect

    def detect(self, image: np.ndarray) -> Detections:
        small, factor = downscale(image, self.params.max_size)
        bgr = np.ascontiguousarray(small[:, :, ::-1])
        result = np.asarray(self._detect(bgr)).reshape(-1, 16).astype(np.float32)
        result = result[result[:, 0] >= self.params.threshold * 100]
        landmarks = result[:, 5:15].reshape(-1, 5, 2)
        dets = Detections.from_xywh(result[:, 1:5], result[:, 0] / 100.0, landmarks, "yunet")
        dets = nms(dets, self.params.nms_iou)
        return dets.scaled(1.0 / factor).clipped(image.shape[1], image.shape[0])
