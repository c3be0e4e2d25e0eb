"""The few functions most users call."""
from __future__ import annotations

from functools import lru_cache

import numpy as np

from .detections import Detections
from .pipeline import Anonymizer


@lru_cache(maxsize=8)
def _detector(name: str, frozen_params: tuple):
    from .detect import get_detector

    return get_detector(name, dict(frozen_params))


def detect(image: np.ndarray, detector: str = "centerface", **params) -> Detections:
    """Faces in an RGB uint8 image (HxWx3). Models are loaded once and cached."""
    from .pipeline import check_image

    return _detector(detector, tuple(sorted(params.items()))).detect(check_image(image))


def anonymize(image: np.ndarray, method: str = "blur", detections: Detections | None = None,
              detector: str = "centerface", seed: int = 0, **params) -> np.ndarray:
    """Return a copy of ``image`` with every face hidden by ``method``.

    ``params`` are the method's parameters (see ``faceveil methods``), e.g.
    ``anonymize(img, "blur", kernel=25)``. Pass ``detections`` to skip detection.
    """
    anon = Anonymizer(method=method, method_params=params, detector=detector, seed=seed)
    if detections is None:
        detections = detect(image, detector)
    return anon.anonymize(image, detections)
