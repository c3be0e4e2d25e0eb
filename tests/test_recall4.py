"""Issue 21, fourth round: `thorough` gets the big-box shape calibration too (shape_*), fitted on its own boxes
on the WIDER tune half (research/recall4.py, docs/recall.md): boxes from 40 px on photos at their own size moved
up 17 % of their height and drawn 2 % wider."""
from __future__ import annotations

import numpy as np
import pytest

from faceveil.detect import get_detector
from faceveil.detect.presets import resolve

from conftest import shared_path


def test_thorough_reshapes_big_boxes_on_photos_at_their_own_size():
    _, params, _ = resolve("thorough")
    assert params.get("shape_px", 0) == 40.0
    assert params["shape_dy"] == pytest.approx(-0.17) and params["shape_w"] == pytest.approx(1.02)
    assert not params.get("shape_all", False)  # facemask's enlarged photos keep their boxes
    assert resolve("fast")[1].get("shape_px", 0) == 0


@pytest.mark.slow
def test_thorough_covers_a_big_wider_face_it_boxed_short():
    """WIDER 20_Family_Group_Family_Group_20_447 (1024x846, tune half): its tallest face, 208x300 px, CenterFace
    boxes high; without the shape calibration `thorough`'s region covered 77 % of it (leaked, boxed short), with
    it 88 %."""
    from faceveil.anonymize import Compositor, RegionParams
    from faceveil.eval.leaks import anonymized_mask, box_coverage
    from faceveil.io.images import read_rgb
    from faceveil.io.labels import read_eval_labels

    root = shared_path("widerface-val")
    key = "20--Family_Group/20_Family_Group_Family_Group_20_447.jpg"
    image = read_rgb(root / "images" / key)
    lab = read_eval_labels(root / "ground_truth" / "wider_face_val_bbx_gt.txt")[key]
    face = int(np.argmax(lab.faces.heights))  # the tallest: 208x300 px at (438, 32)
    name, params, region = resolve("thorough")
    comp = Compositor(RegionParams(region["shape"], region["mask_scale"], 0.0))
    cov = {}
    for shape_px in (0.0, params.get("shape_px", 0.0)):
        det = get_detector(name, {**params, "shape_px": shape_px, "threads": 1})
        m = anonymized_mask(comp, det.detect(image), image.shape)
        cov[shape_px] = float(box_coverage(m, lab.faces.xyxy[[face]])[0][0])
    assert len(cov) == 2 and cov[0.0] < 0.8 <= cov[params["shape_px"]], cov
