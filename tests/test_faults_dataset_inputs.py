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


def test_a_dataset_outlined_does_not_say_it_was_anonymized(tmp_path, capsys):
    """-m outline draws boxes only, but the summary said "1 images anonymized"."""
    images, gt = _wider(tmp_path / "ds", {"a.png": [(10, 8, 20, 24)]})
    argv = _args(images, gt, tmp_path / "out")
    assert main(argv[:argv.index("-m")] + ["-m", "outline", "-q"]) == 0
    err = capsys.readouterr().err
    assert "1 images outlined, NOT anonymized, 0 already done" in err and "images anonymized" not in err, err


# ---------------------------------------------------------------------------
# 1. a label edit redoes the image; verify notices an image made from other labels

@pytest.mark.parametrize("boxes", ["gt", "union"])
def test_a_label_edit_redoes_the_image_it_concerns(tmp_path, boxes, capsys, monkeypatch):
    face, added = (10, 8, 20, 24), (50, 20, 30, 30)
    labels = {"a.png": [face], "b.png": [face]}
    images, gt = _wider(tmp_path / "ds", labels)
    out = tmp_path / "out"
    assert main(_args(images, gt, out, boxes)) == 0
    b_bytes = (out / "images" / "b.png").read_bytes()
    assert (_px(out / "images" / "a.png", added) == _px(images / "a.png", added)).all()  # not labelled yet
    _relabel(gt, {"a.png": [face, added], "b.png": [face]})
    capsys.readouterr()
    assert main(_args(images, gt, out, boxes)) == 0
    err = capsys.readouterr().err
    assert "1 images anonymized, 1 already done" in err, err
    assert (_px(out / "images" / "a.png", added) == GREY).all(), "the newly labelled face must be hidden"
    assert (_px(out / "images" / "a.png", face) == GREY).all()
    assert (out / "images" / "b.png").read_bytes() == b_bytes
    assert (out / "gt" / "gt.txt").read_bytes() == gt.read_bytes()
    assert verify(out).ok

    # Ctrl-C after the new label file was copied, before the image was redone: verify says so, a rerun redoes it
    third = (60, 2, 10, 10)
    _relabel(gt, {"a.png": [face, added, third], "b.png": [face]})
    import faceveil.dataset.job as job

    def interrupted(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(job, "run_local", interrupted)
    assert main(_args(images, gt, out, boxes)) == 130
    monkeypatch.undo()
    capsys.readouterr()
    assert main(["dataset", "verify", str(out)]) == 1
    err = capsys.readouterr().err
    assert "not as the labels say: images/a.png (its labels changed" in err and "images/b.png" not in err, err
    assert main(_args(images, gt, out, boxes)) == 0
    assert (_px(out / "images" / "a.png", third) == GREY).all()
    assert main(["dataset", "verify", str(out)]) == 0


def test_a_failed_redo_after_a_label_edit_leaves_no_stale_output(tmp_path, capsys):
    images, gt = _wider(tmp_path / "ds", {"a.png": [(10, 8, 20, 24)], "b.png": [(10, 8, 20, 24)]})
    out = tmp_path / "out"
    assert main(_args(images, gt, out)) == 0
    _relabel(gt, {"a.png": [(10, 8, 20, 24), (200, 10, 20, 20)], "b.png": [(10, 8, 20, 24)]})  # wholly outside
    capsys.readouterr()
    assert main(_args(images, gt, out)) == 1
    lines = _error_lines(capsys.readouterr().err)
    assert len(lines) == 1 and "a.png" in lines[0] and "outside" in lines[0], lines
    assert not (out / "images" / "a.png").exists(), "an output made from the old labels must not stay"
    assert main(["dataset", "verify", str(out)]) == 1
    assert "missing: images/a.png" in capsys.readouterr().err


def test_a_reviewers_boxes_stay_hidden_when_a_label_edit_redoes_the_image(tmp_path, capsys):
    face, manual = (10, 8, 20, 24), (60, 30, 20, 20)
    images, gt = _wider(tmp_path / "ds", {"a.png": [face]})
    out = tmp_path / "out"
    assert main(_args(images, gt, out)) == 0
    entries = read_manifest(out / "manifest.jsonl")[0]  # what `faceveil review`'s Apply records (upright boxes)
    entries[-1] = {**entries[-1], "reviewed": True, "manual": [[60.0, 30.0, 80.0, 50.0]]}
    rewrite_manifest(out / "manifest.jsonl", entries)
    _relabel(gt, {"a.png": [face, (40, 2, 10, 10)]})
    assert main(_args(images, gt, out)) == 0
    assert (_px(out / "images" / "a.png", manual) == GREY).all()
    assert (_px(out / "images" / "a.png", (40, 2, 10, 10)) == GREY).all()


def _review_apply(out: Path, rel: str, box: list) -> None:
    """What `faceveil review`'s Apply leaves: the image's manifest line with the box, and the box in review.json."""
    entries = read_manifest(out / "manifest.jsonl")[0]
    entries = [{**e, "reviewed": True, "manual": [box]} if e.get("output") == rel else e for e in entries]
    rewrite_manifest(out / "manifest.jsonl", entries)
    (out / ".faceveil").mkdir(exist_ok=True)
    (out / ".faceveil" / "review.json").write_text(json.dumps(
        {"faceveil": "0.1.0", "format": 1, "items": {rel: {"manual": [box], "removed": []}}}))


def test_a_reviewers_boxes_survive_a_failed_redo(tmp_path, capsys):
    """A failed redo dropped the image's line and its manual boxes with it: the next good run hid the labelled face
    only (the reviewer's face visible again) and verify said ok; the saved review keeps them now."""
    face, manual = (10, 8, 20, 24), (60, 30, 20, 20)
    images, gt = _wider(tmp_path / "ds", {"a.png": [face]})
    out = tmp_path / "out"
    assert main(_args(images, gt, out)) == 0
    _review_apply(out, "images/a.png", [60.0, 30.0, 80.0, 50.0])
    _relabel(gt, {"a.png": [face, (1000, 2, 10, 10)]})  # wholly outside: the redo fails
    assert main(_args(images, gt, out)) == 1
    _relabel(gt, {"a.png": [face, (40, 2, 10, 10)]})
    capsys.readouterr()
    assert main(_args(images, gt, out)) == 0
    assert (_px(out / "images" / "a.png", manual) == GREY).all(), "the reviewer's box must stay hidden"
    assert (_px(out / "images" / "a.png", (40, 2, 10, 10)) == GREY).all()
    assert main(["dataset", "verify", str(out)]) == 0

    # An output redone without them (an older faceveil): verify says so, a rerun redoes it with them
    entries = read_manifest(out / "manifest.jsonl")[0]
    rewrite_manifest(out / "manifest.jsonl", [{k: v for k, v in e.items() if k != "manual"} for e in entries])
    capsys.readouterr()
    assert main(["dataset", "verify", str(out)]) == 1
    assert "altered: images/a.png (a reviewer's manual box" in capsys.readouterr().err
    assert main(_args(images, gt, out)) == 0
    assert "1 images anonymized, 0 already done" in capsys.readouterr().err
    assert main(["dataset", "verify", str(out)]) == 0


# ---------------------------------------------------------------------------
# 2. another dataset into an existing output

def test_another_dataset_into_an_output_is_refused_unless_overwrite(tmp_path, capsys, monkeypatch):
    images_a, gt_a = _wider(tmp_path / "a", {"a0.png": [(10, 8, 20, 24)], "a1.png": [(10, 8, 20, 24)]})
    images_b, gt_b = _wider(tmp_path / "b", {"b0.png": [(30, 8, 20, 24)]}, seed=1)
    out = tmp_path / "out"
    assert main(_args(images_a, gt_a, out)) == 0
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    capsys.readouterr()
    assert main(_args(images_b, gt_b, out)) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "made from another dataset" in err and "--overwrite" in err, err
    assert str(images_b.resolve()) in err
    assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file()} == before, "nothing may change"
    monkeypatch.chdir(tmp_path)  # the same dataset by another path (relative) is the same dataset
    assert main(_args("a/images", "a/gt/gt.txt", "out")) == 0
    assert main(_args(images_b, gt_b, out, "gt", "wider", "--overwrite")) == 0
    assert (out / "gt" / "gt.txt").read_bytes() == gt_b.read_bytes()
    capsys.readouterr()
    assert main(["dataset", "verify", str(out)]) == 1, "A's images are no longer described by any label file"
    err = capsys.readouterr().err
    assert "images/a0.png (OUT's label files do not name it)" in err and "images/b0.png" not in err, err


# ---------------------------------------------------------------------------
# 3. COCO labels drawn on the upright view of an EXIF-rotated photo; the size warning names its files

def _coco(path: Path, entries: dict[str, tuple]) -> Path:
    images, anns = [], []
    for k, (name, (size, boxes)) in enumerate(entries.items(), 1):
        images.append({"id": k, "file_name": name, "width": size[0], "height": size[1]})
        anns += [{"id": len(anns) + 1, "image_id": k, "category_id": 1, "bbox": list(b), "iscrowd": 0} for b in boxes]
    path.write_text(json.dumps({"images": images, "annotations": anns, "categories": [{"id": 1, "name": "face"}]}))
    return path


def test_coco_labels_drawn_upright_or_for_another_size_fail_that_image(tmp_path, astronaut, capsys):
    """A stated size that is simply wrong was only a warning (exit 0, every labelled face visible when the boxes
    were made for a resized copy): that image fails now, naming both sizes."""
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
        "odd.png": ((600, 800), [(360, 116, 180, 240)])})  # made for a copy twice the size
    out = tmp_path / "out"
    assert main(_args(root, labels, out, "gt", "coco")) == 1
    err = capsys.readouterr().err
    lines = sorted(_error_lines(err))
    assert len(lines) == 2, lines
    assert "odd.png: the labels state 600x800, the image is 300x400" in lines[0], lines
    assert "rot.jpg" in lines[1] and "upright" in lines[1] and "400x300" in lines[1], lines
    assert not (out / "images" / "rot.jpg").exists(), "never written with the regions in the wrong place"
    assert not (out / "images" / "odd.png").exists()
    assert (out / "images" / "plain.png").is_file()
    assert "warning" not in err, err


@pytest.mark.parametrize("orientation, warned", [(6, True), (3, True), (1, False)])
def test_wider_boxes_on_a_rotated_photo_are_taken_in_the_stored_frame_with_a_warning(tmp_path, astronaut, capsys,
                                                                                      orientation, warned):
    """WIDER states no size: boxes drawn on the upright view of an EXIF-rotated photo missed the face (exit 0,
    nothing said). Nothing can tell the frame, so they are taken in the stored pixels and the image is named."""
    root = tmp_path / "ds" / "images"
    root.mkdir(parents=True)
    ex = Image.Exif()
    ex[0x0112] = orientation
    Image.fromarray(np.ascontiguousarray(astronaut[:400, :300])).save(root / "rot.png", exif=ex)
    gt = tmp_path / "ds" / "gt.txt"
    gt.write_text("rot.png\n1\n180 58 90 120 0 0 0 0 0 0\n")
    out = tmp_path / "out"
    assert main(_args(root, gt, out, "gt")) == 0
    warn = [ln for ln in capsys.readouterr().err.splitlines() if "warning" in ln]
    if warned:
        assert len(warn) == 1 and f"rot.png (EXIF orientation {orientation})" in warn[0], warn
        assert "taken in the stored pixels" in warn[0] and "check that its faces are hidden" in warn[0], warn
    else:
        assert warn == []
    stored = np.asarray(Image.open(out / "images" / "rot.png").convert("RGB"))  # stored pixels, not transposed
    assert (stored[58:178, 180:270] == GREY).all()


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

@pytest.mark.parametrize("columns", ["80", "100"])
@pytest.mark.parametrize("argv", [["dataset", "anonymize"], ["anonymize"], ["review"], [], ["bank", "build"],
                                  ["people", "build"], ["eval", "train"], ["eval", "leaks"]])
def test_help_examples_are_commands_as_printed_on_a_narrow_screen(argv, columns, capsys, monkeypatch):
    """At COLUMNS=80 the examples were re-wrapped into broken commands, and a comment without "#" read as
    arguments: every example, pasted as printed, is one command the parser takes now."""
    import shlex

    from faceveil.cli import build_parser

    monkeypatch.setenv("COLUMNS", columns)
    with pytest.raises(SystemExit):
        main([*argv, "--help"])
    out = capsys.readouterr().out
    assert max(len(ln) for ln in out.splitlines()) <= int(columns) - 2
    commands, more = [], False
    for ln in out.split("example", 1)[1].splitlines():
        if more:  # a shell joins continued lines
            commands[-1] += ln
        elif ln.lstrip().startswith("faceveil "):
            commands.append(ln)
        else:
            continue
        more = ln.endswith("\\")
        commands[-1] = commands[-1].removesuffix("\\")
    assert commands, out
    for c in commands:
        words = shlex.split(c, comments=True)
        assert words[0] == "faceveil", c
        build_parser().parse_args(words[1:])  # exits 2 on a stray word


# ---------------------------------------------------------------------------
# 8. inputs are never dropped silently: other picture types, upper-case label files, hidden folders

def test_dataset_warnings_escape_control_characters_in_names(tmp_path, capsys):
    """The "formats faceveil does not read" and "no label file" warnings printed names raw: a picture named
    "h\\nfaceveil: 9 images anonymized.avif" printed a status line of its own. Escaped now (errors.one_line)."""
    rng = np.random.default_rng(0)
    ds = tmp_path / "ds"
    fake = "\nfaceveil: 9 images anonymized, 0 failed"
    for rel in ["images/a.jpg", f"images/n{fake}.jpg", f"images/h{fake}.jxl"]:
        (ds / rel).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 256, (64, 96, 3), dtype=np.uint8)).save(ds / rel, format="PNG")
    (ds / "labels").mkdir()
    (ds / "labels" / "a.txt").write_text("0 0.5 0.5 0.25 0.25\n")
    assert main(_args(ds / "images", ds / "labels", tmp_path / "out", "gt", "yolo")) == 0
    lines = capsys.readouterr().err.splitlines()
    shown = fake.replace("\n", "\\n")
    assert not any(ln.startswith("faceveil: 9 images") for ln in lines), lines
    assert any(ln.endswith(f"not anonymized and not written: h{shown}.jxl") for ln in lines), lines
    assert any(f"1 images have no label file (e.g. n{shown}.jpg): taken as" in ln for ln in lines), lines


def test_yolo_and_voc_inputs_are_named_or_taken_never_dropped(tmp_path, capsys):
    """g.gif + g.txt was called "g.jpg: in the labels but no such image"; h.avif (h.jxl now that AVIF is read) went
    unmentioned; UP.TXT and X.XML (upper-case) were ignored, their faces left out of OUT; images/.ipynb_checkpoints/
    was copied into OUT."""
    rng = np.random.default_rng(0)
    ds = tmp_path / "ds"
    for rel in ["images/a.jpg", "images/UP.JPG", "images/.ipynb_checkpoints/a-checkpoint.jpg", "images/g.gif",
                "images/h.jxl"]:
        (ds / rel).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 256, (64, 96, 3), dtype=np.uint8)).save(ds / rel, format="PNG")
    for rel in ["labels/a.txt", "labels/UP.TXT", "labels/g.txt", "labels/.ipynb_checkpoints/a-checkpoint.txt"]:
        (ds / rel).parent.mkdir(parents=True, exist_ok=True)
        (ds / rel).write_text("0 0.5 0.5 0.25 0.25\n")
    (ds / "labels" / "sub").mkdir()
    (ds / "labels" / "sub" / "classes.txt").write_text("face\n")  # LabelImg's, beside a folder's labels
    out = tmp_path / "out"
    assert main(_args(ds / "images", ds / "labels", out, "gt", "yolo")) == 1
    err = capsys.readouterr().err
    assert _error_lines(err) == [f"faceveil: error: {ds / 'images' / 'g.gif'}: labelled, but faceveil does not "
                                 "read .gif pictures; not written"], err
    assert "g.jpg" not in err and "formats faceveil does not read skipped, not anonymized and not written: h.jxl" \
        in err, err
    written = sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file())
    assert written == ["images/UP.JPG", "images/a.jpg", "labels/UP.TXT", "labels/a.txt", "labels/g.txt",
                       "labels/sub/classes.txt", "manifest.jsonl"], written
    assert np.abs(_px(out / "images" / "UP.JPG", (36, 24, 24, 16)).astype(int) - GREY).mean() < 8  # JPEG grey

    voc = tmp_path / "voc"
    (voc / "ann").mkdir(parents=True)
    shutil.copy(ds / "images" / "a.jpg", ds / "images" / "b.jpg")
    (voc / "ann" / "X.XML").write_text("<annotation><filename>b.jpg</filename><object><name>face</name><bndbox>"
                                       "<xmin>36</xmin><ymin>24</ymin><xmax>60</xmax><ymax>40</ymax></bndbox>"
                                       "</object></annotation>")
    assert main(_args(ds / "images", voc / "ann", tmp_path / "vout", "gt", "voc")) == 0
    assert np.abs(_px(tmp_path / "vout" / "ds" / "images" / "b.jpg", (36, 24, 24, 16)).astype(int) - GREY).mean() < 8
    assert (tmp_path / "vout" / "voc" / "ann" / "X.XML").read_bytes() == (voc / "ann" / "X.XML").read_bytes()


def test_an_unreadable_folder_of_a_yolo_dataset_stops_it_before_any_work(tmp_path, capsys, monkeypatch):
    """images/sub unreadable: its image went missing from OUT (exit 0, verify ok), or with its label file a
    traceback; labels/sub unreadable: its images were written as having no label file."""
    import os

    rng = np.random.default_rng(0)
    ds = tmp_path / "ds"
    for rel in ["images/a.jpg", "images/sub/s.jpg"]:
        (ds / rel).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 256, (64, 96, 3), dtype=np.uint8)).save(ds / rel, format="PNG")
    for rel in ["labels/a.txt", "labels/sub/s.txt"]:
        (ds / rel).parent.mkdir(parents=True, exist_ok=True)
        (ds / rel).write_text("0 0.5 0.5 0.25 0.25\n")
    real = os.scandir
    for locked in ("images", "labels"):
        def scandir(path=".", locked=locked):
            if Path(os.fspath(path)) == ds / locked / "sub":
                raise PermissionError(13, "Permission denied", os.fspath(path))
            return real(path)

        monkeypatch.setattr(os, "scandir", scandir)
        out = tmp_path / f"out_{locked}"
        assert main(_args(ds / "images", ds / "labels", out, "gt", "yolo")) == 2  # found before any work: bad usage
        assert _error_lines(capsys.readouterr().err) == [
            f"faceveil: error: {ds / locked / 'sub'}: cannot read the folder (Permission denied); nothing written "
            "(make it readable, or move it out)"]
        assert not out.exists() or not any(out.rglob("*"))


def test_unreadable_labels_or_images_folder_are_bad_usage_before_any_work(tmp_path, capsys, monkeypatch):
    """--labels that cannot be read (chmod 000) exited 1, as a file failed in the run; one in a folder that may not be
    entered was a traceback; an --images folder that cannot be read exited 1 (eval leaks: 2). Each is an argument
    found unusable before any work, as a missing one is: exit 2, one line naming it, nothing written."""
    import pathlib

    from conftest import unreadable_folders

    images, gt = _wider(tmp_path / "ds", {"a.png": [(10, 8, 20, 24)]})
    real = pathlib.Path.read_bytes

    def read_bytes(self):
        if self == gt:
            raise PermissionError(13, "Permission denied", str(self))
        return real(self)

    monkeypatch.setattr(pathlib.Path, "read_bytes", read_bytes)
    out = tmp_path / "out"
    assert main(_args(images, gt, out)) == 2
    assert _error_lines(capsys.readouterr().err) == [f"faceveil: error: {gt}: cannot read (Permission denied)"]
    monkeypatch.undo()
    unreadable_folders(monkeypatch, "locked")
    (tmp_path / "labels" / "locked").mkdir(parents=True)
    locked_gt = shutil.copy(gt, tmp_path / "labels" / "locked" / "gt.txt")
    assert main(_args(images, locked_gt, out)) == 2
    assert _error_lines(capsys.readouterr().err) == [f"faceveil: error: {locked_gt}: a folder on the way to it cannot "
                                                     "be entered (permission denied)"]
    locked_images = images.rename(images.with_name("locked"))
    assert main(_args(locked_images, gt, out)) == 2
    assert _error_lines(capsys.readouterr().err) == [
        f"faceveil: error: {locked_images}: cannot read the folder (Permission denied); nothing written (make it "
        "readable, or move it out)"]
    assert not out.exists()


def test_image_names_with_spaces_at_either_end_are_taken_as_written(tmp_path, capsys):
    """COCO's " lead.jpg" was read as lead.jpg (another person's photo): that one was anonymized with the other's
    labels, the real " lead.jpg" not written, and verify said ok. WIDER's line " lead.jpg" was trimmed alike."""
    rng = np.random.default_rng(0)
    images = tmp_path / "images"
    images.mkdir()
    for name in (" lead.jpg", "lead.jpg"):
        Image.fromarray(rng.integers(0, 256, (64, 96, 3), dtype=np.uint8)).save(images / name, format="PNG")
    coco = tmp_path / "coco.json"
    coco.write_text(json.dumps({"images": [{"id": 1, "file_name": " lead.jpg", "width": 96, "height": 64}],
                                "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [36, 24, 24, 16],
                                                 "area": 384, "iscrowd": 0}],
                                "categories": [{"id": 1, "name": "face"}]}))
    out = tmp_path / "out"
    assert main(_args(images, coco, out, "gt", "coco")) == 0, capsys.readouterr().err
    written = sorted(p.name for p in (out / "images").iterdir())
    assert written == [" lead.jpg"], written
    assert np.abs(_px(out / "images" / " lead.jpg", (36, 24, 24, 16)).astype(int) - GREY).mean() < 8  # JPEG grey

    gt = tmp_path / "gt.txt"
    gt.write_text(" lead.jpg\n1\n36 24 24 16 0 0 0 0 0 0\n")
    capsys.readouterr()
    assert main(_args(images, gt, tmp_path / "wout")) == 1
    assert _error_lines(capsys.readouterr().err) == [
        f"faceveil: error: {gt}:1: image name ' lead.jpg' begins or ends with white space, which a WIDER line cannot "
        "tell from padding; remove it from the line, or rename the image"]
    assert not (tmp_path / "wout").exists()


def test_the_same_dataset_moved_elsewhere_resumes_and_a_changed_one_is_still_refused(tmp_path, capsys):
    """A dataset folder moved (renamed, or mounted at another path on another machine) was "another dataset": the
    resume stopped (exit 2) and only --overwrite went on, redoing every image. Its labels naming the same images
    with the same boxes, it is the same dataset: the run resumes (nothing redone, the same bytes) and the manifest
    records the new path; moved and relabelled, it is refused as before."""
    images, gt = _wider(tmp_path / "a", {"a0.png": [(10, 8, 20, 24)], "a1.png": [(10, 8, 20, 24)]})
    out = tmp_path / "out"
    assert main(_args(images, gt, out)) == 0
    before = {p.relative_to(out): p.read_bytes() for p in (out / "images").rglob("*") if p.is_file()}
    shutil.move(tmp_path / "a", tmp_path / "moved")
    images, gt = tmp_path / "moved" / "images", tmp_path / "moved" / "gt" / "gt.txt"
    capsys.readouterr()
    assert main(_args(images, gt, out)) == 0
    assert "0 images anonymized, 2 already done" in capsys.readouterr().err
    assert {p.relative_to(out): p.read_bytes() for p in (out / "images").rglob("*") if p.is_file()} == before
    recorded = next(e for e in read_manifest(out / "manifest.jsonl")[0] if e.get("dataset"))["dataset"]
    assert recorded["images"] == str(images.resolve())
    assert main(["dataset", "verify", str(out)]) == 0

    shutil.move(tmp_path / "moved", tmp_path / "again")
    _relabel(tmp_path / "again" / "gt" / "gt.txt", {"a0.png": [(12, 8, 20, 24)], "a1.png": [(10, 8, 20, 24)]})
    capsys.readouterr()
    assert main(_args(tmp_path / "again" / "images", tmp_path / "again" / "gt" / "gt.txt", out)) == 2
    assert "made from another dataset" in capsys.readouterr().err
