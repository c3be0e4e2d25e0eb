"""Labelled boxes get the detector's landmarks of the same face, so replace gets its face-shaped region there too.

Dataset mode ``--boxes gt`` and ``faceveil eval train`` anonymize labelled boxes, which carry no landmarks;
without them replace pastes a frontal face over the whole (1.25x) box. They now take the landmarks of the
best-overlapping detection; the labelled box stays the region.
"""
from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from faceveil.cli import main
from faceveil.dataset import verify
from faceveil.detections import Detections
from faceveil.io.manifest import read_manifest

# The astronaut's face, labelled by hand the way a dataset would (x1, y1, x2, y2); CenterFace finds
# (178, 69, 271, 194) with eyes near (203, 102), (248, 103), nose (223, 126).
LABEL = (180, 62, 270, 190)


def _lm(cx, cy):
    return np.array([[cx - 10, cy - 5], [cx + 10, cy - 5], [cx, cy], [cx - 8, cy + 10], [cx + 8, cy + 10]],
                    np.float32)


def test_with_landmarks_from_matches_one_to_one_above_the_cut():
    labels = Detections.from_boxes([[0, 0, 40, 40], [100, 0, 140, 40], [200, 0, 240, 40], [0, 100, 40, 140]],
                                   source="label")
    own = labels.landmarks.copy()
    own[3] = _lm(20, 120)
    labels = Detections(labels.xyxy, labels.score, own, None, "label", labels.sources)
    dets = Detections.from_boxes(
        [[2, 2, 42, 42],        # label 0, IoU ~0.82
         [1, 1, 41, 41],        # label 0 too, IoU ~0.90: the better one, the other goes unused
         [130, 0, 170, 40],     # label 1 at IoU 0.14: under the cut
         [200, 0, 240, 40],     # label 2, but has no landmarks
         [0, 100, 40, 140]],    # label 3, which keeps its own
        landmarks=np.stack([_lm(22, 22), _lm(21, 21), _lm(150, 20), np.full((5, 2), np.nan), _lm(0, 0)]))
    out = labels.with_landmarks_from(dets)
    np.testing.assert_array_equal(out.xyxy, labels.xyxy)  # the region stays the labelled box
    assert out.sources.tolist() == ["label"] * 4
    np.testing.assert_array_equal(out.landmarks[0], _lm(21, 21))
    assert out.has_landmarks.tolist() == [True, False, False, True]
    np.testing.assert_array_equal(out.landmarks[3], _lm(20, 120))
    assert labels.with_landmarks_from(Detections.empty()) is labels


def _changed(a, b, x, y, r=3) -> float:
    pa = a[y - r: y + r + 1, x - r: x + r + 1].astype(int)
    pb = b[y - r: y + r + 1, x - r: x + r + 1].astype(int)
    return float(np.abs(pa - pb).mean())


def _face_shaped(orig, res):
    """The replaced pixels fill at most 85 % of the default 1.25x region around the label (a box: 100 %)."""
    x1, y1, x2, y2 = LABEL
    cx, cy, hw, hh = (x1 + x2) / 2, (y1 + y2) / 2, 1.25 * (x2 - x1) / 2, 1.25 * (y2 - y1) / 2
    win = (slice(int(cy - hh), int(cy + hh)), slice(int(cx - hw), int(cx + hw)))
    changed = np.abs(orig[win].astype(int) - res[win].astype(int)).mean(axis=2) > 3
    assert changed.mean() <= 0.85, f"{changed.mean():.0%} of the region replaced: the box, not the face"


def test_dataset_gt_boxes_replace_gets_the_face_shaped_region(tmp_path, astronaut):
    from faceveil.pipeline import Anonymizer

    root = tmp_path / "ds" / "images"
    (root / "a").mkdir(parents=True)
    Image.fromarray(astronaut).save(root / "a" / "astronaut.png")
    x1, y1, x2, y2 = LABEL
    gt = tmp_path / "ds" / "gt" / "labels.txt"
    gt.parent.mkdir(parents=True)
    gt.write_text(f"a/astronaut.png\n1\n{x1} {y1} {x2 - x1} {y2 - y1} 0 0 0 0 0 0\n")
    out = tmp_path / "out"
    args = ["dataset", "anonymize", "--format", "wider", "--images", str(root), "--labels", str(gt), "-o", str(out),
            "--boxes", "gt", "-m", "replace", "-q"]
    assert main(args) == 0
    res = np.asarray(Image.open(out / "images" / "a" / "astronaut.png").convert("RGB"))
    assert res.shape == astronaut.shape

    # Eyes, nose and mouth (the detector's landmarks) are replaced ...
    lm = Anonymizer("replace").detect(astronaut).landmarks[0]
    for (x, y) in np.round(lm).astype(int):
        assert _changed(astronaut, res, x, y) > 8, f"the face at ({x}, {y}) kept its pixels"
    # ... and the corners of the labelled box keep theirs: a face-shaped region, not the box.
    # (Without landmarks replace fills the whole 1.25x box: every pixel of it changes. The bottom corners
    # here lie on the jaw line and neck, which the face shape rightly covers.)
    for (x, y) in [(x1 + 4, y1 + 4), (x2 - 5, y1 + 4)]:
        assert _changed(astronaut, res, x, y, r=2) < 1.0, f"the box corner at ({x}, {y}) was replaced"
    _face_shaped(astronaut, res)
    # Outside the region nothing changes.
    assert np.array_equal(res[:, :150], astronaut[:, :150])

    # The manifest and settings round-trip: verify passes, a second run skips the image with the same bytes.
    assert verify(out).ok
    entries = [e for e in read_manifest(out / "manifest.jsonl")[0] if e["kind"] == "image"]
    assert len(entries) == 1 and entries[0]["regions"] == [[float(v) for v in LABEL]]
    assert entries[0]["faces"]["labels_anonymized"] == 1 and entries[0]["boxes"] == "gt"
    sha = entries[0]["output_sha256"]
    assert main(args) == 0
    entries = [e for e in read_manifest(out / "manifest.jsonl")[0] if e["kind"] == "image"]
    assert [e["output_sha256"] for e in entries] == [sha]
    json.dumps(entries[0])


def test_eval_train_replace_gets_the_face_shaped_region(astronaut):
    from faceveil.train.train_on_anon import MethodSpec, Sample, anonymize_samples

    s = Sample("astronaut", astronaut, np.array([LABEL], np.float32))
    (res,) = anonymize_samples([s], MethodSpec("replace", "replace"), seed=0)
    x1, y1, x2, y2 = LABEL
    for (x, y) in [(x1 + 4, y1 + 4), (x2 - 5, y1 + 4)]:
        assert _changed(astronaut, res, x, y, r=2) < 1.0, f"the box corner at ({x}, {y}) was replaced"
    _face_shaped(astronaut, res)
    assert _changed(astronaut, res, 223, 126) > 8  # the nose
    # Methods that do not read landmarks run no detector: labelled boxes as they are.
    (blur,) = anonymize_samples([s], MethodSpec("blur", "blur"), seed=0)
    assert not np.array_equal(blur[y1:y2, x1:x2], astronaut[y1:y2, x1:x2])


def test_review_apply_on_a_replaced_dataset_output_keeps_the_face_shaped_region(tmp_path, astronaut):
    """The review page redoes a dataset image from its recorded regions (plain boxes): they get the landmarks
    too, so an Apply elsewhere does not rebuild the labelled face's box corners with a box-fitted face."""
    pytest.importorskip("flask", reason="the review page needs Flask")
    from faceveil.cli import build_parser
    from faceveil.cli.review import config_from_args
    from faceveil.review import ReviewSet, ReviewSettings, create_app

    root = tmp_path / "ds"
    (root / "images" / "a").mkdir(parents=True)
    Image.fromarray(astronaut).save(root / "images" / "a" / "astronaut.png")
    x1, y1, x2, y2 = LABEL
    gt = root / "gt" / "labels.txt"
    gt.parent.mkdir(parents=True)
    gt.write_text(f"a/astronaut.png\n1\n{x1} {y1} {x2 - x1} {y2 - y1} 0 0 0 0 0 0\n")
    out = tmp_path / "out"
    assert main(["dataset", "anonymize", "--format", "wider", "--images", str(root / "images"), "--labels", str(gt),
                 "-o", str(out), "--boxes", "gt", "-m", "replace", "-q"]) == 0
    rel = "images/a/astronaut.png"
    before = np.asarray(Image.open(out / rel).convert("RGB")).copy()
    cfg = config_from_args(build_parser().parse_args(["review", str(out), "--originals", str(root)]))
    rs = ReviewSet(out, root, cfg, ReviewSettings(second=("none",)), tmp_path / "cache")
    token = "test-token-landmarks"
    client = create_app(rs, token).test_client(use_cookies=False)
    box = [20, 400, 60, 440]  # far from the face
    r = client.post("/api/apply", json={"path": rel, "manual": [box], "removed": []},
                    headers={"X-Faceveil-Token": token})
    assert r.status_code == 200, r.get_json()
    after = np.asarray(Image.open(out / rel).convert("RGB"))
    near = (slice(y1 - 40, y2 + 40), slice(x1 - 40, x2 + 40))
    diff = np.abs(after[near].astype(int) - before[near].astype(int)).max(axis=2)
    assert (diff == 0).all(), f"{(diff > 0).sum()} pixels around the labelled face changed on an Apply elsewhere"
    _face_shaped(astronaut, after)
    assert verify(out).ok


def test_dataset_union_replace_draws_one_face_per_labelled_face(tmp_path, astronaut):
    """--boxes union: the labelled face and the detector's box of the same face were both replaced, two new
    faces painted over each other; now the labelled box grows over the detection's and one face is drawn."""
    root = tmp_path / "ds" / "images"
    root.mkdir(parents=True)
    Image.fromarray(astronaut).save(root / "astronaut.png")
    x1, y1, x2, y2 = LABEL
    gt = tmp_path / "ds" / "labels.txt"
    gt.write_text(f"astronaut.png\n1\n{x1} {y1} {x2 - x1} {y2 - y1} 0 0 0 0 0 0\n")
    out = tmp_path / "out"
    assert main(["dataset", "anonymize", "--format", "wider", "--images", str(root), "--labels", str(gt),
                 "-o", str(out), "--boxes", "union", "-m", "replace", "-q"]) == 0
    (entry,) = [e for e in read_manifest(out / "manifest.jsonl")[0] if e["kind"] == "image"]
    assert len(entry["regions"]) == 1, entry["regions"]  # one face, one replacement
    (box,) = entry["regions"]
    assert box[0] <= x1 and box[1] <= y1 and box[2] >= x2 and box[3] >= y2  # never less than the label
    assert box[0] <= 178 + 1 and box[3] >= 194 - 1  # and the detection's box (178, 69, 271, 194) too
    assert entry["faces"]["detected_extra"] == 0
    assert verify(out).ok
