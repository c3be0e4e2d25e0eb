"""Estimated 5-point landmarks for a face box that has none (labelled boxes, Haar or dlib boxes, tiny faces).

A fixed mean shape relative to the box: where a face's eyes, nose tip and mouth corners sit, on average, in
a labelled face box. ``replace`` renders its new face from these when a box has no usable
landmarks, so a labelled face without a matching detection still gets a face-shaped face, not a blob.
They carry no pose (a frontal face); the caller still treats the whole region as unknown.

MEAN_SHAPE: per-coordinate median of the default preset's (CenterFace) landmarks ((x - x1) / w, (y - y1) / h)
in the labelled box each detection matches, over FITTED_ON; made by ``PYTHONPATH=src python tools/fit_box_landmarks.py
/work/shared/data/facemask`` (the facemask photos are CC0).
"""
from __future__ import annotations

import numpy as np

# left eye, right eye, nose tip, left and right mouth corner (image left/right), fractions of the box
# Fitted against the labelled boxes that a detection matches (IoU >= 0.4; 724 faces of 330 photos): [[0.274, 0.229],
# [0.701, 0.218], [0.490, 0.445], [0.324, 0.634], [0.664, 0.627]], interquartile ranges 0.13-0.23 across,
# 0.07-0.08 down (turned heads); made mirror-symmetric here (the mean of the shape and its mirror image): a
# frontal face, turned to neither side. Not against the detector's own boxes ([[0.320, 0.297], [0.698, 0.291],
# [0.508, 0.470], [0.364, 0.623], [0.661, 0.618]], 1,165 faces): the default preset grows small boxes up to
# 1.35x (presets.small_grow), so that shape puts a face ~0.9x too small into a face-tight box.
MEAN_SHAPE = np.array([[0.2865, 0.2235], [0.7135, 0.2235], [0.500, 0.445], [0.330, 0.6305], [0.670, 0.6305]],
                      np.float64)
FITTED_ON = ("facemask TUNE half (faceveil.eval.splits), labelled boxes >= 24 px high matched to a detection "
             "with plausible landmarks")


def estimate_landmarks(box) -> np.ndarray:
    """5x2 float64 landmarks (frame pixels) of a frontal face filling ``box`` (x1, y1, x2, y2) as the mean face does."""
    b = np.asarray(box, np.float64).reshape(4)
    return b[:2] + MEAN_SHAPE * (b[2:] - b[:2])
