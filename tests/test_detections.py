import numpy as np
import pytest

from faceveil.detections import Detections, box_inside, box_iou, nms


def test_iou_hand_values():
    a = np.array([[0, 0, 10, 10]])
    b = np.array([[5, 0, 15, 10], [20, 20, 30, 30], [0, 0, 10, 10]])
    np.testing.assert_allclose(box_iou(a, b), [[50 / 150, 0.0, 1.0]])


def test_inside_hand_values():
    """The share of each first box inside each second one: half, none, all; a box inside a larger one is wholly
    inside it (the larger one only a quarter inside the smaller); an empty box is inside nothing."""
    a = np.array([[0, 0, 10, 10], [2, 2, 7, 7], [3, 3, 3, 8]])
    b = np.array([[5, 0, 15, 10], [20, 20, 30, 30], [0, 0, 10, 10]])
    np.testing.assert_allclose(box_inside(a, b), [[0.5, 0.0, 1.0], [0.4, 0.0, 1.0], [0.0, 0.0, 0.0]])
    np.testing.assert_allclose(box_inside(b[2], a[1]), [[0.25]])


def test_nms_keeps_best_of_overlapping_and_separate_boxes():
    d = Detections.from_boxes([[0, 0, 10, 10], [1, 0, 11, 10], [50, 50, 60, 60]], [0.5, 0.9, 0.3])
    kept = nms(d, 0.3)
    assert sorted(kept.score.tolist()) == pytest.approx([0.3, 0.9])


def test_selection_and_transforms():
    lm = np.arange(20, dtype=np.float32).reshape(2, 5, 2)
    d = Detections.from_boxes([[0, 0, 10, 20], [5, 5, 7, 9]], [0.9, 0.1], lm, "x")
    assert len(d[d.score > 0.5]) == 1
    assert d[1].xyxy.tolist() == [[5, 5, 7, 9]]
    np.testing.assert_allclose(d.areas, [200, 8])
    s = d.scaled(2.0)
    np.testing.assert_allclose(s.xyxy[0], [0, 0, 20, 40])
    np.testing.assert_allclose(s.landmarks, lm * 2)
    c = d.translated(-6, 0).clipped(100, 100)
    np.testing.assert_allclose(c.xyxy[1], [0, 5, 1, 9])
    faces = list(d)
    assert faces[0].width == 10 and faces[0].height == 20 and faces[0].landmarks.shape == (5, 2)
    assert Detections.from_boxes([[0, 0, 1, 1]])[0].has_landmarks.tolist() == [False]
    assert len(Detections.merge([d, Detections.empty()])) == 2


def test_from_xywh():
    d = Detections.from_xywh([[10, 20, 5, 6]])
    assert d.xyxy.tolist() == [[10, 20, 15, 26]]


def test_to_dict_rounds_and_marks_missing_landmarks():
    d = Detections.from_boxes([[1.234, 2, 3, 4]], [0.123456])
    j = d.to_dict(2, 4)["faces"]
    assert j == [{"box": [1.23, 2.0, 3.0, 4.0], "score": 0.1235, "landmarks": None, "source": "detected"}]