"""Learned blur: the onnxruntime method, the torch training path (skipped without torch), the shipped weights."""
from __future__ import annotations

import numpy as np
import pytest

from faceveil.anonymize import Compositor, RegionParams, get_method
from faceveil.anonymize.learnedblur_geometry import SIZE, crop_rect, extract, face_priors, residual_mask
from faceveil.anonymize.methods.learnedblur import LearnedBlur, shipped_model_path
from faceveil.detections import Detections

from conftest import ELLIPSE_13, centerface_path_or_skip, shared_path, torch_or_skip, toy_faces_dataset

ELLIPSE = Compositor(RegionParams(**ELLIPSE_13))

INNER = LearnedBlur.Params().relative  # the Gaussian blur inside learnedblur
FACES = Detections.from_boxes([[60, 40, 100, 90], [150, 100, 170, 124], [2, 2, 5, 5]], [0.9, 0.8, 0.7])


def _torch():
    return torch_or_skip()


def _centerface_path():
    return centerface_path_or_skip()


def _faces_dataset(tmp_path, n=4, size=96, seed=0):
    """Noise images with skin-coloured elliptical 'faces' with dark eyes, and a WIDER gt.txt."""
    return toy_faces_dataset(tmp_path, n, size, seed)


# geometry and the method (no torch) ------------------------------------------------------

def test_geometry_crop_rect_and_mask():
    assert crop_rect([10, 20, 30, 60]) == (0, 0, 40, 80)  # centre (20, 40), twice the box each way
    m = residual_mask()
    assert m.shape == (SIZE, SIZE) and m[SIZE // 2, SIZE // 2] == 1.0
    assert m[0, 0] == 0 and m[0, SIZE // 2] == 0  # zero outside the 1.3x ellipse (radius 0.65 of the half side)
    frame = np.arange(5 * 6 * 3, dtype=np.uint8).reshape(5, 6, 3)
    e = extract(frame, (-1, 3, 2, 7))
    assert e.shape == (4, 3, 3) and not e[:, 0].any() and not e[2:].any()
    assert np.array_equal(e[:2, 1:], frame[3:5, 0:2])


def test_face_priors_are_bank_faces_lost_detail():
    """What g adds before the network: a detail layer (zero-mean), eyes dark, nose bridge bright, on the box's grid."""
    ps = face_priors()
    assert ps.shape == (22, SIZE, SIZE, 3) and ps.dtype == np.float32 and np.array_equal(ps, face_priors())
    g = ps.mean(axis=(0, 3))  # their average
    assert abs(float(g.mean())) < 1.0
    # the bank's eyes (x 46 / 82, y 50 of 128) land at (25, 27) and (39, 27) of the 64 px crop
    assert g[27, 25] < -20 and g[27, 39] < -20 and g[32, 32] > 10
    assert (ps.mean(axis=3)[:, 27, 25] < 0).all()  # every one has a dark eye there
    assert min(np.abs(ps[i] - ps[j]).mean() for i in range(5) for j in range(i)) > 3  # different faces


def test_tracked_faces_keep_their_prior_untracked_draw_with_the_seed():
    m = get_method("learnedblur")
    assert m.takes_prior
    tracked = Detections(FACES.xyxy, FACES.score, None, np.array([5, 5, 30]))
    regions = ELLIPSE.regions(FACES, (120, 160))
    for seed in range(3):
        assert list(m.choose_priors(tracked, regions, np.random.default_rng(seed))) == [5, 5, 8]
    a = [tuple(m.choose_priors(FACES, regions, np.random.default_rng(s))) for s in range(4)]
    assert a[0] == tuple(m.choose_priors(FACES, regions, np.random.default_rng(0))) and len(set(a)) > 1


@pytest.mark.parametrize("shape", ["ellipse", "box"])
def test_pixels_outside_regions_unchanged(shape, noise_image):
    before = noise_image.copy()
    comp = Compositor(RegionParams(shape=shape, feather=0.2))
    out = get_method("learnedblur").apply(noise_image, FACES, comp, np.random.default_rng(0))
    assert np.array_equal(noise_image, before), "input must not be modified"
    mask = comp.mask(FACES, noise_image.shape)
    changed = (out != noise_image).any(axis=2)
    assert not changed[mask == 0].any(), "a pixel outside the regions changed"
    assert changed[mask == 1].mean() > 0.9


def test_refinement_stays_near_gaussian_blur(noise_image):
    """Same kernel as blur; the refiner's change is bounded (trained with L_rev's budget of 20)."""
    comp = ELLIPSE
    lb = get_method("learnedblur").apply(noise_image, FACES[:1], comp, np.random.default_rng(0))
    gb = get_method("blur", {"relative": INNER}).apply(noise_image, FACES[:1], comp, np.random.default_rng(0))
    x1, y1, x2, y2 = FACES.xyxy[0].astype(int)
    d = np.abs(lb[y1:y2, x1:x2].astype(float) - gb[y1:y2, x1:x2]).mean()
    assert 0 < d < 30


def test_strength_scales_the_residual_and_keeps_the_colour(noise_image):
    """strength 0 is the plain blur, byte for byte; strength s adds s times the residual (to rounding where nothing
    clips), so a larger gain moves further from the blur; the face's mean colour stays within Delta-E 3 of it."""
    from faceveil.eval.quality import lab_means

    comp, faces = ELLIPSE, FACES[:1]  # a face wholly inside the image (the zero mean holds under the crop)
    gb = get_method("blur", {"relative": INNER}).apply(noise_image, faces, comp, np.random.default_rng(0))
    out = {s: get_method("learnedblur", {"strength": s}).apply(noise_image, faces, comp, np.random.default_rng(0))
           for s in (0.0, 1.0, 2.0)}
    assert np.array_equal(out[0.0], gb)
    x1, y1, x2, y2 = faces.xyxy[0].astype(int)
    d = {s: o[y1:y2, x1:x2].astype(float) - gb[y1:y2, x1:x2] for s, o in out.items()}
    inside = (out[2.0][y1:y2, x1:x2] > 0) & (out[2.0][y1:y2, x1:x2] < 255)  # not clipped
    assert np.abs(d[2.0] - 2 * d[1.0])[inside].max() <= 1.5  # each output rounds once: |error| <= 0.5 + 2 * 0.5
    assert 0 < np.abs(d[1.0]).mean() < np.abs(d[2.0]).mean()
    for s in (1.0, 2.0):  # zero-mean in RGB; Lab's L is not linear in it, hence a small shift, growing with s
        assert np.linalg.norm(lab_means(out[s], faces.xyxy) - lab_means(gb, faces.xyxy), axis=1).max() <= 3
    from faceveil.errors import UsageError

    with pytest.raises(UsageError, match="strength must be in"):
        get_method("learnedblur", {"strength": -1})


def test_missing_model_is_a_usage_error(tmp_path):
    from faceveil.errors import UsageError  # a file the user named that is not there: exit 2

    with pytest.raises(UsageError, match="none.onnx: learned-blur model file not found"):
        get_method("learnedblur", {"model": str(tmp_path / "none.onnx")})


# torch parts ------------------------------------------------------------------------------

def test_refiner_starts_at_the_scaled_prior():
    """Before any step, g = blur + 0.5 * the face's prior under the residual mask, whatever the face behind the blur
    (unconstrained graph; the default one adds the grey, high-passed, zero-mean part of it: test_learnedblur_look)."""
    torch = _torch()
    from faceveil.train import learnedblur as L

    r = L.Refiner(prior_scale=0.5, structure_only=False)
    ps = face_priors()[[3, 7]]
    a = r(torch.rand(2, 3, SIZE, SIZE) * 255, torch.from_numpy(ps).permute(0, 3, 1, 2))
    for i in range(2):
        expected = torch.from_numpy(0.5 * ps[i] * residual_mask()[..., None]).permute(2, 0, 1)
        assert torch.allclose(a[i], expected, atol=1e-4)


def test_centerface_torch_walker_matches_onnxruntime():
    torch = _torch()
    from faceveil.detect.centerface import CenterFace
    from faceveil.train.onnx_torch import TorchCenterFace

    path = _centerface_path()
    img = np.random.default_rng(0).integers(0, 255, (64, 96, 3), dtype=np.uint8)
    x = torch.from_numpy(img).permute(2, 0, 1)[None].float()
    with torch.no_grad():
        got = TorchCenterFace(path).raw(x)
    cf = CenterFace()
    want = cf.session.run(None, {"input.1": x.numpy()})
    names = TorchCenterFace(path).graph.output_names
    for name, w in zip(names, want):
        np.testing.assert_allclose(got[name].numpy(), w, atol=1e-4, rtol=0)


def test_refiner_onnx_matches_torch_and_method_path(tmp_path, noise_image):
    torch = _torch()
    from faceveil.train import learnedblur as L

    torch.manual_seed(0)
    ref = L.Refiner(8)
    torch.nn.init.normal_(ref.out.weight, std=0.5)  # zero-initialised otherwise: nothing to compare
    ref.eval()
    L.export_onnx(ref, tmp_path / "r.onnx")
    import onnxruntime as ort

    x = torch.rand(3, 3, SIZE, SIZE) * 255
    priors = torch.from_numpy(face_priors(relative=1.5)).permute(0, 3, 1, 2).contiguous()  # training's default
    pr = priors[[0, 4, 9]]
    (got,) = ort.InferenceSession(str(tmp_path / "r.onnx")).run(None, {"crop": x.numpy(), "prior": pr.numpy()})
    with torch.no_grad():
        np.testing.assert_allclose(got, ref(x, pr).numpy(), atol=1e-3)
    # The method (numpy + onnxruntime) and the training path (torch) produce the same image.
    comp = ELLIPSE
    # both faces tracked as one: the method keeps prior 4 for them (each untracked face draws from its own stream,
    # base.face_rngs, where training draws them in turn), the torch path is given that one prior
    dets = Detections(FACES.xyxy[:2], FACES.score[:2], None, np.array([4, 4]))
    out = get_method("learnedblur", {"model": str(tmp_path / "r.onnx"), "relative": 1.5, "strength": 1.0}).apply(
        noise_image, dets, comp, np.random.default_rng(0))  # the torch path: the training kernel, gain 1
    g0 = get_method("blur", {"relative": 1.5}).apply(noise_image, dets, comp, np.random.default_rng(0))
    t = lambda a: torch.from_numpy(np.ascontiguousarray(a)).permute(2, 0, 1)[None].float()  # noqa: E731
    mask = comp.mask(dets, noise_image.shape)
    with torch.no_grad():
        y = L.refine(ref, t(g0), [dets.xyxy], torch.from_numpy(mask)[None, None], priors=priors[[4]],
                     rng=np.random.default_rng(0))[0].permute(1, 2, 0).numpy()
    assert np.abs(y - out).max() <= 1.0  # uint8 rounding of the crop and the result
    assert np.abs(out.astype(float) - g0).max() > 2  # and the refiner did change something


def test_l_rev_hinge_zero_inside_budget():
    torch = _torch()
    from faceveil.train.learnedblur import l_rev

    g0 = torch.full((1, 3, 20, 20), 100.0)
    boxes = [np.array([[0, 0, 10, 10]], np.float32)]
    y = g0.clone()
    y[:, :, :10, :10] += 19.0  # mean |diff| 19 inside the box: within epsilon 20
    y[:, :, 15:, 15:] += 200.0  # outside every box: not counted
    assert float(l_rev(y, g0, boxes, 20.0)) == 0.0
    y[:, :, :5, :10] += 8.0  # half the box now 27 off: mean 23 -> hinge 3
    assert float(l_rev(y, g0, boxes, 20.0)) == pytest.approx(3.0)


def test_l_colour_counts_only_the_colour_of_the_change():
    torch = _torch()
    from faceveil.train.learnedblur import l_colour

    g0 = torch.full((1, 3, 20, 20), 100.0)
    boxes = [np.array([[0, 0, 10, 10]], np.float32)]
    y = g0.clone()
    y[:, :, :10, :10] += 40.0  # a grey change, however large, has no colour
    assert float(l_colour(y, g0, boxes, 3.0)) == 0.0
    y[:, 0, :10, :10] += 9.0  # red +9: channel mean +3, |d - mean| = 6, 3, 3 -> 4 per pixel
    assert float(l_colour(y, g0, boxes, 3.0)) == pytest.approx(1.0)
    assert float(l_colour(y, g0, boxes, 4.0)) == 0.0
    y[:, 2, 15:, 15:] += 90.0  # outside every box: not counted
    assert float(l_colour(y, g0, boxes, 3.0)) == pytest.approx(1.0)


def test_l_cycl_gradients_reach_the_refiner():
    torch = _torch()
    from faceveil.train import detector as D
    from faceveil.train import learnedblur as L

    torch.manual_seed(0)
    ref, fg = L.Refiner(8), D.CompactFaceNet(4)
    torch.nn.init.normal_(ref.out.weight, std=0.01)
    x = torch.rand(2, 3, 64, 64) * 255
    boxes = [np.array([[16, 16, 48, 48]], np.float32)] * 2
    region = torch.ones(2, 1, 64, 64)
    y = L.refine(ref, x, boxes, region)
    tg = D.targets_from_boxes(boxes, 64, 64)
    loss = L.l_cycl(fg, y, x, tg, tg, inner_lr=0.1)
    loss.backward(inputs=list(ref.parameters()))
    grads = [p.grad for p in ref.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    assert ref.e1[0].weight.grad.abs().sum() > 0 and ref.out.weight.grad.abs().sum() > 0


@pytest.mark.slow
def test_targets_from_a_batched_torch_forward_are_the_onnx_detectors_boxes(astronaut):
    """cf_targets="torch" (a GPU run's default): CenterFace's boxes on the clean crops from one batched forward of
    the torch copy are the boxes onnxruntime finds crop by crop (the same weights and decoding), also for a crop
    size that needs padding to a multiple of 32; the data threads then leave CenterFace out."""
    torch = _torch()
    _centerface_path()
    import cv2

    from faceveil.detect.centerface import CenterFace
    from faceveil.detections import nms
    from faceveil.train import learnedblur as L
    from faceveil.train.onnx_torch import TorchCenterFace

    crops = [astronaut[0:320, 60:380], cv2.resize(astronaut, (144, 144), interpolation=cv2.INTER_AREA)[:, ::-1]]
    cf, tcf = CenterFace(), TorchCenterFace()
    for img in crops:
        want = nms(cf.detect_raw(np.ascontiguousarray(img), 0.4), 0.3).xyxy
        x = torch.from_numpy(np.stack([np.ascontiguousarray(img)] * 2)).permute(0, 3, 1, 2).float()
        got = L.cf_boxes(tcf, x, 0.4)
        assert len(want) == 1  # the astronaut's face
        for g in got:
            np.testing.assert_allclose(g, want, atol=0.01)
    assert L.cf_on_device(L.LBConfig(device="cuda")) and not L.cf_on_device(L.LBConfig())
    assert L.cf_on_device(L.LBConfig(cf_targets="torch"))
    with pytest.raises(ValueError):
        L.cf_on_device(L.LBConfig(cf_targets="gpu"))
    data = L._Data([astronaut], [np.array([[180, 58, 270, 178]], np.float32)], L.LBConfig(batch=2, cf_targets="torch"))
    assert data.cf is None and data.one(0, 0)[4] is None


@pytest.mark.slow
def test_same_seed_same_weights_and_cli_export_loads(tmp_path, noise_image):
    torch = _torch()
    _centerface_path()
    from faceveil.cli import main
    from faceveil.train import learnedblur as L
    from faceveil.train.train_on_anon import load_samples

    img_dir, gt = _faces_dataset(tmp_path)
    samples = load_samples(img_dir, gt)
    ims, bxs = [s.image for s in samples], [s.boxes for s in samples]

    def run(seed):
        cfg = L.LBConfig(budget_s=float("inf"), max_steps=2, seed=seed, batch=2, input_size=64, width=4,
                         det_width=4, warmup=0.4, det_only=0.0, cf_threshold=0.05)
        return L.train(ims, bxs, cfg, progress=False)

    a, b = run(0), run(0)
    sa, sb = a.refiner.state_dict(), b.refiner.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    # the targets from the torch copy in the loop (a GPU run's way) train the same loop, seeded alike
    c, d = (L.train(ims, bxs, L.LBConfig(budget_s=float("inf"), max_steps=2, seed=0, batch=2, input_size=64, width=4,
                                         det_width=4, warmup=0.4, det_only=0.0, cf_threshold=0.05,
                                         cf_targets="torch"), progress=False) for _ in range(2))
    sc, sd = c.refiner.state_dict(), d.refiner.state_dict()
    assert c.steps == 2 and all(torch.equal(sc[k], sd[k]) for k in sc)
    torch.manual_seed(0)  # the weights train() starts from under seed 0: training must have moved them
    s0 = L.Refiner(4).state_dict()
    assert not all(torch.equal(sa[k], s0[k]) for k in sa)
    assert a.steps == 2 and [r["phase"] for r in a.log] == ["warmup", "full"] and "cycl" in a.log[1]

    out = tmp_path / "lb.onnx"
    rc = main(["train", "learnedblur", "--images", str(img_dir), "--labels", str(gt), "--steps", "2", "--budget", "0",
               "--batch", "2", "--input-size", "64", "--split", "fraction", "--test-fraction", "0.25", "-o", str(out),
               "--data-threads", "3", "-q"])
    assert rc == 0 and out.is_file() and (tmp_path / "lb.onnx.json").is_file()
    import json

    card = json.loads((tmp_path / "lb.onnx.json").read_text())
    assert card["steps"] == 2 and len(card["data"]["test"]) == 1 and card["data"]["test"][0] not in card["data"]["train"]
    assert card["config"]["threads"] == 3  # --data-threads, recorded in the card
    assert card["config"]["cf_targets"] == "auto"  # onnxruntime per crop on the CPU, the torch copy on a GPU
    res = get_method("learnedblur", {"model": str(out)}).apply(noise_image, FACES, ELLIPSE, np.random.default_rng(0))
    assert res.shape == noise_image.shape and (res != noise_image).any()


# the shipped weights on a real photo ----------------------------------------------------------

def test_shipped_weights_on_real_photo():
    from faceveil.io.images import read_rgb
    from faceveil.train.train_on_anon import read_wider_gt

    assert shipped_model_path().is_file() and shipped_model_path().stat().st_size < 5_000_000
    root = shared_path("facemask")
    gt = read_wider_gt(root / "gt.txt")
    name = "maksssksksss1.jpg"  # a street scene, 9 faces of 20-40 px
    img = read_rgb(root / "images" / name)
    dets = Detections.from_boxes(gt[name], source="label")
    comp = ELLIPSE
    out = get_method("learnedblur").apply(img, dets, comp, np.random.default_rng(0))
    blur = get_method("blur", {"relative": INNER}).apply(img, dets, comp, np.random.default_rng(0))
    mask = comp.mask(dets, img.shape)
    assert np.array_equal(out[mask == 0], img[mask == 0])
    assert (out != blur).any()
    # L_rev's budget (epsilon 20 on 0..255) keeps the refined faces near the Gaussian blur.
    h, w = img.shape[:2]
    for x1, y1, x2, y2 in np.round(gt[name]).astype(int):
        x1, y1, x2, y2 = max(x1, 0), max(y1, 0), min(x2, w), min(y2, h)
        assert np.abs(out[y1:y2, x1:x2].astype(float) - blur[y1:y2, x1:x2]).mean() < 25


def _found(dets: Detections, boxes: np.ndarray) -> int:
    """Labelled faces with a detection at IoU >= 0.3."""
    if not len(dets):
        return 0
    from faceveil.detections import box_iou

    return int((box_iou(boxes, dets.xyxy).max(axis=1) >= 0.3).sum())


def test_shipped_weights_keep_faces_detectable_on_held_out_photos():
    """DartBlur's point: CenterFace loses most faces to a plain Gaussian blur and finds them again after learnedblur.

    Held-out photos of the facemask split (never trained on), 28 labelled faces."""
    from faceveil.detect import get_detector
    from faceveil.io.images import read_rgb
    from faceveil.train.train_on_anon import read_wider_gt

    root = shared_path("facemask")
    gt = read_wider_gt(root / "gt.txt")
    cf = get_detector("centerface", {"threshold": 0.3})
    comp = ELLIPSE
    lb, gb = get_method("learnedblur"), get_method("blur", {"relative": INNER})  # the same kernel
    counts = np.zeros(3, int)
    for name in ("maksssksksss115.jpg", "maksssksksss204.jpg", "maksssksksss21.jpg", "maksssksksss254.jpg"):
        img, boxes = read_rgb(root / "images" / name), gt[name]
        dets = Detections.from_boxes(boxes, source="label")
        counts += [_found(cf.detect(x), boxes) for x in
                   (img, gb.apply(img, dets, comp, np.random.default_rng(0)), lb.apply(img, dets, comp, np.random.default_rng(0)))]
    clean, blurred, learned = counts
    assert blurred <= clean - 10, counts  # the Gaussian blur hides most faces from the detector ...
    assert learned >= clean - 2, counts  # ... the learned blur gives them back


# `faceveil train learnedblur`: refusals before any work, what is written --------------------------------------------

def _lb_cli(tmp_path, monkeypatch, *args, train=None):
    """Run `faceveil train learnedblur` on a toy set with L.train replaced by ``train`` (default: refuse to be
    called, so a refusal is proved to come before any training); (exit code, images folder, labels)."""
    _torch()
    from faceveil.cli import main
    from faceveil.train import learnedblur as L

    img_dir, gt = (tmp_path / "images", tmp_path / "gt.txt") if (tmp_path / "gt.txt").exists() else _faces_dataset(
        tmp_path)

    def refuse(*a, **k):
        raise AssertionError("training started")

    monkeypatch.setattr(L, "train", train or refuse)
    argv = ["train", "learnedblur", "--images", str(img_dir), "--labels", str(gt), "--steps", "1", "--budget", "0",
            "--split", "fraction", "-q", *args]
    try:
        return main(argv), img_dir, gt
    except SystemExit as exc:  # argparse's refusals
        return exc.code, img_dir, gt


def _untrained(nan=False):
    """An L.train stand-in: an untrained refiner (its weights NaN with ``nan``), as a diverged run gives."""
    import torch

    from faceveil.train import learnedblur as L

    def fake(images, boxes, cfg, progress=True):
        ref = L.Refiner(cfg.width, cfg.prior)
        if nan:
            with torch.no_grad():
                ref.out.bias.fill_(float("nan"))
        return L.LBResult(ref, None, 1, 0.1, [{"step": 0, "rev": float("nan")}])

    return fake


@pytest.mark.parametrize("target", ["photo", "labels", "empty", "folder", "existing", "existing card"])
def test_train_learnedblur_refuses_an_output_over_its_inputs_or_an_existing_file(tmp_path, monkeypatch, capsys,
                                                                                target):
    """Before, -o a photo or the labels replaced them with ONNX bytes, an existing model (or its card) was replaced
    without --overwrite, and -o "" or a folder failed with a traceback after the whole run."""
    img_dir, gt = _faces_dataset(tmp_path)
    (tmp_path / "keep.onnx").write_bytes(b"keep")
    (tmp_path / "card.onnx.json").write_bytes(b"card")
    out = {"photo": img_dir / "img0.png", "labels": gt, "empty": "", "folder": tmp_path,
           "existing": tmp_path / "keep.onnx", "existing card": tmp_path / "card.onnx"}[target]
    before = {p: p.read_bytes() for p in [*img_dir.iterdir(), gt, tmp_path / "keep.onnx", tmp_path / "card.onnx.json"]}
    capsys.readouterr()
    rc, _, _ = _lb_cli(tmp_path, monkeypatch, "-o", str(out))
    err = capsys.readouterr().err
    assert rc == 2 and err.count("\n") == 1 and err.startswith("faceveil: error: ")
    assert {p: p.read_bytes() for p in before} == before
    if target == "existing":  # --overwrite replaces it
        assert _lb_cli(tmp_path, monkeypatch, "-o", str(out), "--overwrite", train=_untrained())[0] == 0
        assert out.read_bytes()[:4] != b"keep"


@pytest.mark.parametrize("args", [["--lr", "inf"], ["--lr", "nan"], ["--steps", "-1"], ["--max-images", "-1"],
                                  ["--weights", "nan,1,0,0"], ["--weights", "0,0,0,0"], ["--batch", "0"],
                                  ["--input-size", "-32"], ["--relative", "nan"], ["--relative", "0"],
                                  ["--kernel", "-5"], ["--torch-threads", "-1"], ["--torch-threads", "100000"],
                                  ["--epsilon", "inf"], ["--scale", "1,inf"],
                                  ["--device", "bogus"], ["--split-seed", "-1"], ["--init", "TEXT"],
                                  ["--init", "CENTERFACE"], ["--extra-images", "MISSING"], ["--labels", "NOFACES"]])
def test_train_learnedblur_refuses_bad_values_before_any_work(tmp_path, monkeypatch, capsys, args):
    """Before: --lr inf exported NaN weights, --steps -1 --budget 0 never stopped, --max-images -1 dropped a photo,
    --weights nan/0,0,0,0 and labels without a face trained nothing, --extra-images of a missing folder was skipped
    without a word, and the rest failed with a traceback (exit 1)."""
    _faces_dataset(tmp_path)
    (tmp_path / "text.onnx").write_text("not a model")
    (tmp_path / "nofaces.txt").write_text("img0.png\n0\nimg1.png\n0\nimg2.png\n0\nimg3.png\n0\n")
    subst = {"TEXT": str(tmp_path / "text.onnx"), "CENTERFACE": str(_centerface_path()),
             "MISSING": str(tmp_path / "missing"), "NOFACES": str(tmp_path / "nofaces.txt")}
    capsys.readouterr()
    rc, _, _ = _lb_cli(tmp_path, monkeypatch, "-o", str(tmp_path / "m.onnx"), *[subst.get(a, a) for a in args])
    err = capsys.readouterr().err
    assert rc == 2 and err.count("\n") == 1 and err.startswith("faceveil: error: "), err
    assert not (tmp_path / "m.onnx").exists()


def test_train_learnedblur_refuses_extra_images_it_cannot_read(tmp_path, monkeypatch, capsys):
    """An --extra-images folder that cannot be read (chmod 000) was a traceback once the labelled photos were loaded:
    now one line naming it, exit 2, before any work."""
    from conftest import unreadable_folders

    _faces_dataset(tmp_path)
    locked = tmp_path / "locked"
    locked.mkdir()
    unreadable_folders(monkeypatch, "locked")
    capsys.readouterr()
    rc, _, _ = _lb_cli(tmp_path, monkeypatch, "-o", str(tmp_path / "m.onnx"), "--extra-images", str(locked))
    err = capsys.readouterr().err
    assert rc == 2 and err == f"faceveil: error: {locked}: cannot read the folder (Permission denied)\n", err
    assert not (tmp_path / "m.onnx").exists()


def test_train_learnedblur_writes_model_and_strict_card_or_neither(tmp_path, monkeypatch, capsys):
    """Diverged weights (NaN) are not exported (exit 1, nothing written; before: 151,411 NaN weights shipped); a
    failed card write leaves no model (before: the model stayed, exit 1); a killed run's temporary is removed by
    the next; the card is strict JSON (before: Infinity, NaN); no exporter warnings."""
    import json
    import warnings

    from faceveil.errors import FaceveilError
    from faceveil.train import learnedblur as L

    out = tmp_path / "m.onnx"
    assert _lb_cli(tmp_path, monkeypatch, "-o", str(out), train=_untrained(nan=True))[0] == 1
    assert "NaN or infinite" in capsys.readouterr().err and not list(tmp_path.glob("m.onnx*"))

    def broken_card(*a, **k):
        raise FaceveilError("card: cannot write")

    with monkeypatch.context() as m:
        m.setattr(L, "write_card", broken_card)
        assert _lb_cli(tmp_path, monkeypatch, "-o", str(out), train=_untrained())[0] == 1
    assert not list(tmp_path.glob("*m.onnx*"))

    stale = tmp_path / ".m.onnx.faceveil.999999999.abcdefgh.tmp.onnx"  # a SIGKILLed export's (no such pid)
    stale.write_bytes(b"half")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert _lb_cli(tmp_path, monkeypatch, "-o", str(out), train=_untrained())[0] == 0
    assert not [w for w in caught if "onnx" in str(w.filename)], [str(w.message) for w in caught]
    assert not stale.exists() and out.is_file()
    card = json.loads((tmp_path / "m.onnx.json").read_text(), parse_constant=lambda c: pytest.fail(c))
    assert card["config"]["colour_epsilon"] is None and card["log"][0]["rev"] is None


def test_learnedblur_model_with_non_finite_output_fails_the_file_closed(tmp_path, noise_image):
    """A diverged model's NaN residual was cast to black (a numpy warning) and the file written, exit 0."""
    import onnx
    from onnx import numpy_helper

    from faceveil.errors import ModelError

    model = onnx.load(str(shipped_model_path()))
    for t in model.graph.initializer:
        if t.name == "out.bias":
            t.CopyFrom(numpy_helper.from_array(np.full(numpy_helper.to_array(t).shape, np.nan, np.float32), t.name))
    onnx.save(model, str(tmp_path / "nan.onnx"))
    method = get_method("learnedblur", {"model": str(tmp_path / "nan.onnx")})
    with pytest.raises(ModelError, match="NaN or infinite"):
        method.apply(noise_image, FACES, ELLIPSE, np.random.default_rng(0))


def test_train_warns_on_evaluation_only_data_and_needs_torch_as_usage(tmp_path, monkeypatch, capsys):
    """LFW and WIDER FACE (by name or layout) are for evaluation only: a warning line (before: no word); both train
    commands say so in --help; an unreadable extra photo is named (before: skipped without a word); without torch
    both exit 2 (learnedblur exited 1)."""
    import sys

    from faceveil.cli import main
    from faceveil.cli.train import evaluation_only

    for rel in ["lfw/A_B/A_B_0001.jpg", "data/Jo_Doe/Jo_Doe_0001.jpg", "flat/Abdullah_Gul_0002.jpg",
                "w/images/0--Parade/0_Parade_1.jpg", "w/gt/wider_face_val_bbx_gt.txt", "ok/IMG_0001.jpg",
                "ok2/photo.jpg"]:
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_bytes(b"x")
    want = {"lfw": "LFW", "data": "LFW", "flat": "LFW", "w/images": "WIDER FACE", "w/gt/wider_face_val_bbx_gt.txt":
            "WIDER FACE", "ok": None, "ok2": None}
    assert {k: evaluation_only(tmp_path / k) for k in want} == want
    (tmp_path / "run").mkdir()
    _faces_dataset(tmp_path / "run")
    capsys.readouterr()
    rc, _, _ = _lb_cli(tmp_path / "run", monkeypatch, "-o", str(tmp_path / "m.onnx"), "--extra-images",
                       str(tmp_path / "data"), train=_untrained())
    err = capsys.readouterr().err
    assert rc == 0 and "data: looks like LFW, licensed for evaluation only" in err
    assert f"warning: skipped {tmp_path / 'data/Jo_Doe/Jo_Doe_0001.jpg'}" not in err  # not in the folder itself
    rc, _, _ = _lb_cli(tmp_path / "run", monkeypatch, "-o", str(tmp_path / "m2.onnx"), "--extra-images",
                       str(tmp_path / "data/Jo_Doe"), train=_untrained())
    assert rc == 0 and f"warning: skipped {tmp_path / 'data/Jo_Doe/Jo_Doe_0001.jpg'}: " in capsys.readouterr().err
    for cmd in ("learnedblur", "harmonizer"):
        with pytest.raises(SystemExit):
            main(["train", cmd, "--help"])
        assert "LFW and WIDER FACE are for evaluation only" in " ".join(capsys.readouterr().out.split())
    monkeypatch.setitem(sys.modules, "torch", None)
    for cmd in (["learnedblur", "--labels", "gt.txt"], ["harmonizer"]):
        assert main(["train", *cmd, "--images", str(tmp_path), "-o", str(tmp_path / "x.onnx")]) == 2


def test_train_learnedblur_with_a_missing_labels_file_is_bad_usage(tmp_path, capsys):
    """A missing --labels said "nope.txt: no such label file" with exit 1, as if a file had failed, where a missing
    --images (and eval train's missing --labels) is bad usage, exit 2. Now exit 2, one line, nothing written."""
    _torch()
    from faceveil.cli import main

    (tmp_path / "imgs").mkdir()
    rc = main(["train", "learnedblur", "--images", str(tmp_path / "imgs"), "--labels", str(tmp_path / "nope.txt"),
               "-o", str(tmp_path / "m.onnx"), "--steps", "1", "-q"])
    assert (rc, capsys.readouterr().err) == (2, f"faceveil: error: {tmp_path / 'nope.txt'}: no such --labels file\n")
    assert not (tmp_path / "m.onnx").exists()


def test_train_learnedblur_with_coco_or_csv_labels_is_bad_usage(tmp_path, capsys):
    """train learnedblur (and eval train) read WIDER's txt only: a COCO .json was read as one and said "ann.json:1:
    expected an image file name, got '{"images": ...}'" with the whole file quoted, exit 1; a CSV the same with its
    header. A VOC folder was already refused as not supported: these now are too, exit 2, one line."""
    _torch()
    from faceveil.cli import main

    (tmp_path / "imgs").mkdir()
    (tmp_path / "ann.json").write_text('{"images": [], "annotations": []}')
    (tmp_path / "boxes.csv").write_text("image,x,y,w,h\n")
    for name, kind in (("ann.json", "COCO .json labels are"), ("boxes.csv", "CSV labels are")):
        for cmd in (["train", "learnedblur"], ["eval", "train"]):
            out = tmp_path / ("m.onnx" if cmd[0] == "train" else "et")
            rc = main([*cmd, "--images", str(tmp_path / "imgs"), "--labels", str(tmp_path / name), "-o", str(out),
                       "--steps", "1", "-q"])
            assert (rc, capsys.readouterr().err) == (2, f"faceveil: error: --labels {tmp_path / name}: {kind} not "
                                                        "supported here; give a WIDER-layout gt.txt\n"), cmd
            assert not out.exists()
