"""Images in and out without leaks or loss (issue 17): huge and wide photos, full disks, unusual files."""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from faceveil.cli import main
from faceveil.io.images import read_rgb


def run(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


# --- 1. wide panoramas and huge photos: tiled, never shrunk below what their faces need ----------------------

def _panorama(astronaut, width=10000, height=200, n=10):
    """A wide canvas holding ``n`` copies of the astronaut's real face, each about 36x48 px."""
    import cv2

    crop = astronaut[10:240, 110:340]  # the face is near x 180..270, y 58..178 of the full photo
    s = 0.4
    small = cv2.resize(crop, None, fx=s, fy=s, interpolation=cv2.INTER_AREA)
    rng = np.random.default_rng(0)
    canvas = (np.full((height, width, 3), 110, np.uint8) + rng.integers(0, 30, (height, width, 3), dtype=np.uint8))
    faces = []
    step = (width - 400) // n
    for i in range(n):
        x, y = 200 + i * step, 30 + (i % 3) * 25
        canvas[y:y + small.shape[0], x:x + small.shape[1]] = small[:, ::-1] if i % 2 else small
        fx = (180 - 110) * s if i % 2 == 0 else small.shape[1] - (270 - 110) * s
        faces.append((int(x + fx), int(y + (58 - 10) * s), int(x + fx + 90 * s), int(y + (178 - 10) * s)))
    return canvas, faces


@pytest.mark.slow
def test_wide_panorama_every_face_blacked_out(tmp_path, capsys, astronaut):
    pano, faces = _panorama(astronaut)
    src = tmp_path / "pano.png"  # lossless, so "changed" means anonymized, not re-encoded
    Image.fromarray(pano).save(src)
    code, _, err = run(capsys, "anonymize", src, "-o", tmp_path / "out", "-m", "blackout", "-q")
    assert code == 0, err
    out = read_rgb(tmp_path / "out" / "pano.png")
    for x1, y1, x2, y2 in faces:
        inner = (slice(y1 + 8, y2 - 8), slice(x1 + 6, x2 - 6))
        assert (out[inner] < 10).mean() > 0.9, f"face at {x1},{y1} left visible"
    assert np.array_equal(out[:, :150], pano[:, :150]), "background far from faces unchanged"


@pytest.mark.parametrize("name", ["multiscale", "centerface"])
def test_panorama_faces_found_by_each_detector(astronaut, name):
    from faceveil.detect import get_detector
    from faceveil.detections import box_iou

    pano, faces = _panorama(astronaut, width=6000, n=6)
    d = get_detector(name, {"threshold": 0.2})
    found = d.detect(pano)
    iou = box_iou(np.array(faces, np.float32), found.xyxy)
    assert (iou.max(axis=1) > 0.3).all(), f"{name}: faces missed: {iou.max(axis=1)}"


def test_photos_that_fit_keep_identical_detections(astronaut):
    """Only photos that max_size would shrink below min_factor take the tiled path: others are untouched."""
    import cv2

    from faceveil.detect import get_detector
    from faceveil.detect.base import tile_factor
    from faceveil.detect.presets import resolve

    name, params, _ = resolve("balanced")
    new, old = get_detector(name, params), get_detector(name, {**params, "min_factor": 0})
    for size in ((1920, 1080), (3000, 2000)):  # 3000 px: shrunk to 0.64 for max_size, above min_factor
        img = cv2.resize(astronaut, size)
        assert tile_factor(size[1], size[0], 1920, 0.5) is None
        a, b = new.detect(img), old.detect(img)
        assert len(a) >= 1 and np.array_equal(a.xyxy, b.xyxy) and np.array_equal(a.score, b.score)
    assert tile_factor(200, 10000, 1920, 0.5) == 1.0  # a thin panorama has few pixels: its own size
    assert tile_factor(4000, 6000, 1920, 0.5) == 0.5  # a huge photo: at most halved


@pytest.mark.slow
def test_huge_photo_big_face_not_fragmented(astronaut):
    """The tiled pass keeps only faces that fit its overlap, so a big face is not cut into extra boxes."""
    import cv2

    from faceveil.detect import get_detector
    from faceveil.detect.presets import resolve

    name, params, _ = resolve("balanced")
    big = cv2.resize(astronaut, (4000, 4000))  # the face is about 700x940 px, 350 px in the 0.5 tiles
    assert len(get_detector(name, params).detect(big)) == 1
