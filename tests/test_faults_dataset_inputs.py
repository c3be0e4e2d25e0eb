"""Dataset mode and its inputs: label edits, another dataset into the same OUT, labels drawn upright, --boxes gt,
files under OUT/.faceveil, the output beside the inputs, the help's examples."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from faceveil.cli import main
from faceveil.dataset import verify
from faceveil.io.manifest import read_manifest, rewrite_manifest

GREY = 128


def _wider(root: Path, boxes: dict[str, list], seed: int = 0) -> tuple[Path, Path]:
    """Noise PNGs (96x64) named as ``boxes``' keys with those x, y, w, h boxes; (images folder, WIDER label file)."""
    rng = np.random.default_rng(seed)
    lines = []
    for rel, bb in boxes.items():
        p = root / "images" / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 256, (64, 96, 3), dtype=np.uint8)).save(p)
        lines += [rel, str(len(bb))] + [f"{x} {y} {w} {h} 0 0 0 0 0 0" for x, y, w, h in bb]
    gt = root / "gt" / "gt.txt"
    gt.parent.mkdir(parents=True, exist_ok=True)
    gt.write_text("\n".join(lines) + "\n")
    return root / "images", gt


def _relabel(gt: Path, boxes: dict[str, list]) -> None:
    lines = []
    for rel, bb in boxes.items():
        lines += [rel, str(len(bb))] + [f"{x} {y} {w} {h} 0 0 0 0 0 0" for x, y, w, h in bb]
    gt.write_text("\n".join(lines) + "\n")


def _args(images, labels, out, boxes="gt", fmt="wider", *extra):
    return ["dataset", "anonymize", "--format", fmt, "--images", str(images), "--labels", str(labels), "-o",
            str(out), "--boxes", boxes, "-m", "blackout", "-p", f"color={GREY}", "--shape", "box",
            "--mask-scale", "1", "-q", *extra]


def _px(path: Path, box) -> np.ndarray:
    x, y, w, h = box
    return np.asarray(Image.open(path).convert("RGB"))[y:y + h, x:x + w]


def _error_lines(err: str) -> list[str]:
    assert "Traceback" not in err, err
    return [ln for ln in err.splitlines() if ln.startswith("faceveil: error")]


# ---------------------------------------------------------------------------
# 3. COCO labels drawn on the upright view of an EXIF-rotated photo; the size warning names its files

def _coco(path: Path, entries: dict[str, tuple]) -> Path:
    images, anns = [], []
    for k, (name, (size, boxes)) in enumerate(entries.items(), 1):
        images.append({"id": k, "file_name": name, "width": size[0], "height": size[1]})
        anns += [{"id": len(anns) + 1, "image_id": k, "category_id": 1, "bbox": list(b), "iscrowd": 0} for b in boxes]
    path.write_text(json.dumps({"images": images, "annotations": anns, "categories": [{"id": 1, "name": "face"}]}))
    return path


def test_coco_labels_drawn_upright_on_a_rotated_photo_fail_that_image(tmp_path, astronaut, capsys):
    root = tmp_path / "ds" / "images"
    root.mkdir(parents=True)
    stored = np.ascontiguousarray(astronaut[:400, :300])  # 300x400 stored; shown 400x300 (orientation 6)
    ex = Image.Exif()
    ex[0x0112] = 6
    Image.fromarray(stored).save(root / "rot.jpg", exif=ex, quality=95)
    Image.fromarray(stored).save(root / "plain.png")
    Image.fromarray(stored).save(root / "odd.png")
    labels = _coco(tmp_path / "ds" / "faces.json", {
        "rot.jpg": ((400, 300), [(100, 50, 60, 80)]),  # the upright size: boxes drawn on the rotated view
        "plain.png": ((300, 400), [(180, 58, 90, 120)]),
        "odd.png": ((320, 400), [(180, 58, 90, 120)])})  # a size that is simply wrong: a warning naming it
    out = tmp_path / "out"
    assert main(_args(root, labels, out, "gt", "coco")) == 1
    err = capsys.readouterr().err
    lines = _error_lines(err)
    assert len(lines) == 1 and "rot.jpg" in lines[0] and "upright" in lines[0] and "400x300" in lines[0], lines
    assert not (out / "images" / "rot.jpg").exists(), "never written with the regions in the wrong place"
    assert (out / "images" / "plain.png").is_file()
    warn = [ln for ln in err.splitlines() if "differ in size" in ln]
    assert len(warn) == 1 and "odd.png" in warn[0] and "plain.png" not in warn[0], err


# ---------------------------------------------------------------------------
# 4. --boxes gt says that the detector did not run

def test_boxes_gt_says_faces_without_a_label_stay_visible(tmp_path, capsys):
    images, gt = _wider(tmp_path / "ds", {"a.png": [(10, 8, 20, 24)]})
    assert main(_args(images, gt, tmp_path / "out", "gt")) == 0
    err = capsys.readouterr().err
    assert "detector not run (--boxes gt): faces without a label are not hidden" in err, err
    assert "0 detected" not in err
    assert main(_args(images, gt, tmp_path / "out2", "union")) == 0
    assert "0 detected (0 not in the labels)" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["dataset", "anonymize", "--help"])
    help_text = " ".join(capsys.readouterr().out.split())
    assert "gt runs no detector: unlabelled faces stay visible" in help_text


# ---------------------------------------------------------------------------
# 5. OUT/.faceveil holds only faceveil's own files

def test_verify_reports_a_foreign_file_under_the_own_folder(tmp_path, capsys):
    images, gt = _wider(tmp_path / "ds", {"a.png": [(10, 8, 20, 24)]})
    out = tmp_path / "out"
    assert main(_args(images, gt, out)) == 0
    own = out / ".faceveil"
    own.mkdir()
    (own / "review.json").write_text("{}")
    (own / "x.mp4.tracks.json").write_text("{}")
    assert verify(out).ok, "faceveil's own records are no outputs"
    shutil.copy(images / "a.png", own / "leak.png")  # the original photo, faces visible
    capsys.readouterr()
    assert main(["dataset", "verify", str(out)]) == 1
    assert "not in the manifest: .faceveil/leak.png" in capsys.readouterr().err


# ---------------------------------------------------------------------------
# 6. the output beside the inputs, in the folder that holds both

def test_an_output_beside_images_and_labels_is_not_inside_the_input(tmp_path, capsys):
    images, gt = _wider(tmp_path / "src", {"a.png": [(10, 8, 20, 24)]})
    lab = tmp_path / "lab" / "gt.txt"
    lab.parent.mkdir()
    shutil.move(gt, lab)
    out = tmp_path / "outx"
    assert main(_args(images, lab, out)) == 0, capsys.readouterr().err
    # the layout mirrors the folder that holds both (as documented): OUT/src/images/..., OUT/lab/gt.txt
    assert (out / "src" / "images" / "a.png").is_file() and (out / "lab" / "gt.txt").read_bytes() == lab.read_bytes()
    assert main(_args(images, lab, images / "anon")) == 2
    assert "inside the input" in capsys.readouterr().err


# ---------------------------------------------------------------------------
# 7. the help's examples keep their line continuations

def test_help_examples_continue_their_lines(capsys):
    with pytest.raises(SystemExit):
        main(["dataset", "anonymize", "--help"])
    lines = capsys.readouterr().out.splitlines()
    i = next(k for k, ln in enumerate(lines) if "ds/gt.txt" in ln)
    assert lines[i].endswith("\\") and lines[i + 1].strip().startswith("--keep-people people.npz"), lines[i:i + 2]
