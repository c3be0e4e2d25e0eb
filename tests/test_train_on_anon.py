"""Train-on-anonymized evaluation: targets, AP by size, determinism, ONNX, and a tiny end-to-end run."""
from __future__ import annotations

import json

import numpy as np
import pytest

from faceveil.detections import Detections
from faceveil.errors import UsageError
from faceveil.eval.metrics import ap_by_size, ap_overall
from faceveil.train.centermap import decode, encode
from faceveil.train.train_on_anon import Sample, anonymize_samples, parse_duration, parse_methods, split

from conftest import toy_faces_dataset


def _faces_dataset(tmp_path, n=6, size=96, seed=0):
    """Images of noise with two bright elliptical 'faces' each (skin-coloured, with dark eyes), a WIDER gt.txt."""
    return toy_faces_dataset(tmp_path, n, size, seed, per_image=2, widths=(14, 30))


# targets (no torch) ---------------------------------------------------------

def test_encode_decode_round_trip_recovers_boxes():
    boxes = np.array([[10, 20, 50, 70], [100.5, 101, 121, 130], [200, 30, 206, 37], [5, 200, 305, 310]], np.float32)
    t = encode(boxes, 320, 320)
    assert t.mask.sum() == 4 and t.heatmap.max() == 1.0
    dets = decode(t.heatmap, t.size, t.offset, threshold=0.5, nms_iou=1.0)
    assert len(dets) == 4
    got = dets.xyxy[np.lexsort((dets.xyxy[:, 1], dets.xyxy[:, 0]))]
    want = boxes[np.lexsort((boxes[:, 1], boxes[:, 0]))]
    np.testing.assert_allclose(got, want, atol=1e-3)


def test_encode_keeps_small_face_next_to_big_one():
    # A small face whose centre falls inside a big one's Gaussian must still get its own centre cell.
    boxes = np.array([[0, 0, 120, 120], [70, 70, 82, 82]], np.float32)
    t = encode(boxes, 128, 128)
    assert t.mask.sum() == 2
    assert t.heatmap[0, 19, 19] == 1.0  # centre of the small face, (76, 76) / 4


# AP -------------------------------------------------------------------------

def test_ap_overall_and_by_size_on_hand_made_predictions():
    gt = [np.array([[0, 0, 10, 10], [100, 100, 180, 180]], np.float32)]
    preds = [Detections.from_boxes([[0, 0, 10, 10], [300, 300, 380, 380], [100, 100, 180, 180]], [0.9, 0.8, 0.7])]
    # sorted: TP, FP, TP -> precision 1, 1/2, 2/3 at recall 1/2, 1/2, 1 -> AP = 0.5 * 1 + 0.5 * 2/3
    assert ap_overall(preds, gt) == pytest.approx(0.5 + 1 / 3)
    aps, counts = ap_by_size(preds, gt)
    assert counts["0-16"] == 1 and counts["64-128"] == 1 and counts["16-32"] == 0
    assert aps["16-32"] is None
    # 0-16: the large false positive is outside the bucket and unmatched -> ignored; the large hit is ignored.
    assert aps["0-16"] == pytest.approx(1.0)
    # 64-128: the small hit belongs to another bucket (ignored); FP 0.8 then TP 0.7 -> 0.5
    assert aps["64-128"] == pytest.approx(0.5)


# specs, split, anonymization ----------------------------------------------------

def test_parse_methods_applies_safe_fakes_defaults_and_puts_none_first():
    specs = parse_methods("blur,pixelate,fullblur,blackout", ["blur:sigma=3"])
    assert [s.label for s in specs] == ["none", "blur", "pixelate", "fullblur", "blackout"]
    by = {s.label: s for s in specs}
    assert by["blur"].params == {"kernel": 25, "sigma": 3}
    assert by["pixelate"].params == {"cells": 10}
    assert by["fullblur"].params == {"kernel": 18}
    assert parse_methods("none,blur:kernel=9")[1].params == {"kernel": 9}
    with pytest.raises(UsageError):
        parse_methods("none,nosuchmethod")
    with pytest.raises(UsageError):
        parse_methods("blur,blur")
    # -p takes bench's spelling too (METHOD.NAME, as --sweep), and a method not in --methods is refused
    assert parse_methods("blur", ["blur.kernel=9"])[1].params["kernel"] == 9
    with pytest.raises(UsageError, match="not in --methods"):
        parse_methods("blur", ["pixelate.cells=4"])
    with pytest.raises(UsageError, match="METHOD.NAME=VALUE"):
        parse_methods("blur", ["kernel=9"])
    assert parse_duration("20m") == 1200 and parse_duration("90s") == 90 and parse_duration("1.5h") == 5400
    with pytest.raises(UsageError):
        parse_duration("soon")


def test_split_is_seeded_and_disjoint():
    samples = [Sample(f"{i}.jpg", np.zeros((4, 4, 3), np.uint8), np.zeros((0, 4), np.float32)) for i in range(20)]
    a_train, a_test = split(samples, 0.2, 0)
    b_train, b_test = split(samples, 0.2, 0)
    assert [s.name for s in a_test] == [s.name for s in b_test] and len(a_test) == 4
    assert {s.name for s in a_train} | {s.name for s in a_test} == {s.name for s in samples}
    assert not {s.name for s in a_train} & {s.name for s in a_test}
    assert [s.name for s in split(samples, 0.2, 1)[1]] != [s.name for s in a_test]


def test_anonymize_samples_changes_faces_only(noise_image):
    boxes = np.array([[20, 20, 60, 70]], np.float32)
    s = Sample("x.png", noise_image, boxes)
    (out,) = anonymize_samples([s], parse_methods("blackout")[1], seed=0)
    assert (out[35:55, 30:50] == 0).all()  # inside the (elliptical) region: black
    outside = np.ones(noise_image.shape[:2], bool)
    outside[5:85, 5:75] = False  # generous margin around the region (mask scale 1.3)
    assert (out[outside] == noise_image[outside]).all()
    (same,) = anonymize_samples([s], parse_methods("none")[0], seed=0)
    assert same is noise_image


# torch parts ------------------------------------------------------------------

def _tiny_config(**kw):
    from faceveil.train.detector import TrainConfig

    base = dict(budget_s=1e9, max_steps=3, batch=2, input_size=64, threads=2, width=8, seed=0)
    return TrainConfig(**{**base, **kw})


def _tiny_data():
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 255, (80, 96, 3), dtype=np.uint8) for _ in range(4)]
    boxes = [np.array([[10, 10, 40, 44], [50, 30, 70, 52]], np.float32)] * 4
    return images, boxes


def test_same_seed_gives_the_same_weights():
    torch = pytest.importorskip("torch")
    from faceveil.train.detector import train

    images, boxes = _tiny_data()
    a = train(images, boxes, _tiny_config())
    b = train(images, boxes, _tiny_config())
    c = train(images, boxes, _tiny_config(seed=1))
    sa, sb, sc = a.model.state_dict(), b.model.state_dict(), c.model.state_dict()
    assert a.steps == b.steps == 3
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert not all(torch.equal(sa[k], sc[k]) for k in sa)
    assert [ck.fraction for ck in a.checkpoints] == [0.25, 0.5, 0.75, 1.0]


def test_loss_is_small_for_outputs_equal_to_the_targets():
    torch = pytest.importorskip("torch")
    from faceveil.train.detector import l_det, l_det_parts, targets_from_detections

    dets = [Detections.from_boxes([[8, 8, 40, 36], [60, 20, 90, 60]])]
    tg = targets_from_detections(dets, 96, 128)
    heat = tg["heatmap"]
    # logits that reproduce the target heatmap (clamped away from 0 and 1)
    p = heat.clamp(1e-6, 1 - 1e-6)
    perfect = (torch.log(p / (1 - p)), tg["size"], tg["offset"])
    parts = l_det_parts(perfect, tg)
    assert parts["size"].item() == pytest.approx(0, abs=1e-6) and parts["offset"].item() == pytest.approx(0, abs=1e-6)
    wrong = (torch.zeros_like(heat), tg["size"] + 0.5, torch.full_like(tg["offset"], 0.5))
    assert l_det(perfect, tg).item() < 0.1 * l_det(wrong, tg).item()


def test_onnx_export_matches_torch(tmp_path):
    torch = pytest.importorskip("torch")
    import onnxruntime as ort

    from faceveil.train.detector import CompactFaceNet, export_onnx

    torch.manual_seed(0)
    model = CompactFaceNet(8).eval()
    path = tmp_path / "det.onnx"
    export_onnx(model, path)
    x = np.random.default_rng(0).integers(0, 255, (1, 3, 96, 128)).astype(np.float32)
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = sess.run(None, {"image": x})
    with torch.no_grad():
        want = [t.numpy() for t in model(torch.from_numpy(x))]
    assert got[0].shape == (1, 1, 24, 32)
    for g, w in zip(got, want):
        np.testing.assert_allclose(g, w, atol=1e-4)


@pytest.mark.slow
def test_end_to_end_run_writes_every_report_file(tmp_path):
    pytest.importorskip("torch")
    from faceveil.cli import main

    img_dir, gt = _faces_dataset(tmp_path)
    out = tmp_path / "report"
    rc = main(["eval", "train", "--images", str(img_dir), "--labels", str(gt), "--methods", "none,blur,blackout",
               "--steps", "2", "--budget", "60", "--batch", "2", "--input-size", "64", "--width", "8",
               "--test-fraction", "0.34", "--threads", "2", "-q", "-o", str(out), "--save-models"])
    assert rc == 0
    for name in ("results.json", "report.md", "ap_by_size.png", "ap_vs_time.png", "models/none.onnx"):
        assert (out / name).stat().st_size > 0, name
    res = json.loads((out / "results.json").read_text())
    assert "partial" not in res
    assert [m["label"] for m in res["methods"]] == ["none", "blur", "blackout"]
    assert res["methods"][1]["params"] == {"kernel": 25}
    assert res["data"]["n_train"] == 4 and res["data"]["n_test"] == 2
    assert not set(res["data"]["split"]["train"]) & set(res["data"]["split"]["test"])
    for m in res["methods"]:
        assert [p["step"] for p in m["curve"]][-1] == 2 and m["train"]["steps"] == 2
        assert set(m["ap_by_size"]) == {"0-16", "16-32", "32-64", "64-128", ">=128"}
    q = res["methods"][2]["quality"]  # blackout vs original: large L1, low PSNR
    assert q["l1"] > 50 and q["psnr"] < 15 and q["n_crops"] == 8
    assert set(res["correlation"]["all"]) == {"l1", "mse", "ssim", "psnr"}
    # The exported model runs without torch and finds what the torch model finds.
    from faceveil.io.images import read_rgb
    from faceveil.train.centermap import OnnxCompactDetector

    img = read_rgb(img_dir / "img0.png")
    onnx_dets = OnnxCompactDetector(out / "models" / "none.onnx").detect(img, threshold=0.0)
    assert len(onnx_dets) > 0
    md = (out / "report.md").read_text()
    assert "| blackout | erasure |" in md and "cycle fidelity" in md


def test_missing_labels_file_is_a_one_line_error(tmp_path, capsys):
    import importlib.util

    from faceveil.cli import main

    if importlib.util.find_spec("torch") is None:
        pytest.skip("without torch the command first says it needs torch (tests/test_truth.py)")

    (tmp_path / "imgs").mkdir()  # the report folder beside the images: inside them is refused first
    rc = main(["eval", "train", "--images", str(tmp_path / "imgs"), "--labels", str(tmp_path / "nope.txt"),
               "-o", str(tmp_path / "o")])
    assert rc == 2  # bad usage, before any work, as `eval leaks` and `dataset anonymize` say it
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "nope.txt" in err[0]
    for bad in (["--steps", "0"], ["--batch", "-1"], ["--max-images", "0"], ["--split-seed", "x"]):
        with pytest.raises(SystemExit) as exit_:
            main(["eval", "train", "--images", str(tmp_path / "imgs"), "--labels", str(tmp_path / "nope.txt"),
                  "-o", str(tmp_path / "o"), *bad])
        assert exit_.value.code == 2, bad


@pytest.mark.parametrize("command", ["eval train", "train learnedblur"])
def test_a_labelled_image_that_cannot_be_read_stops_training_before_any_work(tmp_path, capsys, monkeypatch, command):
    """A labelled image that could not be read was skipped with a warning (exit 0): the detectors (eval train) or the
    refiner (train learnedblur) were trained and measured on fewer images than given; one in a folder that may not be
    entered was a traceback. Now, as `eval leaks` fails such an image (exit 1) but before any training (the images
    are all read first): one line naming it and why, exit 1, nothing trained, nothing written."""
    pytest.importorskip("torch")
    import pathlib

    from conftest import unreadable_folders
    from faceveil.cli import main
    from faceveil.train import learnedblur, train_on_anon

    def refuse(*a, **k):
        raise AssertionError("training started")

    monkeypatch.setattr(train_on_anon, "run", refuse)
    monkeypatch.setattr(learnedblur, "train", refuse)
    img_dir, gt = _faces_dataset(tmp_path)
    real = pathlib.Path.read_bytes

    def read_bytes(self):  # chmod 000 (the tests run as root, who reads it anyway)
        if self.name == "img2.png":
            raise PermissionError(13, "Permission denied", str(self))
        return real(self)

    monkeypatch.setattr(pathlib.Path, "read_bytes", read_bytes)
    out = tmp_path / ("report" if command == "eval train" else "m.onnx")
    argv = [*command.split(), "--images", str(img_dir), "--labels", str(gt), "-o", str(out), "--steps", "1", "-q"]
    if command == "train learnedblur":
        argv += ["--budget", "0", "--split", "fraction"]
    hint = "; nothing trained (make it readable, or take it out of the labels)\n"
    assert main(argv) == 1
    assert capsys.readouterr() == ("", f"faceveil: error: {img_dir / 'img2.png'}: permission denied" + hint)
    monkeypatch.setattr(pathlib.Path, "read_bytes", real)
    (img_dir / "locked").mkdir()
    for name in ("img2.png", "img5.png"):
        (img_dir / name).rename(img_dir / "locked" / name)
        gt.write_text(gt.read_text().replace(f"{name}\n", f"locked/{name}\n"))
    unreadable_folders(monkeypatch, "locked")
    assert main(argv) == 1
    assert capsys.readouterr() == ("", f"faceveil: error: {img_dir / 'locked' / 'img2.png'}: a folder on the way to "
                                       "it cannot be entered (permission denied) (and 1 more)" + hint)
    assert not out.exists() and not pathlib.Path(f"{out}.json").exists()


@pytest.mark.slow
def test_reads_the_facemask_labels():
    from conftest import shared_path

    from faceveil.train.train_on_anon import read_wider_gt

    gt = read_wider_gt(shared_path("facemask", "gt.txt"))
    assert len(gt) == 700
    n = sum(len(b) for b in gt.values())
    assert 3200 <= n <= 3258  # 3,258 labelled faces, degenerate boxes dropped
    b = gt["maksssksksss1.jpg"]
    np.testing.assert_allclose(b[0], [321, 34, 354, 69])
