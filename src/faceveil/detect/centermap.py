"""CenterFace-style targets: boxes <-> (heatmap, log size, offset) maps at a fixed stride.

Plain numpy, no torch: decoding also serves the exported ONNX model at
inference time, where torch is not installed. Hand-written because the
encoding is a few lines and no packaged library does exactly this one.

Layout (output grid of ``H/stride x W/stride`` cells):
- heatmap ``(1, h, w)``: an elliptical Gaussian per face, 1.0 at its centre cell;
- size ``(2, h, w)``: ``log(width / stride), log(height / stride)`` at centre cells;
- offset ``(2, h, w)``: sub-cell position of the centre, in [0, 1), at centre cells;
- mask ``(h, w)``: 1 where a centre lies (size and offset losses use only those cells).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..detections import Detections, nms

STRIDE = 4
# TTFNet's rule: Gaussian sigma = alpha * side / 6; alpha 0.54 keeps the peak tight.
GAUSS_ALPHA = 0.54


@dataclass
class Targets:
    heatmap: np.ndarray  # float32 1xhxw
    size: np.ndarray  # float32 2xhxw
    offset: np.ndarray  # float32 2xhxw
    mask: np.ndarray  # float32 hxw


def encode(boxes_xyxy: np.ndarray, height: int, width: int, stride: int = STRIDE) -> Targets:
    """Target maps for an input of ``height x width`` pixels (multiples of ``stride``)."""
    h, w = height // stride, width // stride
    heat = np.zeros((h, w), np.float32)
    size = np.zeros((2, h, w), np.float32)
    off = np.zeros((2, h, w), np.float32)
    mask = np.zeros((h, w), np.float32)
    boxes = np.asarray(boxes_xyxy, np.float64).reshape(-1, 4)
    # Largest faces first, so a small face's centre written later is not overwritten.
    order = np.argsort(-(boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1]), kind="stable")
    ys, xs = np.arange(h)[:, None], np.arange(w)[None, :]
    for x1, y1, x2, y2 in boxes[order]:
        bw, bh = (x2 - x1) / stride, (y2 - y1) / stride
        if bw <= 0 or bh <= 0:
            continue
        cx, cy = (x1 + x2) / 2 / stride, (y1 + y2) / 2 / stride
        ix, iy = int(np.floor(cx)), int(np.floor(cy))
        if not (0 <= ix < w and 0 <= iy < h):
            continue
        sx, sy = max(GAUSS_ALPHA * bw / 6, 0.4), max(GAUSS_ALPHA * bh / 6, 0.4)
        rx, ry = int(np.ceil(3 * sx)), int(np.ceil(3 * sy))
        y0, y1_ = max(iy - ry, 0), min(iy + ry + 1, h)
        x0, x1_ = max(ix - rx, 0), min(ix + rx + 1, w)
        g = np.exp(-((xs[:, x0:x1_] - ix) ** 2) / (2 * sx * sx) - ((ys[y0:y1_] - iy) ** 2) / (2 * sy * sy))
        np.maximum(heat[y0:y1_, x0:x1_], g.astype(np.float32), out=heat[y0:y1_, x0:x1_])
        heat[iy, ix] = 1.0
        size[:, iy, ix] = np.log(bw), np.log(bh)
        off[:, iy, ix] = cx - ix, cy - iy
        mask[iy, ix] = 1.0
    return Targets(heat[None], size, off, mask)


def _peaks(heat: np.ndarray) -> np.ndarray:
    """Cells that are the maximum of their 3x3 neighbourhood (CenterNet's max-pool NMS)."""
    import cv2

    dil = cv2.dilate(heat.astype(np.float32), np.ones((3, 3), np.uint8))
    return heat >= dil


def decode(heatmap: np.ndarray, size: np.ndarray, offset: np.ndarray, threshold: float = 0.05,
           stride: int = STRIDE, top_k: int = 500, nms_iou: float = 0.4, source: str = "compact") -> Detections:
    """Maps of one image (``1xhxw``, ``2xhxw``, ``2xhxw``; heatmap already a probability) -> Detections."""
    heat = np.asarray(heatmap, np.float32).reshape(heatmap.shape[-2:])
    keep = _peaks(heat) & (heat >= threshold)
    iy, ix = np.nonzero(keep)
    scores = heat[iy, ix]
    if len(scores) > top_k:
        sel = np.argsort(-scores, kind="stable")[:top_k]
        iy, ix, scores = iy[sel], ix[sel], scores[sel]
    cx = (ix + offset[0, iy, ix]) * stride
    cy = (iy + offset[1, iy, ix]) * stride
    bw = np.exp(np.clip(size[0, iy, ix], -5, 8)) * stride
    bh = np.exp(np.clip(size[1, iy, ix], -5, 8)) * stride
    xyxy = np.stack([cx - bw / 2, cy - bh / 2, cx + bw / 2, cy + bh / 2], axis=1)
    dets = Detections.from_boxes(xyxy, scores, source=source)
    return nms(dets, nms_iou) if nms_iou < 1 else dets


class OnnxCompactDetector:
    """The exported compact detector run with onnxruntime (no torch): ``detect(rgb_uint8) -> Detections``."""

    PAD = 32  # the network's total stride

    def __init__(self, path, threshold: float = 0.3, nms_iou: float = 0.4, threads: int = 0):
        import onnxruntime as ort

        opts = ort.SessionOptions()
        if threads:
            opts.intra_op_num_threads = threads
        self.session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
        self.threshold, self.nms_iou = threshold, nms_iou

    def raw_maps(self, image: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Heatmap (probability), log size and offset maps of one image padded bottom/right to a multiple of 32."""
        h, w = image.shape[:2]
        ph, pw = -(-h // self.PAD) * self.PAD, -(-w // self.PAD) * self.PAD
        x = np.zeros((1, 3, ph, pw), np.float32)
        x[0, :, :h, :w] = np.asarray(image, np.float32).transpose(2, 0, 1)
        heat, size, off = self.session.run(None, {"image": x})
        return 1 / (1 + np.exp(-heat[0])), size[0], off[0]

    def detect(self, image: np.ndarray, threshold: float | None = None) -> Detections:
        heat, size, off = self.raw_maps(image)
        h, w = image.shape[:2]
        t = self.threshold if threshold is None else threshold
        return decode(heat, size, off, t, STRIDE, nms_iou=self.nms_iou).clipped(w, h)
