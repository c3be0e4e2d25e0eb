"""Learned blur (DartBlur-style): Gaussian blur, then a small network refines each blurred face.

The Gaussian blur (the ``blur`` method's code, same kernel rule) is what removes
identity; the refiner only sees the *blurred* crop (plus unblurred context
outside the face) and the detail a bank face (an average of 5 people, chosen at
random per face; a tracked face keeps its own) loses to the same blur, and adds a
bounded residual inside the face region, trained so that detectors still find a
face there (``faceveil train learnedblur``). The refiner's graph makes that residual
structure only: grey (the same in R, G and B), high-passed and zero-mean under its
mask, so each face keeps the plain blur's colour, whatever the weights (no tint).
Inference is onnxruntime only; the weights ship as ``faceveil/data/learnedblur.onnx``.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from pathlib import Path

import cv2
import numpy as np

from ...errors import ModelError, UsageError
from ...registry import MAX_THREADS, check_threads, param
from ..base import METHODS, Method, check_finite_output, face_rngs
from ..learnedblur_geometry import MIN_FACE, SIZE, crop_rect, extract, face_priors
from .blur import MIN_SIGMA, Blur, check_kernel_sigma


def shipped_model_path() -> Path:
    return Path(str(resources.files("faceveil") / "data" / "learnedblur.onnx"))


@lru_cache(maxsize=4)
def _session(path: str, threads: int):
    import onnxruntime as ort

    if not Path(path).is_file() and Path(path) != shipped_model_path():  # a name the user gave: bad usage
        raise UsageError(f"{path}: learned-blur model file not found")
    if not Path(path).is_file():
        raise ModelError(f"{path}: learned-blur model file missing (rebuild it with `faceveil train learnedblur`)")
    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    if threads:
        opts.intra_op_num_threads = threads
    try:
        return ort.InferenceSession(path, opts, providers=["CPUExecutionProvider"])
    except Exception as exc:  # a truncated or foreign file: bad usage when the user named it (before any work)
        bad = ModelError if Path(path) == shipped_model_path() else UsageError
        raise bad(f"{path}: cannot load learned-blur model ({exc.__class__.__name__})") from None


@lru_cache(maxsize=4)
def _priors(relative: float, kernel: int) -> np.ndarray:
    """(K, 3, SIZE, SIZE) float32, the network's layout."""
    return np.ascontiguousarray(face_priors(relative=relative, kernel=kernel).transpose(0, 3, 1, 2))


# The refiner's crop (twice the face box) is made at full size: a caller's box of [-1e6, -1e6, 1e6, 1e6] asked for
# 43.7 TiB. A face whose crop is over 16 frames (its box 4 frames) is left to the plain blur, clipped to the frame.
MAX_CROP_FRAMES = 16


@METHODS.register("learnedblur")
class LearnedBlur(Method):
    """Gaussian blur refined by a small network so detectors still see a face (DartBlur); kernel rule as blur's."""

    uses_rng = True  # each untracked face draws the bank face lending it structure (choose_priors)

    @dataclass(frozen=True)
    class Params:
        kernel: int = param(0, "Gaussian kernel in pixels (at least 2), made odd (0: use `relative`), as in blur")
        relative: float = param(1.25, "Gaussian kernel as a fraction of the face width (at least 3 px), when "
                                "kernel=0 (the weights were trained at 1.5; 1.25 chosen on the tune side, attacks "
                                "still at chance; blur's 1.0 let dlib's naive attack near 0.05)")
        sigma: float = param(0.0, f"Gaussian sigma in pixels, at least {MIN_SIGMA} (0: OpenCV's rule from the "
                             "kernel size)")
        strength: float = param(1.25, "gain on the refiner's residual added to the blur (0: the plain blur; "
                                "the residual is grey and zero-mean, so any gain keeps the blur's colour)")
        model: str = param("", "refiner ONNX file (empty: the weights shipped with faceveil)")
        threads: int = param(0, f"onnxruntime threads, 0 to {MAX_THREADS} (0: all cores)")
        batch: int = param(64, "faces per network call")

        def __post_init__(self):
            check_kernel_sigma(self.kernel, self.sigma)
            check_threads(self.threads)
            if self.batch < 1:
                raise ValueError("batch must be >= 1")
            if not 0 <= self.strength <= 4:
                raise ValueError("strength must be in [0, 4]")
            if self.kernel == 0 and not 0 < self.relative <= 4:
                raise ValueError("relative must be in (0, 4]")

    def __init__(self, params=None):
        super().__init__(params)
        p = self.params
        self.blur = Blur(Blur.Params(p.kernel, p.relative, p.sigma))
        self.path = p.model or str(shipped_model_path())
        self.session = _session(self.path, p.threads)
        # Models from before the prior input take the crop alone.
        self.takes_prior = "prior" in {i.name for i in self.session.get_inputs()}
        self.priors = _priors(p.relative, p.kernel) if self.takes_prior else None
        self.uses_rng = self.takes_prior  # a model without priors draws nothing
        self._lock = threading.Lock()

    def choose_priors(self, detections, regions: list, rng: np.random.Generator) -> np.ndarray:
        """Which bank face lends each face its structure: a tracked face keeps one (no flicker), others draw, each
        from its own stream (face_rngs: not from the faces before it)."""
        ids = detections.track_id[np.asarray([r.index for r in regions], np.int64)]
        drawn = np.array([g.integers(len(self.priors)) for g in face_rngs(rng, regions)], np.int64)
        return np.where(ids >= 0, ids % len(self.priors), drawn).astype(np.int64)

    def residuals(self, crops: np.ndarray, which: np.ndarray | None = None) -> np.ndarray:
        """(N, SIZE, SIZE, 3) uint8 blurred crops (+ each face's prior index) -> (N, SIZE, SIZE, 3) float32 residuals."""
        out = []
        if which is None:
            which = np.zeros(len(crops), np.int64)
        for i in range(0, len(crops), self.params.batch):
            x = np.ascontiguousarray(crops[i : i + self.params.batch].transpose(0, 3, 1, 2), np.float32)
            feed = {"crop": x}
            if self.takes_prior:
                feed["prior"] = self.priors[which[i : i + self.params.batch]]
            with self._lock:  # one session shared by threads
                (r,) = self.session.run(None, feed)
            out.append(check_finite_output(r, self.path).transpose(0, 2, 3, 1))
        return np.concatenate(out) if out else np.zeros((0, SIZE, SIZE, 3), np.float32)

    def apply(self, frame, detections, compositor, rng):
        blurred = self.blur.apply(frame, detections, compositor, rng)  # identical to frame outside the regions
        out = blurred.copy()
        jobs = []
        for region in compositor.regions(detections, frame.shape):
            box = detections.xyxy[region.index]
            if min(box[2] - box[0], box[3] - box[1]) < MIN_FACE or self.params.strength == 0:
                continue  # too small to refine: the plain Gaussian blur stays
            rect = crop_rect(box)
            if (rect[2] - rect[0]) * (rect[3] - rect[1]) > MAX_CROP_FRAMES * frame.shape[0] * frame.shape[1]:
                continue  # a box far larger than the frame (a caller's): the plain blur hides its part in the frame

            crop = cv2.resize(extract(blurred, rect), (SIZE, SIZE), interpolation=cv2.INTER_LINEAR)
            jobs.append((region, rect, crop))
        if not jobs:
            return out
        which = self.choose_priors(detections, [r for r, _, _ in jobs], rng) if self.takes_prior else None
        res = self.residuals(np.stack([c for _, _, c in jobs]), which)
        for (region, rect, _), r in zip(jobs, res):
            x1, y1, x2, y2 = rect
            up = cv2.resize(r, (x2 - x1, y2 - y1), interpolation=cv2.INTER_LINEAR)
            part = extract(up, (region.x1 - x1, region.y1 - y1, region.x2 - x1, region.y2 - y1))
            # The graph makes the residual zero-mean under its mask on the 64 px crop; resized into a small
            # face, or clipped by the frame's edge, the part that lands under the blend weights drifts (a tiny
            # face's lightness by up to ~3 Delta-E): remove that drift, so the face keeps the blur's mean colour.
            w = region.weight[..., None]
            part = part - (w * part).sum((0, 1)) / max(float(w.sum()), 1e-6)
            patch = np.clip(np.rint(blurred[region.slices].astype(np.float32) + self.params.strength * part), 0, 255)
            patch = patch.astype(np.uint8)
            compositor.blend(out, region, patch)
        return out
