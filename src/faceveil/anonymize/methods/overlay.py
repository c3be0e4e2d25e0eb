from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import cv2
import numpy as np

from ...errors import UsageError
from ...registry import param
from ..base import METHODS, Method
from .blur import Blur


@lru_cache(maxsize=8)
def _load_rgba(path: str) -> np.ndarray:
    from ...io.images import read_image_rgba

    return read_image_rgba(path)


# The share of an overlay's pixels that must be opaque (alpha >= 128): an emoji's disc is ~78 % of its square.
MIN_OPAQUE = 0.5
# Beneath the image: the blur method's default (a kernel the face's width), which face recognition fails on.
_UNDER = Blur()


@METHODS.register("overlay")
class Overlay(Method):
    """Paste an image (emoji, logo; PNG transparency respected) scaled over each face, blurred beneath.

    The image is drawn over the face as the ``blur`` method leaves it (kernel = the face width), never over the
    face itself: a semi-transparent image or one with a hole (a ring) showed the face through it.
    """

    @dataclass(frozen=True)
    class Params:
        image: str = param("", "path of the image to paste (required)")

        def __post_init__(self):
            if not self.image:
                raise ValueError("overlay needs image=PATH")

    def __init__(self, params=None):
        super().__init__(params)
        try:
            self.rgba = _load_rgba(self.params.image)
        except Exception as exc:
            raise UsageError(f"{self.params.image}: cannot read overlay image ({exc})") from None
        opaque = float((self.rgba[:, :, 3] >= 128).mean())
        if opaque < MIN_OPAQUE:  # fails closed: a see-through overlay reported faces hidden that stayed visible
            raise UsageError(f"{self.params.image}: only {opaque:.0%} of the overlay image is opaque; it would hide "
                             f"less than {MIN_OPAQUE:.0%} of each face (use an image that covers a face)")

    def render(self, frame, region, rng):
        patch = _UNDER.render(frame, region, rng)  # what shows through the image's transparent parts
        h, w = patch.shape[:2]
        art = cv2.resize(self.rgba, (w, h), interpolation=cv2.INTER_AREA)
        alpha = art[:, :, 3:4].astype(np.float32) / 255.0
        return np.clip(art[:, :, :3] * alpha + patch * (1 - alpha) + 0.5, 0, 255).astype(np.uint8)
