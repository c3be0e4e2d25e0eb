"""Training data for the masked-face detector: the tune half of facemask plus deepface-unit, made hard.

CenterFace misses masked faces turned away or in profile, faces looking down, faces in a blurred or dark
background and faces cut by the frame edge, most of them 20-50 px (issue 21). ``hard_augment`` makes those
cases common: scale jitter that puts a chosen face at 20-50 px (sometimes 10-120), crops that cut a face at
the frame edge, synthetic masks and scarves over the lower face, blur, low resolution, low light and noise,
horizontal flips. Plain numpy + OpenCV (no torch), every draw from the ``rng`` it is given, so a sample
depends only on (seed, step, item).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from ..anonymize.learnedblur_geometry import extract

# Mask colours (RGB): surgical blue and white, black, grey, a few cloth colours.
_MASK_COLOURS = np.array([[190, 215, 235], [235, 238, 240], [30, 32, 36], [140, 142, 148], [95, 140, 190],
                          [210, 170, 175], [60, 80, 60], [200, 200, 150]], np.float32)


@dataclass
class HardAugment:
    """Parameters of ``hard_augment`` (recorded with the model)."""

    target_px: tuple[float, float] = (20.0, 50.0)  # the chosen face's size (sqrt of area) after scaling, mostly
    wide_px: tuple[float, float] = (10.0, 120.0)  # ... and sometimes (p_wide)
    p_wide: float = 0.3
    p_random_scale: float = 0.15  # no chosen face: a plain scale jitter of the photo
    p_edge: float = 0.25  # crop so the chosen face is cut by the frame edge
    min_visible: float = 0.3  # a face cut by the crop stays a face while this share of it is visible
    p_occlude: float = 0.35  # per face: a synthetic mask or scarf over the lower face
    p_blur: float = 0.25
    p_lowres: float = 0.15
    p_dark: float = 0.25
    p_flip: float = 0.5


def _occlude(img: np.ndarray, box: np.ndarray, rng: np.random.Generator) -> None:
    """Paint a face mask (an ellipse clipped at the nose line) or a scarf band over the lower face, in place."""
    x1, y1, x2, y2 = (float(v) for v in box)
    w, h = x2 - x1, y2 - y1
    if min(w, h) < 6:
        return
    colour = _MASK_COLOURS[rng.integers(len(_MASK_COLOURS))] * rng.uniform(0.8, 1.1)
    layer = np.zeros(img.shape[:2], np.uint8)
    top = y1 + h * rng.uniform(0.42, 0.58)
    if rng.random() < 0.75:  # a mask: an ellipse from cheek to cheek, chin to nose, cut flat on top
        cx = (x1 + x2) / 2 + w * rng.uniform(-0.1, 0.1)  # turned faces wear it off-centre
        cy = top + (y2 - top) * 0.35
        ax, ay = w * rng.uniform(0.42, 0.55), (y2 - top) * rng.uniform(0.75, 1.05)
        cv2.ellipse(layer, (round(cx * 4), round(cy * 4)), (max(1, round(ax * 4)), max(1, round(ay * 4))), 0, 0, 360,
                    255, -1, cv2.LINE_AA, 2)
        layer[: max(0, int(math.ceil(top))), :] = 0
    else:  # a scarf or a hand: a band over the lower face
        pts = np.array([[x1 - 0.1 * w, top], [x2 + 0.1 * w, top + h * rng.uniform(-0.1, 0.1)],
                        [x2 + 0.1 * w, y2 + 0.2 * h], [x1 - 0.1 * w, y2 + 0.2 * h]])
        cv2.fillPoly(layer, [np.round(pts * 4).astype(np.int32)], 255, cv2.LINE_AA, 2)
    a = (layer.astype(np.float32) / 255.0)[..., None]
    if not a.any():
        return
    shade = colour * (1 + rng.normal(0, 0.05, img.shape[:2] + (1,))).astype(np.float32)
    out = img.astype(np.float32) * (1 - a) + np.clip(shade, 0, 255) * a
    img[:] = np.clip(out, 0, 255).astype(np.uint8)


def hard_augment(image: np.ndarray, boxes: np.ndarray, rng: np.random.Generator, out_size: int = 256,
                 p: HardAugment | None = None) -> tuple[np.ndarray, np.ndarray]:
    """One training crop (``out_size`` square) and its face boxes (xyxy); see the module's docstring."""
    p = p or HardAugment()
    boxes = np.asarray(boxes, np.float32).reshape(-1, 4)
    h, w = image.shape[:2]
    chosen = None
    if len(boxes) and rng.random() >= p.p_random_scale:
        chosen = int(rng.integers(len(boxes)))
        side = float(np.sqrt(max((boxes[chosen, 2] - boxes[chosen, 0]) * (boxes[chosen, 3] - boxes[chosen, 1]), 1.0)))
        lo, hi = p.wide_px if rng.random() < p.p_wide else p.target_px
        s = math.exp(rng.uniform(math.log(lo), math.log(hi))) / side
    else:
        s = math.exp(rng.uniform(math.log(0.5), math.log(1.5)))
    s = float(np.clip(s, 0.1, 6.0))
    nh, nw = max(int(round(h * s)), 1), max(int(round(w * s)), 1)
    img = cv2.resize(image, (nw, nh), interpolation=cv2.INTER_AREA if s < 1 else cv2.INTER_LINEAR)
    b = boxes * np.array([nw / w, nh / h, nw / w, nh / h], np.float32)
    if chosen is not None:
        fx1, fy1, fx2, fy2 = b[chosen]
        cx, cy = (fx1 + fx2) / 2, (fy1 + fy2) / 2
        if rng.random() < p.p_edge:  # the face's centre near one edge: 30-80 % of it stays in
            d = rng.uniform(-0.2, 0.3)
            edge = int(rng.integers(4))
            x0 = cx - rng.uniform(0.2, 0.8) * out_size
            y0 = cy - rng.uniform(0.2, 0.8) * out_size
            if edge == 0:
                x0 = cx - d * (fx2 - fx1)
            elif edge == 1:
                x0 = cx + d * (fx2 - fx1) - out_size
            elif edge == 2:
                y0 = cy - d * (fy2 - fy1)
            else:
                y0 = cy + d * (fy2 - fy1) - out_size
        else:
            x0 = cx - rng.uniform(0.1, 0.9) * out_size
            y0 = cy - rng.uniform(0.1, 0.9) * out_size
        x0, y0 = int(round(x0)), int(round(y0))
    else:
        x0 = int(rng.integers(min(0, nw - out_size), max(0, nw - out_size) + 1))
        y0 = int(rng.integers(min(0, nh - out_size), max(0, nh - out_size) + 1))
    out = extract(img, (x0, y0, x0 + out_size, y0 + out_size))
    b = b - np.array([x0, y0, x0, y0], np.float32)
    # Occlude before clipping, so a mask follows the whole face even where the crop cuts it.
    for box in b:
        if rng.random() < p.p_occlude and box[2] > 0 and box[3] > 0 and box[0] < out_size and box[1] < out_size:
            _occlude(out, box, rng)
    area = np.maximum(b[:, 2] - b[:, 0], 0) * np.maximum(b[:, 3] - b[:, 1], 0)
    c = np.clip(b, 0, out_size)
    vis = np.maximum(c[:, 2] - c[:, 0], 0) * np.maximum(c[:, 3] - c[:, 1], 0)
    keep = (vis >= p.min_visible * np.maximum(area, 1e-6)) & (np.minimum(c[:, 2] - c[:, 0], c[:, 3] - c[:, 1]) >= 2)
    b = c[keep]
    if rng.random() < p.p_lowres:
        f = rng.uniform(0.35, 0.7)
        small = cv2.resize(out, (max(1, round(out_size * f)),) * 2, interpolation=cv2.INTER_AREA)
        out = cv2.resize(small, (out_size, out_size), interpolation=cv2.INTER_LINEAR)
    if rng.random() < p.p_blur:
        out = cv2.GaussianBlur(out, (0, 0), rng.uniform(0.6, 2.0))
    x = out.astype(np.float32)
    if rng.random() < p.p_dark:  # low light: darker, gamma, sensor noise
        x = 255.0 * (x / 255.0) ** rng.uniform(1.2, 2.2) * rng.uniform(0.35, 0.8)
        x += rng.normal(0, rng.uniform(2, 8), x.shape).astype(np.float32)
    else:  # plain brightness / contrast jitter
        x = (x - 128.0) * rng.uniform(0.8, 1.2) + 128.0 + rng.uniform(-20, 20)
    out = np.clip(x, 0, 255).astype(np.uint8)
    if rng.random() < p.p_flip:
        out = out[:, ::-1]
        b = np.stack([out_size - b[:, 2], b[:, 1], out_size - b[:, 0], b[:, 3]], axis=1).reshape(-1, 4)
    return np.ascontiguousarray(out), b.astype(np.float32)


def load_facemask_tune(images: Path, labels: Path) -> tuple[list[str], list[np.ndarray], list[np.ndarray]]:
    """The tune half (``faceveil.eval.splits``) of a WIDER-layout labelled set: names, images, boxes."""
    from ..eval.splits import split
    from ..io.images import read_rgb
    from .train_on_anon import read_wider_gt

    gt = read_wider_gt(labels)
    tune, _ = split(sorted(gt))
    return tune, [read_rgb(Path(images) / n) for n in tune], [gt[n] for n in tune]


def load_pseudo_labelled(folder: Path, max_side: int = 800, min_score: float = 0.5
                         ) -> tuple[list[str], list[np.ndarray], list[np.ndarray]]:
    """Unlabelled photos (deepface-unit) shrunk to ``max_side``, boxed by the ``fast`` preset at ``min_score``.

    Its calibrated boxes (moved down 11 %) reach the chin, as the facemask labels do.
    """
    from ..detect import get_detector
    from ..detect.base import downscale
    from ..detect.presets import resolve
    from ..io.images import read_rgb

    name, params, _ = resolve("fast")
    det = get_detector(name, {**params, "threshold": min_score, "small_threshold": min_score, "threads": 1})
    names, imgs, boxes = [], [], []
    for path in sorted(Path(folder).glob("*.jpg")):
        img, _ = downscale(read_rgb(path), max_side)
        d = det.detect(img)
        names.append(path.name)
        imgs.append(np.ascontiguousarray(img))
        boxes.append(d.xyxy.astype(np.float32))
    return names, imgs, boxes
