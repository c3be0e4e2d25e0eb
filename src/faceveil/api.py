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


def resolved_detector(detector: str | None = None, preset: str | None = None, params: dict | None = None):
    """The cached detector for a preset (default: the CLI's, ``balanced``) or a named detector."""
    from .detect.presets import resolve

    name, p, _ = resolve(preset, detector, params)
    frozen = tuple(sorted((k, _frozen(v)) for k, v in p.items()))  # big_scales=[1, 2]: unhashable for the cache
    try:
        hash(frozen)
    except TypeError:  # a value no parameter takes: the detector's parameters say so
        return _detector.__wrapped__(name, frozen)
    return _detector(name, frozen)


def _frozen(value):
    """Lists (and arrays) as tuples, as a detector's parameters take them."""
    return tuple(_frozen(v) for v in value) if isinstance(value, (list, tuple, np.ndarray)) else value


def detect(image: np.ndarray, /, detector: str | None = None, preset: str | None = None, **params) -> Detections:
    """Faces in an RGB uint8 image (HxWx3; a PIL image in any mode is converted to RGB and turned upright by its
    EXIF orientation, as files are read, so boxes are in the upright image). Models are loaded once and cached.

    Default: the ``balanced`` preset, as ``faceveil anonymize``; ``preset`` picks another,
    ``detector`` a detector by name with its own defaults (``params`` override either).
    """
    from .detect.base import detection_view
    from .pipeline import check_image

    # what Anonymizer.detect (files, the CLI) shows the detector: a 1-bit photo smoothed
    return resolved_detector(detector, preset, params).detect(detection_view(check_image(image)))


def anonymize(image: np.ndarray, /, method: str = "blur", detections: Detections | None = None,
              detector: str | None = None, seed: int = 0, preset: str | None = None,
              region: dict | None = None, **params) -> np.ndarray:
    """Return a copy of ``image`` with every face hidden by ``method`` (RGB uint8 HxWx3; a PIL image comes back
    upright, its EXIF orientation applied, like the CLI's output). An HxWx4 array's fourth channel (alpha) is
    dropped: the copy is HxWx3. Files with transparency keep it through ``Anonymizer.process_file`` (and the CLI),
    which also hides faces that only the alpha channel draws.

    ``params`` are the method's parameters (see ``faceveil methods``), e.g.
    ``anonymize(img, "blur", kernel=25)``, ``anonymize(img, "overlay", image="emoji.png")`` (the photo is
    positional only, so a parameter may be called ``image``). Detection and region are the CLI's defaults
    (``preset``, ``detector`` and ``region`` as in ``detect`` and ``Anonymizer``). Pass
    ``detections`` (a Detections, or boxes as x1, y1, x2, y2 rows) to skip detection: no detector is built then.
    """
    anon = Anonymizer(method=method, method_params=params, detector=detector, region=region, seed=seed,
                      preset=preset, load_detector=False)
    if detections is None:
        detections = detect(image, detector, preset)
    return anon.anonymize(image, detections)  # a caller's boxes are checked there (given_boxes)
