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
        cells: int = param(8, "grid cells across the face width (and height); fewer where a cell would be "
                           "under 2 px, so a small face is never left as it was")
        block: int = param(0, "fixed cell size in pixels, at least 2, instead of a grid (0: use `cells`)")

        def __post_init__(self):
            if self.cells < 1:
                raise ValueError("cells must be at least 1")
            if self.block < 0 or self.block == 1:
                raise ValueError("block must be 0 (use `cells`) or at least 2 (1 px cells hide nothing)")

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
        # Cells of at least 2 px: a grid finer than the face's pixels (cells=64 on a 30 px face) left it as it was.
        small = cv2.resize(patch, (min(gw, max(1, w // 2)), min(gh, max(1, h // 2))), interpolation=cv2.INTER_AREA)
        return cv2.resize(small, (w, h), interpolation=cv2.INTER_NEAREST)
