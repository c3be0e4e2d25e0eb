"""Moved to :mod:`faceveil.detect.centermap` (inference needs it and must not import the train layer)."""
from ..detect.centermap import GAUSS_ALPHA, STRIDE, OnnxCompactDetector, Targets, decode, encode  # noqa: F401
