import numpy as np
import pytest

import faceveil
from faceveil.detect import get_detector
from faceveil.detections import box_iou
from faceveil.errors import ModelError

from conftest import shared_path

ASTRONAUT_FACE = [180, 60, 270, 175]


def test_centerface_finds_the_astronaut(astronaut_faces):
    d = astronaut_faces
    assert len(d) == 1
    assert box_iou(d.xyxy, [ASTRONAUT_FACE])[0, 0] > 0.7
    left_eye, right_eye, nose = d.landmarks[0, :3]
    assert left_eye[0] < nose[0] < right_eye[0]
    assert nose[1] > left_eye[1]


def test_centerface_rgb_order_and_scale_invariance(astronaut):
    big = np.kron(astronaut, np.ones((2, 2, 1), np.uint8))  # 1024x1024
    d = faceveil.detect(big)
    assert len(d) == 1 and box_iou(d.xyxy / 2, [ASTRONAUT_FACE])[0, 0] > 0.6


def test_blank_image_has_no_faces():
    assert len(faceveil.detect(np.full((200, 300, 3), 127, np.uint8))) == 0


@pytest.mark.parametrize("name", ["yunet", "haar", "dlib-hog"])
def test_other_detectors_agree_on_the_astronaut(name, astronaut):
    pytest.importorskip({"yunet": "yuface", "haar": "cv2", "dlib-hog": "dlib"}[name])
    d = get_detector(name).detect(astronaut)
    assert len(d) >= 1
    assert box_iou(d.xyxy, [ASTRONAUT_FACE]).max() > 0.5


def test_missing_model_is_a_clear_error(monkeypatch, tmp_path):
    monkeypatch.setenv("FACEVEIL_CENTERFACE_ONNX", str(tmp_path / "nope.onnx"))
    with pytest.raises(ModelError, match="nope.onnx: CenterFace model file missing"):
        get_detector("centerface", {"threads": 3})


@pytest.mark.slow
def test_multi_face_photos_yield_known_counts():
    from faceveil.io.images import read_rgb

    root = shared_path("deepface-unit")
    expected = {"couple.jpg": 2, "selfie-many-people.jpg": 6, "img55.jpg": 1}
    for name, n in expected.items():
        d = faceveil.detect(read_rgb(root / name))
        assert len(d.filter(min_score=0.4)) >= n, name


@pytest.mark.slow
def test_every_single_portrait_has_a_face():
    from faceveil.io.images import read_rgb

    root = shared_path("deepface-unit")
    missing = []
    for p in sorted(root.glob("img*.jpg"))[:20]:
        if len(faceveil.detect(read_rgb(p))) == 0:
            missing.append(p.name)
    assert not missing
