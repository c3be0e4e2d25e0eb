"""Learned blur's training data split, warm start and loss switches (issue 22, the learned-blur part)."""
from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from faceveil.anonymize.learnedblur_geometry import SIZE
from faceveil.anonymize.methods.learnedblur import shipped_model_path
from faceveil.eval.splits import side

from conftest import ELLIPSE_13, centerface_path_or_skip, toy_faces_dataset, torch_or_skip


def _torch():
    return torch_or_skip()


def _centerface():
    return centerface_path_or_skip()


def _dataset(tmp_path, n=6, size=96, seed=0):
    """Noise photos named img0..img{n-1} with a skin-coloured 'face' each, and a WIDER gt.txt."""
    return toy_faces_dataset(tmp_path, n, size, seed, eyes=False)


@pytest.mark.slow
def test_training_uses_the_projects_split_by_default(tmp_path):
    """Without --split, `faceveil train learnedblur` trains on the tune side of faceveil.eval.splits only, so
    bench_learnedblur.py's held_out photos are never trained on (it used to draw its own random 20 %)."""
    _torch()
    _centerface()
    from faceveil.cli import main

    img_dir, gt = _dataset(tmp_path)
    out = tmp_path / "lb.onnx"
    rc = main(["train", "learnedblur", "--images", str(img_dir), "--labels", str(gt), "--steps", "1", "--budget", "0",
               "--batch", "2", "--input-size", "64", "-o", str(out), "-q"])
    assert rc == 0 and out.is_file()
    data = json.loads((tmp_path / "lb.onnx.json").read_text())["data"]
    names = [f"img{i}.png" for i in range(6)]
    assert data["split"] == "photo"
    assert sorted(data["train"]) == sorted(n for n in names if side(n) == "tune")
    assert sorted(data["test"]) == sorted(n for n in names if side(n) == "held_out")


def test_init_loads_onnx_weights_exactly(tmp_path):
    """--init: the torch refiner built from the shipped ONNX gives onnxruntime's residuals (so training continues
    from those weights), and a file of another architecture is refused instead of partly loaded."""
    torch = _torch()
    import onnxruntime as ort

    from faceveil.train import learnedblur as L

    ref = L.Refiner(16)
    L.load_onnx_weights(ref, shipped_model_path())
    rng = np.random.default_rng(0)
    crop = rng.uniform(0, 255, (2, 3, SIZE, SIZE)).astype(np.float32)
    prior = rng.normal(0, 20, (2, 3, SIZE, SIZE)).astype(np.float32)
    sess = ort.InferenceSession(str(shipped_model_path()), providers=["CPUExecutionProvider"])
    (want,) = sess.run(None, {"crop": crop, "prior": prior})
    with torch.no_grad():
        got = ref(torch.from_numpy(crop), torch.from_numpy(prior)).numpy()
    assert np.abs(want).max() > 1  # the shipped weights do change the blur
    np.testing.assert_allclose(got, want, atol=1e-3)
    with pytest.raises(ValueError, match="architecture"):
        L.load_onnx_weights(L.Refiner(8), shipped_model_path())


@pytest.mark.slow
def test_zero_post_and_cycl_weights_train_without_the_detector():
    """--weights 1,1,0,0: L_rev + L_oper only, the on-the-fly detector f_g is neither used nor trained, every step
    (no f_g-only tail) moves the refiner, and the same seed gives the same weights."""
    torch = _torch()
    _centerface()
    from faceveil.train import learnedblur as L

    rng = np.random.default_rng(0)
    ims, bxs = [], []
    for _ in range(3):
        img = rng.integers(0, 120, (96, 96, 3), dtype=np.uint8)
        cv2.ellipse(img, (48, 48), (16, 16), 0, 0, 360, (230, 180, 150), -1)
        ims.append(img)
        bxs.append(np.array([[32, 32, 64, 64]], np.float32))

    def run():
        cfg = L.LBConfig(budget_s=float("inf"), max_steps=3, seed=0, batch=2, input_size=64, width=16,
                         weights=(1.0, 1.0, 0.0, 0.0), cf_threshold=0.05, init=str(shipped_model_path()))
        return L.train(ims, bxs, cfg, progress=False)

    a, b = run(), run()
    assert a.steps == 3 and [r["phase"] for r in a.log] == ["warmup", "full", "full"]
    assert all(set(r) == {"step", "phase", "rev", "oper"} for r in a.log), a.log
    assert all(not p.requires_grad or p.grad is None for p in a.detector.parameters())
    sa, sb = a.refiner.state_dict(), b.refiner.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    start = L.Refiner(16)
    L.load_onnx_weights(start, shipped_model_path())
    assert not torch.equal(sa["out.weight"], start.state_dict()["out.weight"])


@pytest.mark.slow
def test_shipped_weights_operation_fidelity_on_held_out_photos():
    """Issue 22's measure (bench_learnedblur.py's): AP@0.5 of CenterFace and YuNet on the learned-blurred photos
    against their own detections on the originals, on the first 40 held_out photos of faceveil.eval.splits
    (never trained on; 40 photos, ~180 faces). The weights before were at 0.924 / 0.779 here (0.928 / 0.831 on
    all 370), the retrained ones 0.951 / 0.872 (0.952 / 0.890) at relative 1.5, strength 1; the defaults chosen
    on the tune side since (1.25, 1.25) give 0.956 / 0.905 on all 370; and each face keeps the plain blur's colour."""
    from conftest import shared_path

    from faceveil.anonymize import Compositor, RegionParams, get_method
    from faceveil.detect import get_detector
    from faceveil.detections import Detections
    from faceveil.eval.quality import lab_means
    from faceveil.train.train_on_anon import ap_overall, best_f1_threshold, load_samples

    root = shared_path("facemask")
    pytest.importorskip("yuface", reason="YuNet needs the yuface package")
    samples = load_samples(root / "images", root / "gt.txt")
    test = [s for s in samples if side(s.name) == "held_out"][:40]
    comp = Compositor(RegionParams(**ELLIPSE_13))
    from faceveil.anonymize.methods.learnedblur import LearnedBlur

    lb = get_method("learnedblur", {"threads": 1})
    gb = get_method("blur", {"relative": LearnedBlur.Params().relative})  # the blur inside it
    outs, blurs = [], []
    for s in test:
        dets = Detections.from_boxes(s.boxes, source="label")
        outs.append(lb.apply(s.image, dets, comp, np.random.default_rng(0)))
        blurs.append(gb.apply(s.image, dets, comp, np.random.default_rng(0)))
    fidelity = {}
    for name in ("centerface", "yunet"):
        det = get_detector(name, {"threshold": 0.05})
        clean = [det.detect(s.image) for s in test]
        t = best_f1_threshold(clean, [s.boxes for s in test])
        fidelity[name] = ap_overall([det.detect(o) for o in outs], [c.xyxy[c.score >= t] for c in clean])
    assert fidelity["centerface"] >= 0.94 and fidelity["yunet"] >= 0.84, fidelity
    de = np.concatenate([np.linalg.norm(lab_means(a, s.boxes) - lab_means(b, s.boxes), axis=1)
                         for s, a, b in zip(test, outs, blurs)])
    de = de[np.isfinite(de)]
    assert len(de) > 100 and (de <= 3).all(), np.percentile(de, [50, 100])
