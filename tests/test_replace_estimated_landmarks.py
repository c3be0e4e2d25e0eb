"""replace on boxes without landmarks (labelled boxes, tiny faces): a face-shaped face at landmarks estimated from
the box (anonymize/box_landmarks.py), drawn over the whole region filled from its context (issue 22)."""
from __future__ import annotations

import numpy as np
import pytest

from conftest import shared_path
from faceveil.detections import Detections, box_iou
from faceveil.io.images import read_rgb
from faceveil.pipeline import Anonymizer

PHOTO = "maksssksksss110.jpg"  # a crowd: 26 labelled faces, 20-59 px high, most of them masked


@pytest.fixture(scope="module")
def crowd():
    from faceveil.train.train_on_anon import read_wider_gt

    root = shared_path("facemask")
    boxes = read_wider_gt(root / "gt.txt")[PHOTO]
    return read_rgb(root / "images" / PHOTO), boxes


def _replace(image, boxes, **params):
    anon = Anonymizer("replace", params, seed=0, load_detector=False)
    out = anon.anonymize(image, Detections.from_boxes(boxes, source="label"), anon.rng_for(PHOTO))
    return out, anon.method.counts


def test_estimated_landmarks_scale_with_the_box():
    from faceveil.anonymize.box_landmarks import estimate_landmarks

    a = estimate_landmarks([10, 20, 110, 120])
    b = estimate_landmarks([0, 0, 50, 50])
    assert a.shape == (5, 2) and np.allclose((a - [10, 20]) / 100, b / 50)
    assert a[0, 0] < a[2, 0] < a[1, 0] and a[0, 1] < a[2, 1] < a[3, 1]  # eyes, nose, mouth in order
    assert np.isclose(a[0, 1], a[1, 1]) and np.isclose(a[:2, 0].mean(), 60)  # frontal: level eyes, centred


@pytest.mark.slow
def test_landmarkless_faces_get_a_face_where_the_shape_puts_it(crowd):
    """The default detector finds the new faces at the labelled boxes, with their eyes where the estimated
    landmarks are (the older box-fitted paste put them ~0.2 box heights lower, with a head's hair above)."""
    from faceveil.anonymize.box_landmarks import estimate_landmarks

    image, boxes = crowd
    out, counts = _replace(image, boxes)
    assert counts["estimated"] == len(boxes)
    det = Anonymizer("blur").detect(out)
    big = boxes[(boxes[:, 3] - boxes[:, 1]) >= 24]
    iou = box_iou(big, det.xyxy)
    found = eyes_ok = 0
    for i, box in enumerate(big):
        j = int(iou[i].argmax())
        if iou[i, j] < 0.3 or not det.has_landmarks[j]:
            continue
        found += 1
        err = np.abs(det.landmarks[j][:2] - estimate_landmarks(box)[:2]).max() / (box[3] - box[1])
        eyes_ok += err <= 0.1
    assert found >= 0.9 * len(big), (found, len(big))
    assert eyes_ok >= 0.8 * len(big), (eyes_ok, len(big))


@pytest.mark.slow
def test_landmarkless_region_changes_at_least_what_the_box_fit_changed(crowd):
    """Fail closed: every pixel the box-fitted path changed in a region, the estimated path changes too."""
    image, boxes = crowd
    fitted, _ = _replace(image, boxes, no_landmarks="fitted")
    est, _ = _replace(image, boxes)
    ch_fit = (fitted != image).any(axis=2)
    ch_est = (est != image).any(axis=2)
    assert ch_fit.sum() > 0
    assert (ch_fit & ~ch_est).sum() <= 1e-3 * ch_fit.sum()  # a pixel where the new value equals the old by chance
    # and inside each labelled box, all but such chance pixels changed
    for x1, y1, x2, y2 in np.round(boxes).astype(int):
        assert ch_est[y1:y2, x1:x2].mean() >= 0.99


@pytest.mark.slow
def test_landmarkless_face_is_never_computed_from_the_face_pixels(crowd):
    """Scramble the pixels inside the labelled boxes: the output is byte-identical (the new face, its colour,
    light and grain come from the context around the region and the bank only)."""
    image, boxes = crowd
    rng = np.random.default_rng(1)
    for box in boxes[:4]:  # one face at a time: a neighbour's own face is context to this one until replaced
        x1, y1, x2, y2 = np.round(box).astype(int)
        x1, y1 = max(x1, 0), max(y1, 0)
        scrambled = image.copy()
        scrambled[y1:y2, x1:x2] = rng.integers(0, 256, scrambled[y1:y2, x1:x2].shape, dtype=np.uint8)
        a, _ = _replace(image, box[None])
        b, _ = _replace(scrambled, box[None])
        assert np.array_equal(a, b)


@pytest.mark.slow
def test_tiny_faces_are_estimated_too(crowd):
    """Faces under min_landmark_face (12 px) have landmarks a detector cannot place: the estimated path too."""
    image, boxes = crowd
    c = boxes[:, :2] + (boxes[:, 2:] - boxes[:, :2]) / 2
    tiny = np.c_[c - 5, c + 5][:5]
    out, counts = _replace(image, tiny)
    assert counts["estimated"] == len(tiny)
    for x1, y1, x2, y2 in np.round(tiny).astype(int):
        assert (out[y1:y2, x1:x2] != image[y1:y2, x1:x2]).any(axis=2).mean() >= 0.99


@pytest.mark.slow
def test_estimated_keep_keeps_masks_only_below_the_nose(crowd):
    """no_landmarks=estimated-keep (opt-in, with occluders=keep): a mask over an unmatched face keeps its
    pixels, as the landmark path keeps it; the eyes-and-nose band of every box is still fully rebuilt."""
    image, boxes = crowd
    out, _ = _replace(image, boxes, no_landmarks="estimated-keep")
    assert not np.array_equal(out, _replace(image, boxes)[0])  # the default (estimated) keeps nothing
    kept_faces = 0
    for x1, y1, x2, y2 in np.round(boxes).astype(int):
        h = y2 - y1
        same = (out[y1:y2, x1:x2] == image[y1:y2, x1:x2]).all(axis=2)
        # eyes (0.22 of the box) down to the nose tip (0.45): rebuilt, but for pixels equal to the old by chance
        assert same[: int(0.45 * h)].mean() <= 0.02
        kept_faces += same[int(0.6 * h):].mean() >= 0.1
    # most of this crowd wears masks; 4 kept theirs before a cover had to stand apart from the face above it
    # (OCC_APART: fail closed), 3 since (a white mask in shade, greyer than the upper face, was replaced)
    assert kept_faces >= 3, kept_faces
