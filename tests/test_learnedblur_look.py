"""Learned blur's look (issue 22): structure, not colour; the method comparison sheet; the review panel."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from faceveil.anonymize import Compositor, RegionParams, get_method
from faceveil.anonymize.learnedblur_geometry import SIZE, face_priors, residual_mask
from faceveil.anonymize.methods.learnedblur import shipped_model_path
from faceveil.detections import Detections
from faceveil.eval.quality import lab_means

from conftest import ELLIPSE_13, shared_path


def _torch():
    return pytest.importorskip("torch", reason="torch is not installed (the train extra)")


def _is_structure_only(res: np.ndarray) -> None:
    """(N, 3, S, S) residuals: the same in R, G and B, and zero in sum under the residual mask."""
    np.testing.assert_allclose(res[:, 0], res[:, 1], atol=1e-3)
    np.testing.assert_allclose(res[:, 0], res[:, 2], atol=1e-3)
    assert np.abs(res[:, 0].sum((1, 2))).max() < 1e-3 * SIZE * SIZE
    assert (res[:, :, residual_mask() == 0] == 0).all()  # nothing outside the feathered ellipse
    assert np.abs(res).max() > 0.5  # and not trivially zero


def test_shipped_refiner_adds_grey_zero_mean_structure():
    """The shipped ONNX itself carries the constraint: whatever crop comes in, no colour and no mean shift."""
    import onnxruntime as ort

    sess = ort.InferenceSession(str(shipped_model_path()), providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(0)
    crops = rng.uniform(0, 255, (4, 3, SIZE, SIZE)).astype(np.float32)
    crops[2:] = np.array([230, 60, 200], np.float32)[:, None, None]  # flat magenta crops too
    priors = np.ascontiguousarray(face_priors(relative=1.5)[[0, 3, 5, 21]].transpose(0, 3, 1, 2))
    (res,) = sess.run(None, {"crop": crops, "prior": priors})
    _is_structure_only(res)


def test_constraint_holds_for_any_weights_and_survives_export(tmp_path):
    """Random weights (not the trained ones): the exported graph still only adds grey, zero-mean detail, and its
    lowest frequencies are gone (a blotch the size of the face is removed)."""
    torch = _torch()
    import onnxruntime as ort

    from faceveil.train import learnedblur as L

    torch.manual_seed(0)
    ref = L.Refiner(8)
    torch.nn.init.normal_(ref.out.weight, std=0.5)
    torch.nn.init.normal_(ref.out.bias, std=2.0)  # a flat tint, the unconstrained network's favourite
    L.export_onnx(ref.eval(), tmp_path / "r.onnx")
    x = np.random.default_rng(1).uniform(0, 255, (3, 3, SIZE, SIZE)).astype(np.float32)
    pr = np.ascontiguousarray(face_priors(relative=1.5)[[1, 2, 3]].transpose(0, 3, 1, 2))
    (got,) = ort.InferenceSession(str(tmp_path / "r.onnx")).run(None, {"crop": x, "prior": pr})
    _is_structure_only(got)
    # A face-sized blob put in raw comes out almost entirely removed.
    yy, xx = np.mgrid[0:SIZE, 0:SIZE]
    blob = 40.0 * np.exp(-(((xx - SIZE / 2) ** 2 + (yy - SIZE / 2) ** 2) / (2 * 10.0 ** 2)))
    with torch.no_grad():
        out = ref.structure(torch.from_numpy(np.repeat(blob[None, None], 3, 1)).float()).numpy()
    assert np.abs(out).max() < 0.25 * np.abs(blob * residual_mask()).max()


def test_unconstrained_refiner_still_available():
    """structure_only=False keeps the old graph (the tint the issue shows), for comparison runs."""
    torch = _torch()
    from faceveil.train import learnedblur as L

    r = L.Refiner(4, structure_only=False)
    ps = torch.from_numpy(face_priors()[[3]]).permute(0, 3, 1, 2)
    a = r(torch.rand(1, 3, SIZE, SIZE) * 255, ps)[0].detach().numpy()
    assert not np.allclose(a[0], a[1])  # the prior's own colour detail comes through


HELD_OUT = ("maksssksksss115.jpg", "maksssksksss204.jpg", "maksssksksss21.jpg", "maksssksksss254.jpg")  # 28 faces


def test_learned_blur_keeps_the_plain_blurs_colour_on_real_photos():
    """Issue 22: each face's mean colour within Delta-E 3 of the Gaussian blur it starts from (the shipped
    weights of before were a magenta/purple tint: median Delta-E 14); held-out facemask photos."""
    from faceveil.eval.splits import side
    from faceveil.io.images import read_rgb
    from faceveil.train.train_on_anon import read_wider_gt

    root = shared_path("facemask")
    gt = read_wider_gt(root / "gt.txt")
    comp = Compositor(RegionParams(**ELLIPSE_13))
    from faceveil.anonymize.methods.learnedblur import LearnedBlur

    lb, gb = get_method("learnedblur"), get_method("blur", {"relative": LearnedBlur.Params().relative})
    de, changed = [], []
    for name in HELD_OUT:
        assert side(name) == "held_out"
        img, boxes = read_rgb(root / "images" / name), gt[name]
        dets = Detections.from_boxes(boxes, source="label")
        a = lb.apply(img, dets, comp, np.random.default_rng(0))
        b = gb.apply(img, dets, comp, np.random.default_rng(0))
        big = np.minimum(boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]) >= 8
        de += list(np.linalg.norm(lab_means(a, boxes[big]) - lab_means(b, boxes[big]), axis=1))
        changed.append(np.abs(a.astype(int) - b).max())
    assert len(de) >= 10 and max(de) < 3.0, np.round(de, 2)
    assert min(changed) > 10  # and it still adds structure


# the review page's method comparison ---------------------------------------------------------------

TOKEN = "test-token-compare-0123456789"
HDR = {"X-Faceveil-Token": TOKEN}


@pytest.fixture(scope="module")
def review(tmp_path_factory, astronaut):
    pytest.importorskip("flask", reason="the review page needs Flask (pip install 'faceveil[review]')")
    from PIL import Image

    from faceveil.cli import main
    from faceveil.pipeline import AnonymizerConfig
    from faceveil.review import ReviewSet, ReviewSettings, create_app

    root = tmp_path_factory.mktemp("compare")
    src, out = root / "in", root / "out"
    src.mkdir()
    Image.fromarray(astronaut).save(src / "astro.png")
    assert main(["anonymize", str(src), "-o", str(out), "-q", "--detector", "centerface"]) == 0
    rs = ReviewSet(out, src, AnonymizerConfig(detector="centerface"), ReviewSettings(second=("none",)), root / "cache")
    return rs, create_app(rs, TOKEN).test_client(use_cookies=False), src, out


def _digest(root):
    import hashlib

    return {str(p.relative_to(root)): hashlib.sha1(p.read_bytes()).hexdigest() for p in sorted(root.rglob("*"))
            if p.is_file()}


def test_review_compares_methods_on_one_image_over_http(review, astronaut):
    from io import BytesIO

    from PIL import Image

    rs, client, src, out = review
    before = _digest(out)
    r = client.get("/api/compare", headers=HDR)
    assert r.status_code == 200
    methods = r.get_json()["methods"]
    assert methods[0] == "blur" and {"pixelate", "blackout", "learnedblur"} <= set(methods), methods
    face = rs.compare_faces("astro.png").xyxy
    assert len(face) == 1
    x1, y1, x2, y2 = np.round(face[0]).astype(int)
    shown = {}
    for m in ("blur", "pixelate", "blackout", "learnedblur"):
        r = client.get(f"/compare/{m}/astro.png", headers=HDR)
        assert r.status_code == 200 and r.mimetype == "image/jpeg", (m, r.get_json(silent=True))
        img = np.asarray(Image.open(BytesIO(r.data)).convert("RGB")).astype(int)
        assert img.shape == astronaut.shape
        inside = np.abs(img[y1:y2, x1:x2] - astronaut[y1:y2, x1:x2]).mean()
        assert inside > 15, (m, inside)  # the face is hidden ...
        outside = np.abs(img[:, :60] - astronaut[:, :60]).mean()  # ... a strip far from the face is not touched
        assert outside < 4, (m, outside)  # (JPEG noise only)
        shown[m] = img
    assert np.abs(shown["blur"] - shown["pixelate"])[y1:y2, x1:x2].mean() > 5  # each method is its own
    # a width, the run's output unchanged, nothing written under OUT
    r = client.get("/compare/pixelate/astro.png?w=128", headers=HDR)
    assert Image.open(BytesIO(r.data)).size == (128, 128)
    assert _digest(out) == before


def test_review_compare_refuses_what_it_should(review):
    _, client, _, _ = review
    assert client.get("/compare/pixelate/astro.png").status_code == 403  # no token
    assert client.get("/api/compare").status_code == 403
    r = client.get("/compare/nosuchmethod/astro.png", headers=HDR)
    assert r.status_code == 404 and "error" in r.get_json()
    assert client.get("/compare/blur/missing.png", headers=HDR).status_code == 404
    assert client.get("/compare/blur/../in/astro.png", headers=HDR).status_code in (403, 404)
    assert client.get("/compare/blur/astro.png?w=3", headers=HDR).status_code == 400


# bench/contact_sheet.py ------------------------------------------------------------------------------

@pytest.mark.slow
def test_contact_sheet_writes_one_small_sheet_per_method(tmp_path):
    import os
    import subprocess
    import sys

    shared_path("deepface-unit")
    shared_path("videos")
    root = Path(__file__).resolve().parents[1]
    env = {**os.environ, "PYTHONPATH": str(root / "src")}
    r = subprocess.run([sys.executable, str(root / "bench" / "contact_sheet.py"), str(tmp_path / "c"),
                        "--methods", "blackout,pixelate"], capture_output=True, text=True, env=env, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    for m in ("blackout", "pixelate"):
        p = tmp_path / "c" / f"{m}.jpg"
        assert 20_000 < p.stat().st_size < 300_000
        img = cv2.imread(str(p))
        assert img.shape[1] == 4 * 256 and img.shape[0] > 2 * 512
    readme = (tmp_path / "c" / "README.md").read_text()
    assert "[pixelate](pixelate.jpg)" in readme and "CC BY 2.0" in readme
    assert sorted(x.name for x in (tmp_path / "c").iterdir()) == ["README.md", "blackout.jpg", "pixelate.jpg"]


# faceveil eval train ----------------------------------------------------------------------------------

def test_eval_train_defaults_include_replace_and_learnedblur():
    """Issue 22: the realistic anonymizers next to none / blur / pixelate in `faceveil eval train`."""
    from faceveil.train.train_on_anon import DEFAULT_METHODS, parse_methods

    specs = {s.method: s for s in parse_methods(DEFAULT_METHODS)}
    assert {"none", "blur", "pixelate", "replace", "learnedblur"} <= set(specs)
    assert specs["replace"].family == "replacement" and specs["learnedblur"].family == "obfuscation"


def test_train_cli_split_by_photo_and_extra_images(tmp_path, astronaut):
    """`--split photo` trains on the tune side of the one split by photo only; `--extra-images` adds unlabelled
    photos with CenterFace's faces, scaled so the largest is 48 px wide."""
    _torch()
    import json

    from PIL import Image

    from faceveil.cli import main
    from faceveil.eval.splits import side
    from faceveil.train import learnedblur as L

    rng = np.random.default_rng(0)
    img_dir = tmp_path / "images"
    img_dir.mkdir()
    lines = []
    for i in range(8):
        img = rng.integers(0, 120, (96, 96, 3), dtype=np.uint8)
        cv2.ellipse(img, (48, 48), (14, 16), 0, 0, 360, (230, 180, 150), -1)
        Image.fromarray(img).save(img_dir / f"img{i}.png")
        lines += [f"img{i}.png", "1", "34 32 28 32 0 0 0 0 0 0"]
    (tmp_path / "gt.txt").write_text("\n".join(lines) + "\n")
    extra = tmp_path / "extra"
    extra.mkdir()
    Image.fromarray(astronaut).save(extra / "astro.png")
    (extra / "notes.txt").write_text("not an image")

    found = L.pseudo_labelled([extra])
    assert len(found) == 1 and len(found[0][2]) == 1
    b = found[0][2][0]
    assert abs((b[2] - b[0]) - 48) < 1 and found[0][1].shape[1] < astronaut.shape[1]

    out = tmp_path / "lb.onnx"
    assert main(["train", "learnedblur", "--images", str(img_dir), "--labels", str(tmp_path / "gt.txt"),
                 "--split", "photo", "--extra-images", str(extra), "--steps", "1", "--budget", "0", "--batch", "2",
                 "--input-size", "64", "-o", str(out), "-q"]) == 0
    card = json.loads((tmp_path / "lb.onnx.json").read_text())["data"]
    assert card["split"] == "photo" and card["train"] and card["test"]
    assert all(side(n) == "tune" for n in card["train"]) and all(side(n) == "held_out" for n in card["test"])
    assert [Path(p).name for p in card["extra"]] == ["astro.png"]


def test_priors_are_frozen_with_the_refiner(monkeypatch):
    """The refiner was trained on 22 fixed bank faces' lost detail: they ship beside it, so a rebuilt donor bank
    (replace's) cannot silently change what learnedblur adds."""
    import importlib

    bank = importlib.import_module("faceveil.anonymize.bank")

    before = face_priors(relative=1.5)

    def no_bank(*a, **k):
        raise AssertionError("learnedblur's priors must not come from the donor bank")

    monkeypatch.setattr(bank, "load_bank", no_bank)
    np.testing.assert_array_equal(face_priors(relative=1.5), before)
    assert before.shape == (22, SIZE, SIZE, 3)


@pytest.mark.slow
def test_review_page_shows_the_method_comparison(tmp_path, astronaut):
    """In the browser: the detail view's 'm' key opens a panel with the image hidden by each method."""
    import threading

    from PIL import Image
    from werkzeug.serving import make_server

    from faceveil.cli import main
    from faceveil.pipeline import AnonymizerConfig
    from faceveil.review import ReviewSet, ReviewSettings, create_app
    from test_review_browser import TOKEN as BTOKEN, _browser, _wait

    src, out = tmp_path / "in", tmp_path / "out"
    src.mkdir()
    Image.fromarray(astronaut).save(src / "astro.png")
    assert main(["anonymize", str(src), "-o", str(out), "-q", "-m", "pixelate"]) == 0
    rs = ReviewSet(out, src, AnonymizerConfig(method="pixelate"), ReviewSettings(second=("none",)), tmp_path / "cache")
    srv = make_server("127.0.0.1", 0, create_app(rs, BTOKEN), threaded=True)
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    driver = _browser()
    try:
        from selenium.webdriver.common.by import By

        driver.get(f"http://127.0.0.1:{srv.server_port}/?token={BTOKEN}")
        _wait(lambda: driver.find_elements(By.CSS_SELECTOR, "#grid .card"), what="the grid")[0].click()
        _wait(lambda: driver.find_elements(By.CSS_SELECTOR, "#stage-out img"), what="the large view")
        assert not driver.find_element(By.ID, "compare").is_displayed()
        driver.find_element(By.TAG_NAME, "body").send_keys("m")
        figs = _wait(lambda: [f for f in driver.find_elements(By.CSS_SELECTOR, "#compare figure")], what="the panel")
        caps = [f.find_element(By.TAG_NAME, "figcaption").text for f in figs]
        assert caps[0] == "pixelate (this run)" and {"blur", "learnedblur", "blackout"} <= set(caps), caps
        imgs = driver.find_elements(By.CSS_SELECTOR, "#compare img")
        _wait(lambda: all(driver.execute_script("return arguments[0].complete && arguments[0].naturalWidth > 0", i)
                          for i in imgs), timeout=60, what="every method's rendering")
        driver.find_element(By.ID, "btn-compare").click()
        assert not driver.find_element(By.ID, "compare").is_displayed()
    finally:
        driver.quit()
        srv.shutdown()
        thread.join(5)
