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


def test_one_pass_tails_give_the_ranges_of_the_full_histograms(monkeypatch):
    """collect_stats(percentile=...) keeps each tensor's smallest and largest values instead of a second pass for
    its histogram: tensor_ranges must find the same ranges on its histogram as on the full one (skewed tensors,
    with and without negatives, with outliers), and a tensor too small for its tails takes the full histogram."""
    import sys

    from conftest import ROOT

    sys.path.insert(0, str(ROOT / "tools"))
    try:
        import build_centerface_models as B
    finally:
        sys.path.remove(str(ROOT / "tools"))
    monkeypatch.setattr(B._Tails, "TAIL", 64)
    rng = np.random.default_rng(0)
    shapes = [(3, 40, 50), (3, 60, 30)]
    tensors = {
        "relu": [np.maximum(rng.normal(0, 1, s), 0).astype(np.float32) for s in shapes],
        "signed": [(rng.standard_t(3, s) * 2 - 0.5).astype(np.float32) for s in shapes],
        "outlier": [np.concatenate([rng.uniform(-1, 1, 5000), [40.0, -30.0]]).astype(np.float32) for _ in shapes],
        "tiny": [rng.normal(0, 1, 50).astype(np.float32) for _ in shapes],
        "clipped": [np.clip(rng.normal(2, 3, s), 0, 6).astype(np.float32) for s in shapes],  # ~9 % at 6: top bin
    }
    for percentile in (99.999, 99.9, 99.0):
        full, made = {}, []
        for n, vs in tensors.items():
            lo, hi = min(float(v.min()) for v in vs), max(float(v.max()) for v in vs)
            full[n] = (lo, hi, sum(np.histogram(v, bins=2048, range=(lo, hi))[0] for v in vs))
            t = B._Tails()
            for v in vs:
                t.add(v)
            assert (float(t.low[0]), float(t.top[-1])) == (lo, hi)
            h = B._tail_histogram(t, lo, hi, 2048, percentile)
            made.append(h is not None)
            assert h is None or h.sum() == full[n][2].sum()
            full_ranges = B.tensor_ranges({n: full[n]}, "percentile", percentile)
            if h is not None:
                assert B.tensor_ranges({n: (lo, hi, h)}, "percentile", percentile) == full_ranges, (n, percentile)
        # ~6,000 values a tensor: 64 values are more than 0.1 % of them, less than 1 % (pass 2 for those); "outlier"
        # at 99.9 %: the bin of its 64th smallest value holds ~85 values, so its 10 lowest cannot be shown to lie below
        # it (pass 2); "tiny": 100 values, fewer than two tails' worth (pass 2); "clipped": ~9 % of it in its top bin,
        # where the range ends (in the bin between the tails' exact bins: the one bin the rest is counted in)
        assert made == {99.999: [True, True, True, False, True], 99.9: [True, True, False, False, True]}.get(
            percentile, [False] * 5)
