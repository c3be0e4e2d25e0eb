from __future__ import annotations

import functools
from dataclasses import dataclass

import cv2
import numpy as np

from ...registry import param
from ..base import METHODS, Method, crop


def odd(k: float) -> int:
    k = max(1, int(round(k)))
    return k if k % 2 else k + 1


# The weakest blur allowed: no explicit sigma under OpenCV's rule for the smallest kernel (3 px: sigma 0.8). Mean
# change inside 193 detected faces of 20 facemask photos (levels; share of pixels moved by 8+): kernel=3 (sigma 0.8)
# 5.7 (29 %), sigma 0.8 with a 25 px kernel 6.6 (34 %), 0.7 5.5, 0.6 4.4 (20 %), 0.4 1.1 (1 %: "anonymized", nothing
# visible); under 0.29 the 8-bit weights are exactly 1 at the centre. (pixelate block=2: 10.7.)
MIN_SIGMA = 0.8


def check_kernel_sigma(kernel: int, sigma: float) -> None:
    """Refuse a kernel or sigma that blurs nothing (ValueError): a 1 px kernel, a sigma under MIN_SIGMA."""
    if kernel < 0 or kernel == 1:
        raise ValueError("kernel must be 0 (use `relative`) or at least 2 (a 1 px kernel blurs nothing)")
    if sigma < 0 or 0 < sigma < MIN_SIGMA:
        raise ValueError(f"sigma must be 0 (OpenCV's rule) or at least {MIN_SIGMA} (a smaller Gaussian barely "
                         "changes a face)")


@METHODS.register("blur")
class Blur(Method):
    """Gaussian blur; kernel relative to the face width (default relative=1.0: the whole width) or fixed (kernel=25).

    The default (kernel = the whole face width, sigma by OpenCV's rule) is strong
    enough that face recognition fails; literature settings: kernel=25;
    kernel=9 sigma=3; relative=0.3; relative=0.5.
    """

    @dataclass(frozen=True)
    class Params:
        kernel: int = param(0, "fixed kernel size in pixels (at least 2), made odd (0: use `relative`)")
        relative: float = param(1.0, "kernel size as a fraction of the face width (at least 3 px), when kernel=0")
        sigma: float = param(0.0, f"Gaussian sigma in pixels, at least {MIN_SIGMA} (0: OpenCV's rule from the "
                             "kernel size)")

        def __post_init__(self):
            check_kernel_sigma(self.kernel, self.sigma)
            if self.kernel == 0 and not 0 < self.relative <= 4:
                raise ValueError("relative must be in (0, 4]")

    def kernel_for(self, face_width: float) -> int:
        p = self.params
        # at least 3 when relative: a box that drifts off the frame can be a 1-px sliver, whose kernel of 1
        # left its pixels as they were
        return odd(p.kernel if p.kernel else max(3.0, p.relative * face_width))

    def render(self, frame, region, rng):
        k = self.kernel_for(region.face_width)
        return gaussian_blur(crop(frame, region), k, self.params.sigma)


# Above this kernel size the blur runs on a shrunk copy: a 600 px kernel on a
# 700 px face costs seconds at full size, and the difference is invisible.
EXACT_MAX_KERNEL = 41


def gaussian_blur(patch: np.ndarray, k: int, sigma: float = 0.0) -> np.ndarray:
    """Gaussian blur of the region's own pixels (reflected at its border), so nothing
    from outside bleeds in. A k x k kernel for k <= EXACT_MAX_KERNEL; a shrunk copy above."""
    if sigma <= 0:
        sigma = 0.3 * ((k - 1) * 0.5 - 1) + 0.8  # OpenCV's rule, made explicit for the shrunk path
    if k <= EXACT_MAX_KERNEL:
        return _fixed_point_blur(patch, k, sigma)
    h, w = patch.shape[:2]
    f = EXACT_MAX_KERNEL / k
    sw, sh = max(1, round(w * f)), max(1, round(h * f))
    small = cv2.resize(patch, (sw, sh), interpolation=cv2.INTER_AREA)
    small = _fixed_point_blur(small, odd(k * f), sigma * f)
    return cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR)


# Weights of each 1-D pass in 1/256ths (8 bits, as OpenCV's own bit-exact uint8 Gaussian uses for its kernels).
_ONE = 256


@functools.lru_cache(maxsize=512)
def _fixed_point_kernel(k: int, sigma: float) -> np.ndarray:
    g = cv2.getGaussianKernel(k, sigma, cv2.CV_64F).ravel()
    w = np.round(g * _ONE)
    w[k // 2] += _ONE - w.sum()  # the rounding's remainder goes to the centre: the weights sum to exactly 1
    w = w.astype(np.float32)
    w.flags.writeable = False  # cached: shared by every caller
    return w


@functools.lru_cache(maxsize=512)
def _fixed_point_kernel_scaled(k: int, sigma: float) -> np.ndarray:
    """``_fixed_point_kernel`` / 256 (exact: a power of two)."""
    w = _fixed_point_kernel(k, sigma) * np.float32(1.0 / _ONE)
    w.flags.writeable = False
    return w


def _fixed_point_blur(patch: np.ndarray, k: int, sigma: float) -> np.ndarray:
    """cv2.GaussianBlur's result on uint8 (to within a level), 5-10x faster on face-sized patches, and the same
    bytes on every CPU.

    Written here because OpenCV offers either its bit-exact uint8 Gaussian, whose cost grows with the kernel
    (a 40 px face with a 31 px kernel: ~180 us; a crowd frame of ~180 faces: ~45 ms, most of a video frame's
    anonymizing), or a float filter that is fast but whose rounding may differ between CPUs (SIMD width, FMA).
    Integer weights summing to 256 per pass keep every product and partial sum an integer below 2**24
    (255 * 256 * 256), which float32 holds exactly in any order: the float filter becomes exact, then one
    rounding shift."""
    if patch.dtype != np.uint8:
        return cv2.GaussianBlur(patch, (k, k), sigma, borderType=cv2.BORDER_REFLECT)
    # The weights divided by 256 (a power of two: still exact) and the rounding's 0.5 as the filter's delta, so
    # OpenCV reads the uint8 patch and the result only needs truncating: the same bytes as integer weights and a
    # shift (tests/test_methods.py checks it against integers), without a float32 copy and two passes after it.
    w = _fixed_point_kernel_scaled(k, sigma)
    acc = cv2.sepFilter2D(patch, cv2.CV_32F, w, w, delta=0.5, borderType=cv2.BORDER_REFLECT)
    return acc.astype(np.uint8)


@METHODS.register("fullblur")
class FullBlur(Method):
    """Blur the whole image, faces or not (a box filter, e.g. 18x18 as in the literature)."""

    @dataclass(frozen=True)
    class Params:
        kernel: int = param(18, "box filter size in pixels, at least 2 (even sizes allowed)")
        gaussian: bool = param(False, "use a Gaussian (kernel made odd) instead of a box filter")

        def __post_init__(self):
            if self.kernel < 2:
                raise ValueError("kernel must be at least 2 (a 1 px kernel blurs nothing)")

    def apply(self, frame, detections, compositor, rng):
        k = self.params.kernel
        if self.params.gaussian:
            return cv2.GaussianBlur(frame, (odd(k), odd(k)), 0)
        return cv2.blur(frame, (k, k))
