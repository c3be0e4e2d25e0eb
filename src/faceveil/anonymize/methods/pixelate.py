from __future__ import annotations

from dataclasses import dataclass

import cv2

from ...registry import param
from ..base import METHODS, Method, crop


@METHODS.register("pixelate")
class Pixelate(Method):
    """Mosaic: a fixed grid across the face (cells=8, 10, 16) or fixed-size cells (block=20 px).

    Each cell becomes the mean of its pixels. ``cells=16`` is the literature's
    "1/16 of the face size".
    """

    @dataclass(frozen=True)
    class Params:
        cells: int = param(8, "grid cells across the face width (and height)")
        block: int = param(0, "fixed cell size in pixels instead of a grid (0: use `cells`)")

        def __post_init__(self):
            if self.cells < 1 or self.block < 0:
                raise ValueError("cells must be >= 1 and block >= 0")

    def render(self, frame, region, rng):
        patch = crop(frame, region)
        h, w = patch.shape[:2]
        if self.params.block:
            gw, gh = -(-w // self.params.block), -(-h // self.params.block)
        else:
            # The grid is laid over the face box, so the region's feather margin gets cells of the same size.
            n = self.params.cells
            gw = max(1, round(n * w / max(region.face_width, 1)))
            gh = max(1, round(n * h / max(region.face_height, 1)))
        small = cv2.resize(patch, (min(gw, w), min(gh, h)), interpolation=cv2.INTER_AREA)
        return cv2.resize(small, (w, h), interpolation=cv2.INTER_NEAREST)
