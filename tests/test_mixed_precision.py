"""Mixed precision by pass (issue 20, photos): ``precision=mixed`` runs the passes in ``int8_passes`` with the int8
weights and the others with fp32 (docs/int8.md, "Mixed precision"). Leaks and speed are measured in
research/mixed_precision.py and bench/bench_photo_speed.py, not here."""
from __future__ import annotations

import numpy as np
import pytest


def _detector(**params):
    from faceveil.detect import get_detector
    from faceveil.detect.presets import resolve

    name, p, _ = resolve("balanced", detector_params=params)
    return get_detector(name, p)


def _same(a, b):
    assert a.source == b.source
    np.testing.assert_array_equal(a.xyxy, b.xyxy)
    np.testing.assert_array_equal(a.score, b.score)


def test_each_pass_runs_the_weights_its_precision_names(astronaut, monkeypatch):
    """The astronaut (512 px) is enlarged to 800: a main pass and two big-face passes (0.6x, 0.9x). With the main
    pass in int8, the main pass's boxes are exactly the int8 detector's and the big-face passes' the fp32 one's."""
    monkeypatch.setenv("FACEVEIL_INT8", "any")  # the int8 weights on any CPU (int8_exact): this is about routing
    mixed = _detector(precision="mixed", int8_passes=("main",))
    int8, fp32 = _detector(precision="int8"), _detector(precision="fp32")
    assert mixed.cf.params.precision == "int8"
    seen = []
    for det in (mixed._net_of("int8"), mixed._net_of("fp32")):
        forward = det.forward
        det.forward = lambda img, f=forward, p=det.params.precision: seen.append((p, img.shape[:2])) or f(img)
    got = mixed.passes(astronaut)
    a8, a32 = int8.passes(astronaut), fp32.passes(astronaut)
    kinds = [d.source for d in got]
    assert kinds == [d.source for d in a8] == [d.source for d in a32]
    assert kinds.count("big") == 2
    for d, d8, d32 in zip(got, a8, a32):
        _same(d, d8 if d.source == "centerface" else d32)
    # int8 ran once, on the 800 px main pass; every other pass ran fp32
    assert [s for p, s in seen if p == "int8"] == [(800, 800)]
    assert {(307, 307), (461, 461)} <= {s for p, s in seen if p == "fp32"}  # the big-face passes (and zoom tiles)
    assert not np.array_equal(a8[0].score, a32[0].score)  # the two precisions differ: the test can tell them apart


def test_precision_fp32_or_int8_is_one_precision_for_every_pass(astronaut):
    """``--dp precision=fp32`` is the way back from a mixed setting: every pass fp32, no int8 session loaded."""
    from faceveil.detect.multiscale import PASSES

    for precision in ("fp32", "int8"):
        det = _detector(precision=precision, int8_passes=("main", "big"))
        assert {det.pass_precision(k) for k in PASSES} == {precision}
        det.detect(astronaut)
        assert det._other is None and det.cf.params.precision == precision
    det = _detector(precision="mixed", int8_passes=("zoom", "big", "coarse"))
    assert [det.pass_precision(k) for k in PASSES] == ["fp32", "int8", "int8", "int8", "fp32"]
    assert det._other is None  # the int8 session waits for the first pass that needs it
    det.detect(astronaut)
    assert det._other is not None and det._other.params.precision == "int8"


@pytest.mark.parametrize("params, message", [
    ({"precision": "int4"}, "precision must be one of"),
    ({"precision": "mixed", "int8_passes": ("main", "flip")}, "int8_passes must be among"),
])
def test_bad_mixed_settings_are_refused(params, message):
    from faceveil.detect.multiscale import MultiScale

    with pytest.raises(ValueError, match=message):
        MultiScale.Params(**params)


@pytest.mark.slow
@pytest.mark.parametrize("parts", [
    None,  # the astronaut
    ("facemask", "images", "maksssksksss1.jpg"),
    ("facemask", "images", "maksssksksss100.jpg"),
    ("facemask", "images", "maksssksksss200.jpg"),
    ("facemask", "images", "maksssksksss300.jpg"),
    ("widerface-val", "images", "0--Parade", "0_Parade_Parade_0_102.jpg"),
])
def test_int8_big_face_passes_find_the_faces_fp32_finds(parts, astronaut):
    """``--dp precision=mixed`` (big-face passes int8) against the default, every pass fp32: the same faces, boxes
    a few pixels apart (the big-face passes box the large faces of enlarged photos; their int8 boxes move a little)."""
    from faceveil.detections import box_iou
    from faceveil.io.images import read_rgb

    from conftest import shared_path

    image = astronaut if parts is None else read_rgb(shared_path(*parts))
    mixed, fp32 = _detector(precision="mixed", int8_passes=("big",)), _detector()
    assert mixed.pass_precision("big") == "int8" and fp32.pass_precision("big") == "fp32"
    a, b = mixed.detect(image), fp32.detect(image)
    assert len(a) and abs(len(a) - len(b)) <= max(1, len(b) // 20)
    worst = 0.0
    for x, y in ((a, b), (b, a)):
        for box, score in zip(x.xyxy, x.score):
            if score < 0.5:
                continue  # a clear face
            j = int(np.argmax(box_iou(box[None], y.xyxy)[0]))
            size = float(max(box[2] - box[0], box[3] - box[1]))
            dist = float(np.abs(y.xyxy[j] - box).max())
            worst = max(worst, dist / max(4.0, 0.06 * size))
            assert dist <= max(4.0, 0.06 * size), (box, y.xyxy[j], size)
    print(f"{len(a)} / {len(b)} faces, worst corner distance {worst:.2f} of the allowed")


def test_recorded_settings_carry_int8_passes_only_where_it_matters():
    """Manifests and track records (settings_of) keep int8_passes for precision=mixed, where it picks the weights,
    and leave it out elsewhere, so a run recorded before the parameter existed still resumes."""
    from faceveil.pipeline import Anonymizer, settings_of

    mixed = settings_of(Anonymizer(detector_params={"precision": "mixed"}, load_detector=False))["detector_params"]
    assert mixed["precision"] == "mixed" and tuple(mixed["int8_passes"]) == ("big",)
    for preset in ("balanced", "fast", "thorough", "video"):
        dp = settings_of(Anonymizer(preset=preset, load_detector=False))["detector_params"]
        assert dp["precision"] != "mixed" and "int8_passes" not in dp, (preset, dp)
    other = settings_of(Anonymizer(detector_params={"precision": "mixed", "int8_passes": ("main", "zoom")},
                                   load_detector=False))
    assert tuple(other["detector_params"]["int8_passes"]) == ("main", "zoom")
