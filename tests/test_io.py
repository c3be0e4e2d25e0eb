import numpy as np
import pytest
from PIL import Image

from faceveil.errors import InputError, UsageError
from faceveil.io.atomic import atomic_path
from faceveil.io.images import read_image, write_image


def _exif_with_gps(orientation=1):
    ex = Image.Exif()
    ex[0x0112] = orientation
    ex[0x010F] = "CameraMaker"
    ex[0x8825] = {1: "N", 2: (52.0, 31.0, 12.0)}  # GPS IFD
    return ex


def test_orientation_applied_and_metadata_stripped(tmp_path):
    arr = np.zeros((20, 40, 3), np.uint8)
    arr[:, :20] = 255  # left half white
    src = tmp_path / "a.jpg"
    Image.fromarray(arr).save(src, exif=_exif_with_gps(orientation=6), quality=95)
    img = read_image(src)
    assert img.rgb.shape == (40, 20, 3), "orientation 6 rotates the pixels"
    write_image(tmp_path / "out.jpg", img.rgb, img)
    out = Image.open(tmp_path / "out.jpg")
    assert len(out.getexif()) == 0 and "exif" not in out.info
    assert out.size == (20, 40)


def test_keep_metadata_keeps_exif_with_orientation_reset(tmp_path):
    src = tmp_path / "a.jpg"
    Image.fromarray(np.zeros((20, 40, 3), np.uint8)).save(src, exif=_exif_with_gps(orientation=6))
    img = read_image(src)
    write_image(tmp_path / "out.jpg", img.rgb, img, keep_metadata=True)
    ex = Image.open(tmp_path / "out.jpg").getexif()
    assert ex[0x010F] == "CameraMaker" and ex[0x0112] == 1


@pytest.mark.parametrize("ext", [".jpg", ".png", ".webp"])
def test_keep_metadata_keeps_xmp_and_the_comment_and_the_default_drops_them(tmp_path, ext):
    """The README promised XMP kept with --keep-metadata; it was dropped."""
    from PIL.PngImagePlugin import PngInfo

    xmp = b'<x:xmpmeta xmlns:x="adobe:ns:meta/">Photographer Jane Doe</x:xmpmeta>'
    kwargs: dict = {"xmp": xmp, "comment": b"taken at home"} if ext != ".png" else {"pnginfo": PngInfo()}
    if ext == ".png":
        kwargs["pnginfo"].add_itxt("XML:com.adobe.xmp", xmp.decode())
    Image.fromarray(np.zeros((20, 40, 3), np.uint8)).save(tmp_path / f"a{ext}", **kwargs)
    img = read_image(tmp_path / f"a{ext}")
    for keep in (True, False):
        write_image(tmp_path / f"out{ext}", img.rgb, img, keep_metadata=keep)
        data = (tmp_path / f"out{ext}").read_bytes()
        assert (b"Jane Doe" in data) is keep
        if ext == ".jpg":
            assert (b"taken at home" in data) is keep


@pytest.mark.parametrize("ext", [".png", ".webp", ".bmp", ".tif", ".jpeg"])
def test_formats_round_trip(tmp_path, ext, noise_image):
    src = tmp_path / f"a{ext}"
    kwargs = {"lossless": True} if ext == ".webp" else {}
    Image.fromarray(noise_image).save(src, **kwargs)
    img = read_image(src)
    if ext != ".jpeg":
        assert np.array_equal(img.rgb, noise_image)
    write_image(tmp_path / f"b{ext}", img.rgb, img)
    assert Image.open(tmp_path / f"b{ext}").size == (160, 120)


def test_lossless_sources_stay_lossless_in_their_own_format(tmp_path, noise_image):
    """A lossless WebP came out lossy (quality 95) and a LZW TIFF uncompressed."""
    from faceveil.io.images import webp_is_lossless

    Image.fromarray(noise_image).save(tmp_path / "l.webp", lossless=True, exif=Image.Exif().tobytes())
    Image.fromarray(noise_image).save(tmp_path / "q.webp", quality=80)
    Image.fromarray(noise_image).save(tmp_path / "z.tif", compression="tiff_lzw")
    assert webp_is_lossless(tmp_path / "l.webp") and not webp_is_lossless(tmp_path / "q.webp")
    for name in ("l.webp", "z.tif"):
        img = read_image(tmp_path / name)
        write_image(tmp_path / f"out_{name}", img.rgb, img)
        assert np.array_equal(np.asarray(Image.open(tmp_path / f"out_{name}").convert("RGB")), noise_image), name
    assert webp_is_lossless(tmp_path / "out_l.webp")
    assert Image.open(tmp_path / "out_z.tif").info["compression"] == "tiff_lzw"
    img = read_image(tmp_path / "q.webp")  # a lossy one stays lossy; another format takes its own defaults
    write_image(tmp_path / "out_q.webp", img.rgb, img)
    write_image(tmp_path / "l_as.tif", read_image(tmp_path / "l.webp").rgb, read_image(tmp_path / "l.webp"))
    assert not webp_is_lossless(tmp_path / "out_q.webp")
    assert Image.open(tmp_path / "l_as.tif").info["compression"] == "raw"


def test_pixels_in_another_colour_profile_are_read_in_srgb(tmp_path, noise_image):
    """The profile is dropped with the metadata; Adobe RGB values written without it shifted colours (Delta-E 9)."""
    import io

    from PIL import ImageCms

    from conftest import shared_path

    adobe = Image.open(shared_path("deepface-unit", "img22.jpg")).info["icc_profile"]
    assert "Adobe RGB" in ImageCms.getProfileDescription(ImageCms.ImageCmsProfile(io.BytesIO(adobe)))
    Image.fromarray(noise_image).save(tmp_path / "a.png", icc_profile=adobe)
    img = read_image(tmp_path / "a.png")
    want = ImageCms.profileToProfile(Image.fromarray(noise_image), ImageCms.ImageCmsProfile(io.BytesIO(adobe)),
                                     ImageCms.createProfile("sRGB"),
                                     renderingIntent=ImageCms.Intent.RELATIVE_COLORIMETRIC)
    assert np.array_equal(img.rgb, np.asarray(want)) and np.abs(img.rgb.astype(int) - noise_image).max() > 20
    for keep in (False, True):  # sRGB pixels: the Adobe RGB profile would misdescribe them, kept or not
        write_image(tmp_path / "b.png", img.rgb, img, keep_metadata=keep)
        assert "icc_profile" not in Image.open(tmp_path / "b.png").info
        assert np.array_equal(read_image(tmp_path / "b.png").rgb, img.rgb)
    srgb = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    Image.fromarray(noise_image).save(tmp_path / "s.png", icc_profile=srgb)  # sRGB already: untouched
    assert np.array_equal(read_image(tmp_path / "s.png").rgb, noise_image)


def _cmyk_press_profile() -> bytes:
    """A minimal ICC v2 CMYK output profile (no CMYK profile ships with Pillow, the system or ../shared): CMYK -> Lab
    through a 2-point lut16 grid whose corners are a made-up press's colours (warm paper, impure inks, a black at
    12 %), so that its colours are far from Pillow's naive CMYK -> RGB formula (its cyan is (0, 150, 194), not
    (0, 255, 255))."""
    import struct

    from PIL import ImageCms

    paper, inks = np.array([247, 240, 222.0]), [np.array(c, float) / 255 for c in ((0, 160, 225), (225, 0, 130),
                                                                                   (255, 235, 0))]
    corners = []
    for i in range(16):  # c, m, y, k each 0 or 1; the first channel varies slowest
        on = [(i >> (3 - j)) & 1 for j in range(4)]
        rgb = paper * np.prod([ink for ink, o in zip(inks, on) if o] or [np.ones(3)], axis=0)
        corners.append(rgb * 0.12 + 8 if on[3] else rgb)
    to_lab = ImageCms.buildTransform(ImageCms.createProfile("sRGB"), ImageCms.createProfile("LAB"), "RGB", "LAB")
    lab = np.asarray(ImageCms.applyTransform(Image.fromarray(np.uint8(corners).reshape(1, 16, 3)), to_lab))
    clut = []
    for L, a, b in lab.reshape(16, 3).astype(int):  # Pillow's LAB: L * 2.55, a and b signed bytes
        a, b = (v - 256 if v > 127 else v for v in (a, b))
        clut += [round(L / 255 * 0xFF00), (a + 128) * 256, (b + 128) * 256]  # lut16's legacy Lab encoding
    d50 = struct.pack(">3i", 63190, 65536, 54061)
    a2b0 = (b"mft2\0\0\0\0" + bytes([4, 3, 2, 0]) + struct.pack(">9i", 65536, 0, 0, 0, 65536, 0, 0, 0, 65536)
            + struct.pack(">HH8H", 2, 2, *[0, 65535] * 4) + struct.pack(">48H", *clut)
            + struct.pack(">6H", *[0, 65535] * 3))
    text = b"test CMYK press\0"
    tags = [(b"desc", b"desc\0\0\0\0" + struct.pack(">I", len(text)) + text + bytes(79)),
            (b"wtpt", b"XYZ \0\0\0\0" + d50), (b"A2B0", a2b0)]
    table, data, start = b"", b"", 128 + 4 + 12 * len(tags)
    for sig, tag in tags:
        tag += bytes(-len(tag) % 4)
        table, data = table + sig + struct.pack(">II", start + len(data), len(tag)), data + tag
    header = (struct.pack(">I", start + len(data)) + b"lcms" + bytes([2, 0x10, 0, 0]) + b"prtrCMYKLab " + bytes(12)
              + b"acsp" + bytes(28) + d50)
    return header + bytes(128 - len(header)) + struct.pack(">I", len(tags)) + table + data


def test_a_cmyk_photo_is_read_through_its_colour_profile(tmp_path, astronaut, astronaut_faces, capsys):
    """Round 5: a CMYK JPEG's embedded profile was ignored: Pillow's naive CMYK -> RGB formula gave its colours
    (12 levels off on average with Artifex's SWOP profile; here its cyan came out (0, 255, 255), not (0, 150, 194)).
    Now LittleCMS converts it by its profile, as Pillow's ImageCms.profileToProfile does; the anonymized output keeps
    those colours away from the face."""
    import io

    from PIL import ImageCms

    from faceveil.cli import main

    icc = _cmyk_press_profile()
    press = ImageCms.ImageCmsProfile(io.BytesIO(icc))
    Image.fromarray(astronaut).convert("CMYK").save(tmp_path / "c.jpg", quality=95, icc_profile=icc)
    stored = Image.open(tmp_path / "c.jpg")
    assert stored.mode == "CMYK" and stored.info["icc_profile"] == icc
    want = np.asarray(ImageCms.profileToProfile(stored, press, ImageCms.createProfile("sRGB"), outputMode="RGB"))
    naive = np.asarray(stored.convert("RGB")).astype(int)
    assert np.abs(naive - want).mean() > 8, "the profile is far from the naive formula: a test that can fail"
    got = read_image(tmp_path / "c.jpg").rgb
    assert np.abs(got.astype(int) - want).max() <= 1
    assert main(["anonymize", str(tmp_path / "c.jpg"), "-o", str(tmp_path / "out"), "-q"]) == 0
    out = np.asarray(Image.open(tmp_path / "out" / "c.jpg"))
    assert out.ndim == 3 and "icc_profile" not in Image.open(tmp_path / "out" / "c.jpg").info
    diff = np.abs(out.astype(int) - want).mean(axis=2)
    x1, y1, x2, y2 = (int(v) for v in astronaut_faces.xyxy[0])
    assert diff[y1:y2, x1:x2].mean() > 10 and diff[400:, 350:].mean() < 3, "the face hidden, the rest in sRGB"


def test_alpha_and_grey_modes_survive(tmp_path):
    rgba = np.zeros((10, 10, 4), np.uint8)
    rgba[..., 3] = 77
    Image.fromarray(rgba, "RGBA").save(tmp_path / "a.png")
    img = read_image(tmp_path / "a.png")
    write_image(tmp_path / "b.png", img.rgb, img)
    assert np.asarray(Image.open(tmp_path / "b.png"))[..., 3].max() == 77
    Image.fromarray(np.full((10, 10), 9, np.uint8), "L").save(tmp_path / "g.png")
    img = read_image(tmp_path / "g.png")
    assert img.rgb.shape == (10, 10, 3)
    write_image(tmp_path / "g2.png", img.rgb, img)
    assert Image.open(tmp_path / "g2.png").mode == "L"


def test_a_transparent_png_written_as_jpeg_says_so_and_its_hidden_face_is_anonymized(
        tmp_path, astronaut, astronaut_faces, capsys):
    """Round 5: `anonymize a.png -o a.jpg` of a PNG with transparency dropped the alpha without a word (JPEG has
    none): what was transparent came out opaque. Now one warning line (exit 0, the file written), none for a .png.
    And the face, drawn under alpha=0 (invisible in the PNG, shown by the JPEG), is anonymized in the RGB data."""
    from faceveil.cli import main

    alpha = np.zeros(astronaut.shape[:2], np.uint8)
    alpha[:, :60] = 255  # a strip on the left opaque, the face (x 170..290) transparent
    Image.fromarray(np.dstack([astronaut, alpha]), "RGBA").save(tmp_path / "a.png")
    x1, y1, x2, y2 = (int(v) for v in astronaut_faces.xyxy[0])
    assert x1 > 60
    assert main(["anonymize", str(tmp_path / "a.png"), "-o", str(tmp_path / "a.jpg"), "-q"]) == 0
    err = capsys.readouterr().err.splitlines()
    assert err[0] == (f"faceveil: warning: {tmp_path / 'a.jpg'}: JPEG has no transparency: the transparent pixels of "
                      "the input were written opaque (their stored colours show), and lossily; name it .png or .webp "
                      "to keep them") and len(err) == 2, err
    out = np.asarray(Image.open(tmp_path / "a.jpg").convert("RGB")).astype(int)
    diff = np.abs(out - astronaut).mean(axis=2)
    assert diff[y1:y2, x1:x2].mean() > 15, "the face under alpha=0 is anonymized in the colour channels"
    assert diff[:, :60].mean() < 3 and diff[400:, 300:].mean() < 3, "away from it, only JPEG's loss"
    assert main(["anonymize", str(tmp_path / "a.png"), "-o", str(tmp_path / "b.png"), "-q"]) == 0
    assert "warning" not in capsys.readouterr().err
    assert np.array_equal(np.asarray(Image.open(tmp_path / "b.png"))[..., 3][:, :60], alpha[:, :60])


def test_bad_inputs_raise_input_error_naming_the_file(tmp_path, noise_image):
    (tmp_path / "text.jpg").write_text("hello")
    with pytest.raises(InputError, match="text.jpg: not an image"):
        read_image(tmp_path / "text.jpg")
    Image.fromarray(noise_image).save(tmp_path / "full.jpg")
    data = (tmp_path / "full.jpg").read_bytes()
    (tmp_path / "cut.jpg").write_bytes(data[: len(data) // 2])
    with pytest.raises(InputError, match="cut.jpg"):
        read_image(tmp_path / "cut.jpg")
    with pytest.raises(InputError, match="no such file"):
        read_image(tmp_path / "missing.jpg")


def test_a_damaged_exif_block_prints_no_python_warning(tmp_path, noise_image):
    """A photo with a damaged EXIF block (an editing app's) printed Pillow's two raw lines ("TiffImagePlugin.py:982:
    UserWarning: Corrupt EXIF data. Expecting to read 12 bytes but only got 8") among the one-line messages. In a
    fresh process, as a user runs it: pytest keeps the warning filters of its collection apart from the tests'."""
    import subprocess
    import sys

    path = tmp_path / "bad_exif.jpg"
    Image.fromarray(noise_image).save(path, exif=b"Exif\x00\x00MM\x00*\x00\x00\x00\x08\xff\xff garbage")
    r = subprocess.run([sys.executable, "-m", "faceveil", "anonymize", path, "-o", tmp_path / "out", "-q", "--detect",
                        "fast"], capture_output=True, text=True)
    assert r.returncode == 0 and r.stderr.startswith("faceveil: 1 of 1 files anonymized") and \
        r.stderr.count("\n") == 1, r.stderr
    assert not Image.open(tmp_path / "out" / "bad_exif.jpg").getexif()  # stripped, as by default


def test_a_file_in_a_folder_that_cannot_be_entered_is_one_input_error(tmp_path, noise_image, monkeypatch):
    """A photo or video inside a folder that cannot be entered (chmod 000): Path.exists raised PermissionError, which
    callers catching only faceveil's errors showed as "PermissionError: [Errno 13] ..." (eval privacy, a failed
    ``process_file``) or "cannot read image ([Errno 13] ...)" (``build_bank``). Now it is the InputError naming the
    file in the words the commands use for it before any work."""
    from conftest import unreadable_folders
    from faceveil.anonymize.bank import build_bank
    from faceveil.io.images import read_file
    from faceveil.io.video import VideoSource, probe
    from faceveil.pipeline import Anonymizer

    (tmp_path / "locked").mkdir()
    photo, video = tmp_path / "locked" / "a.png", tmp_path / "locked" / "v.mp4"
    Image.fromarray(noise_image).save(photo)
    video.write_bytes(b"not looked at")
    unreadable_folders(monkeypatch, "locked")
    why = "a folder on the way to it cannot be entered (permission denied)"
    for call, path in ((read_file, photo), (read_image, photo), (VideoSource, video), (probe, video)):
        with pytest.raises(InputError) as caught:
            call(path)
        assert str(caught.value) == f"{path}: {why}", call
    result = Anonymizer("blackout", load_detector=False).process_file(photo, tmp_path / "out.png")
    assert (result.status, result.error) == ("failed", f"{photo}: {why}")
    errors: list[str] = []
    with pytest.raises(UsageError, match="no usable face"):  # the only photo failed: named in ``errors``
        build_bank([(photo, "ann")], detector=object(), errors=errors)
    assert errors == [f"{photo}: {why}"]


def test_atomic_path_leaves_nothing_on_failure(tmp_path):
    target = tmp_path / "x.png"
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_bytes(b"partial")
            raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == []
    with atomic_path(target) as tmp:
        tmp.write_bytes(b"done")
    assert [p.name for p in tmp_path.iterdir()] == ["x.png"]


def test_a_rewrite_keeps_the_files_permissions_and_a_new_file_follows_the_umask(tmp_path, astronaut, monkeypatch):
    """Every output was chmod 0644: `--in-place` made a 0600 photo readable by every user of the machine."""
    import stat

    from faceveil.cli import main
    from faceveil.io import atomic

    private = tmp_path / "private.jpg"
    Image.fromarray(astronaut).save(private)
    private.chmod(0o600)
    before = private.read_bytes()
    assert main(["anonymize", "--in-place", str(private), "-q"]) == 0
    assert private.read_bytes() != before
    assert stat.S_IMODE(private.stat().st_mode) == 0o600
    monkeypatch.setattr(atomic, "_UMASK", 0o077)
    assert main(["anonymize", str(private), "-o", str(tmp_path / "out"), "-q"]) == 0
    assert stat.S_IMODE((tmp_path / "out" / "private.jpg").stat().st_mode) == 0o600
    monkeypatch.setattr(atomic, "_UMASK", 0o002)
    with atomic_path(tmp_path / "shared.txt") as tmp:
        tmp.write_text("x")
    assert stat.S_IMODE((tmp_path / "shared.txt").stat().st_mode) == 0o664
