from __future__ import annotations

from dataclasses import dataclass, replace

import cv2
import numpy as np

from ...registry import param
from ..base import METHODS, Method, crop, parse_color
from ..box_landmarks import estimate_landmarks

MAX_BAR = 4.0


@METHODS.register("eyebar")
class EyeBar(Method):
    """An opaque bar over both eyes, along the eye line from the landmarks.

    Without landmarks (labelled boxes, Haar, dlib), the bar goes where a mean face's eyes sit in the face's
    box (box_landmarks); called region by region (``render``), where only the drawn region is known, it
    covers 30 % to 50 % of that region's height. Weak privacy: a baseline from the literature.
    """

    uses_landmarks = True

    @dataclass(frozen=True)
    class Params:
        color: str = param("0", "bar colour: grey level, R,G,B or #rrggbb")
        height: float = param(0.6, "bar height as a fraction of the eye distance")
        extend: float = param(0.6, "how far past each eye the bar reaches, as a fraction of the eye distance")

        def __post_init__(self):
            parse_color(self.color)
            # at most MAX_BAR: a bar 4 eye distances tall covers the head; a huge one (1e9) overflowed the
            # polygon's coordinates and drew nothing
            if not 0 < self.height <= MAX_BAR or not 0 <= self.extend <= MAX_BAR:
                raise ValueError(f"height must be in (0, {MAX_BAR:g}] and extend in [0, {MAX_BAR:g}]")

    def apply(self, frame, detections, compositor, rng):
        out = frame.copy()
        for region in compositor.regions(detections, frame.shape):
            if region.landmarks is None:  # the face's own box, not the region drawn around it
                region = replace(region, landmarks=estimate_landmarks(detections.xyxy[region.index]))
            compositor.blend(out, region, np.asarray(self.render(out, region, rng), np.uint8))
        return out

    def bar_polygon(self, region) -> np.ndarray:
        p = self.params
        lm = region.landmarks
        if lm is not None:
            left, right = lm[0].astype(np.float64), lm[1].astype(np.float64)
            axis = right - left
            dist = float(np.hypot(*axis))
        if lm is None or dist < 1:
            x1, y1, x2, y2 = region.box
            # mask_scale enlarged the box; go back to the detected face's band
            bh = y2 - y1
            return np.array([[x1, y1 + 0.3 * bh], [x2, y1 + 0.3 * bh], [x2, y1 + 0.5 * bh], [x1, y1 + 0.5 * bh]])
        u = axis / dist
        n = np.array([-u[1], u[0]])
        a = left - u * p.extend * dist
        b = right + u * p.extend * dist
        half = n * p.height * dist / 2
        return np.array([a - half, b - half, b + half, a + half])

    def render(self, frame, region, rng):
        patch = crop(frame, region).copy()
        poly = self.bar_polygon(region) - np.array([region.x1, region.y1])
        shift = 4
        pts = np.round((poly - 0.5) * (1 << shift)).astype(np.int32)
        cv2.fillPoly(patch, [pts], parse_color(self.params.color), cv2.LINE_8, shift)
        return patch
