"""Dataset mode: labels stay valid, exactly the right pixels change, resumable after kill -9, verify."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from faceveil.anonymize import Compositor, RegionParams
from faceveil.cli import main
from faceveil.dataset import DatasetConfig, anonymize_dataset, verify
from faceveil.detections import Detections
from faceveil.errors import UsageError
from faceveil.io.labels import read_wider, write_coco, write_wider, write_yolo
from faceveil.io.manifest import ManifestWriter, read_manifest
from faceveil.pipeline import AnonymizerConfig

from conftest import shared_path

ROOT = Path(__file__).resolve().parents[1]
GREY = "128"


def noise_dataset(tmp_path: Path, n: int = 4, size=(96, 64), boxes=None, ext=".png") -> tuple[Path, Path]:
    """n noise images in two folders, WIDER labels; returns (images root, label file)."""
    rng = np.random.default_rng(0)
    root = tmp_path / "ds" / "images"
    lines = []
    for i in range(n):
        rel = f"ev{i % 2}/img{i:03d}{ext}"
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)).save(p)
        b = boxes if boxes is not None else [(10 + i, 8, 20, 24)]
        lines += [rel, str(len(b))] + [f"{x} {y} {w} {h} 0 0 0 0 0 0" for x, y, w, h in b]
    gt = tmp_path / "ds" / "gt" / "labels.txt"
    gt.parent.mkdir(parents=True)
    gt.write_text("\n".join(lines) + "\n")
    return root, gt


def cfg(method="blackout", params=None, boxes="gt", min_size=0.0, shape="box", seed=0) -> DatasetConfig:
    region = {"shape": shape, "mask_scale": 1.0 if shape == "box" else 1.1}  # the smallest each shape may have
    return DatasetConfig(AnonymizerConfig(method=method, method_params={"color": GREY} if params is None else params,
                                          region=region, seed=seed), boxes, min_size)


def rgb(path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB"))


def manifest_images(out: Path) -> list[dict]:
    return [e for e in read_manifest(out / "manifest.jsonl")[0] if e["kind"] == "image"]


def test_an_out_whose_manifest_is_not_faceveils_is_refused(tmp_path, capsys):
    """OUT holding someone's images and a manifest.jsonl that is not faceveil's (one line "hello"): before, the line
    read as a torn one, the folder as faceveil's, and its images were overwritten (exit 0). Now refused, untouched;
    an empty manifest (a run killed before its first line) is still resumed."""
    root, gt = noise_dataset(tmp_path, n=2)
    out = tmp_path / "out"
    theirs = out / "images" / "ev0" / "img000.png"
    theirs.parent.mkdir(parents=True)
    theirs.write_bytes(b"their own file")
    (out / "manifest.jsonl").write_text("hello\n")
    args = ["dataset", "anonymize", "--format", "wider", "--images", str(root), "--labels", str(gt), "-o", str(out),
            "-q", "-m", "blackout"]
    assert main(args) == 2
    assert "has no manifest.jsonl of faceveil's; refusing to write into it" in capsys.readouterr().err
    assert theirs.read_bytes() == b"their own file" and (out / "manifest.jsonl").read_text() == "hello\n"
    (out / "manifest.jsonl").write_bytes(b"")
    theirs.unlink()
    assert main(args) == 0 and rgb(theirs).shape == (64, 96, 3)


def test_an_out_holding_only_a_file_managers_litter_is_empty(tmp_path, capsys):
    """An OUT made in Finder (a .DS_Store) or Explorer (Thumbs.db, desktop.ini) was refused as 'not empty'. It is
    written into, the litter left as it was; `dataset verify` still names it; any other file is still refused."""
    root, gt = noise_dataset(tmp_path, n=2)
    out = tmp_path / "out"
    out.mkdir()
    for name in (".DS_Store", "Thumbs.db", "desktop.ini"):
        (out / name).write_bytes(b"litter " + name.encode())
    args = ["dataset", "anonymize", "--format", "wider", "--images", str(root), "--labels", str(gt), "-o", str(out),
            "-q", "-m", "blackout"]
    assert main(args) == 0
    assert (out / ".DS_Store").read_bytes() == b"litter .DS_Store" and len(manifest_images(out)) == 2
    assert main(args) == 0  # the same run again: resumed, nothing to do
    capsys.readouterr()
    assert main(["dataset", "verify", str(out)]) == 1
    assert "not in the manifest: .DS_Store" in capsys.readouterr().err
    other = tmp_path / "other"
    other.mkdir()
    (other / ".DS_Store").write_bytes(b"")
    (other / "notes.txt").write_text("mine")
    assert main(args[:-5] + ["-o", str(other), "-q", "-m", "blackout"]) == 2
    assert "refusing to write into it" in capsys.readouterr().err


def test_gt_boxes_change_exactly_the_labelled_regions(tmp_path):
    # one face partly outside the image (clipped), one below --min-size (left alone), one ordinary
    boxes = [(10, 8, 20, 24), (80, 40, 30, 30), (50, 5, 5, 5)]
    root, gt = noise_dataset(tmp_path, n=2, boxes=boxes)
    out = tmp_path / "out"
    s = anonymize_dataset("wider", root, gt, out, cfg(min_size=6), progress=False)
    assert (s.done, s.failed, s.missing) == (2, [], [])
    assert (s.faces_labels, s.small_left, s.clipped) == (6, 2, 2)
    comp = Compositor(RegionParams("box", 1.0))
    anonymized = Detections.from_xywh(boxes[:2]).clipped(96, 64)
    mask = comp.mask(anonymized, (64, 96)) > 0
    for im in read_wider(gt).images:
        before, after = rgb(root / im.path), rgb(out / "images" / im.path)
        changed = (before != after).any(axis=2)
        np.testing.assert_array_equal(changed, mask)
        assert (after[mask] == 128).all()
    # labels copied byte for byte, under the same relative path as in the input tree
    assert (out / "gt" / "labels.txt").read_bytes() == gt.read_bytes()
    e = manifest_images(out)[0]
    assert e["faces"] == {"labels": 3, "labels_anonymized": 2, "detected": 0, "detected_extra": 0, "small_left": 1,
                          "small_detected_left": 0, "clipped": 1, "degenerate": 0}
    assert e["method"] == "blackout" and e["method_params"] == {"color": GREY} and e["seed"] == 0
    assert e["faceveil"] and e["time"] and len(e["input_sha256"]) == 64
    assert verify(out).ok


def test_union_covers_labels_and_detections(tmp_path, astronaut):
    from faceveil import detect

    root = tmp_path / "ds" / "images"
    root.mkdir(parents=True)
    Image.fromarray(astronaut).save(root / "astronaut.png")
    label = (330, 300, 60, 60)  # not the face: the detector must supply that one
    gt = tmp_path / "ds" / "gt.txt"
    gt.write_text(f"astronaut.png\n1\n{' '.join(map(str, label))} 0 0 0 0 0 0\n")
    out = tmp_path / "out"
    s = anonymize_dataset("wider", root, gt, out, cfg(boxes="union"), progress=False)
    assert s.done == 1 and s.faces_detected >= 1 and s.faces_detected_extra == s.faces_detected
    comp = Compositor(RegionParams("box", 1.0))
    dets = detect(astronaut)
    m_label = comp.mask(Detections.from_xywh([label]), astronaut.shape) > 0
    m_det = comp.mask(dets, astronaut.shape) > 0
    assert m_det.sum() > 2000 and not (m_det & m_label).any()
    changed = (rgb(out / "images" / "astronaut.png") != astronaut).any(axis=2)
    np.testing.assert_array_equal(changed, m_label | m_det)
    # gt alone leaves the face; detect alone leaves the labelled box
    for mode, expect in (("gt", m_label), ("detect", m_det)):
        o = tmp_path / mode
        anonymize_dataset("wider", root, gt, o, cfg(boxes=mode), progress=False)
        np.testing.assert_array_equal((rgb(o / "images" / "astronaut.png") != astronaut).any(axis=2), expect)


def test_rerun_skips_done_images_and_redoes_altered_ones(tmp_path):
    root, gt = noise_dataset(tmp_path, n=4)
    out = tmp_path / "out"
    assert anonymize_dataset("wider", root, gt, out, cfg(), progress=False).done == 4
    first = {e["path"]: e["output_sha256"] for e in manifest_images(out)}
    target = out / "images" / "ev1" / "img001.png"
    target.write_bytes(b"tampered")
    (out / "images" / "ev0" / "img000.png").unlink()
    rep = verify(out)
    assert rep.altered == ["images/ev1/img001.png"] and rep.missing == ["images/ev0/img000.png"] and not rep.ok
    s = anonymize_dataset("wider", root, gt, out, cfg(), progress=False)
    assert (s.done, s.skipped) == (2, 2)
    assert {e["path"]: e["output_sha256"] for e in manifest_images(out)} == first
    assert len(read_manifest(out / "manifest.jsonl")[0]) == 5  # compacted: labels + one line per image
    assert verify(out).ok
    with pytest.raises(UsageError, match="other settings.*method"):
        anonymize_dataset("wider", root, gt, out, cfg(method="pixelate", params={}), progress=False)


def test_a_rerun_compacts_the_manifest_even_when_a_redone_line_equals_the_old_one(tmp_path, monkeypatch):
    """A re-done image's line can equal its old one byte for byte (the same wall-clock second and the same rounded
    seconds: tiny images, a quick rerun). The run still appended it, so the manifest must be rewritten; it was left
    with 7 lines (the test above failed that way once in CI)."""
    from datetime import datetime, timezone

    import faceveil.dataset.worker as worker

    class _Clock:
        perf_counter = staticmethod(lambda: 0.0)

    class _Date:
        @staticmethod
        def now(tz=None):
            return datetime(2026, 12, 4, tzinfo=timezone.utc)

    monkeypatch.setattr(worker, "time", _Clock)
    monkeypatch.setattr(worker, "datetime", _Date)
    root, gt = noise_dataset(tmp_path, n=4)
    out = tmp_path / "out"
    assert anonymize_dataset("wider", root, gt, out, cfg(), progress=False, jobs=1).done == 4
    before = (out / "manifest.jsonl").read_bytes()
    (out / "images" / "ev0" / "img000.png").unlink()
    s = anonymize_dataset("wider", root, gt, out, cfg(), progress=False, jobs=1)
    assert (s.done, s.skipped) == (1, 3)
    assert (out / "manifest.jsonl").read_bytes() == before  # compacted: the same 5 lines, not 6
    assert verify(out).ok


@pytest.mark.parametrize("jobs", [1, 2])
def test_kill_9_mid_run_then_resume_loses_and_duplicates_nothing(tmp_path, jobs):
    root, gt = noise_dataset(tmp_path, n=30, size=(320, 240))
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "faceveil", "dataset", "anonymize", "--format", "wider", "--images", str(root),
           "--labels", str(gt), "-o", str(out), "--boxes", "gt", "-m", "blackout", "-p", f"color={GREY}",
           "--shape", "box", "--mask-scale", "1", "-q", "--jobs", str(jobs)]
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    proc = subprocess.Popen(cmd, env=env, stderr=subprocess.PIPE)
    manifest = out / "manifest.jsonl"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and proc.poll() is None:
        if manifest.exists() and manifest.read_bytes().count(b"\n") >= 5:
            break
        time.sleep(0.005)
    psutil = pytest.importorskip("psutil")
    kids = psutil.Process(proc.pid).children(recursive=True) if proc.poll() is None else []
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, "the run finished before it could be killed"
    _, alive = psutil.wait_procs(kids, timeout=15)
    for p in alive:  # never leave them behind, even when the test fails
        p.kill()
    assert not alive, "worker processes outlived the killed run"
    before = manifest_images(out)
    assert 4 <= len(before) < 30
    with open(manifest, "ab") as f:  # what a kill inside a write would leave
        f.write(b'{"kind":"image","path":"ev0/img0')
    redone = []
    s = anonymize_dataset("wider", root, gt, out, cfg(), jobs=jobs, progress=False,
                          on_entry=lambda e: redone.append(e["path"]))
    assert s.failed == [] and s.skipped + s.done == 30
    done_before = {e["path"] for e in before}
    assert not done_before & set(redone), "an image finished before the kill was done again"
    after = manifest_images(out)
    assert sorted(e["path"] for e in after) == sorted(im.path for im in read_wider(gt).images)
    assert verify(out).ok
    # same bytes as an uninterrupted run
    clean = tmp_path / "clean"
    anonymize_dataset("wider", root, gt, clean, cfg(), progress=False)
    assert {e["path"]: e["output_sha256"] for e in after} == {e["path"]: e["output_sha256"]
                                                               for e in manifest_images(clean)}


def test_manifest_writer_cuts_a_torn_tail(tmp_path):
    p = tmp_path / "m.jsonl"
    p.write_bytes(b'{"a":1}\n{"a":2}\n{"a":')
    assert read_manifest(p)[0] == [{"a": 1}, {"a": 2}]
    with ManifestWriter(p) as w:
        w.append({"a": 3})
    assert p.read_bytes() == b'{"a":1}\n{"a":2}\n{"a":3}\n'
    p.write_bytes(b'{"a":1}\nxx\n{"a":2}\n')
    with pytest.raises(Exception, match=r"m\.jsonl:2: damaged"):
        read_manifest(p)


def test_cli_verify_reports_altered_files(tmp_path, capsys):
    root, gt = noise_dataset(tmp_path, n=2)
    out = tmp_path / "out"
    args = ["dataset", "anonymize", "--format", "wider", "--images", str(root), "--labels", str(gt), "-o", str(out),
            "--boxes", "gt", "-q"]
    assert main(args) == 0
    assert main(["dataset", "verify", str(out)]) == 0
    img = out / "images" / "ev0" / "img000.png"
    a = rgb(img).copy()
    a[0, 0] ^= 1
    Image.fromarray(a).save(img)
    (out / "images" / "ev0" / "extra.png").write_bytes(img.read_bytes())
    capsys.readouterr()
    assert main(["dataset", "verify", str(out)]) == 1
    err = capsys.readouterr().err
    assert "altered: images/ev0/img000.png" in err and "not in the manifest: images/ev0/extra.png" in err


def test_cli_verify_of_a_path_that_is_no_folder_is_bad_usage(tmp_path, capsys):
    """A mistyped OUT said "nosuch/manifest.jsonl: no manifest" with exit 1, as if a dataset had failed its check."""
    (tmp_path / "photo.jpg").write_bytes(b"x")
    for path, why in (("nosuch", "no such folder"), ("photo.jpg", "not a folder")):
        assert main(["dataset", "verify", str(tmp_path / path)]) == 2
        assert capsys.readouterr().err == f"faceveil: error: {tmp_path / path}: {why} (give the -o folder of " \
                                          "`faceveil dataset anonymize`)\n"


def test_cli_verify_of_a_folder_without_a_manifest_is_bad_usage(tmp_path, capsys):
    """A folder that is no dataset output (photos, or empty) said "folder/manifest.jsonl: no manifest (not a faceveil
    dataset output?)" with exit 1, as if a dataset had failed its check: bad usage, one line saying what it lacks."""
    folder = tmp_path / "photos"
    folder.mkdir()
    Image.new("RGB", (8, 8)).save(folder / "a.jpg")
    assert main(["dataset", "verify", str(folder)]) == 2
    assert capsys.readouterr().err == f"faceveil: error: {folder}: no manifest.jsonl in it, so not the output of " \
                                      "`faceveil dataset anonymize` (give the -o folder of that run)\n"


def test_cli_verify_of_a_folder_with_another_tools_manifest_is_bad_usage(tmp_path, capsys):
    """A manifest.jsonl of another tool (JSON lines, none of them faceveil's) was taken as a dataset output's: "verify
    FAILED: 0 files checked, 0 missing, 0 altered, 0 do not decode, 2 not in the manifest", exit 1, as if an output
    had been tampered with. It is not faceveil's output at all: bad usage, as a folder without a manifest."""
    folder = tmp_path / "photos"
    folder.mkdir()
    Image.new("RGB", (8, 8)).save(folder / "a.jpg")
    (folder / "manifest.jsonl").write_text('{"file": "a.jpg", "sha1": "0"}\n{"file": "b.jpg", "sha1": "1"}\n')
    assert main(["dataset", "verify", str(folder)]) == 2
    assert capsys.readouterr().err == (f"faceveil: error: {folder / 'manifest.jsonl'}: no line of it is faceveil's, "
                                       f"so {folder} is not the output of `faceveil dataset anonymize` (give the -o "
                                       "folder of that run)\n")


def test_cli_verify_reports_links_under_out(tmp_path, capsys):
    """A linked folder of the originals under OUT (not walked into) and links to files passed verify."""
    root, gt = noise_dataset(tmp_path, n=2)
    out = tmp_path / "out"
    assert main(["dataset", "anonymize", "--format", "wider", "--images", str(root), "--labels", str(gt), "-o",
                 str(out), "--boxes", "gt", "-q"]) == 0
    (out / "images" / "raw").symlink_to(root)  # the originals, faces and all
    img = out / "images" / "ev0" / "img000.png"
    copy = tmp_path / "copy.png"
    copy.write_bytes(img.read_bytes())
    img.unlink()
    img.symlink_to(copy)  # same bytes, but no longer the file faceveil wrote
    (out / "dangling.png").symlink_to(tmp_path / "nowhere.png")
    capsys.readouterr()
    assert main(["dataset", "verify", str(out)]) == 1
    err = capsys.readouterr().err
    assert "Traceback" not in err, err
    lines = [ln for ln in err.splitlines() if not ln.startswith("faceveil: verify")]
    assert sorted(lines) == sorted([
        f"faceveil: not in the manifest: images/raw (a link to {root})",
        f"faceveil: not in the manifest: dangling.png (a link to {tmp_path / 'nowhere.png'})",
        f"faceveil: altered: images/ev0/img000.png (a link to {copy}, not the file faceveil wrote)"]), err


def test_cli_refuses_output_inside_input_and_bad_labels(tmp_path, capsys):
    root, gt = noise_dataset(tmp_path, n=1)
    base = ["dataset", "anonymize", "--format", "wider", "--images", str(root), "--labels", str(gt), "-q"]
    assert main(base + ["-o", str(root / "anon")]) == 2
    assert "inside the input" in capsys.readouterr().err
    # beside the images and the labels, in the folder holding both: no input inside it, none around it
    assert main(base + ["-o", str(tmp_path / "ds" / "anon")]) == 0
    assert (tmp_path / "ds" / "anon" / "images" / "ev0" / "img000.png").is_file()
    capsys.readouterr()
    gt.write_text("ev0/img000.png\n1\n1 2 3\n")
    assert main(base + ["-o", str(tmp_path / "o2")]) == 1
    err = capsys.readouterr().err
    assert "labels.txt:3:" in err and "Traceback" not in err
    gt.write_text("../../escape.png\n0\n")
    assert main(base + ["-o", str(tmp_path / "o3")]) == 1
    assert "leaves the images folder" in capsys.readouterr().err
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "mine.txt").write_text("x")
    assert main(base + ["-o", str(tmp_path / "full")]) == 2


def test_missing_and_unlabelled_images_are_reported_not_written(tmp_path, capsys):
    root, gt = noise_dataset(tmp_path, n=3)
    gt.write_text(gt.read_text() + "ev0/gone.png\n0\n")
    (root / "ev1" / "img001.png").rename(root / "ev1" / "nolabel.png")
    out = tmp_path / "out"
    s = anonymize_dataset("wider", root, gt, out, cfg(), progress=False)
    assert sorted(s.missing) == ["ev0/gone.png", "ev1/img001.png"] and s.unlabelled == ["ev1/nolabel.png"]
    assert not (out / "images" / "ev1" / "nolabel.png").exists()
    assert s.done == 2


def test_verify_fails_while_an_image_the_labels_name_is_not_written(tmp_path, capsys):
    """A file that failed (truncated) or was missing from the input leaves OUT's labels naming an image OUT does not
    have: verify said ok (0 missing) until the manifest recorded the images the labels name."""
    root, gt = noise_dataset(tmp_path, n=4)
    cut, gone = root / "ev1" / "img001.png", root / "ev0" / "img002.png"
    whole, kept = cut.read_bytes(), gone.read_bytes()
    cut.write_bytes(whole[:200])
    gone.unlink()
    out = tmp_path / "out"
    args = ["dataset", "anonymize", "--format", "wider", "--images", str(root), "--labels", str(gt), "-o", str(out),
            "--boxes", "gt", "-q"]
    assert main(args) == 1
    capsys.readouterr()
    assert main(["dataset", "verify", str(out)]) == 1
    err = capsys.readouterr().err
    assert "missing: images/ev1/img001.png (the labels name it" in err
    assert "missing: images/ev0/img002.png (the labels name it" in err and "2 missing" in err
    cut.write_bytes(whole)
    gone.write_bytes(kept)
    assert main(args) == 0  # the resumed run writes the two; verify passes
    assert main(["dataset", "verify", str(out)]) == 0
    lines = read_manifest(out / "manifest.jsonl")[0]
    assert len(lines) == 5 and lines[0]["images"] == sorted(f"images/ev{i % 2}/img{i:03d}.png" for i in range(4))


@pytest.mark.parametrize("fmt", ["coco", "yolo", "voc"])
def test_other_formats_keep_their_labels(tmp_path, fmt):
    from test_datasets_io import facemask_subset

    root, voc = facemask_subset(tmp_path, n=3)
    labels = {"coco": tmp_path / "fm" / "faces.json", "yolo": tmp_path / "fm" / "labels",
              "voc": tmp_path / "fm" / "annotations"}[fmt]
    if fmt == "coco":
        write_coco(voc, labels)
    elif fmt == "yolo":
        write_yolo(voc, labels)
    else:
        labels.mkdir()
        for im in voc.images:
            xml = im.info["xml"]
            (labels / xml).write_bytes(shared_path("facemask", "annotations", xml).read_bytes())
    out = tmp_path / "out"
    s = anonymize_dataset(fmt, root, labels, out, cfg(), progress=False)
    assert (s.done, s.failed, s.missing) == (3, [], [])
    assert s.faces_labels == sum(len(im) for im in voc.images)
    for src in ([labels] if labels.is_file() else sorted(p for p in labels.rglob("*") if p.is_file())):
        rel = src.relative_to(tmp_path / "fm")
        assert (out / rel).read_bytes() == src.read_bytes()
    for im in voc.images:
        before, after = rgb(root / im.path), rgb(out / "images" / im.path)
        assert before.shape == after.shape
        x, y, w, h = im.xywh[0].astype(int)
        assert np.abs(after[y + 2:y + h - 2, x + 2:x + w - 2].astype(int) - 128).max() <= 16  # grey, up to JPEG noise
    assert verify(out).ok


def test_face_classes_no_box_has_are_refused_and_yolo_ids_name_classes(tmp_path, capsys):
    """A --face-classes name that no box has (a typo, or YOLO's id 0 where classes.txt names it, as the README's
    own example writes it) left every labelled face as it was: '0 labelled', exit 0. A YOLO image without a label
    file was written untouched under --boxes gt without a word."""
    from test_datasets_io import facemask_subset

    root, voc = facemask_subset(tmp_path, n=3)
    labels = tmp_path / "fm" / "labels"
    write_yolo(voc, labels)
    names = (labels / "classes.txt").read_text().split()
    base = ["dataset", "anonymize", "--format", "yolo", "--images", str(root), "--labels", str(labels), "--boxes",
            "gt", "-m", "blackout", "-p", f"color={GREY}", "-q"]
    for bad in ("face", f"{names[0]},wihtout_mask"):
        assert main(base + ["-o", str(tmp_path / "o1"), "--face-classes", bad]) == 2
        err = capsys.readouterr().err
        assert "no box of that class" in err and names[0] in err and err.count("\n") == 1, err
    assert not (tmp_path / "o1").exists()
    (root / "extra.jpg").write_bytes((root / voc.images[0].path).read_bytes())  # no label file
    ids = ",".join(str(i) for i in range(len(names)))
    assert main(base + ["-o", str(tmp_path / "o2"), "--face-classes", ids]) == 0  # ids as classes.txt names them
    err = capsys.readouterr().err
    assert "1 images have no label file (e.g. extra.jpg)" in err and "--boxes gt, written with any face" in err
    im = voc.images[0]
    x, y, w, h = im.xywh[0].astype(int)
    after = rgb(tmp_path / "o2" / "images" / im.path)
    assert np.abs(after[y + 2:y + h - 2, x + 2:x + w - 2].astype(int) - 128).max() <= 16  # its labelled face hidden


def test_yolo_class_names_from_the_datasets_yaml(tmp_path, capsys):
    """Ultralytics' layout names the classes in data.yaml and has no classes.txt: a run saw ids only ("0"), so
    `--face-classes with_mask` was refused and the default boxes asked instead of taking the labelled faces."""
    from test_datasets_io import facemask_subset

    root, voc = facemask_subset(tmp_path, n=3)
    labels = tmp_path / "fm" / "labels"
    write_yolo(voc, labels)
    names = (labels / "classes.txt").read_text().split()
    (labels / "classes.txt").unlink()
    (tmp_path / "fm" / "data.yaml").write_text("path: .\ntrain: images\nnames:\n" +
                                               "".join(f"  {i}: {n}\n" for i, n in enumerate(names)))
    base = ["dataset", "anonymize", "--format", "yolo", "--images", str(root), "--labels", str(labels), "-m",
            "blackout", "-p", f"color={GREY}", "-q"]
    assert main(base + ["-o", str(tmp_path / "o1")]) == 0, capsys.readouterr().err  # mask classes: faces, union
    assert main(base + ["-o", str(tmp_path / "o2"), "--face-classes", names[0], "--boxes", "gt"]) == 0
    for im in voc.images[:1]:
        x, y, w, h = im.xywh[0].astype(int)
        for out in ("o1", "o2"):
            after = rgb(tmp_path / out / "images" / im.path)
            assert np.abs(after[y + 2:y + h - 2, x + 2:x + w - 2].astype(int) - 128).max() <= 16
    assert not (tmp_path / "o1" / "labels" / "classes.txt").exists() and verify(tmp_path / "o1").ok
    (tmp_path / "fm" / "data.yaml").write_text("names: face\n")
    assert main(base + ["-o", str(tmp_path / "o3")]) == 1  # as any label file that cannot be read
    assert "data.yaml: 'names' is neither a list nor a map" in capsys.readouterr().err


@pytest.mark.slow
def test_ray_backend_equals_local(tmp_path):
    pytest.importorskip("ray", reason="Ray is not installed (pip install 'faceveil[ray]')")
    from test_datasets_io import facemask_subset

    root, voc = facemask_subset(tmp_path, n=6)
    write_wider(voc, tmp_path / "fm" / "gt.txt")
    c = cfg(method="noise", params={}, boxes="union", shape="ellipse", seed=7)  # random and detecting
    local = tmp_path / "local"
    anonymize_dataset("wider", root, tmp_path / "fm" / "gt.txt", local, c, jobs=2, progress=False)
    ray_out = tmp_path / "ray"
    s = anonymize_dataset("wider", root, tmp_path / "fm" / "gt.txt", ray_out, c, jobs=2, backend="ray",
                          progress=False)
    assert s.done == 6 and not s.failed
    hashes = {e["path"]: e["output_sha256"] for e in manifest_images(local)}
    assert {e["path"]: e["output_sha256"] for e in manifest_images(ray_out)} == hashes
    assert len(set(hashes.values())) == 6


def test_ray_addresses_it_cannot_use_fail_at_once_in_one_line(tmp_path, monkeypatch, capsys):
    """A ray:// address without ray[client] printed a 25-line traceback; an address where nothing listens was
    retried for 8 minutes and more. Both are refused in one line naming the address, before OUT is made."""
    import importlib.util
    import socket

    pytest.importorskip("ray", reason="Ray is not installed (pip install 'faceveil[ray]')")
    root, gt = noise_dataset(tmp_path, n=1)
    with socket.socket() as s:  # a port where nothing listens
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    cmd = [sys.executable, "-m", "faceveil", "dataset", "anonymize", "--format", "wider", "--images", str(root),
           "--labels", str(gt), "-o", str(tmp_path / "out"), "--boxes", "gt", "-q", "--backend", "ray", "--address",
           f"127.0.0.1:{port}"]
    t0 = time.monotonic()
    r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=90)
    assert time.monotonic() - t0 < 30
    assert r.returncode == 2 and r.stderr.strip().splitlines() == [
        f"faceveil: error: --address 127.0.0.1:{port}: no Ray cluster answers at 127.0.0.1:{port} (Connection "
        "refused); start it (ray start --head) or give its address"], r.stderr
    assert not (tmp_path / "out").exists()

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "grpc" else real(name, *a))
    assert main(cmd[3:-1] + ["ray://127.0.0.1:1"]) == 2
    assert capsys.readouterr().err.splitlines() == ["faceveil: error: --address ray://127.0.0.1:1: a ray:// address "
                                                    "needs Ray's client package: pip install 'ray[client]'"]
    assert not (tmp_path / "out").exists()

    # --address auto where no cluster runs: Ray said so only after OUT held the dataset's manifest and labels
    import functools

    import ray._private.services as services  # its lookup of a running cluster, made to find none here

    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    monkeypatch.setattr(services, "find_gcs_addresses", functools.lru_cache(lambda: []))  # Ray clears its cache
    monkeypatch.setattr(services, "find_bootstrap_address", lambda temp_dir: None)
    assert main(cmd[3:-1] + ["auto"]) == 2
    assert capsys.readouterr().err.splitlines() == [
        "faceveil: error: --address auto: no Ray cluster runs on this machine; start one (ray start --head), give "
        "its address, or leave --address out for a local instance"]
    assert not (tmp_path / "out").exists()


def _die(item):  # module level: a pool worker finds it by name
    os._exit(3)


def _die_on_second(item):  # module level: a pool worker finds it by name
    from faceveil.dataset.worker import process_item

    if item.rel.endswith("1.png"):
        os._exit(3)
    return process_item(item)


def test_a_dead_worker_is_a_clear_error_and_resumable(tmp_path, monkeypatch, capsys):
    """Every image kills its worker: each is tried again alone, fails in one line, and the run ends; a resume then
    does them all."""
    import faceveil.dataset.backends as ds  # where the pool looks up the worker function

    root, gt = noise_dataset(tmp_path, n=3)
    out = tmp_path / "out"
    monkeypatch.setattr(ds, "process_item", _die)
    s = anonymize_dataset("wider", root, gt, out, cfg(), jobs=2, progress=False)
    assert s.done == 0 and len(s.failed) == 3, s.failed
    assert all("worker process died" in e and "tried alone" in e for e in s.failed), s.failed
    assert "a worker process died (out of memory?) with 3 images in flight" in capsys.readouterr().err
    monkeypatch.undo()
    assert anonymize_dataset("wider", root, gt, out, cfg(), jobs=2, progress=False).done == 3
    assert verify(out).ok


def test_an_image_that_kills_its_worker_fails_alone_and_the_others_are_written(tmp_path, monkeypatch):
    """One image that kills its worker every time (the OOM killer on an image too big beside the others) stopped
    the run, and its resume met the same image at once: the dataset could never be finished. It fails alone now,
    the others are written, the same bytes as a run without it."""
    import faceveil.dataset.backends as ds

    root, gt = noise_dataset(tmp_path, n=8)
    ref = anonymize_dataset("wider", root, gt, tmp_path / "ref", cfg(), jobs=1, progress=False)
    assert ref.done == 8
    monkeypatch.setattr(ds, "process_item", _die_on_second)
    s = anonymize_dataset("wider", root, gt, tmp_path / "out", cfg(), jobs=2, progress=False)
    assert s.done == 7 and len(s.failed) == 1 and "tried alone" in s.failed[0], s.failed
    made = sorted(p.relative_to(tmp_path / "out") for p in (tmp_path / "out").rglob("*.png"))
    assert len(made) == 7
    for rel in made:
        assert (tmp_path / "out" / rel).read_bytes() == (tmp_path / "ref" / rel).read_bytes(), rel


@pytest.mark.slow
def test_a_ray_worker_that_dies_is_replaced_and_what_it_held_is_tried_alone(tmp_path, monkeypatch, capsys):
    """A Ray actor that died (the OOM killer on an image too big beside the others, kill -9) failed every task it
    held and every one handed to it after: with --jobs 2 one such image failed about half the rest of the dataset
    ("Ray worker failed: The actor died ..."), and a folder of videos alike. The dead actor is replaced; what it
    held runs again alone; only the image (video) that kills its actor alone too fails, in one line."""
    pytest.importorskip("ray", reason="Ray is not installed (pip install 'faceveil[ray]')")
    import faceveil.dataset.backends as ds
    import faceveil.video.ray_backend as vr
    from faceveil.io.inputs import Job
    from faceveil.video import VideoOptions
    from synthetic_video import write_clip

    class Dying(ds._RayWorker):  # defined here: Ray sends it by value to its workers
        def run(self, item):
            if item.rel.endswith("1.png"):
                os._exit(3)
            return super().run(item)

    class DyingVideo(vr._VideoWorker):
        def run(self, job, options, replace=True):
            if job.src.name == "b.mp4":
                os._exit(3)
            return super().run(job, options, replace)

    root, gt = noise_dataset(tmp_path, n=8)
    ref = anonymize_dataset("wider", root, gt, tmp_path / "ref", cfg(), jobs=1, progress=False)
    assert ref.done == 8
    assert ds.start_ray(2)  # one local instance for both halves (each run keeps one that is up)
    try:
        monkeypatch.setattr(ds, "_RayWorker", Dying)
        s = anonymize_dataset("wider", root, gt, tmp_path / "out", cfg(), jobs=2, backend="ray", progress=False)
        assert s.done == 7 and len(s.failed) == 1, s.failed
        assert "img001.png: a Ray worker died while it was processed, and again when it was tried alone" in \
            s.failed[0], s.failed
        assert "a Ray worker died (out of memory?) with" in capsys.readouterr().err
        made = sorted(p.relative_to(tmp_path / "out") for p in (tmp_path / "out").rglob("*.png"))
        assert len(made) == 7
        for rel in made:
            assert (tmp_path / "out" / rel).read_bytes() == (tmp_path / "ref" / rel).read_bytes(), rel

        monkeypatch.setattr(vr, "_VideoWorker", DyingVideo)
        rng = np.random.default_rng(0)
        jobs = []
        (tmp_path / "v").mkdir()
        (tmp_path / "vo").mkdir()
        for name in "abcde":
            write_clip(tmp_path / "v" / f"{name}.mp4", [rng.integers(0, 255, (48, 64, 3), np.uint8)] * 4, audio=False)
            jobs.append(Job(tmp_path / "v" / f"{name}.mp4", tmp_path / "vo" / f"{name}.mp4", f"{name}.mp4"))
        from faceveil.pipeline import AnonymizerConfig

        got = dict(vr.run_videos_ray(AnonymizerConfig(), jobs, VideoOptions(), workers=2))
        assert sorted(got) == [0, 1, 2, 3, 4]
        assert [got[k].status for k in range(5)] == ["written", "failed", "written", "written", "written"]
        assert "b.mp4: a Ray worker died while it was encoded, and again when it was tried alone" in got[1].error
        assert sorted(p.name for p in (tmp_path / "vo").glob("*.mp4")) == ["a.mp4", "c.mp4", "d.mp4", "e.mp4"]
    finally:
        import ray

        ray.shutdown()
        ds._stop_reaper()


def test_default_boxes_refuse_to_guess_when_labels_may_not_be_faces(tmp_path, capsys):
    root, gt = noise_dataset(tmp_path, n=2)
    doc = {"images": [{"id": i, "file_name": im.path} for i, im in enumerate(read_wider(gt).images)],
           "annotations": [{"id": 1, "image_id": 0, "category_id": 1, "bbox": [10, 8, 20, 24]},
                           {"id": 2, "image_id": 1, "category_id": 2, "bbox": [30, 8, 20, 24]}],
           "categories": [{"id": 1, "name": "person"}, {"id": 2, "name": "head"}]}
    coco = tmp_path / "ds" / "c.json"
    coco.write_text(json.dumps(doc))
    base = ["dataset", "anonymize", "--format", "coco", "--images", str(root), "--labels", str(coco), "-q",
            "-m", "blackout", "-p", f"color={GREY}", "--shape", "box", "--mask-scale", "1", "--threshold", "0.99"]
    assert main(base + ["-o", str(tmp_path / "a")]) == 2
    assert "which label classes are faces? The labels have head, person" in capsys.readouterr().err
    assert main(base + ["-o", str(tmp_path / "b"), "--face-classes", "head"]) == 0
    assert "--boxes union" in capsys.readouterr().err
    e = {e["path"]: e for e in manifest_images(tmp_path / "b")}
    assert e["ev0/img000.png"]["faces"]["labels"] == 0 and e["ev1/img001.png"]["faces"]["labels"] == 1
    img = rgb(tmp_path / "b" / "images" / "ev1" / "img001.png")
    assert (img[8:32, 30:50] == 128).all()
    assert not (rgb(tmp_path / "b" / "images" / "ev0" / "img000.png") == 128).all(axis=2).any()


def test_without_jobs_a_big_local_dataset_takes_a_worker_per_core(tmp_path, monkeypatch):
    """`faceveil dataset anonymize` without --jobs: the images still to do decide (batch.auto_jobs), so a resumed
    run with few images left stays in this process; Ray keeps one actor unless --jobs says more."""
    import faceveil.dataset.job as job
    from faceveil.batch import AUTO_JOBS_PER_WORKER, auto_jobs, usable_cores

    n = 2 * AUTO_JOBS_PER_WORKER
    root, gt = noise_dataset(tmp_path, n=n, size=(48, 32), boxes=[(10, 8, 20, 20)])
    seen, real = [], job.run_local

    def spy(cfg, todo, jobs):
        seen.append((len(todo), jobs))
        return real(cfg, todo, jobs)

    monkeypatch.setattr(job, "run_local", spy)
    args = ["dataset", "anonymize", "--format", "wider", "--images", str(root), "--labels", str(gt), "--boxes", "gt",
            "-m", "blackout", "-q"]
    assert main([*args, "-o", str(tmp_path / "a")]) == 0
    assert seen == [(n, auto_jobs(n))] and auto_jobs(n) == min(usable_cores(), 2)
    (tmp_path / "a" / "images" / "ev0" / "img000.png").unlink()  # one image left to redo: this process
    assert main([*args, "-o", str(tmp_path / "a")]) == 0
    assert seen[1] == (1, 1)
    assert main([*args, "-o", str(tmp_path / "b"), "--jobs", "1"]) == 0
    assert seen[2] == (n, 1)
    for e in manifest_images(tmp_path / "a"):  # the same bytes with a worker per core
        assert (tmp_path / "a" / e["output"]).read_bytes() == (tmp_path / "b" / e["output"]).read_bytes()
