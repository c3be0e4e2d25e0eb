"""Settings measured weak: the faces they leave stay recognisable to face recognition. Taken, with a warning.

Measured in the methods audit: dlib's descriptor distance between a face and its anonymized self (under 0.6:
recognisable), the largest face of 6 deepface-unit photos at 1000 px (faces 210-400 px wide), "k of 6" recognisable.
Thresholds in pixels hold for faces of that size; smaller faces need less.
"""
from __future__ import annotations

from typing import Any

# blur (and learnedblur, the same kernel rule): relative=0.2 5 of 6 (0.47-0.60), 0.3 1 of 6 (0.58-0.67), 0.5 none;
# learnedblur relative=0.2 4 of 6. Fixed kernels: kernel=9 sigma=3 (the README's old example) 6 of 6 (0.10-0.23),
# 25 6 of 6 (0.19-0.32); 64 px is relative=0.3 of these faces, and a sigma of 10 OpenCV's rule for that kernel.
MIN_RELATIVE = 0.3
MIN_KERNEL = 64
MIN_SIGMA = 10.0
# pixelate: cells=16 none (0.67-0.87), 24 3 of 6, 32 6 of 6; block=12 5 of 6 (0.28-0.61), 8 and 4 6 of 6.
MAX_CELLS = 16
MIN_BLOCK = 16
# noise: amount=75 none (0.72-0.89), 50 3 of 6 (0.42-0.68), 25 6 of 6.
MIN_NOISE = 75.0
# fullblur: kernel=18 (its default) 6 of 6 (0.27-0.43), 30 5 of 6, 50 2 of 6 (0.51-0.73).
MIN_FULLBLUR = 50
# eyebar at its defaults: 6 of 6; a bar over the eyes leaves the rest of the face.
WEAK_METHODS = {"eyebar": "covers the eyes only"}


def _blur_weakness(p: Any) -> str | None:
    if p.kernel and p.kernel < MIN_KERNEL:
        return f"kernel={p.kernel} (under {MIN_KERNEL} px)"
    if not p.kernel and p.relative < MIN_RELATIVE:
        return f"relative={p.relative:g} (under {MIN_RELATIVE:g})"
    if 0 < p.sigma < MIN_SIGMA:
        return f"sigma={p.sigma:g} (under {MIN_SIGMA:g})"
    return None


def _pixelate_weakness(p: Any) -> str | None:
    if p.block:
        return f"block={p.block} (under {MIN_BLOCK} px)" if p.block < MIN_BLOCK else None
    return f"cells={p.cells} (over {MAX_CELLS})" if p.cells > MAX_CELLS else None


_PARAM_CHECKS = {
    "blur": _blur_weakness,
    "learnedblur": _blur_weakness,
    "pixelate": _pixelate_weakness,
    "noise": lambda p: f"amount={p.amount:g} (under {MIN_NOISE:g})" if p.amount < MIN_NOISE else None,
    "fullblur": lambda p: f"kernel={p.kernel} (under {MIN_FULLBLUR})" if p.kernel < MIN_FULLBLUR else None,
}


def weakness(name: str, params: Any) -> str | None:
    """Why method ``name`` with ``params`` (its Params) leaves faces recognisable, or None."""
    if name in WEAK_METHODS:
        return WEAK_METHODS[name]
    check = _PARAM_CHECKS.get(name)
    return check(params) if check else None


def default_weakness(method_cls: type) -> str | None:
    """``weakness`` at the method's defaults (`faceveil methods` says "Weak privacy")."""
    if method_cls.name not in WEAK_METHODS and method_cls.name not in _PARAM_CHECKS:
        return None  # overlay's Params need an image
    return weakness(method_cls.name, method_cls.Params())


def weak_warning(name: str, params: Any) -> str | None:
    """The one line a run prints for a weak setting, or None."""
    why = weakness(name, params)
    if why is None:
        return None
    return f"faceveil: warning: -m {name} {why}: faces stay recognisable to face recognition (weak privacy)"
