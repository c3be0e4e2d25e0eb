"""The masked-face detector: a compact CenterNet-style network for the faces CenterFace misses.

Masked faces turned away or in profile, faces looking down, small faces in a blurred or dark background,
faces cut by the frame edge (issue 21). Trained by tools/train_masked_detector.py on CC0/MIT photos only
(the tune half of facemask, deepface-unit), so its weights ship: ``faceveil/data/masked.onnx``, model card
docs/masked-detector.md. Run with onnxruntime (no torch). On its own it is a weaker detector than
CenterFace; the presets use it as a member of ``multiscale`` (``masked=True``) whose boxes count only
where they add recall.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..detections import Detections, nms
from ..errors import ModelError
from ..registry import MAX_THREADS, check_threads, param
from .base import DETECTORS, Detector, downscale

MODEL = Path(__file__).resolve().parents[1] / "data" / "masked.onnx"
PAD = 32  # the network's total stride


def masked_model_path() -> Path:
    path = Path(os.environ.get("FACEVEIL_MASKED_ONNX") or MODEL)
    if not path.is_file():
        raise ModelError(f"{path}: masked-face detector model missing (reinstall faceveil)")
    return path


def _session(path: Path, threads: int):
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    if threads:
        opts.intra_op_num_threads = threads
    try:
        return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    except Exception as exc:  # a truncated or foreign file
        raise ModelError(f"{path}: cannot load the masked-face model ({exc.__class__.__name__})") from None


@DETECTORS.register("masked")
class MaskedFace(Detector):
    """Compact detector trained for masked, turned and looking-down faces (CC0 data; multiscale's second member)."""

    @dataclass(frozen=True)
    class Params:
        threshold: float = param(0.4, "minimum heatmap score")
        min_side: int = param(0, "upscale photos whose longer side is below this to this (0: never)")
        max_size: int = param(1024, "downscale so the longer side is at most this (0: never): it was "
                              "trained on faces of 10-120 px")
        nms_iou: float = param(0.4, "boxes overlapping more than this are merged")
        threads: int = param(0, f"onnxruntime threads, 0 to {MAX_THREADS} (0: all cores)")

        def __post_init__(self):
            check_threads(self.threads)
            if not 0.0 < self.threshold < 1.0:
                raise ValueError("threshold must be between 0 and 1")
            if self.min_side < 0 or self.max_size < 0:
                raise ValueError("sizes must be >= 0")

    def __init__(self, params=None):
        super().__init__(params)
        self.session = _session(masked_model_path(), self.params.threads)

    def factor(self, image: np.ndarray) -> float:
        p = self.params
        side = max(image.shape[:2])
        if p.min_side and side < p.min_side:
            return p.min_side / side
        return downscale(image, p.max_size)[1] if p.max_size and side > p.max_size else 1.0

    def detect_raw(self, image: np.ndarray, threshold: float, factor: float | None = None) -> Detections:
        """Decoded peaks above ``threshold`` (before NMS), on ``image`` resized by ``factor``, in its pixels."""
        import cv2

        from .centermap import STRIDE, decode

        f = self.factor(image) if factor is None else factor
        h, w = image.shape[:2]
        img = image
        if f != 1.0:
            img = cv2.resize(image, (max(1, round(w * f)), max(1, round(h * f))),
                             interpolation=cv2.INTER_AREA if f < 1 else cv2.INTER_LINEAR)
        ih, iw = img.shape[:2]
        x = np.zeros((1, 3, -(-ih // PAD) * PAD, -(-iw // PAD) * PAD), np.float32)
        x[0, :, :ih, :iw] = np.asarray(img, np.float32).transpose(2, 0, 1)
        heat, size, off = self.session.run(None, {"image": x})
        heat = 1.0 / (1.0 + np.exp(-heat[0].astype(np.float64)))
        d = decode(heat, size[0], off[0], threshold, STRIDE, nms_iou=1.0, source="masked")
        return d.scaled(1.0 / f) if f != 1.0 else d

    def detect(self, image: np.ndarray) -> Detections:
        p = self.params
        d = nms(self.detect_raw(image, p.threshold), p.nms_iou)
        return d.clipped(image.shape[1], image.shape[0])
