"""AVIF (Pillow) and HEIC/HEIF (the optional pillow-heif) photos: read, anonymized, written in their own format with
nothing of the original but the anonymized primary image (no thumbnail, second image, depth map or metadata)."""
from __future__ import annotations

import hashlib
import io
import sys
import xml.etree.ElementTree as ET

import numpy as np
import pytest
from PIL import Image, ImageCms

from conftest import shared_path
from faceveil.cli import main
from faceveil.errors import InputError
from faceveil.io import images

PHOTO = "maksssksksss10"  # one labelled face, 96x116 px, in a 301x400 photo
XMP = (b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">'
       b'<rdf:Description xmlns:dc="http://purl.org/dc/elements/1.1/"><dc:creator>Alice Example</dc:creator>'
       b'</rdf:Description></rdf:RDF></x:xmpmeta>')


def run(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def heif():
    return pytest.importorskip("pillow_heif", reason="HEIC needs pillow-heif (pip install 'faceveil[heif]')")


def face_photo() -> tuple[Image.Image, list[tuple[int, int, int, int]]]:
    """The facemask photo and its labelled face boxes (VOC)."""
    img = Image.open(shared_path("facemask", "images", PHOTO + ".jpg")).convert("RGB")
    root = ET.parse(shared_path("facemask", "annotations", PHOTO + ".xml")).getroot()
    boxes = [tuple(int(float(b.find(k).text)) for k in ("xmin", "ymin", "xmax", "ymax"))
             for b in root.iter("bndbox")]
    return img, boxes


def exif_with_gps() -> bytes:
    ex = Image.Exif()
    ex[0x010F], ex[0x0110] = "Apple", "iPhone 15"
    ex.get_ifd(0x8825)[2] = (48.0, 51.0, 24.0)  # GPS latitude
    return ex.tobytes()


def icc() -> bytes:
    return ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()


def phone_heic(path, img: Image.Image, second: Image.Image | None = None) -> None:
    """A HEIC as a phone writes it: EXIF (GPS), XMP, a colour profile and a thumbnail of the face; ``second``: another
    top-level image (with its own thumbnail)."""
    pillow_heif = heif()
    f = pillow_heif.from_pillow(img)
    f[0].info.update(exif=exif_with_gps(), xmp=XMP, icc_profile=icc(), thumbnails=[96])
    if second is not None:
        f.add_from_pillow(second)
        f[1].info["thumbnails"] = [48]
    f.save(path, quality=90)
    back = pillow_heif.open_heif(path)
    assert len(back) == (2 if second is not None else 1) and back[0].info["thumbnails"] and back[0].info["exif"]


def write_input(path, img: Image.Image) -> None:
    if path.suffix == ".heic":
        phone_heic(path, img, second=img.resize((img.width // 3, img.height // 3)))  # a small second image
    else:
        img.save(path, quality=90, exif=exif_with_gps(), xmp=XMP, icc_profile=icc())
        with Image.open(path) as back:
            assert back.format == "AVIF" and {"exif", "xmp", "icc_profile"} <= set(back.info)


def decoded(path) -> np.ndarray:
    images.heif_plugin(path)  # Pillow reads HEIC once pillow-heif's opener is registered
    with Image.open(path) as im:
        return np.asarray(im.convert("RGB")).astype(np.int16)


def assert_only_the_primary(path, keep_metadata: bool = False) -> None:
    """What the written file holds: one image, no thumbnail, depth map or auxiliary image; metadata only if kept."""
    if path.suffix == ".heic":
        pillow_heif = heif()
        f = pillow_heif.open_heif(path)
        assert len(f) == 1, f"{len(f)} top-level images"
        info = f[0].info
        assert info["thumbnails"] == [] and info["depth_images"] == [] and not info.get("aux"), info
        assert bool(info.get("exif")) == keep_metadata and bool(info.get("xmp")) == keep_metadata
        assert keep_metadata or info["metadata"] == [], info["metadata"]  # no other metadata item (IPTC, ...)
        assert ("icc_profile" in info) == keep_metadata
        if keep_metadata:
            ex = Image.Exif()
            ex.load(info["exif"])
            assert ex[0x010F] == "Apple" and ex.get_ifd(0x8825)[2] == (48.0, 51.0, 24.0)
    else:
        with Image.open(path) as im:
            assert im.format == "AVIF" and getattr(im, "n_frames", 1) == 1
            meta = {"exif", "xmp", "icc_profile"}
            assert meta & set(im.info) == (meta if keep_metadata else set()), im.info.keys()
        data = path.read_bytes()
        assert (b"Exif" in data) == keep_metadata and (b"xmpmeta" in data) == keep_metadata
        try:  # libheif lists an AVIF's items without decoding them: one image, no thumbnail or depth map
            import pillow_heif
        except ImportError:
            return
        f = pillow_heif.open_heif(path)
        assert len(f) == 1 and f[0].info["thumbnails"] == [] and f[0].info["depth_images"] == [], f[0].info
        assert not f[0].info.get("aux"), f[0].info


@pytest.mark.slow
@pytest.mark.parametrize("ext", [".avif", ".heic"])
def test_a_phone_photo_is_anonymized_in_its_own_format_with_nothing_else(ext, tmp_path, capsys):
    """`faceveil anonymize a.avif` failed ("faceveil does not write .avif files"), a folder's .heic were skipped.
    Now the face is hidden, the rest of the photo kept, the output in the input's format holds only the anonymized
    primary image: a phone's thumbnail and second image (each showing the face) and its EXIF/GPS/XMP are gone."""
    img, boxes = face_photo()
    src = tmp_path / "in"
    src.mkdir()
    write_input(src / f"phone{ext}", img)
    digest = hashlib.sha256((src / f"phone{ext}").read_bytes()).hexdigest()
    out = tmp_path / "out"
    code, _, err = run(capsys, "anonymize", src, "-o", out, "-q")
    assert code == 0, err
    dst = out / f"phone{ext}"
    assert dst.is_file() and hashlib.sha256((src / f"phone{ext}").read_bytes()).hexdigest() == digest
    with Image.open(dst) as im:
        assert im.format == {".avif": "AVIF", ".heic": "HEIF"}[ext] and im.size == img.size
    before, after = decoded(src / f"phone{ext}"), decoded(dst)
    far = np.ones(before.shape[:2], bool)
    for x1, y1, x2, y2 in boxes:
        face = np.abs(after[y1:y2, x1:x2] - before[y1:y2, x1:x2]).mean()
        assert face > 10, f"face {x1, y1, x2, y2} changed by only {face:.1f}"
        w, h = (x2 - x1) // 2, (y2 - y1) // 2
        far[max(0, y1 - h):y2 + h, max(0, x1 - w):x2 + w] = False  # the region around the face may be blurred
    assert far.mean() > 0.4
    diff = np.abs(after - before).max(axis=2)[far]
    assert diff.mean() < 2.5 and np.percentile(diff, 99) < 16, (diff.mean(), np.percentile(diff, 99))
    assert_only_the_primary(dst)
    # --keep-metadata keeps EXIF (GPS too), XMP and the profile, never a thumbnail or another image
    code, _, err = run(capsys, "anonymize", src, "-o", tmp_path / "kept", "-q", "--keep-metadata")
    assert code == 0, err
    assert_only_the_primary(tmp_path / "kept" / f"phone{ext}", keep_metadata=True)


@pytest.mark.parametrize("ext", [".avif", ".heic"])
def test_orientation_goes_into_the_pixels(ext, tmp_path, capsys):
    """EXIF orientation 6 (AVIF: written as irot/imir; HEIC: libheif's rotation): the output is upright, untagged."""
    if ext == ".heic":
        heif()
        images.heif_plugin(ext)
    rng = np.random.default_rng(0)
    stored = Image.fromarray(rng.integers(0, 256, (60, 90, 3), dtype=np.uint8))
    ex = Image.Exif()
    ex[0x0112] = 6
    (tmp_path / "in").mkdir()
    stored.save(tmp_path / "in" / f"r{ext}", quality=90, exif=ex.tobytes())
    read = images.read_image(tmp_path / "in" / f"r{ext}")
    assert read.rgb.shape[:2] == (90, 60)  # upright: turned a quarter
    code, _, err = run(capsys, "anonymize", tmp_path / "in", "-o", tmp_path / "out", "-q")
    assert code == 0, err
    with Image.open(tmp_path / "out" / f"r{ext}") as im:
        assert im.size == (60, 90) and im.getexif().get(0x0112, 1) == 1
    assert np.abs(decoded(tmp_path / "out" / f"r{ext}") - read.rgb).mean() < 12  # the noise, not turned again


def test_a_heic_with_two_full_size_images_is_refused_as_an_mpo_pair_is(tmp_path, capsys):
    """A burst or a stereo pair: only the primary would be written, the other photo silently dropped. Refused, one
    line naming the file (as an MPO with two full-size images); the batch goes on."""
    img = Image.fromarray(np.random.default_rng(1).integers(0, 256, (80, 120, 3), dtype=np.uint8))
    src = tmp_path / "in"
    src.mkdir()
    phone_heic(src / "burst.heic", img, second=img.transpose(Image.Transpose.FLIP_LEFT_RIGHT))
    img.save(src / "other.jpg")
    code, _, err = run(capsys, "anonymize", src, "-o", tmp_path / "out", "-q")
    assert code == 1
    line = [x for x in err.splitlines() if "burst.heic" in x]
    assert len(line) == 1 and "2 full-size images" in line[0] and "Traceback" not in err, err
    assert not (tmp_path / "out" / "burst.heic").exists() and (tmp_path / "out" / "other.jpg").is_file()


def test_a_10_bit_heic_is_refused_as_a_16_bit_png_is(tmp_path):
    """pillow-heif hands a 10-bit HEIC over as 8-bit: written back, its depth would be lost without a word."""
    pillow_heif = heif()
    deep = np.random.default_rng(2).integers(0, 65536, (64, 96, 3)).astype(np.uint16)
    pillow_heif.from_bytes(mode="RGB;16", size=(96, 64), data=deep.tobytes()).save(tmp_path / "d.heic", quality=90)
    with pytest.raises(InputError, match=r"d\.heic: 10-bit HEIF images are not supported"):
        images.read_image(tmp_path / "d.heic")


def test_a_10_bit_avif_is_refused_too(tmp_path, capsys):
    """Pillow (libavif) hands a 10-bit AVIF over as 8-bit RGB: it was anonymized and written back as 8-bit without a
    word. Refused as a 10-bit HEIC is (its av1C says the depth); an 8-bit AVIF is read."""
    import av

    if "libsvtav1" not in av.codecs_available or "avif" not in av.formats_available:
        pytest.skip("this PyAV has no AV1 encoder or AVIF muxer to make a 10-bit AVIF with")
    (tmp_path / "in").mkdir()
    with av.open(str(tmp_path / "in" / "ten.avif"), "w", format="avif") as out:
        s = out.add_stream("libsvtav1", rate=1)
        s.width, s.height, s.pix_fmt = 128, 96, "yuv420p10le"
        rgb = np.random.default_rng(5).integers(0, 256, (96, 128, 3), dtype=np.uint8)
        for packet in [*s.encode(av.VideoFrame.from_ndarray(rgb, format="rgb24").reformat(format="yuv420p10le")),
                       *s.encode()]:
            out.mux(packet)
    with Image.open(tmp_path / "in" / "ten.avif") as im:
        assert im.format == "AVIF" and im.mode == "RGB"  # what Pillow makes of it
    Image.fromarray(rgb).save(tmp_path / "in" / "eight.avif")
    code, _, err = run(capsys, "anonymize", tmp_path / "in", "-o", tmp_path / "out", "-q")
    assert code == 1 and "ten.avif: 10-bit AVIF images are not supported (the bit depth would be lost)" in err, err
    assert not (tmp_path / "out" / "ten.avif").exists() and (tmp_path / "out" / "eight.avif").is_file()


def test_without_pillow_heif_a_heic_fails_naming_the_file_and_the_batch_goes_on(tmp_path, capsys, monkeypatch):
    """Without the heif extra a .heic input is one failed file, its line saying what to install; on main a folder's
    .heic was skipped as "pictures in other formats" and the run exited 0."""
    monkeypatch.setitem(sys.modules, "pillow_heif", None)  # `import pillow_heif` raises ImportError
    monkeypatch.setattr(images, "_HEIF_READY", [], raising=False)
    src = tmp_path / "in"
    src.mkdir()
    (src / "IMG_0001.HEIC").write_bytes(b"\0\0\0\x18ftypheic\0\0\0\0mif1heic" + bytes(64))
    Image.fromarray(np.zeros((40, 40, 3), np.uint8)).save(src / "b.jpg")
    code, _, err = run(capsys, "anonymize", src, "-o", tmp_path / "out", "-q")
    assert code == 1, err
    line = [x for x in err.splitlines() if "IMG_0001.HEIC" in x]
    assert len(line) == 1 and "pip install 'faceveil[heif]'" in line[0] and "Traceback" not in err, err
    assert not (tmp_path / "out" / "IMG_0001.HEIC").exists() and (tmp_path / "out" / "b.jpg").is_file()
    # a JPEG asked to become a HEIC: the same one line
    code, _, err = run(capsys, "anonymize", src / "b.jpg", "-o", tmp_path / "b.heic", "-q")
    assert code == 1 and "pip install 'faceveil[heif]'" in err and not (tmp_path / "b.heic").exists(), err


def test_heic_and_avif_are_no_longer_refused_as_output_names(tmp_path, capsys):
    """`-o face.avif` was refused ("faceveil does not write .avif files"); it writes that file now."""
    Image.fromarray(np.zeros((40, 40, 3), np.uint8)).save(tmp_path / "a.png")
    code, _, err = run(capsys, "anonymize", tmp_path / "a.png", "-o", tmp_path / "face.avif", "-q")
    assert code == 0, err
    with Image.open(tmp_path / "face.avif") as im:
        assert im.format == "AVIF"


def test_the_review_page_shows_a_heic_as_png_and_flags_a_reencoded_unhidden_face(tmp_path, astronaut):
    """Browsers show no HEIC: the page's image endpoint serves a PNG of it (upright, its own size). The page's
    "unhidden" check compares an output with the original re-encoded as the output is (HEIC/AVIF: at our quality):
    an output that is the original merely re-encoded is flagged, not taken for anonymized."""
    pytest.importorskip("flask", reason="the review page needs Flask (pip install 'faceveil[review]')")
    heif()
    from faceveil.pipeline import AnonymizerConfig
    from faceveil.review import ReviewSet, ReviewSettings, create_app

    src, out = tmp_path / "in", tmp_path / "out"
    src.mkdir()
    for name in ("astro.heic", "leak.heic", "leak.avif"):
        images.write_image(src / name, astronaut)
    assert main(["anonymize", str(src), "-o", str(out), "-q", "--detector", "centerface", "--jpeg-quality", "50"]) == 0
    for name in ("leak.heic", "leak.avif"):  # the face left as it was, re-encoded as that run encodes
        images.write_image(out / name, images.read_image(src / name).rgb, jpeg_quality=50)
    cfg = AnonymizerConfig(detector="centerface", jpeg_quality=50)
    rs = ReviewSet(out, src, cfg, ReviewSettings(second=()), tmp_path / "cache")
    client = create_app(rs, "t0ken-0123456789").test_client(use_cookies=False)
    hdr = {"X-Faceveil-Token": "t0ken-0123456789"}
    r = client.get("/img/out/astro.heic", headers=hdr)
    assert r.status_code == 200 and r.mimetype == "image/png", r.status_code
    shown = np.asarray(Image.open(io.BytesIO(r.data)).convert("RGB"))
    assert shown.shape == astronaut.shape and (shown == images.read_image(out / "astro.heic").rgb).all()
    items = {i["path"]: i for i in client.get("/api/items", headers=hdr).get_json()["items"]}
    assert [f["kind"] for f in items["astro.heic"]["flags"]] == [], items["astro.heic"]["flags"]
    for name in ("leak.heic", "leak.avif"):
        assert "unhidden" in [f["kind"] for f in items[name]["flags"]], (name, items[name]["flags"])


def test_dataset_mode_takes_heic_and_avif_and_verify_decodes_them(tmp_path, capsys):
    """A VOC dataset of a HEIC and an AVIF photo: both anonymized in their format, and `dataset verify` (another
    process would register pillow-heif through io.images.opened) decodes them."""
    pillow_heif = heif()
    img, boxes = face_photo()
    ds = tmp_path / "ds"
    (ds / "images").mkdir(parents=True)
    (ds / "ann").mkdir()
    for ext in (".heic", ".avif"):
        if ext == ".heic":
            pillow_heif.from_pillow(img).save(ds / "images" / f"p{ext}", quality=90)
        else:
            img.save(ds / "images" / f"p{ext}", quality=90)
        xml = shared_path("facemask", "annotations", PHOTO + ".xml").read_text()
        (ds / "ann" / f"p{ext}.xml").write_text(xml.replace(f"{PHOTO}.jpg", f"p{ext}"))
    out = tmp_path / "out"
    code = main(["dataset", "anonymize", "--format", "voc", "--images", str(ds / "images"), "--labels",
                 str(ds / "ann"), "-o", str(out), "--boxes", "gt", "-q"])
    assert code == 0, capsys.readouterr().err
    x1, y1, x2, y2 = boxes[0]
    for ext, fmt in ((".heic", "HEIF"), (".avif", "AVIF")):
        with Image.open(out / "images" / f"p{ext}") as im:
            assert im.format == fmt
        face = np.abs(decoded(out / "images" / f"p{ext}") - decoded(ds / "images" / f"p{ext}"))[y1:y2, x1:x2]
        assert face.mean() > 10, (ext, face.mean())
    # in a process of its own, as a user runs it: nothing has read a HEIC there before verify's reader
    import os
    import subprocess
    from pathlib import Path

    import faceveil

    env = {**os.environ, "PYTHONPATH": str(Path(faceveil.__file__).parents[1])}
    r = subprocess.run([sys.executable, "-m", "faceveil", "dataset", "verify", str(out)], env=env,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and "verify ok: 4 files checked" in r.stderr, r.stderr


@pytest.mark.parametrize("ext", [".heic", ".avif"])
def test_a_truncated_heic_or_avif_fails_in_one_line(ext, tmp_path, capsys):
    """libheif's error ends in a newline, which the message showed as "...(points to file position 379)\\n)".
    One clean line, exit 1, no output."""
    if ext == ".heic":
        heif()
        images.heif_plugin(ext)
    img = Image.fromarray(np.random.default_rng(3).integers(0, 256, (256, 256, 3), dtype=np.uint8))
    buf = io.BytesIO()
    img.save(buf, "HEIF" if ext == ".heic" else "AVIF", quality=90)
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / f"cut{ext}").write_bytes(buf.getvalue()[:len(buf.getvalue()) // 2])
    code, _, err = run(capsys, "anonymize", tmp_path / "in", "-o", tmp_path / "out", "-q")
    lines = [x for x in err.splitlines() if "error:" in x]
    assert code == 1 and len(lines) == 1 and f"cut{ext}: " in lines[0] and "Traceback" not in err, err
    assert err.count("\n") == 2 and "\\n" not in err, err  # the error and the summary
    assert not (tmp_path / "out" / f"cut{ext}").exists()


def test_a_heic_named_jpg_is_read_by_its_content_and_an_avif_is_not_taken_for_one(tmp_path, capsys):
    """A phone export named IMG_1.jpg that holds a HEIC: read by its ftyp brands (written as the JPEG its name says).
    An AVIF whose brands are the container's (mif1) is not taken for a HEIC (which would need pillow-heif)."""
    heif()
    img = Image.fromarray(np.random.default_rng(4).integers(0, 256, (48, 64, 3), dtype=np.uint8))
    images.heif_plugin("x.heic")
    buf = io.BytesIO()
    img.save(buf, "HEIF", quality=90)
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "IMG_1.jpg").write_bytes(buf.getvalue())
    code, _, err = run(capsys, "anonymize", tmp_path / "in", "-o", tmp_path / "out", "-q")
    assert code == 0, err
    with Image.open(tmp_path / "out" / "IMG_1.jpg") as im:
        assert im.format == "JPEG" and im.size == (64, 48)
    head = buf.getvalue()[:64]
    assert images.is_heif(None, head) and images.is_heif("a.HEIC")
    avif = io.BytesIO()
    img.save(avif, "AVIF")
    data = avif.getvalue()
    size = int.from_bytes(data[:4], "big")
    mif1 = data[:8] + b"mif1" + data[12:16] + data[16:size].replace(b"avif", b"mif1") + data[size:]
    assert not images.is_heif(None, mif1) and not images.is_heif("a.avif", data)
