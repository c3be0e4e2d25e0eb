"""Detection utility: do detectors still find the faces after anonymization?"""
from __future__ import annotations

import numpy as np

from ..detections import Detections, nms


def eval_detect(detector, image: np.ndarray, threshold: float = 0.02, nms_iou: float = 0.3,
                pad: int = 256) -> Detections:
    """CenterFace as benchmarks run it: one scale, the full image zero-padded (bottom/right) to a
    multiple of ``pad``, a low threshold, NMS; no downscaling or coarse pass."""
    h, w = image.shape[:2]
    ph, pw = -(-h // pad) * pad, -(-w // pad) * pad
    padded = np.zeros((ph, pw, 3), np.uint8)
    padded[:h, :w] = image
    dets = nms(detector.detect_raw(padded, threshold), nms_iou)
    return dets.clipped(w, h)
