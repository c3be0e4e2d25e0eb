"""Evaluation metrics against values computed by hand on tiny inputs."""
import math

import numpy as np
import pytest

from faceveil.eval.metrics import (CropQuality, DetectionAP, DetectionRate, Diversity, Rank1, Verification,
                                   average_precision, crop_quality, frechet_distance)
from faceveil.eval.widerface import WiderImage, evaluate
from faceveil.io.labels import read_wider


def test_eer_and_rates_of_known_scores():
    v = Verification(threshold=0.6)
    # distances: genuine small, impostor large, one of each on the wrong side
    v.update([0.1, 0.2, 0.3, 0.7], [1, 1, 1, 1])
    v.update([0.5, 0.8, 0.9, 1.0], [0, 0, 0, 0])
    r = v.compute()
    assert r["eer"] == pytest.approx(0.25)  # at t=0.5: 1 of 4 impostors accepted, 1 of 4 genuine rejected
    assert r["fmr_at_threshold"] == pytest.approx(0.25)  # 0.5 <= 0.6
    assert r["fnmr_at_threshold"] == pytest.approx(0.25)  # 0.7 > 0.6
    assert r["tar_at_far_0.001"] is None  # 4 impostors cannot resolve 1e-3
    assert r["n_genuine"] == 4 and r["n_impostor"] == 4


def test_eer_zero_when_separated_and_tar():
    v = Verification()
    v.update(np.linspace(0.1, 0.4, 10), np.ones(10))
    v.update(np.linspace(0.5, 1.5, 2000), np.zeros(2000))
    r = v.compute()
    assert r["eer"] == 0.0
    assert r["tar_at_far_0.001"] == 1.0
    # DET points go from (all accepted) to (none accepted)
    assert r["det"]["fmr"][-1] == 1.0 and r["det"]["fnmr"][-1] == 0.0


def test_tar_at_far_hand_computed():
    v = Verification(far=1e-3)
    imp = np.arange(1000) / 1000 + 0.3  # smallest impostor distance 0.3, next 0.301
    gen = np.array([0.1, 0.2, 0.3005, 0.5])
    v.update(gen, np.ones(4))
    v.update(imp, np.zeros(1000))
    r = v.compute()
    # FMR <= 1e-3 allows accepting exactly one impostor (t in [0.3, 0.301)): genuine 0.1, 0.2, 0.3005 accepted
    assert r["tar_at_far_0.001"] == pytest.approx(0.75)


def test_nan_distances_left_out():
    v = Verification()
    v.update([0.1, np.nan, 0.9], [1, 1, 0])
    assert v.compute()["n_genuine"] == 1


def test_rank1():
    r = Rank1()
    gallery = np.array([[0.0, 0.0], [10.0, 0.0]])
    probes = np.array([[1.0, 0.0], [9.0, 0.0], [4.0, 0.0]])
    r.update(gallery, ["a", "b"], probes, ["a", "b", "b"])
    assert r.compute() == {"rank1": pytest.approx(2 / 3), "n_probes": 3}


def test_average_precision_of_known_pr_curve():
    # TP, FP, TP, FP with 3 ground-truth faces: AP = 1/3 * 1 + 1/3 * 2/3
    assert average_precision([1 / 3, 1 / 3, 2 / 3, 2 / 3], [1, 0.5, 2 / 3, 0.5]) == pytest.approx(5 / 9)


def test_detection_ap_matching():
    gt = np.array([[0, 0, 10, 10], [20, 0, 30, 10], [40, 0, 50, 10]], float)
    pred = np.array([[0, 0, 10, 10], [60, 0, 70, 10], [20, 0, 30, 11], [0, 0, 10, 10]], float)
    ap = DetectionAP(0.5)
    ap.update(pred, [0.9, 0.8, 0.7, 0.6], gt)  # TP, FP, TP, duplicate (FP)
    r = ap.compute()
    assert r["ap"] == pytest.approx(5 / 9)
    assert r["n_gt"] == 3 and r["recall"] == pytest.approx(2 / 3)


def test_detection_rate_by_size():
    dr = DetectionRate(0.5, edges=(0, 20))
    ref = np.array([[0, 0, 10, 10], [0, 50, 30, 80], [100, 100, 150, 150]], float)
    hit = dr.update(ref, np.array([[0, 0, 10, 9], [100, 100, 150, 150]], float))
    assert hit.tolist() == [True, False, True]
    r = dr.compute()
    assert r["rate"] == pytest.approx(2 / 3)
    assert r["by_size"] == {"0-20": 1.0, ">=20": 0.5}


def test_crop_quality_identical_and_known():
    rng = np.random.default_rng(0)
    a = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
    q = crop_quality(a, a)
    assert q["ssim"] == pytest.approx(1.0) and q["l1"] == 0 and q["mse"] == 0 and math.isinf(q["psnr"])
    b = np.full((16, 16, 3), 10, np.uint8)
    c = np.full((16, 16, 3), 20, np.uint8)
    q = crop_quality(b, c)
    assert q["l1"] == 10 and q["mse"] == 100
    assert q["psnr"] == pytest.approx(10 * math.log10(255**2 / 100))
    cq = CropQuality()
    cq.update(a, a)
    cq.update(b, c)
    assert cq.compute()["psnr"] == pytest.approx((100 + 10 * math.log10(255**2 / 100)) / 2)  # inf capped


def test_frechet_distance():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(300, 8))
    assert frechet_distance(x, x) == pytest.approx(0.0, abs=1e-6)
    shift = np.array([3.0, 4.0] + [0.0] * 6)
    assert frechet_distance(x, x + shift) == pytest.approx(25.0, rel=1e-6)  # same covariance: |mu1-mu2|^2


def test_diversity():
    d = Diversity()
    d.update(np.array([[0.0, 0.0], [3.0, 4.0]]))
    d.update(np.array([[0.0, 0.0], [0.0, 1.0], [0.0, 2.0]]))  # pairwise 1, 2, 1
    d.update(np.array([[1.0, 1.0]]))  # one output only: ignored
    assert d.compute() == {"diversity": pytest.approx((5 + 4 / 3) / 2), "n_faces": 2}


def _wider_gt():
    boxes = np.array([[0, 0, 20, 20], [50, 0, 20, 20], [100, 0, 20, 20]], float)  # xywh
    # easy counts only face 0; hard counts faces 0 and 2; face 1 is an ignore box in both
    return {"e/img": WiderImage(boxes, {"easy": np.array([0]), "medium": np.array([0]), "hard": np.array([0, 2])})}


def test_wider_protocol_ignore_boxes():
    gt = _wider_gt()
    # a confident prediction on the ignore box, then a correct one on face 0
    pred = {"e/img": (np.array([[50, 0, 70, 20], [0, 0, 20, 20]], float), np.array([0.9, 0.5]))}
    r = evaluate(pred, gt)
    assert r["easy"]["ap"] == pytest.approx(1.0)  # the ignore-box hit is neither TP nor FP
    assert r["easy"]["n_faces"] == 1
    assert r["hard"]["ap"] == pytest.approx(0.5)  # face 2 never found
    # a false positive on background scoring highest halves precision at full recall
    pred = {"e/img": (np.array([[300, 300, 320, 320], [0, 0, 20, 20]], float), np.array([0.9, 0.5]))}
    assert evaluate(pred, gt)["easy"]["ap"] == pytest.approx(0.5)


def test_read_bbx_gt(tmp_path):
    p = tmp_path / "gt.txt"
    p.write_text("a/x.jpg\n2\n1 2 3 4 0 0 0 0 0 0\n5 6 7 8 0 0 0 0 0 0\na/empty.jpg\n0\n0 0 0 0 0 0 0 0 0 0\n")
    gt = read_wider(p)
    assert gt["a/x.jpg"].xywh.tolist() == [[1, 2, 3, 4], [5, 6, 7, 8]]
    assert gt["a/empty.jpg"].xywh.shape == (0, 4)


def test_wider_plus_one_pixel_convention():
    gt = {"e/img": WiderImage(np.array([[0, 0, 4, 4]], float), {s: np.array([0]) for s in ("easy", "medium", "hard")})}
    pred = {"e/img": (np.array([[0, 0, 2, 3.5]]), np.array([0.9]))}
    # inclusive pixels: 3 x 4.5 of 5 x 5 -> IoU 0.54 (a hit); continuous: 2 x 3.5 of 4 x 4 -> 0.44 (a miss)
    assert evaluate(pred, gt)["hard"]["ap"] == pytest.approx(1.0)
    assert evaluate(pred, gt, plus_one=False)["hard"]["ap"] == pytest.approx(0.0)


def test_lab_means_match_reference_colours():
    from faceveil.eval.quality import lab_means

    img = np.zeros((20, 40, 3), np.uint8)
    img[:, :20] = (255, 0, 0)  # sRGB red: CIE Lab (53.2, 80.1, 67.2)
    img[:, 20:] = (128, 128, 128)  # mid grey: L 53.6, a = b = 0
    m = lab_means(img, np.array([[0, 0, 20, 20], [20, 0, 40, 20], [50, 50, 60, 60]]))
    assert np.allclose(m[0], [53.2, 80.1, 67.2], atol=1.0), m[0]
    assert np.allclose(m[1], [53.6, 0, 0], atol=0.6), m[1]
    assert np.isnan(m[2]).all()  # wholly outside the image
