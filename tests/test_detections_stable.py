"""Detections on a few real photos equal stored ones: the guard that a refactor changed no behaviour.

tests/data/detections_stable.json was written by this file (FACEVEIL_WRITE_STABLE=1 python -m pytest
tests/test_detections_stable.py) before the structure work of issue 19; every preset and the plain
centerface detector are compared box by box (to 0.01 px) and score by score (to 1e-4). couple.jpg's entries were
rewritten (up to 1 px, thorough's one edge 19 px) when photos with a colour profile began to be read in sRGB.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

from conftest import SHARED

STORE = Path(__file__).parent / "data" / "detections_stable.json"
PHOTOS = {
    "astronaut": None,  # skimage's portrait: always there
    "facemask": ("facemask", "images", "maksssksksss1.jpg"),
    "wider": ("widerface-val", "images", "0--Parade", "0_Parade_Parade_0_102.jpg"),
    "deepface": ("deepface-unit", "couple.jpg"),
}
SETTINGS = {"fast": ("fast", None), "balanced": ("balanced", None), "thorough": ("thorough", None),
            "centerface": (None, "centerface")}


def _image(key):
    from faceveil.io.images import read_rgb

    if PHOTOS[key] is None:
        from skimage import data

        return data.astronaut()
    p = SHARED.joinpath(*PHOTOS[key])
    if not p.exists():
        pytest.skip(f"{p} not found: tests on real photos need ../shared/data beside the checkout")
    return read_rgb(p)


def _detect(image, setting):
    from faceveil.detect import get_detector
    from faceveil.detect.presets import resolve

    preset, detector = SETTINGS[setting]
    name, params, _ = resolve(preset, detector)
    d = get_detector(name, params).detect(image)
    return {"box": np.round(d.xyxy, 2).tolist(), "score": np.round(d.score, 4).tolist()}


@pytest.mark.slow
@pytest.mark.parametrize("key", list(PHOTOS))
def test_detections_equal_the_stored_ones(key):
    image = _image(key)
    got = {s: _detect(image, s) for s in SETTINGS}
    if os.environ.get("FACEVEIL_WRITE_STABLE"):
        store = json.loads(STORE.read_text()) if STORE.exists() else {}
        store[key] = got
        STORE.parent.mkdir(exist_ok=True)
        STORE.write_text(json.dumps(store, indent=1, sort_keys=True))
        return
    want = json.loads(STORE.read_text())[key]
    for s in SETTINGS:
        assert len(got[s]["box"]) == len(want[s]["box"]), f"{key}/{s}: {len(got[s]['box'])} faces, stored {len(want[s]['box'])}"
        assert len(want[s]["box"]) > 0, f"{key}/{s}: the stored photo must have faces (the test can fail)"
        np.testing.assert_allclose(got[s]["box"], want[s]["box"], atol=0.011, err_msg=f"{key}/{s}")
        np.testing.assert_allclose(got[s]["score"], want[s]["score"], atol=1.1e-4, err_msg=f"{key}/{s}")
