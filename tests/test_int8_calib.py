"""The recalibrated int8 CenterFace (issue 20, lever 1): closer to fp32 than the first build.

The first int8 file moved CenterFace's heatmap by 0.038 on average where a face could be (MinMax
calibration) and leaked 23 faces where fp32 leaked 17 on the facemask tune half; the percentile-calibrated
build with the first depthwise convolution in fp32 moves it by ~0.015 and leaked 17 (docs/int8.md).
It still leaked 4 faces more than fp32 on the facemask held-out half, so fp32 stays the default.
"""
from __future__ import annotations

import numpy as np
import pytest

from conftest import needs_exact_int8, shared_path

# Tune-half facemask photos (faceveil.eval.splits) at the sizes the balanced preset runs them (800 px:
# enlarged; 360 px: its big-face pass), a WIDER photo at its own 1024 px and at the coarse pass's 640.
PHOTOS = [(("facemask", "images", "maksssksksss11.jpg"), (360, 800)),
          (("facemask", "images", "maksssksksss499.jpg"), (360, 800)),
          (("facemask", "images", "maksssksksss74.jpg"), (360, 800)),
          (("widerface-val", "images", "12--Group",
            "12_Group_Team_Organized_Group_12_Group_Team_Organized_Group_12_313.jpg"), (1024, 640))]


def _blob(image, side):
    import cv2

    h, w = image.shape[:2]
    f = side / max(h, w)
    img = cv2.resize(image, (round(w * f), round(h * f)), interpolation=cv2.INTER_AREA if f < 1 else cv2.INTER_LINEAR)
    h, w = img.shape[:2]
    out = np.zeros((1, 3, -(-h // 32) * 32, -(-w // 32) * 32), np.float32)
    out[0, :, :h, :w] = img.transpose(2, 0, 1)
    return out


@pytest.mark.slow
@pytest.mark.parametrize("build", [pytest.param("int8", marks=needs_exact_int8), "int8_7bit"])
def test_int8_heatmap_stays_close_to_fp32_on_real_photos(build):
    """Mean |int8 - fp32| heatmap where either passes 0.1, and mean |log box size| difference where fp32
    passes 0.3, over real photos at the preset's sizes: 0.030 / 0.024 with the MinMax build (it leaked
    +0.45 points on the facemask tune half), 0.013 / 0.011 now (8-bit weights). The 7-bit build (x86 without
    VNNI runs it) is checked on every CPU: its sums are exact everywhere."""
    from faceveil.detect.centerface import _session, centerface_model_path
    from faceveil.io.images import read_rgb

    s32 = _session(str(centerface_model_path("fp32")), 1)
    s8 = _session(str(centerface_model_path(build)), 1)
    heat, size, faces = [], [], 0
    for parts, sides in PHOTOS:
        image = read_rgb(shared_path(*parts))
        for side in sides:
            b = _blob(image, side)
            h32, sc32 = s32.run(None, {"input.1": b})[:2]
            h8, sc8 = s8.run(None, {"input.1": b})[:2]
            m = (h32 > 0.1) | (h8 > 0.1)
            heat.append(float(np.abs(h8 - h32)[m].mean()))
            m = h32[0, 0] > 0.3
            faces += int(m.sum())
            size.append(float(np.abs(sc8[0][:, m] - sc32[0][:, m]).mean()))
    print(f"{build}: heatmap {np.mean(heat):.4f}, log box size {np.mean(size):.4f}")
    assert faces > 100  # the photos hold faces: the comparison is about them
    assert np.mean(heat) < 0.02, heat
    assert np.mean(size) < 0.017, size


def test_calibration_uses_only_facemask_tune_half_and_deepface_unit():
    import sys

    from conftest import ROOT
    from faceveil.eval.splits import side

    data = shared_path("facemask", "images").parents[1]
    shared_path("deepface-unit")
    sys.path.insert(0, str(ROOT / "tools"))
    try:
        import build_centerface_models as B
    finally:
        sys.path.remove(str(ROOT / "tools"))
    photos = B.calibration_photos(data, 48)
    assert len(photos) == 48
    folders = {p.parent.name for p in photos}
    assert folders == {"images", "deepface-unit"}
    assert all(side(p.name) == "tune" for p in photos if p.parent.name == "images")


def test_percentile_ranges_drop_rare_outliers_and_keep_zero():
    import sys

    from conftest import ROOT

    sys.path.insert(0, str(ROOT / "tools"))
    try:
        import build_centerface_models as B
    finally:
        sys.path.remove(str(ROOT / "tools"))
    hist = np.zeros(1000, np.int64)
    hist[:100] = 10_000  # values in [0, 1): a million of them
    hist[-1] = 1  # one outlier at 10
    stats = {"relu": (0.0, 10.0, hist)}
    assert B.tensor_ranges(stats, "minmax")["relu"] == (0.0, 10.0)
    lo, hi = B.tensor_ranges(stats, "percentile", 99.999)["relu"]
    assert lo == 0.0 and 0.9 <= hi <= 1.1
