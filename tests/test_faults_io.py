"""Images in and out without leaks or loss (issue 17): huge and wide photos, full disks, unusual files."""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from faceveil.cli import main
from faceveil.io.images import read_rgb


def run(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


# --- 1. wide panoramas and huge photos: tiled, never shrunk below what their faces need ----------------------

def _panorama(astronaut, width=10000, height=200, n=10):
    """A wide canvas holding ``n`` copies of the astronaut's real face, each about 36x48 px."""
    import cv2

    crop = astronaut[10:240, 110:340]  # the face is near x 180..270, y 58..178 of the full photo
    s = 0.4
    small = cv2.resize(crop, None, fx=s, fy=s, interpolation=cv2.INTER_AREA)
    rng = np.random.default_rng(0)
    canvas = (np.full((height, width, 3), 110, np.uint8) + rng.integers(0, 30, (height, width, 3), dtype=np.uint8))
    faces = []
    step = (width - 400) // n
    for i in range(n):
        x, y = 200 + i * step, 30 + (i % 3) * 25
        canvas[y:y + small.shape[0], x:x + small.shape[1]] = small[:, ::-1] if i % 2 else small
        fx = (180 - 110) * s if i % 2 == 0 else small.shape[1] - (270 - 110) * s
        faces.append((int(x + fx), int(y + (58 - 10) * s), int(x + fx + 90 * s), int(y + (178 - 10) * s)))
    return canvas, faces


@pytest.mark.slow
def test_wide_panorama_every_face_blacked_out(tmp_path, capsys, astronaut):
    pano, faces = _panorama(astronaut)
    src = tmp_path / "pano.png"  # lossless, so "changed" means anonymized, not re-encoded
    Image.fromarray(pano).save(src)
    code, _, err = run(capsys, "anonymize", src, "-o", tmp_path / "out", "-m", "blackout", "-q")
    assert code == 0, err
    out = read_rgb(tmp_path / "out" / "pano.png")
    for x1, y1, x2, y2 in faces:
        inner = (slice(y1 + 8, y2 - 8), slice(x1 + 6, x2 - 6))
        assert (out[inner] < 10).mean() > 0.9, f"face at {x1},{y1} left visible"
    assert np.array_equal(out[:, :150], pano[:, :150]), "background far from faces unchanged"


@pytest.mark.parametrize("name", ["multiscale", "centerface"])
def test_panorama_faces_found_by_each_detector(astronaut, name):
    from faceveil.detect import get_detector
    from faceveil.detections import box_iou

    pano, faces = _panorama(astronaut, width=6000, n=6)
    d = get_detector(name, {"threshold": 0.2})
    found = d.detect(pano)
    iou = box_iou(np.array(faces, np.float32), found.xyxy)
    assert (iou.max(axis=1) > 0.3).all(), f"{name}: faces missed: {iou.max(axis=1)}"


def test_photos_that_fit_keep_identical_detections(astronaut):
    """Only photos that max_size would shrink below min_factor take the tiled path: others are untouched."""
    import cv2

    from faceveil.detect import get_detector
    from faceveil.detect.base import tile_factor
    from faceveil.detect.presets import resolve

    name, params, _ = resolve("balanced")
    new, old = get_detector(name, params), get_detector(name, {**params, "min_factor": 0})
    for size in ((1920, 1080), (3000, 2000)):  # 3000 px: shrunk to 0.64 for max_size, above min_factor
        img = cv2.resize(astronaut, size)
        assert tile_factor(size[1], size[0], 1920, 0.5) is None
        a, b = new.detect(img), old.detect(img)
        assert len(a) >= 1 and np.array_equal(a.xyxy, b.xyxy) and np.array_equal(a.score, b.score)
    assert tile_factor(200, 10000, 1920, 0.5) == 1.0  # a thin panorama has few pixels: its own size
    assert tile_factor(4000, 6000, 1920, 0.5) == 0.5  # a huge photo: at most halved


@pytest.mark.slow
def test_huge_photo_big_face_not_fragmented(astronaut):
    """The tiled pass keeps only faces that fit its overlap, so a big face is not cut into extra boxes."""
    import cv2

    from faceveil.detect import get_detector
    from faceveil.detect.presets import resolve

    name, params, _ = resolve("balanced")
    big = cv2.resize(astronaut, (4000, 4000))  # the face is about 700x940 px, 350 px in the 0.5 tiles
    assert len(get_detector(name, params).detect(big)) == 1


# --- 2. a full disk: a short write is an error, never a written (or manifested) file -------------------------

def _wider_set(tmp_path, astronaut, ext=".jpg"):
    """One real photo (a ~15 kB JPEG whose anonymized copy is ~45 kB) with a WIDER label file."""
    root = tmp_path / "ds" / "images"
    (root / "a").mkdir(parents=True)
    Image.fromarray(astronaut[::2, ::2]).save(root / "a" / f"astro{ext}", quality=75)
    gt = tmp_path / "ds" / "gt.txt"
    gt.write_text(f"a/astro{ext}\n1\n90 29 45 60 0 0 0 0 0 0\n")
    return root, gt


def _dataset_cfg():
    from faceveil.dataset import DatasetConfig
    from faceveil.pipeline import AnonymizerConfig

    return DatasetConfig(AnonymizerConfig(method="blackout", region={"shape": "box", "mask_scale": 1.0}), "gt", 0.0)


@pytest.fixture()
def short_writes(monkeypatch):
    """A file system that keeps only half of what it is given and says nothing (Pillow's JPEG save on a full disk)."""
    import builtins

    import faceveil.io.atomic as atomic

    class Short:
        def __init__(self, f):
            self.f = f

        def write(self, data):
            self.f.write(bytes(data)[: len(data) // 2])
            return len(data)

        def __getattr__(self, name):
            return getattr(self.f, name)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.f.close()

    def short_open(path, mode="r", *args, **kwargs):
        f = builtins.open(path, mode, *args, **kwargs)
        return Short(f) if "w" in mode else f

    monkeypatch.setattr(atomic, "open", short_open, raising=False)


def test_short_write_fails_the_file_and_leaves_nothing(tmp_path, capsys, astronaut, short_writes):
    src = tmp_path / "in" / "astro.jpg"
    src.parent.mkdir()
    Image.fromarray(astronaut).save(src, quality=90)
    out = tmp_path / "out"
    code, _, err = run(capsys, "anonymize", src, "-o", out, "-q")
    assert code == 1, err
    lines = [ln for ln in err.splitlines() if ln.startswith("faceveil: error:")]
    assert len(lines) == 1 and "astro.jpg" in lines[0] and "disk full" in lines[0], err
    assert not list(out.rglob("*.jpg")) and not [p for p in out.rglob("*") if p.is_file()], "no output, no temp file"


def test_short_write_in_dataset_mode_is_not_in_the_manifest(tmp_path, astronaut, short_writes, monkeypatch):
    from faceveil.dataset import anonymize_dataset
    from faceveil.io.manifest import read_manifest

    root, gt = _wider_set(tmp_path, astronaut)
    out = tmp_path / "out"
    s = anonymize_dataset("wider", root, gt, out, _dataset_cfg(), progress=False)
    assert s.done == 0 and len(s.failed) == 1
    assert not (out / "images" / "a" / "astro.jpg").exists()
    assert not [e for e in read_manifest(out / "manifest.jsonl")[0] if e["kind"] == "image"]
    monkeypatch.undo()  # the disk has room again: the re-run does the image, it is not "already done"
    s = anonymize_dataset("wider", root, gt, out, _dataset_cfg(), progress=False)
    assert (s.done, s.skipped, s.failed) == (1, 0, [])


@pytest.fixture()
def full_disk(tmp_path):
    """A 2 MB tmpfs with about 12 kB left; skipped where mounting is not allowed."""
    import os
    import subprocess

    mnt = tmp_path / "disk"
    mnt.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mnt)], capture_output=True, text=True)
    if r.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs to fill (needs root): {r.stderr.strip()}")
    try:
        st = os.statvfs(mnt)
        (mnt / "filler").write_bytes(b"\0" * (st.f_bavail * st.f_frsize - 12 * 1024))
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def test_full_disk_jpeg_is_an_error_not_a_truncated_success(tmp_path, capsys, astronaut, full_disk):
    root, gt = _wider_set(tmp_path, astronaut)
    src = root / "a" / "astro.jpg"
    out = full_disk / "out"
    code, _, err = run(capsys, "anonymize", src, "-o", out, "-q")
    assert code == 1 and "1 of 1 files anonymized" not in err, err
    assert [ln for ln in err.splitlines() if ln.startswith("faceveil: error:") and "astro.jpg" in ln], err
    assert not out.exists() or not [p for p in out.rglob("*") if p.is_file()], "no truncated output, no temp file"


def test_full_disk_dataset_mode_never_manifests_a_truncated_file(tmp_path, astronaut, full_disk):
    from faceveil.dataset import anonymize_dataset, verify
    from faceveil.io.manifest import read_manifest

    root, gt = _wider_set(tmp_path, astronaut)
    out = full_disk / "out"
    s = anonymize_dataset("wider", root, gt, out, _dataset_cfg(), progress=False)
    assert s.done == 0 and len(s.failed) == 1
    assert not (out / "images" / "a" / "astro.jpg").exists()
    assert not [e for e in read_manifest(out / "manifest.jsonl")[0] if e["kind"] == "image"]
    (full_disk / "filler").unlink()  # room again: the re-run redoes it instead of saying "already done"
    s = anonymize_dataset("wider", root, gt, out, _dataset_cfg(), progress=False)
    assert (s.done, s.skipped) == (1, 0) and verify(out).ok
    assert read_rgb(out / "images" / "a" / "astro.jpg").shape == (256, 256, 3)
