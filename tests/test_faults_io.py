"""Images in and out without leaks or loss (issue 17): huge and wide photos, full disks, unusual files."""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from conftest import shared_path
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


@pytest.mark.slow
def test_photos_that_fit_keep_identical_detections(astronaut):
    """Only photos that max_size would shrink below min_factor take the tiled path: others are untouched."""
    import cv2

    from faceveil.detect import get_detector
    from faceveil.detect.base import tile_factor
    from faceveil.detect.presets import resolve

    name, params, _ = resolve("fast")
    new, old = get_detector(name, params), get_detector(name, {**params, "min_factor": 0})
    for size in ((1920, 1080), (3000, 2000)):  # 3000 px: shrunk to 0.64 for max_size, above fast's min_factor
        img = cv2.resize(astronaut, size)
        assert tile_factor(size[1], size[0], 1920, 0.5) is None
        a, b = new.detect(img), old.detect(img)
        assert len(a) >= 1 and np.array_equal(a.xyxy, b.xyxy) and np.array_equal(a.score, b.score)
    assert tile_factor(200, 10000, 1920, 0.5) == 1.0  # a thin panorama has few pixels: its own size
    assert tile_factor(4000, 6000, 1920, 0.5) == 0.5  # a huge photo: at most halved
    assert tile_factor(1080, 1920, 1920, 1.0) is None  # balanced and thorough (min_factor 1): fits, untouched
    assert tile_factor(2000, 3000, 1920, 1.0) == 1.0  # over max_size: tiled at its own size


def test_tiles_are_fitted_to_the_photo_and_still_overlap():
    """The tiled pass's tiles were 1920 px squares whatever the photo: a 3840x2250 photo ran 6 of them (22 MP of
    network input for 8.6 MP); now the fewest tiles that cover it, each as small as that count allows."""
    from faceveil.detect.base import fitted_tile, tile_starts

    for length in (375, 1920, 1921, 2250, 3000, 3840, 4500, 6000, 30000):
        side = fitted_tile(length, 1920, 240)
        starts = tile_starts(length, side, 240)
        assert len(starts) == len(tile_starts(length, 1920, 240)) and side <= 1920
        assert starts[0] == 0 and starts[-1] + side == max(length, side)  # covered to the end
        assert all(b - a <= side - 240 for a, b in zip(starts, starts[1:]))  # neighbours overlap by 240 or more
    assert (fitted_tile(2250, 1920, 240), fitted_tile(3840, 1920, 240)) == (1248, 1440)


@pytest.mark.slow
def test_big_photo_small_faces_found_as_in_the_single_photos():
    """A 3840 px strip of nine facemask photos: the default preset found their labelled faces (>= 10 px) as it
    does in each photo alone (1 missed there). Before, the strip was shrunk 2x with no tiled pass and 11 of
    these 72 faces (10-20 px) were left visible; a 4000x3000 phone photo's tiles ran at 0.55x alike."""
    from faceveil.detect import get_detector
    from faceveil.detect.presets import resolve
    from faceveil.io.labels import find_image, read_eval_labels

    root = shared_path("facemask")
    labels = read_eval_labels(root / "gt.txt")
    photos = []
    for key in sorted(labels):  # the first nine with two labelled faces of 10-20 px, each fitting a 400x375 cell
        b = labels[key].faces.xyxy
        side = np.minimum(b[:, 2] - b[:, 0], b[:, 3] - b[:, 1])
        if ((side >= 10) & (side < 20)).sum() >= 2:
            img = read_rgb(find_image(root / "images", key))
            if img.shape[0] <= 375 and img.shape[1] <= 400:
                photos.append((img, b[side >= 10]))
        if len(photos) == 9:
            break
    strip, faces = np.full((375, 3840, 3), 128, np.uint8), []
    for i, (img, b) in enumerate(photos):
        strip[:img.shape[0], 400 * i:400 * i + img.shape[1]] = img
        faces.append(b + [400 * i, 0, 400 * i, 0])

    def missed(found, boxes):  # labelled boxes no detected box covers half of
        x1, y1, x2, y2 = (v[:, None] for v in boxes.T)
        d = found.xyxy[None]
        iw = np.clip(np.minimum(d[..., 2], x2) - np.maximum(d[..., 0], x1), 0, None)
        ih = np.clip(np.minimum(d[..., 3], y2) - np.maximum(d[..., 1], y1), 0, None)
        return int(((iw * ih).max(axis=1, initial=0) < 0.5 * (x2 - x1)[:, 0] * (y2 - y1)[:, 0]).sum())

    name, params, _ = resolve(None)
    det = get_detector(name, params)
    alone = sum(missed(det.detect(img), b) for img, b in photos)
    assert missed(det.detect(strip), np.concatenate(faces)) <= alone + 1, alone


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


# --- 3. unusual images: every frame and every bit kept, or a one-line refusal --------------------------------

FACE = (slice(80, 160), slice(190, 260))  # inside the astronaut's face, in displayed orientation


def _error_lines(err):
    return [ln for ln in err.splitlines() if ln.startswith("faceveil: error:")]


def test_multi_frame_images_are_refused_and_the_batch_goes_on(tmp_path, capsys, astronaut):
    src = tmp_path / "in"
    src.mkdir()
    im = Image.fromarray(astronaut)
    frames = [im.rotate(10), im.rotate(20)]
    im.save(src / "anim.webp", save_all=True, append_images=frames, duration=100, loop=0)
    im.save(src / "pages.tif", save_all=True, append_images=frames)
    im.save(src / "anim.png", save_all=True, append_images=frames)  # APNG
    im.save(src / "plain.png")
    out = tmp_path / "out"
    code, _, err = run(capsys, "anonymize", src, "-o", out, "-m", "blackout", "-q")
    assert code == 1, err
    lines = _error_lines(err)
    assert len(lines) == 3 and all("animated/multi-page images are not supported (3 frames)" in ln for ln in lines)
    assert sorted(p.name for p in out.iterdir()) == ["plain.png"]
    assert (read_rgb(out / "plain.png")[FACE] == 0).all()


def _grey16(astronaut, top=65535):
    from skimage.color import rgb2gray

    return np.round(rgb2gray(astronaut) * top).astype(np.uint16)


@pytest.mark.parametrize("top", [65535, 4095])  # full 16-bit range, and 12-bit data in a 16-bit file
def test_16bit_grey_png_face_found_and_bit_depth_kept(tmp_path, capsys, astronaut, top):
    g = _grey16(astronaut, top)
    g[100:104, 200:204] = 100  # darker than 8 bits tell: black at 8 bit, yet its 16-bit value must go too
    src = tmp_path / "g16.png"
    Image.fromarray(g).save(src)
    out = tmp_path / "out"
    code, _, err = run(capsys, "anonymize", src, "-o", out, "-m", "blackout", "--report", tmp_path / "r.json", "-q")
    assert code == 0, err
    import json

    assert json.loads((tmp_path / "r.json").read_text())["files"][0]["faces"] == 1
    res = Image.open(out / "g16.png")
    assert res.mode == "I;16"
    o = np.asarray(res)
    assert (o[FACE] == 0).all(), "the face is blacked out in 16 bit"
    changed = o != g
    assert changed.any() and np.array_equal(o[~changed], g[~changed])
    assert np.array_equal(o[400:], g[400:]), "away from the face every 16-bit value is kept"


def test_16bit_grey_in_dataset_mode_replaces_the_whole_labelled_face(tmp_path, astronaut):
    from faceveil.dataset import anonymize_dataset

    g = _grey16(astronaut)
    g[100:104, 200:204] = 100
    root = tmp_path / "ds" / "images"
    root.mkdir(parents=True)
    Image.fromarray(g).save(root / "g16.png")
    gt = tmp_path / "ds" / "gt.txt"
    gt.write_text("g16.png\n1\n180 58 90 120 0 0 0 0 0 0\n")
    out = tmp_path / "out"
    s = anonymize_dataset("wider", root, gt, out, _dataset_cfg(), progress=False)
    assert s.done == 1, s.failed
    o = np.asarray(Image.open(out / "images" / "g16.png"))
    assert o.dtype == np.uint16 and (o[58:178, 180:270] == 0).all()
    inside = np.zeros(g.shape, bool)
    inside[58:178, 180:270] = True
    assert np.array_equal(o[~inside], g[~inside])


def test_16bit_grey_review_apply_replaces_the_whole_manual_box(tmp_path, capsys, astronaut):
    pytest.importorskip("flask", reason="the review page needs Flask")
    from faceveil.pipeline import AnonymizerConfig
    from faceveil.review import ReviewSet, ReviewSettings

    g = _grey16(astronaut)
    g[300:304, 300:304] = 100  # black at 8 bit, inside the box drawn below
    src, out = tmp_path / "in", tmp_path / "out"
    src.mkdir()
    Image.fromarray(g).save(src / "g16.png")
    assert main(["anonymize", str(src), "-o", str(out), "-q", "-m", "blackout"]) == 0
    cfg = AnonymizerConfig(method="blackout", region={"shape": "box", "mask_scale": 1.0})
    rs = ReviewSet(out, src, cfg, ReviewSettings(second=("none",)), tmp_path / "cache")
    rs.apply("g16.png", [[280.0, 280.0, 340.0, 340.0]], [])
    o = np.asarray(Image.open(out / "g16.png"))
    assert o.dtype == np.uint16 and (o[280:340, 280:340] == 0).all()


def test_16bit_colour_png_is_refused_not_truncated(tmp_path, capsys, astronaut):
    import cv2

    src = tmp_path / "c16.png"
    cv2.imwrite(str(src), (astronaut.astype(np.uint16) * 257)[:, :, ::-1])
    code, _, err = run(capsys, "anonymize", src, "-o", tmp_path / "out", "-q")
    assert code == 1
    assert len(_error_lines(err)) == 1 and "16-bit colour images are not supported" in err
    assert not (tmp_path / "out" / "c16.png").exists()


def test_cmyk_jpeg_keep_metadata_drops_its_cmyk_profile(tmp_path, capsys, astronaut):
    src = tmp_path / "in" / "cmyk.jpg"
    src.parent.mkdir()
    Image.fromarray(astronaut).convert("CMYK").save(src, icc_profile=b"\0" * 128 + b"a CMYK profile")
    code, _, err = run(capsys, "anonymize", src, "-o", tmp_path / "out", "--keep-metadata", "-q", "-d", "centerface")
    assert code == 0, err
    res = Image.open(tmp_path / "out" / "cmyk.jpg")
    assert res.mode == "RGB" and b"a CMYK profile" not in res.info.get("icc_profile", b"")


def _face_thumbnail(astronaut) -> tuple[bytes, bytes]:
    """A camera-like preview of the astronaut's face: JPEG bytes and their base64."""
    import base64
    import io

    buf = io.BytesIO()
    Image.fromarray(astronaut[40:200, 160:290]).save(buf, "JPEG", quality=90)
    return buf.getvalue(), base64.b64encode(buf.getvalue())


@pytest.mark.parametrize("ext", [".jpg", ".png", ".webp"])
def test_keep_metadata_drops_the_face_previews_held_in_makernote_and_xmp(tmp_path, capsys, astronaut, ext):
    # An audit (stop 53): --keep-metadata wrote the original face back out, whole, in the MakerNote (where cameras
    # keep previews) and as an XMP thumbnail (base64), beside the anonymized pixels. The rest of the metadata stays.
    thumb, b64 = _face_thumbnail(astronaut)
    ex = Image.Exif()
    ex[0x010F] = "CameraMaker"
    ex.get_ifd(0x8769)[0x927C] = b"PREVIEW\0" + thumb
    ex.get_ifd(0x8769)[0x9003] = "2026:12:06 10:00:00"
    xmp = (b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">'
           b'<rdf:Description rdf:about="" xmlns:xmp="http://ns.adobe.com/xap/1.0/" xmlns:dc="http://purl.org/dc/'
           b'elements/1.1/" xmlns:xmpGImg="http://ns.adobe.com/xap/1.0/g/img/" xmpGImg:alt="' + b64 + b'">'
           b"<dc:creator>Jane Doe</dc:creator><xmp:Thumbnails><rdf:Alt><rdf:li><xmpGImg:image>"
           + b"&#xA;".join(b64[i:i + 76] for i in range(0, len(b64), 76)) +
           b"</xmpGImg:image></rdf:li></rdf:Alt></xmp:Thumbnails></rdf:Description></rdf:RDF></x:xmpmeta>")
    src = tmp_path / "in" / f"a{ext}"
    src.parent.mkdir()
    kwargs: dict = {"exif": ex.tobytes()}
    if ext == ".png":
        from PIL.PngImagePlugin import PngInfo

        kwargs["pnginfo"] = PngInfo()
        kwargs["pnginfo"].add_itxt("XML:com.adobe.xmp", xmp.decode())
    else:
        kwargs["xmp"] = xmp
    Image.fromarray(astronaut).save(src, **kwargs)
    assert thumb[-300:-200] in src.read_bytes()
    code, _, err = run(capsys, "anonymize", src, "-o", tmp_path / "out", "--keep-metadata", "-q")
    assert code == 0, err
    out = tmp_path / "out" / f"a{ext}"
    data = out.read_bytes()
    assert thumb[-300:-200] not in data, "the MakerNote's face preview was written"
    assert b64[-300:-240] not in data.replace(b"&#xA;", b""), "the XMP's face thumbnail was written"
    res = Image.open(out)
    assert res.getexif()[0x010F] == "CameraMaker" and res.getexif().get_ifd(0x8769)[0x9003] == "2026:12:06 10:00:00"
    assert b"Jane Doe" in data
    face = (slice(70, 170), slice(190, 260))
    assert np.abs(np.asarray(res.convert("RGB"))[face].astype(int) - astronaut[face]).mean() > 10


@pytest.mark.parametrize("where", ["comment", "xmp-data-uri", "exif-text", "gps-ifd"])
def test_keep_metadata_drops_a_picture_hidden_in_any_metadata_value(tmp_path, capsys, astronaut, where):
    # A second audit (stop 53) got the face out past the first filter: a JPEG as the JPEG comment, an XMP value
    # written as a data: URI, base64 in a text EXIF tag. A long text description (spaces) is not a picture.
    thumb, b64 = _face_thumbnail(astronaut)
    ex = Image.Exif()
    ex[0x010F] = "CameraMaker"
    ex[0x010E] = "a long caption " * 12 if where != "exif-text" else b64.decode()
    kwargs: dict = {}
    if where == "comment":
        kwargs["comment"] = thumb
    elif where == "xmp-data-uri":
        kwargs["xmp"] = (b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-'
                         b'syntax-ns#"><rdf:Description rdf:about="" xmlns:xmp="http://ns.adobe.com/xap/1.0/">'
                         b"<xmp:Thumb>data:image/jpeg;base64," + b64 + b"</xmp:Thumb><xmp:Label>Jane Doe</xmp:Label>"
                         b"</rdf:Description></rdf:RDF></x:xmpmeta>")
    elif where == "gps-ifd":
        ex.get_ifd(0x8825)[0x001B] = b"ASCII\0\0\0" + thumb  # GPSProcessingMethod
    src = tmp_path / "in" / "a.jpg"
    src.parent.mkdir()
    Image.fromarray(astronaut).save(src, exif=ex.tobytes(), **kwargs)
    assert main(["anonymize", str(src), "-o", str(tmp_path / "out"), "--keep-metadata", "-q"]) == 0
    data = (tmp_path / "out" / "a.jpg").read_bytes()
    assert thumb[-300:-200] not in data and b64[-300:-240] not in data and data.count(b"\xff\xd8\xff") == 1
    res = Image.open(tmp_path / "out" / "a.jpg")
    assert res.getexif()[0x010F] == "CameraMaker"
    if where != "exif-text":
        assert res.getexif()[0x010E] == "a long caption " * 12, "a long text is no picture"
    if where == "xmp-data-uri":
        assert b"Jane Doe" in data


def test_keep_metadata_keeps_a_long_caption_but_not_a_picture_written_as_one_long_word(tmp_path, astronaut):
    """A caption, a copyright notice or a UserComment over 256 bytes was dropped with the previews: written text
    (words, printable) is kept now, as long as it takes; the face's thumbnail written as hex or Ascii85 (one long
    "word", no base64 run) or as raw bytes is not."""
    import base64

    thumb, _ = _face_thumbnail(astronaut)
    caption = "Carnival on the harbour front, second day: the brass band from the old town, " * 8
    comment = "Ünïcode remark, dictated on site. " * 20
    cases = {"caption": (0x010E, caption, caption), "comment": (0x9286, b"UNICODE\0" + comment.encode("utf-16"),
                                                                None),
             "hex": (0x010E, thumb.hex(), None), "a85": (0x013B, base64.a85encode(thumb).decode("ascii"), None),
             "raw": (0x9286, b"\0" * 8 + thumb, None)}
    for name, (tag, value, _) in cases.items():
        ex = Image.Exif()
        ex[0x010F] = "CameraMaker"
        (ex.get_ifd(0x8769) if tag == 0x9286 else ex)[tag] = value
        src = tmp_path / name / "a.jpg"
        src.parent.mkdir()
        Image.fromarray(astronaut).save(src, exif=ex.tobytes())
        assert main(["anonymize", str(src), "-o", str(tmp_path / name / "out"), "--keep-metadata", "-q"]) == 0
        data = (tmp_path / name / "out" / "a.jpg").read_bytes()
        got = Image.open(tmp_path / name / "out" / "a.jpg").getexif()
        assert got[0x010F] == "CameraMaker"
        kept = (got.get_ifd(0x8769) if tag == 0x9286 else got).get(tag)
        if name == "caption":
            assert kept == caption
        elif name == "comment":
            assert kept is not None and comment.encode("utf-16")[2:200] in data, "the long UserComment was dropped"
        else:
            assert kept is None, f"{name}: the face's thumbnail written as text was kept"
            assert thumb[-300:-200] not in data and thumb.hex()[-300:-200].encode() not in data


def _on(rgba: np.ndarray, bg: float) -> np.ndarray:
    a = rgba[:, :, 3:].astype(float) / 255
    return rgba[:, :, :3] * a + bg * (1 - a)


@pytest.mark.parametrize("ink", [0, 255])
def test_a_face_drawn_by_the_alpha_channel_alone_is_hidden(tmp_path, capsys, astronaut, ink):
    # An audit (stop 53): flat colour with the face in the alpha channel (a stencil, line art) showed the face over
    # any background, and the detector, which saw the flat colour, found nothing: written unchanged, "0 faces".
    grey = np.asarray(Image.fromarray(astronaut).convert("L")).astype(int)
    alpha = (255 - grey if ink == 0 else grey).astype(np.uint8)
    rgba = np.dstack([np.full(grey.shape + (3,), ink, np.uint8), alpha])
    src = tmp_path / "in" / "stencil.png"
    src.parent.mkdir()
    Image.fromarray(rgba, "RGBA").save(src)
    code, _, err = run(capsys, "anonymize", src, "-o", tmp_path / "out")
    assert code == 0 and "1 of 1 files anonymized (1 face)" in err, err
    res = np.asarray(Image.open(tmp_path / "out" / "stencil.png"))
    assert res.shape == rgba.shape
    bg = 255 - ink  # the background the face shows on
    face = (slice(70, 170), slice(190, 260))
    assert np.abs(_on(res, bg)[face] - _on(rgba, bg)[face]).mean() > 15, "the face the alpha draws must be hidden"
    away = (slice(300, 512), slice(0, 512))
    assert np.array_equal(res[away], rgba[away])


def test_a_cut_out_keeps_its_alpha_away_from_the_face(tmp_path, capsys, astronaut):
    # A cut-out (alpha 255 on the person, 0 around): its face is found in the colour channels as before, the alpha
    # is blurred under the hidden region only, and an opaque image is written as before (alpha untouched).
    yy, xx = np.mgrid[:512, :512]
    alpha = np.where((xx - 225) ** 2 + (yy - 118) ** 2 < 75 ** 2, 255, 0).astype(np.uint8)  # the head only
    src = tmp_path / "in" / "cut.png"
    src.parent.mkdir()
    Image.fromarray(np.dstack([astronaut, alpha]), "RGBA").save(src)
    Image.fromarray(np.dstack([astronaut, np.full_like(alpha, 255)]), "RGBA").save(tmp_path / "in" / "opaque.png")
    code, _, err = run(capsys, "anonymize", tmp_path / "in", "-o", tmp_path / "out")
    assert code == 0 and "(2 faces)" in err, err
    res = np.asarray(Image.open(tmp_path / "out" / "cut.png"))
    assert np.abs(res[70:170, 190:260, :3].astype(int) - astronaut[70:170, 190:260]).mean() > 10
    changed = res[:, :, 3] != alpha
    assert changed.any() and not changed[300:].any() and not changed[:, :120].any()
    assert (np.asarray(Image.open(tmp_path / "out" / "opaque.png"))[:, :, 3] == 255).all()


@pytest.mark.parametrize("mode", ["RGB", "L"])
def test_a_colour_key_transparency_is_kept(tmp_path, capsys, astronaut, mode):
    # An audit (stop 53): a PNG's colour-key transparency (tRNS on an RGB or grey PNG) was dropped: the transparent
    # band came out opaque near-black. It is kept as alpha now (grey stays grey).
    im = Image.fromarray(astronaut).convert(mode)
    a = np.asarray(im).copy()
    key = (1, 2, 3) if mode == "RGB" else 7
    if mode == "L":
        a[a == key] = key + 1  # the key only where it is meant
    a[:40] = key  # a transparent band at the top, away from the face
    src = tmp_path / "in" / "key.png"
    src.parent.mkdir()
    Image.fromarray(a, mode).save(src, transparency=key)
    code, _, err = run(capsys, "anonymize", src, "-o", tmp_path / "out")
    assert code == 0 and "(1 face)" in err, err
    res = Image.open(tmp_path / "out" / "key.png")
    assert res.mode == ("RGBA" if mode == "RGB" else "LA")
    alpha = np.asarray(res.convert("RGBA"))[:, :, 3]
    assert (alpha[:40] == 0).all() and (alpha[40:] == 255).all()


def test_an_mpo_with_a_preview_is_anonymized_and_a_stereo_pair_refused(tmp_path, capsys, astronaut):
    # An audit (stop 53): an MPO's second full-size photo was dropped silently (exit 0, one image written).
    im = Image.fromarray(astronaut)
    src = tmp_path / "in"
    src.mkdir()
    im.save(src / "phone.jpg", format="MPO", save_all=True, append_images=[im.resize((128, 128))])
    im.save(src / "stereo.jpg", format="MPO", save_all=True, append_images=[im.transpose(Image.FLIP_LEFT_RIGHT)])
    code, _, err = run(capsys, "anonymize", src, "-o", tmp_path / "out")
    assert code == 1 and "1 of 2 files anonymized" in err
    assert "stereo.jpg: an MPO holding 2 full-size images (a stereo pair?) is not supported" in err
    assert not (tmp_path / "out" / "stereo.jpg").exists()
    res = np.asarray(Image.open(tmp_path / "out" / "phone.jpg").convert("RGB")).astype(int)
    assert np.abs(res[70:170, 190:260] - astronaut[70:170, 190:260]).mean() > 10
    assert np.abs(res[300:] - astronaut[300:]).mean() < 6  # two JPEG encodings away


def _alpha(shape):
    a = np.full(shape[:2], 255, np.uint8)
    a[:, :60] = 0  # a transparent band at the left, away from the face
    a[-40:, :] = 128
    return a


@pytest.mark.slow
def test_unusual_modes_and_exif_orientations(tmp_path, capsys, astronaut):
    """CMYK JPEG, palette+transparency PNG, LA PNG, RGBA WebP, 1-bit PNG/TIFF, EXIF orientations 1-8."""
    src = tmp_path / "in"
    src.mkdir()
    im = Image.fromarray(astronaut)
    alpha = Image.fromarray(_alpha(astronaut.shape))
    im.convert("CMYK").save(src / "cmyk.jpg", quality=95)
    p = im.convert("P", palette=Image.Palette.ADAPTIVE, colors=255)
    p_arr = np.asarray(p).copy()
    p_arr[:, :60] = 255  # index 255 unused by the 255-colour palette: transparent
    p2 = Image.fromarray(p_arr, "P")
    p2.putpalette(p.getpalette() + [0, 0, 0] * (256 - len(p.getpalette()) // 3))
    p2.save(src / "pal.png", transparency=255)
    la = im.convert("L")
    la.putalpha(alpha)
    la.save(src / "la.png")
    rgba = im.copy()
    rgba.putalpha(alpha)
    rgba.save(src / "rgba.webp", lossless=True)
    im.convert("1").save(src / "bw.png")
    im.convert("1").save(src / "bw.tif")
    undo = {2: Image.Transpose.FLIP_LEFT_RIGHT, 3: Image.Transpose.ROTATE_180, 4: Image.Transpose.FLIP_TOP_BOTTOM,
            5: Image.Transpose.TRANSPOSE, 6: Image.Transpose.ROTATE_90, 7: Image.Transpose.TRANSVERSE,
            8: Image.Transpose.ROTATE_270}
    for o in range(1, 9):
        ex = Image.Exif()
        ex[0x0112] = o
        (im.transpose(undo[o]) if o > 1 else im).save(src / f"orient{o}.jpg", exif=ex.tobytes(), quality=95)
    out = tmp_path / "out"
    code, _, err = run(capsys, "anonymize", src, "-o", out, "-m", "blackout", "-q")
    assert code == 0, err
    for f in sorted(out.iterdir()):
        res = Image.open(f)
        assert res.size == (512, 512), f.name
        rgb = np.asarray(res.convert("RGB")).astype(int)
        assert (rgb[FACE] < 16).all(), f"{f.name}: face not blacked out where it is displayed"
        if f.name.startswith(("orient", "cmyk")):
            assert np.abs(rgb[400:, :150] - astronaut[400:, :150]).mean() < 6, f"{f.name}: not oriented as displayed"
            assert "exif" not in res.info or Image.open(f).getexif().get(0x0112, 1) == 1
    for name in ("la.png", "rgba.webp", "pal.png"):
        a = np.asarray(Image.open(out / name).convert("RGBA"))[:, :, 3]
        assert (a[:-40, :60] == 0).all() and (a[100:400, 100:] == 255).all(), f"{name}: transparency lost"
    assert Image.open(out / "la.png").mode == "LA"
    assert Image.open(out / "bw.png").mode == "L"  # 1-bit grows to grey: a blur needs grey levels


# --- 4. bombs, empty files, wrong extensions: one line each, exit 1, the batch goes on -----------------------

def _declared_png(path, w, h, rows):
    """A valid PNG header declaring w x h pixels, with only ``rows`` rows of (zero) data: a tiny file."""
    import struct
    import zlib

    def chunk(t, d):
        return struct.pack(">I", len(d)) + t + d + struct.pack(">I", zlib.crc32(t + d) & 0xFFFFFFFF)

    raw = zlib.compress(b"\0" * (rows * (1 + 3 * w)), 9)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0))
                     + chunk(b"IDAT", raw) + chunk(b"IEND", b""))


def test_bombs_empty_and_misnamed_files(tmp_path, capsys, astronaut):
    src = tmp_path / "in"
    src.mkdir()
    _declared_png(src / "bomb.png", 100000, 100000, 1)  # 10 G pixels: Pillow's own error
    _declared_png(src / "big.png", 12000, 10000, 10000)  # 120 M pixels in 350 kB: Pillow only warned (2 GB, 36 s)
    (src / "empty.jpg").write_bytes(b"")
    (src / "text.jpg").write_text("not an image")
    Image.fromarray(astronaut).save(src / "png_named.jpg", format="PNG")  # decoded by content, written as .jpg says
    Image.fromarray(astronaut).save(src / "jpeg_named.png", format="JPEG", quality=95)
    out = tmp_path / "out"
    code, _, err = run(capsys, "anonymize", src, "-o", out, "-m", "blackout", "-q")
    assert code == 1
    assert "Traceback" not in err and "Warning" not in err, err
    lines = _error_lines(err)
    assert len(lines) == 4, err
    expect = {"bomb.png": "over faceveil's", "big.png": "refused as a decompression bomb",
              "empty.jpg": "empty file", "text.jpg": "not an image"}
    for name, cause in expect.items():
        assert [ln for ln in lines if name in ln and cause in ln], f"{name}: {err}"
    assert sorted(p.name for p in out.iterdir()) == ["jpeg_named.png", "png_named.jpg"]
    assert (out / "png_named.jpg").read_bytes()[:2] == b"\xff\xd8", "written as the extension says: JPEG"
    assert (out / "jpeg_named.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    for name in ("png_named.jpg", "jpeg_named.png"):
        assert (read_rgb(out / name)[FACE] < 16).all()


def test_large_real_photos_pass_the_bomb_guard(tmp_path, capsys, monkeypatch, astronaut):
    """Over Pillow's pixel limit, a photo with its real bytes passes; the same size declared in a tiny file is refused.
    Over twice the limit Pillow refuses by itself: a 200 MP phone photo was refused as a bomb."""
    for limit in (200_000, 80_000):  # astronaut, 262,144 pixels: 1.3x (Pillow warns), 3.3x (Pillow refuses)
        monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", limit)
        src, out = tmp_path / f"in{limit}", tmp_path / f"out{limit}"
        src.mkdir()
        Image.fromarray(astronaut).save(src / "photo.jpg", quality=90)  # ~50 kB: ~5 pixels per byte
        _declared_png(src / "bomb.png", 512, 512, 1)
        noise = np.random.default_rng(0).integers(0, 256, (600, 600, 3), dtype=np.uint8)
        Image.fromarray(noise).save(src / "huge.png")  # real bytes, 4.5x the lower limit: over faceveil's 4x
        code, _, err = run(capsys, "anonymize", src, "-o", out, "-m", "blackout", "-q")
        assert code == 1 and "Traceback" not in err
        assert [ln for ln in _error_lines(err) if "bomb.png" in ln and "refused as a decompression bomb" in ln], err
        assert sorted(p.name for p in out.iterdir()) == (["huge.png"] if limit == 200_000 else []) + ["photo.jpg"]
        assert (read_rgb(out / "photo.jpg")[FACE] < 16).all()
        assert (limit == 80_000) == bool([ln for ln in _error_lines(err) if "huge.png" in ln and "limit" in ln]), err


def test_max_pixels_env_reads_a_trusted_file(tmp_path, capsys, monkeypatch):
    """FACEVEIL_MAX_PIXELS replaces both limits: a flat white backdrop (a bomb's pixels a byte) and a photo over 4x
    Pillow's limit are read when trusted; over the variable's own limit a file is refused; a bad value is bad usage.
    Before, the CLI had no way to read them (a 100 MP white-backdrop PNG of 1.47 MB was refused)."""
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 200_000)
    src = tmp_path / "in"
    src.mkdir()
    Image.new("RGB", (600, 600), "white").save(src / "backdrop.png")  # 360,000 pixels in ~1 kB: a "bomb"
    Image.new("RGB", (1000, 1000), "white").save(src / "huge.png")  # 5x the limit: over faceveil's 4x
    expect = {None: (1, []), "2,000,000": (0, ["backdrop.png", "huge.png"]), "400000": (1, ["backdrop.png"])}
    for value, (code_want, written) in expect.items():
        if value is None:
            monkeypatch.delenv("FACEVEIL_MAX_PIXELS", raising=False)
        else:
            monkeypatch.setenv("FACEVEIL_MAX_PIXELS", value)
        out = tmp_path / f"out{value}"
        code, _, err = run(capsys, "anonymize", src, "-o", out, "-q")
        assert code == code_want and "Traceback" not in err, err
        assert sorted(p.name for p in out.glob("*")) == written, err
        for name in written:
            assert (read_rgb(out / name) == 255).all()
    lines = _error_lines(err)  # FACEVEIL_MAX_PIXELS=400000: huge.png is over it
    assert len(lines) == 1 and "huge.png: refused, 1,000,000 pixels is over faceveil's 400,000-pixel limit" in lines[0]
    monkeypatch.setenv("FACEVEIL_MAX_PIXELS", "lots")
    code, _, err = run(capsys, "anonymize", src, "-o", tmp_path / "bad", "-q")
    assert code == 2 and err.strip() == ("faceveil: error: FACEVEIL_MAX_PIXELS='lots': give a whole number of pixels, "
                                         "e.g. 400000000")
    assert not (tmp_path / "bad").exists()


def test_atomic_write_fsyncs_the_file_and_the_folder(tmp_path, monkeypatch, astronaut):
    import os
    import stat

    from faceveil.io.images import read_image, write_image

    synced = []
    real = os.fsync

    def spy(fd):
        synced.append(stat.S_ISDIR(os.fstat(fd).st_mode))
        real(fd)

    monkeypatch.setattr(os, "fsync", spy)
    src = tmp_path / "a.png"
    Image.fromarray(astronaut).save(src)
    write_image(tmp_path / "out" / "a.png", read_image(src).rgb, read_image(src))
    assert False in synced and synced[-1] is True, "file fsynced before the rename, folder after"


def test_legal_long_names_are_written_and_their_temporaries_cleaned_up(tmp_path, astronaut, capsys):
    """A photo named with 231 to 255 bytes failed "cannot write: File name too long": its temporary name
    (.NAME.pid.XXXXXXXX.tmp.jpg) was longer than the system allows; a video's NAME.tracks.json likewise."""
    import os
    import subprocess
    import sys

    from faceveil.io.atomic import remove_stale_temporaries, temp_affixes, write_bytes_atomic
    from faceveil.video.record import tracks_path

    name = "顔" * 83 + ".jpg"  # 253 bytes
    src = tmp_path / "in" / name
    src.parent.mkdir()
    Image.fromarray(astronaut).save(src, quality=90)
    code, _, err = run(capsys, "anonymize", src.parent, "-o", tmp_path / "out", "-q", "--detect", "fast")
    assert code == 0 and "1 of 1 files anonymized (1 face)" in err, err
    assert read_rgb(tmp_path / "out" / name).shape == astronaut.shape

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    suffix, prefix = temp_affixes(name, ".jpg")
    stale = tmp_path / "out" / (prefix.replace(str(os.getpid()), dead.stdout.strip()) + "abcd1234" + suffix)
    write_bytes_atomic(stale, b"left by a killed run")
    assert len(os.fsencode(stale.name)) <= 255
    assert remove_stale_temporaries([tmp_path / "out"]) == 1 and not stale.exists()

    a, b = tracks_path(tmp_path / ("v" * 250 + ".mp4")), tracks_path(tmp_path / ("v" * 250 + ".mkv"))
    assert a != b and len(os.fsencode(a.name)) <= 255 and a.name.endswith(".tracks.json")
    assert tracks_path(tmp_path / "clip.mp4").name == "clip.mp4.tracks.json"


def test_a_temporary_swept_between_its_making_and_its_lock_is_made_again(tmp_path, monkeypatch):
    """A writer holds an flock on its temporary so that no sweep removes it while it lives; between mkstemp and the
    lock a sweep in another pid namespace (the writer's pid no process there) could still find it unlocked and
    remove it, and the write would fail at its rename after all its work. The writer checks its name once locked
    and makes another temporary if it is gone; a video's stills folder likewise."""
    import os

    from faceveil.io import atomic

    real = atomic.fcntl
    swept = []

    class SweptFirst:  # the first lock comes too late: a sweep removed the name just before
        LOCK_EX, LOCK_NB = real.LOCK_EX, real.LOCK_NB

        def flock(self, fd, op):
            if not swept:
                swept.extend(p.name for p in tmp_path.iterdir() if ".faceveil." in p.name)
                for name in swept:
                    p = tmp_path / name
                    os.rmdir(p) if p.is_dir() else os.unlink(p)
            return real.flock(fd, op)

    monkeypatch.setattr(atomic, "fcntl", SweptFirst())
    atomic.write_bytes_atomic(tmp_path / "a.txt", b"written")
    assert len(swept) == 1 and os.listdir(tmp_path) == ["a.txt"] and (tmp_path / "a.txt").read_bytes() == b"written"
    swept.clear()
    folder, lock = atomic.make_temporary(tmp_path, "clip_preview", directory=True)
    try:
        assert len(swept) == 1 and folder.is_dir() and folder.name != swept[0] and folder.name.endswith(".tmpdir")
        assert atomic.remove_stale_temporaries([tmp_path]) == 0 and folder.is_dir(), "a live writer's (this one)"
    finally:
        folder.rmdir()
        atomic.release(lock)


def test_a_dead_writers_journaled_moves_are_undone_only_for_its_own_files_and_only_before_its_commit(tmp_path):
    """io.atomic's journal of moves made ahead of a commit (a video's earlier record set aside, its stills moved into
    place): the sweep undoes them while the pending temporary is still there, moves back only the file it moved (a
    file another run put at that name since stays), and a journal line cut by the kill undoes the moves before it."""
    import os

    from faceveil.io.atomic import journal_mkdir, journal_move, journal_start, make_temporary, release, undo_moves

    out = tmp_path / "out"
    (out / "shown").mkdir(parents=True)
    (out / "record").write_bytes(b"old record")
    (out / "shown" / "a.jpg").write_bytes(b"old a")
    pending = out / ".v.mp4.faceveil.1.abcdefgh.tmp.mp4"
    pending.write_bytes(b"new video")
    folder, lock = make_temporary(out, "v_preview", directory=True)
    release(lock)
    (folder / "new_a.jpg").write_bytes(b"new a")
    (folder / "new_b.jpg").write_bytes(b"new b")
    journal_start(folder, pending)
    journal_move(folder, out / "record", folder / "record")
    journal_move(folder, out / "shown" / "a.jpg", folder / "old_a.jpg")
    journal_move(folder, folder / "new_a.jpg", out / "shown" / "a.jpg")
    journal_mkdir(folder, out / "made")
    journal_move(folder, folder / "new_b.jpg", out / "made" / "b.jpg")
    with open(folder / "moves.journal", "a") as f:
        f.write('["move", "x", ')  # cut by the kill
    (out / "other").write_bytes(b"another run's b")
    os.replace(out / "other", out / "made" / "b.jpg")  # not the file this writer moved there

    undo_moves(folder)
    assert (out / "record").read_bytes() == b"old record" and (out / "shown" / "a.jpg").read_bytes() == b"old a"
    assert (out / "made" / "b.jpg").read_bytes() == b"another run's b"  # left: another's file, its folder kept

    committed, lock = make_temporary(out, "w_preview", directory=True)
    release(lock)
    (out / "shown" / "c.jpg").write_bytes(b"placed")
    journal_start(committed, out / ".w.mp4.faceveil.1.abcdefgh.tmp.mp4")  # that temporary has its name: committed
    journal_move(committed, out / "shown" / "c.jpg", committed / "c.jpg")
    undo_moves(committed, only_uncommitted=True)
    assert not (out / "shown" / "c.jpg").exists() and (committed / "c.jpg").exists()
