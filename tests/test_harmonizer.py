"""The learned U-Net harmonizer of `replace`: training (torch, skipped without it), ONNX export, inference."""
from __future__ import annotations

import numpy as np
import pytest

from faceveil.anonymize import Compositor, RegionParams, get_method
from faceveil.anonymize.harmonizer import NET_SIZE, load_harmonizer
from faceveil.errors import FaceveilError
from conftest import ELLIPSE_13

COMP = Compositor(RegionParams(**ELLIPSE_13))


@pytest.fixture(scope="module")
def face(astronaut_faces):
    return astronaut_faces[[int(np.argmax(astronaut_faces.areas))]]


@pytest.fixture(scope="module")
def crops(astronaut, face):
    """Training crops of the astronaut's face and of re-tinted copies (no detector run per copy)."""
    from faceveil.train.harmonizer import Crops, crop_face

    out = []
    for gain in ([1, 1, 1], [1.1, 0.9, 0.8], [0.7, 0.8, 1.0], [0.9, 1.0, 0.9]):
        img = np.clip(astronaut * np.array(gain), 0, 255).astype(np.uint8)
        c = crop_face(img, face.xyxy[0].astype(float), face.landmarks[0].astype(float))
        assert c is not None
        out.append(c)
    return Crops(*(np.stack([o[i] for o in out]) for i in range(3)), ["astronaut"] * len(out))


def replace(image, dets, seed=1, comp=COMP, **params):
    method = get_method("replace", params)
    return method.apply(image, dets, comp, np.random.default_rng(seed))


# --- the shipped model (onnxruntime only) ----------------------------------------

def test_shipped_model_reduces_the_proxy_error_on_an_unseen_face(crops):
    """The astronaut is in no training set: re-colour her face, the network brings it back closer."""
    from faceveil.train.harmonizer import batch

    x, m, y = batch(crops, [0, 0, 0, 0, 0, 0, 0, 0], np.random.default_rng(5), augment=False)
    out = load_harmonizer().run(x, m)
    inside = np.broadcast_to(m, x.shape) > 0.5
    before, after = np.abs(x - y)[inside].mean(), np.abs(out - y)[inside].mean()
    assert after < 0.85 * before, (before, after)
    # the context is never touched by the network
    outside = np.broadcast_to(m, x.shape) == 0
    assert np.abs(out - x)[outside].max() < 1e-6


def test_unet_changes_the_face_only_inside_the_region(astronaut, face):
    classic = replace(astronaut, face)
    unet = replace(astronaut, face, harmonizer="unet")
    mask = COMP.mask(face, astronaut.shape)
    assert not np.array_equal(classic, unet), "the network should correct something"
    assert np.array_equal(unet[mask == 0], astronaut[mask == 0])
    assert (unet != astronaut).any(axis=2)[mask == 1].mean() > 0.6  # the face-shaped mask keeps the region's edge
    assert np.array_equal(unet, replace(astronaut, face, harmonizer="unet")), "deterministic"


def test_original_face_pixels_do_not_influence_unet_output(astronaut, face):
    x1, y1, x2, y2 = face.xyxy[0]
    changed = astronaut.copy()
    sl = np.s_[int(y1): int(np.ceil(y2)), int(x1): int(np.ceil(x2))]
    changed[sl] = np.random.default_rng(0).integers(0, 256, changed[sl].shape, dtype=np.uint8)
    # the whole region replaced (shape=region); the face-shaped default: tests/test_replace_look.py
    box_comp = Compositor(RegionParams(shape="box", mask_scale=1.0))
    a = replace(astronaut, face, comp=box_comp, harmonizer="unet", shape="region")
    b = replace(changed, face, comp=box_comp, harmonizer="unet", shape="region")
    assert np.array_equal(a, b)
    mask = COMP.mask(face, astronaut.shape) > 0
    changed[mask] = 255 - changed[mask]
    a = replace(astronaut, face, harmonizer="unet", shape="region")
    b = replace(changed, face, harmonizer="unet", shape="region")
    assert np.array_equal(a[mask], b[mask])
    assert np.array_equal(b[~mask], changed[~mask])


def test_bad_model_is_a_clear_error(tmp_path):
    bad = tmp_path / "h.onnx"
    bad.write_bytes(b"not onnx")
    with pytest.raises(FaceveilError, match="h.onnx"):
        get_method("replace", {"harmonizer": "unet", "harmonizer_model": str(bad)})
    with pytest.raises(FaceveilError, match="not found"):
        get_method("replace", {"harmonizer": "unet", "harmonizer_model": str(tmp_path / "none.onnx")})


# --- training (torch) ----------------------------------------------------------

def test_onnx_and_torch_agree(tmp_path):
    torch = pytest.importorskip("torch", reason="the train extra (torch) is not installed")
    from faceveil.anonymize.harmonizer import Harmonizer
    from faceveil.train.harmonizer_net import HarmonizerUNet, export_onnx

    torch.manual_seed(0)
    model = HarmonizerUNet(8).eval()
    with torch.no_grad():
        for p in model.parameters():  # the output layer starts at zero: make the check non-trivial
            p.normal_(0, 0.2)
    export_onnx(model, tmp_path / "h.onnx")
    rng = np.random.default_rng(0)
    x = rng.random((2, 3, NET_SIZE, NET_SIZE), np.float32)
    m = rng.random((2, 1, NET_SIZE, NET_SIZE), np.float32)
    with torch.no_grad():
        ref = model(torch.from_numpy(x), torch.from_numpy(m)).numpy()
    got = Harmonizer(tmp_path / "h.onnx").run(x, m)
    assert np.abs(ref - x).max() > 0.05, "the model should change its input"
    np.testing.assert_allclose(got, ref, atol=1e-4)


def test_same_seed_same_weights(crops, tmp_path):
    torch = pytest.importorskip("torch", reason="the train extra (torch) is not installed")
    from faceveil.train.harmonizer import train

    def weights(seed, name):
        s = train(crops, tmp_path / name, steps=3, seed=seed, batch_size=2, width=8, progress=False)
        assert s["steps"] == 3
        return (tmp_path / name).read_bytes()

    a, b, c = weights(0, "a.onnx"), weights(0, "b.onnx"), weights(1, "c.onnx")
    assert a == b
    assert a != c
    del torch


def test_train_cli_end_to_end_then_replace_uses_the_model(tmp_path, astronaut, face, capsys):
    """Also: the summary printed on standard error is strict JSON: with no face held out (two photos), its
    val_l1_face_* were the bare token NaN, which jq and strict parsers refuse (now null, as in every results file)."""
    import json

    pytest.importorskip("torch", reason="the train extra (torch) is not installed")
    from PIL import Image

    from faceveil.cli import main

    (tmp_path / "photos").mkdir()
    Image.fromarray(astronaut).save(tmp_path / "photos" / "a.png")
    Image.fromarray(np.ascontiguousarray(astronaut[:, ::-1])).save(tmp_path / "photos" / "b.png")
    out = tmp_path / "h.onnx"
    assert main(["train", "harmonizer", "--images", str(tmp_path / "photos"), "-o", str(out), "--steps", "2",
                 "--batch", "2", "--width", "8", "-q"]) == 0
    assert 0 < out.stat().st_size < 4_000_000
    err = capsys.readouterr().err

    def refuse(token):
        raise AssertionError(f"not JSON: {token}")

    summary = json.loads(err[err.index("{"):], parse_constant=refuse)
    assert summary["faces_val"] == 0 and summary["val_l1_face_output"] is None, summary
    res = replace(astronaut, face, harmonizer="unet", harmonizer_model=str(out))
    mask = COMP.mask(face, astronaut.shape)
    assert np.array_equal(res[mask == 0], astronaut[mask == 0])
    assert (res != astronaut).any(axis=2)[mask == 1].mean() > 0.6  # the face-shaped mask keeps the region's edge
    assert main(["train", "harmonizer", "--images", str(tmp_path / "none"), "-o", str(out), "-q"]) == 2


def test_model_with_non_finite_output_fails_closed_and_nan_weights_are_not_exported(tmp_path, astronaut, face):
    """A diverged harmonizer's NaN was cast to black (a numpy warning) and the file written, exit 0; training that
    diverged exported NaN weights."""
    import onnx
    from onnx import numpy_helper

    from faceveil.anonymize.harmonizer import default_model

    model = onnx.load(str(default_model()))
    for t in model.graph.initializer:
        if t.name == "out.bias":
            t.CopyFrom(numpy_helper.from_array(np.full(numpy_helper.to_array(t).shape, np.nan, np.float32), t.name))
    onnx.save(model, str(tmp_path / "nan.onnx"))
    with pytest.raises(FaceveilError, match="NaN or infinite"):
        replace(astronaut, face, harmonizer="unet", harmonizer_model=str(tmp_path / "nan.onnx"))
    torch = pytest.importorskip("torch", reason="the train extra (torch) is not installed")
    from faceveil.train.harmonizer_net import HarmonizerUNet, export_onnx

    net = HarmonizerUNet(4)
    with torch.no_grad():
        net.out.bias.fill_(float("inf"))
    with pytest.raises(FaceveilError, match="NaN or infinite"):
        export_onnx(net, tmp_path / "h.onnx")
    assert not list(tmp_path.glob("*h.onnx*"))


@pytest.mark.parametrize("args", [["-o", "PHOTO"], ["-o", "EXISTING"], ["-o", ""], ["-o", "."], ["--batch", "0"],
                                  ["--lr", "nan"], ["--lr", "-1"], ["--width", "0"], ["--device", "bogus"],
                                  ["--device", "cuda:99"], ["--steps", "-1"], ["--steps", "0", "--budget", "0"],
                                  ["--images", "MISSING"]])
def test_train_harmonizer_refuses_bad_usage_before_any_work(tmp_path, monkeypatch, capsys, astronaut, args):
    """Before: -o a photo replaced it with ONNX bytes, an existing file was replaced without --overwrite, --steps -1
    (or --budget 0) exported an untrained model, a missing --images folder among others was ignored, and -o a
    folder, --batch 0, --lr nan, --width 0, --device bogus failed with a traceback (exit 1), some after the run."""
    pytest.importorskip("torch", reason="the train extra (torch) is not installed")
    from PIL import Image

    from faceveil.cli import main
    from faceveil.train import harmonizer as H

    (tmp_path / "photos").mkdir()
    Image.fromarray(astronaut).save(tmp_path / "photos" / "a.png")
    (tmp_path / "keep.onnx").write_bytes(b"keep")
    subst = {"PHOTO": str(tmp_path / "photos" / "a.png"), "EXISTING": str(tmp_path / "keep.onnx"),
             "MISSING": str(tmp_path / "missing")}
    argv = ["--images", str(tmp_path / "photos"), "-o", str(tmp_path / "h.onnx"), "--steps", "1", "-q"]
    argv += [subst.get(a, a) for a in args]  # the later option wins

    def refuse(*a, **k):
        raise AssertionError("work started")

    monkeypatch.setattr(H, "collect", refuse)
    before = (tmp_path / "photos" / "a.png").read_bytes()
    monkeypatch.chdir(tmp_path)
    try:
        rc = main(["train", "harmonizer", *argv])
    except SystemExit as exc:
        rc = exc.code
    err = capsys.readouterr().err
    assert rc == 2 and err.count("\n") == 1 and err.startswith("faceveil: error: "), err
    assert (tmp_path / "photos" / "a.png").read_bytes() == before and (tmp_path / "keep.onnx").read_bytes() == b"keep"
    assert not (tmp_path / "h.onnx").exists()


def test_collect_names_each_photo_it_skips(tmp_path, astronaut, capsys):
    """A truncated photo was skipped with no word (only a count in the summary)."""
    from PIL import Image

    from faceveil.train.harmonizer import collect

    Image.fromarray(astronaut).save(tmp_path / "a.jpg")
    (tmp_path / "b.jpg").write_bytes((tmp_path / "a.jpg").read_bytes()[:3000])
    crops, stats = collect([str(tmp_path)], progress=False)
    assert stats["unreadable"] == 1 and len(crops) == 1
    assert f"faceveil: warning: skipped {tmp_path / 'b.jpg'}: cannot decode image" in capsys.readouterr().err


def test_train_harmonizer_refuses_a_folder_it_cannot_read(tmp_path, monkeypatch, capsys):
    """A sub-folder of --images that cannot be read (chmod 000) was passed over without a word: the model was trained
    on the photos of the others, exit 0. As in the other commands it is bad usage found while listing: exit 2, one
    line naming it, before any face is detected, nothing written."""
    pytest.importorskip("torch", reason="the train extra (torch) is not installed")
    import importlib

    from PIL import Image

    from conftest import unreadable_folders
    from faceveil.cli import main

    for sub in ("ok", "locked"):
        (tmp_path / "photos" / sub).mkdir(parents=True)
        Image.fromarray(np.zeros((24, 24, 3), np.uint8)).save(tmp_path / "photos" / sub / "a.png")

    def refuse(*a, **k):
        raise AssertionError("work started")

    monkeypatch.setattr(importlib.import_module("faceveil.detect"), "get_detector", refuse)
    unreadable_folders(monkeypatch, "locked")
    out = tmp_path / "h.onnx"
    assert main(["train", "harmonizer", "--images", str(tmp_path / "photos"), "-o", str(out), "--steps", "1",
                 "-q"]) == 2
    assert capsys.readouterr().err == f"faceveil: error: {tmp_path / 'photos' / 'locked'}: cannot read the folder " \
                                      "(Permission denied); nothing trained (make it readable, or move it out)\n"
    assert not out.exists()
