"""replace's new face takes on the scene's focus: no crisp face in a blurred photo, no softened face in a sharp one."""
from __future__ import annotations

import importlib

import cv2
import numpy as np
import pytest

from faceveil.anonymize import Compositor, get_method

R = importlib.import_module("faceveil.anonymize.methods.replace")  # faceveil.anonymize is also a function's name


def _core(box) -> tuple[slice, slice]:
    x1, y1, x2, y2 = box
    cx, cy, hw, hh = (x1 + x2) / 2, (y1 + y2) / 2, (x2 - x1) / 4, (y2 - y1) / 4
    return slice(int(cy - hh), int(cy + hh)), slice(int(cx - hw), int(cx + hw))


def _lap_var(img, sl) -> float:
    return float(cv2.Laplacian(cv2.cvtColor(img, cv2.COLOR_RGB2GRAY).astype(np.float32), cv2.CV_32F)[sl].var())


def _replace(img, dets):
    return get_method("replace", {}).apply(img, dets, Compositor(), np.random.default_rng(0))


def test_a_face_in_a_blurred_photo_is_as_blurred_as_the_photo(astronaut, astronaut_faces, monkeypatch):
    """The whole photo out of focus (Gaussian sigma 2.5): the new face's Laplacian variance was 36x the blurred
    original face's (256 against 7.0: a crisp face pasted into a blur); read off the ring's edges, the face is now
    blurred as much (6.9). The blur is read outside the mask only, so the original face's pixels still decide
    nothing."""
    core = _core(astronaut_faces.xyxy[0])
    scene = cv2.GaussianBlur(astronaut, (0, 0), 2.5)
    out = _replace(scene, astronaut_faces)
    assert _lap_var(out, core) <= 2.0 * _lap_var(scene, core)
    monkeypatch.setattr(R, "FOCUS_MATCH", False)  # the check can fail: without the step the face stays crisp
    assert _lap_var(_replace(scene, astronaut_faces), core) > 10 * _lap_var(scene, core)


@pytest.mark.parametrize("sigma", [0.0, 1.5])
def test_the_face_is_never_sharper_than_before_and_a_sharp_photo_is_left_alone(astronaut, astronaut_faces, sigma,
                                                                                   monkeypatch):
    """Focus matching only ever softens, and only where the scene is softer than the face: the sharp portrait's
    output is byte-identical with the step off; a slightly blurred one gets a softer face than without it."""
    scene = astronaut if sigma == 0 else cv2.GaussianBlur(astronaut, (0, 0), sigma)
    on = _replace(scene, astronaut_faces)
    monkeypatch.setattr(R, "FOCUS_MATCH", False)
    off = _replace(scene, astronaut_faces)
    core = _core(astronaut_faces.xyxy[0])
    if sigma == 0:
        assert np.array_equal(on, off)
    else:
        assert _lap_var(on, core) < 0.5 * _lap_var(off, core)
    changed = (on != astronaut).any(axis=2) if sigma == 0 else (on != scene).any(axis=2)
    x1, y1, x2, y2 = astronaut_faces.xyxy[0]
    assert not changed[: int(y1) - 40].any() and not changed[:, : int(x1) - 40].any()  # outside stays the photo's
