"""The method interface: replacement pixels for one face region."""
from __future__ import annotations

import numpy as np

from ..detections import Detections
from ..registry import NoParams, Registry
from .compositor import Compositor, Region

METHODS: Registry["Method"] = Registry("method")


class Method:
    """Subclasses implement ``render``; the compositor blends its output in.

    ``render(frame, region, rng)`` gets the current frame (RGB uint8, read only)
    and returns a uint8 patch of the region's rectangle shape; ``rng`` is the face's
    own generator where ``uses_rng`` is set, else None. Methods that act
    on the whole frame (fullblur, outline) override ``apply`` instead.
    """

    Params = NoParams
    name = "?"
    uses_rng = False
    hides = True  # False: the method draws over faces without hiding them (outline); the CLI's summary says so
    # True: the method places its output by the faces' landmarks (a face without them gets a box-fitted
    # fallback), so callers that anonymize labelled boxes look up the detector's landmarks for them.
    uses_landmarks = False

    def __init__(self, params=None):
        self.params = params if params is not None else self.Params()

    def render(self, frame: np.ndarray, region: Region, rng: np.random.Generator) -> np.ndarray:
        raise NotImplementedError

    def begin_stream(self, rng: np.random.Generator | None = None, fps: float | None = None) -> None:
        """Called before the first frame of each video: a method that keeps state per track (its ids start
        again with every video) drops it here, and draws what a track keeps for the whole video (an identity)
        from ``rng``, the run's seed and this video's key; ``fps`` is the video's frame rate. Photos never call
        it."""

    def apply(
        self, frame: np.ndarray, detections: Detections, compositor: Compositor, rng: np.random.Generator
    ) -> np.ndarray:
        """Return an anonymized copy of ``frame``; the input array is never modified."""
        out = frame.copy()
        regions = compositor.regions(detections, frame.shape)
        for region, face_rng in zip(regions, face_rngs(rng, regions, self.uses_rng)):
            patch = self.render(out, region, face_rng)
            compositor.blend(out, region, np.asarray(patch, np.uint8))
        return out


def face_rngs(rng: np.random.Generator, regions: list[Region], used: bool = True) -> list[np.random.Generator | None]:
    """One generator per region: ONE draw from ``rng`` (the run's, for this frame), then each face's own stream
    keyed by its rectangle, so a face's random pixels depend on the seed, the file (frame) and its own box only.
    Before, the faces drew in turn from one stream: a face's pixels changed with the faces detected before it.

    ``used=False`` (a method that draws nothing, ``Method.uses_rng``): None per region. Making a generator costs
    ~20 us, over a millisecond a frame for a crowd. The draw from ``rng`` is made all the same, so what a caller
    draws from ``rng`` after this stays as it was (learnedblur blurs first, then draws its priors)."""
    key = int(rng.integers(2**62))
    if not used:
        return [None] * len(regions)
    return [np.random.default_rng([key, r.x1, r.y1, r.x2, r.y2]) for r in regions]


def check_finite_output(out: np.ndarray, model) -> np.ndarray:
    """``out`` (a learned model's output) when every value is finite, else ModelError: the file fails closed. A
    diverged model's NaN was cast to black (with a numpy warning) and the file written as anonymized."""
    if not np.isfinite(out).all():
        from ..errors import ModelError

        raise ModelError(f"{model}: the model's output is NaN or infinite (diverged weights?); not anonymized")
    return out


def crop(frame: np.ndarray, region: Region) -> np.ndarray:
    return frame[region.slices]


def parse_color(text: str | int | float | tuple | list) -> tuple[int, int, int]:
    """'0', '128', '255,0,0' or '#ff0000' (or a number, 0 as '0', or an R, G, B tuple) -> an RGB tuple."""
    bad = ValueError(f"colour {text!r}: expected a grey level, R,G,B or #rrggbb with values 0..255")
    if isinstance(text, (tuple, list)):
        vals = list(text)
    elif isinstance(text, (int, float, np.integer, np.floating)) and not isinstance(text, bool):
        vals = [text]  # color=0 from Python, as the README writes it (before: AttributeError, no .strip on an int)
    elif isinstance(text, str):
        t = text.strip()
        try:
            if t.startswith("#") and len(t) == 7:
                vals = [int(t[i : i + 2], 16) for i in (1, 3, 5)]
            else:
                vals = [float(v) for v in t.split(",")]
        except ValueError:
            raise bad from None
    else:
        raise bad
    if len(vals) == 1:
        vals = vals * 3
    if len(vals) != 3 or not all(isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool)
                                 and 0 <= v <= 255 for v in vals):
        raise bad
    return tuple(int(v) for v in vals)
