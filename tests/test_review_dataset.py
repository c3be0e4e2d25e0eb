"""The review page on a dataset output: Apply records the change in manifest.jsonl, verify and resume agree."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("flask", reason="the review page needs Flask (pip install 'faceveil[review]')")

from faceveil.cli import build_parser  # noqa: E402
from faceveil.dataset import DatasetConfig, anonymize_dataset, verify  # noqa: E402
from faceveil.io.manifest import read_manifest  # noqa: E402
from faceveil.pipeline import AnonymizerConfig  # noqa: E402
from faceveil.review import ReviewSet, ReviewSettings, create_app  # noqa: E402
from faceveil.cli.review import config_from_args  # noqa: E402

TOKEN = "test-token-dataset"
HDR = {"X-Faceveil-Token": TOKEN}


def _dataset(tmp_path: Path) -> tuple[Path, Path, Path]:
    """Two noise images with one labelled face each (WIDER labels); tmp/ds/{images,gt}."""
    rng = np.random.default_rng(1)
    root = tmp_path / "ds"
    lines = []
    for i in range(2):
        rel = f"ev/img{i}.png"
        (root / "images" / "ev").mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 256, (64, 96, 3), dtype=np.uint8)).save(root / "images" / rel)
        lines += [rel, "1", "8 8 16 16 0 0 0 0 0 0"]
    (root / "gt").mkdir()
    (root / "gt" / "labels.txt").write_text("\n".join(lines) + "\n")
    return root, root / "images", root / "gt" / "labels.txt"


def test_apply_on_a_dataset_output_updates_the_manifest(tmp_path):
    root, images, labels = _dataset(tmp_path)
    out = tmp_path / "out"
    dcfg = DatasetConfig(AnonymizerConfig(
        method="blackout", method_params={"color": "128"}, region={"shape": "box", "mask_scale": 1.0}), "gt")
    s = anonymize_dataset("wider", images, labels, out, dcfg, progress=False)
    assert s.done == 2 and verify(out).ok
    # The review takes the run's settings from the manifest when given no method options.
    cfg = config_from_args(build_parser().parse_args(["review", str(out), "--originals", str(root)]))
    assert (cfg.method, cfg.method_params["color"], cfg.region["shape"]) == ("blackout", "128", "box")
    rs = ReviewSet(out, root, cfg, ReviewSettings(second=("none",)), tmp_path / "cache")
    client = create_app(rs, TOKEN).test_client(use_cookies=False)
    rel = "images/ev/img0.png"
    before = np.asarray(Image.open(out / rel).convert("RGB")).copy()
    box = [50, 30, 70, 50]
    r = client.post("/api/apply", json={"path": rel, "manual": [box], "removed": []}, headers=HDR)
    assert r.status_code == 200, r.get_json()
    after = np.asarray(Image.open(out / rel).convert("RGB"))
    changed = np.any(after != before, axis=2)
    assert (after[30:50, 50:70] == 128).all()  # the manual box is blacked out
    changed[30:50, 50:70] = False
    assert not changed.any()  # ... and nothing else changed (the labelled face stays hidden as it was)
    assert (after[8:24, 8:24] == 128).all()

    rep = verify(out)
    assert rep.ok, rep  # new hash recorded; review.json is faceveil's own file, not "unexpected"
    entries = [e for e in read_manifest(out / "manifest.jsonl")[0] if e["kind"] == "image"]
    last = entries[-1]
    assert last["output"] == rel and last["reviewed"] is True and last["manual"] == [[50.0, 30.0, 70.0, 50.0]]
    assert last["anonymized_regions"] == 2 and last["removed"] == []

    # A resumed dataset run neither redoes nor flags the reviewed image, and keeps its entry.
    s2 = anonymize_dataset("wider", images, labels, out, dcfg, progress=False)
    assert (s2.done, s2.skipped, s2.failed) == (0, 2, [])
    assert (np.asarray(Image.open(out / rel).convert("RGB")) == after).all()
    compact = {e["output"]: e for e in read_manifest(out / "manifest.jsonl")[0] if e["kind"] == "image"}
    assert compact[rel]["reviewed"] is True and verify(out).ok

    # Other settings than the run's: Apply refuses rather than record a mismatching entry.
    other = ReviewSet(out, root, AnonymizerConfig(method="blur"), ReviewSettings(second=("none",)), tmp_path / "c2")
    r = create_app(other, TOKEN).test_client().post("/api/apply", json={"path": rel, "manual": [box]}, headers=HDR)
    assert r.status_code == 409 and "other settings" in r.get_json()["error"]


@pytest.mark.parametrize("orientation", [6, 3])
def test_apply_on_an_exif_rotated_dataset_output_keeps_the_stored_frame(tmp_path, astronaut, orientation):
    """Apply rewrites a dataset output in the stored frame with its orientation tag, as dataset mode wrote it,
    so its labels (stored pixels) still address the face and `dataset verify` stays ok."""
    import json

    from PIL import ImageOps

    stored = np.ascontiguousarray(astronaut[:400, :300])
    root = tmp_path / "ds"
    (root / "images").mkdir(parents=True)
    ex = Image.Exif()
    ex[0x0112] = orientation
    Image.fromarray(stored).save(root / "images" / "a.png", exif=ex)
    face = (180, 58, 270, 178)
    labels = root / "labels.json"
    labels.write_text(json.dumps({
        "images": [{"id": 1, "file_name": "a.png", "width": 300, "height": 400}],
        "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "iscrowd": 0,
                         "bbox": [face[0], face[1], face[2] - face[0], face[3] - face[1]]}],
        "categories": [{"id": 1, "name": "face"}]}))
    out = tmp_path / "out"
    dcfg = DatasetConfig(AnonymizerConfig(
        method="blackout", method_params={"color": "128"}, region={"shape": "box", "mask_scale": 1.0}), "gt")
    s = anonymize_dataset("coco", root / "images", labels, out, dcfg, progress=False)
    assert s.done == 1 and verify(out).ok
    rel = "images/a.png"
    cfg = config_from_args(build_parser().parse_args(["review", str(out), "--originals", str(root)]))
    rs = ReviewSet(out, root, cfg, ReviewSettings(second=("none",)), tmp_path / "cache")
    client = create_app(rs, TOKEN).test_client(use_cookies=False)
    before = np.asarray(Image.open(out / rel).convert("RGB")).copy()
    shown = np.asarray(ImageOps.exif_transpose(Image.open(root / "images" / "a.png")).convert("RGB"))
    h, w = shown.shape[:2]
    box = [w - 40.0, h - 40.0, w - 10.0, h - 10.0]  # a manual box in the upright view, as the page draws it
    r = client.post("/api/apply", json={"path": rel, "manual": [box], "removed": []}, headers=HDR)
    assert r.status_code == 200, r.get_json()
    res = Image.open(out / rel)
    assert res.getexif().get(0x0112, 1) == orientation, "the output keeps its orientation tag"
    after = np.asarray(res.convert("RGB"))
    assert after.shape == before.shape == (400, 300, 3), "stored pixels keep the labels' frame"
    x1, y1, x2, y2 = face
    assert (after[y1:y2, x1:x2] == 128).all(), "the labelled face (stored pixels) stays hidden"
    up = np.asarray(ImageOps.exif_transpose(res).convert("RGB"))
    assert (up[int(box[1]):int(box[3]), int(box[0]):int(box[2])] == 128).all(), "the manual box is hidden"
    assert verify(out).ok


def test_an_image_the_labels_do_not_name_is_not_listed_as_failed(tmp_path):
    """The dataset run never writes an image its labels do not name; the review listed it first, flagged 'failed'."""
    root, images, labels = _dataset(tmp_path)
    Image.fromarray(np.zeros((64, 96, 3), np.uint8)).save(images / "ev" / "unlabelled.png")
    gone = labels.read_text().splitlines()
    labels.write_text("\n".join(gone + ["ev/gone.png", "1", "8 8 16 16 0 0 0 0 0 0"]) + "\n")  # named, no file
    out = tmp_path / "out"
    dcfg = DatasetConfig(AnonymizerConfig(method="blackout", region={"shape": "box", "mask_scale": 1.0}), "gt")
    s = anonymize_dataset("wider", images, labels, out, dcfg, progress=False)
    assert s.unlabelled == ["ev/unlabelled.png"] and s.missing == ["ev/gone.png"]
    cfg = config_from_args(build_parser().parse_args(["review", str(out), "--originals", str(root)]))
    rs = ReviewSet(out, root, cfg, ReviewSettings(second=("none",)), tmp_path / "cache")
    listed = {i["path"] for i in rs.listing()["items"]}
    assert listed == {"images/ev/img0.png", "images/ev/img1.png"}, listed


def test_originals_that_hold_none_of_the_outputs_are_refused_with_the_folder_to_give(tmp_path):
    """--originals ds/images (the natural guess) listed every output as 'no original' and 'failed': it is taken as
    the dataset folder now; a folder with none of the originals is refused, naming the folder to give."""
    from faceveil.errors import UsageError

    root, images, labels = _dataset(tmp_path)
    out = tmp_path / "out"
    dcfg = DatasetConfig(AnonymizerConfig(method="blackout", region={"shape": "box", "mask_scale": 1.0}), "gt")
    anonymize_dataset("wider", images, labels, out, dcfg, progress=False)
    cfg = config_from_args(build_parser().parse_args(["review", str(out), "--originals", str(images)]))
    rs = ReviewSet(out, images, cfg, ReviewSettings(second=("none",)), tmp_path / "cache")  # ds/images means ds
    assert rs.in_root == root.resolve() and all(i.orig is not None for i in rs.items.values())
    (tmp_path / "elsewhere").mkdir()
    with pytest.raises(UsageError, match="none of the 2 outputs .* the dataset folder that holds the images folder"):
        ReviewSet(out, tmp_path / "elsewhere", cfg, ReviewSettings(second=("none",)), tmp_path / "cache")
