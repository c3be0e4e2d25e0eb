"""Geometry shared by learned-blur training (torch) and inference (onnxruntime): torch-free.

Each face is refined on a fixed-size crop: the face box grown by ``CONTEXT`` in
each direction (so the network sees the surroundings), resized to ``SIZE`` x
``SIZE``. The face box therefore always lands on the same central rectangle of
the crop, and the network's residual is multiplied by one fixed feathered
ellipse (the compositor's 1.3x ellipse, fading out towards its rim), so the
refinement joins the plain Gaussian blur smoothly.
"""
from __future__ import annotations

import numpy as np

SIZE = 64  # working side of the refiner, pixels (96 cost 2.7x the CPU time; most faces here are < 40 px)
CONTEXT = 2.0  # crop side / face box side
MASK_SCALE = 1.3  # the region (an ellipse) the models were trained with, relative to the box
FEATHER = 0.3  # fraction of the ellipse radius over which the residual fades to zero
MIN_FACE = 4  # faces whose box is smaller (px, shorter side) get the plain Gaussian blur


# The default bank's faces are 128 px, aligned so the eyes sit at y=50 and the mouth at y=91.5; this
# rectangle of them is where a labelled face box falls (forehead to chin, ear to ear).
PRIOR_BOX = (24.0, 18.0, 104.0, 112.0)
# The bank's first entries are pairwise far apart (its order is farthest-first): one of them, chosen per
# face, lends the blurred face its structure (frozen in learnedblur_faces.npz: ``prior_faces``).
PRIOR_FACES = 22


def face_priors(size: int = SIZE, context: float = CONTEXT, relative: float = 1.0,
                count: int = PRIOR_FACES, kernel: int = 0) -> np.ndarray:
    """float32 (count, size, size, 3): the detail each bank face loses to the Gaussian blur, on the crop's grid.

    g adds one of these (scaled) to each blurred face, then the network refines: a blurred face plus some
    face's structure is what detectors find (DartBlur's aim), and no pixel of it depends on the person
    behind the blur. The bank faces are themselves averages of 5 people (not anybody's face), and a face
    gets a randomly chosen one (a tracked face keeps its own), so two photos of one person do not share
    the same added detail (a single fixed detail let dlib's parrot attack match people better than
    against the plain blur: EER 0.35 vs 0.41 on LFW). ``relative``/``kernel`` are the blur's; a fixed
    kernel (> 0) has no size relative to the face, so its priors use 1.0.
    """
    relative = relative if not kernel else 1.0
    faces = prior_faces().astype(np.float32)[:count]
    return np.stack([_detail(f, size, context, relative) for f in faces])


def prior_faces() -> np.ndarray:
    """(22, 128, 128, 3) uint8: the bank faces the shipped refiner was trained with, frozen beside it
    (``faceveil/data/learnedblur_faces.npz``: entries 0-21 of the default bank of the time, averages of 5
    deepface-unit people each), so that rebuilding the donor bank for ``replace`` does not change learnedblur."""
    from importlib import resources

    ref = resources.files("faceveil") / "data" / "learnedblur_faces.npz"
    with resources.as_file(ref) as p, np.load(p, allow_pickle=False) as z:
        return z["faces"]


def _detail(face128: np.ndarray, size: int, context: float, relative: float) -> np.ndarray:
    import cv2

    from .methods.blur import gaussian_blur

    inner = size / context  # the face box's side on the crop
    lo = (size - inner) / 2
    bx1, by1, bx2, by2 = PRIOR_BOX
    sx, sy = inner / (bx2 - bx1), inner / (by2 - by1)
    m = np.array([[sx, 0, lo - bx1 * sx], [0, sy, lo - by1 * sy]], np.float32)
    face = cv2.warpAffine(face128, m, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    k = int(round(relative * inner)) | 1
    return (face - gaussian_blur(face, k)).astype(np.float32)


def crop_rect(box, context: float = CONTEXT) -> tuple[int, int, int, int]:
    """Integer crop rectangle (x1, y1, x2, y2), possibly outside the frame, for one xyxy face box."""
    x1, y1, x2, y2 = (float(v) for v in box)
    cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
    hw, hh = (x2 - x1) * context / 2, (y2 - y1) * context / 2
    a, b = int(np.floor(cx - hw)), int(np.floor(cy - hh))
    return a, b, max(int(np.ceil(cx + hw)), a + 1), max(int(np.ceil(cy + hh)), b + 1)


def residual_mask(size: int = SIZE, context: float = CONTEXT, mask_scale: float = MASK_SCALE,
                  feather: float = FEATHER) -> np.ndarray:
    """float32 (size, size) weight: 1 in the inner ellipse, falling linearly to 0 at the region's rim."""
    r = mask_scale / context  # ellipse semi-axis in units of the crop's half side
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64)
    c = size / 2
    d = np.sqrt(((xx + 0.5 - c) / (c * r)) ** 2 + ((yy + 0.5 - c) / (c * r)) ** 2)  # 1 on the rim
    return np.clip((1.0 - d) / feather, 0.0, 1.0).astype(np.float32)


def extract(frame: np.ndarray, rect: tuple[int, int, int, int]) -> np.ndarray:
    """The rectangle's pixels, zero where it leaves the frame."""
    x1, y1, x2, y2 = rect
    h, w = frame.shape[:2]
    out = np.zeros((y2 - y1, x2 - x1) + frame.shape[2:], frame.dtype)
    sx1, sy1, sx2, sy2 = max(x1, 0), max(y1, 0), min(x2, w), min(y2, h)
    if sx2 > sx1 and sy2 > sy1:
        out[sy1 - y1 : sy2 - y1, sx1 - x1 : sx2 - x1] = frame[sy1:sy2, sx1:sx2]
    return out
