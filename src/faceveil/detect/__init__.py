"""Face detectors, registered by name (``faceveil detectors`` lists them)."""
from .base import DETECTORS, Detector
from . import centerface, yunet, dlib, haar, masked, multiscale  # noqa: F401  (registration)


def get_detector(name: str = "centerface", params: dict | None = None) -> Detector:
    return DETECTORS.create(name, params)


__all__ = ["DETECTORS", "Detector", "get_detector"]
