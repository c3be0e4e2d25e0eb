"""Audit 3: what a demanding user met on the command line and in the API (bad output paths, repeated parameters,
files named as another kind, names that look like options, formats under a wrong extension, LAB/CMYK TIFFs,
options a run has no file for)."""
from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image

from faceveil.cli import main

FAST = ("-q", "--detect", "fast")


def run(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture()
def photo(tmp_path, astronaut) -> Path:
    p = tmp_path / "in" / "photo.jpg"
    p.parent.mkdir()
    Image.fromarray(astronaut).save(p, quality=90)
    return p


@pytest.mark.parametrize("out,folder_input", [(o, f) for o in ("afile/sub/", "afile/sub", "afile/a/b/") for f in (0, 1)]
                         + [("afile/sub/x.jpg", 0)])
def test_output_under_a_file_refused_before_any_work(photo, tmp_path, capsys, monkeypatch, out, folder_input):
    """`-o afile/sub/` with afile a regular file: the photo was detected, then failed writing (exit 1). Now bad
    usage, one line naming the folder and the file in the way, before any model is built."""
    from faceveil import pipeline

    (tmp_path / "afile").write_bytes(b"a regular file")

    def no_work(*a, **k):
        raise AssertionError("an anonymizer was built before the output was refused")

    monkeypatch.setattr(pipeline.Anonymizer, "from_config", no_work)
    code, _, err = run(capsys, "anonymize", photo.parent if folder_input else photo, "-o", tmp_path / out, *FAST)
    assert code == 2, err
    assert err.count("\n") == 1 and err.startswith("faceveil: error: "), err
    assert "cannot make the output folder" in err and f"{tmp_path / 'afile'} is a file" in err, err
    assert (tmp_path / "afile").read_bytes() == b"a regular file"


def test_output_where_no_folder_can_be_made_refused(photo, capsys, monkeypatch):
    """/proc takes no new folder (root included): refused up front, not 'cannot write' after the detection."""
    from faceveil import pipeline

    if not Path("/proc/self").exists():
        pytest.skip("no /proc here")
    monkeypatch.setattr(pipeline.Anonymizer, "from_config", lambda *a, **k: 1 / 0)
    code, _, err = run(capsys, "anonymize", photo, "-o", "/proc/faceveil-out/", *FAST)
    assert code == 2 and err.count("\n") == 1 and "/proc/faceveil-out: cannot make the output folder" in err, err


def test_fresh_nested_output_still_made(photo, tmp_path, capsys):
    code, _, err = run(capsys, "anonymize", photo.parent, "-o", tmp_path / "new" / "deep", *FAST)
    assert code == 0, err
    assert (tmp_path / "new" / "deep" / "photo.jpg").is_file()
    assert [p.name for p in (tmp_path / "new").iterdir()] == ["deep"], "the probe leaves nothing behind"


@pytest.mark.parametrize("argv,said", [(("-p", "relative=0.3", "-p", "relative=0.6"), "-p relative: given twice"),
                                       (("--dp", "threshold=0.3", "--dp", "threshold=0.5"),
                                        "--detector-param threshold: given twice"),
                                       (("--dp", "max_size=300", "--max-size", "500"),
                                        "--max-size 500 and --detector-param max_size=300")])
def test_a_parameter_given_twice_is_refused(photo, tmp_path, capsys, argv, said):
    """`-p relative=0.3 -p relative=0.6`: the last won without a word (nothing documents a meaning for a repeat)."""
    code, _, err = run(capsys, "anonymize", photo, "-o", tmp_path / "out", *FAST, *argv)
    assert code == 2 and err.count("\n") == 1 and said in err, err
    assert not (tmp_path / "out").exists()


def test_the_same_value_twice_is_one_request(photo, tmp_path, capsys):
    code, _, err = run(capsys, "anonymize", photo, "-o", tmp_path / "out", *FAST, "-p", "relative=0.3",
                       "-p", "relative=0.3")
    assert code == 0, err


def test_parse_methods_refuses_a_method_parameter_given_twice():
    from faceveil.errors import UsageError
    from faceveil.train.train_on_anon import parse_methods

    with pytest.raises(UsageError, match="blur.kernel: given twice"):
        parse_methods("blur", ["blur.kernel=9", "blur:kernel=11"])


@pytest.fixture()
def video_named_jpg(tmp_path) -> Path:
    """A real MP4 renamed clip.jpg."""
    import numpy as np
    from synthetic_video import write_clip

    mp4 = tmp_path / "v" / "clip.mp4"
    mp4.parent.mkdir()
    write_clip(mp4, [np.full((64, 96, 3), 40 * i, np.uint8) for i in range(4)], audio=False)
    return mp4.rename(mp4.with_suffix(".jpg"))


@pytest.mark.parametrize("command", ["anonymize", "detect"])
def test_a_video_named_jpg_is_said_to_be_a_video(video_named_jpg, tmp_path, capsys, command):
    """clip.mp4 renamed clip.jpg: 'not an image or unsupported format', though faceveil reads the file as a video."""
    out = ("-o", tmp_path / "out") if command == "anonymize" else ()
    code, _, err = run(capsys, command, video_named_jpg, *out, "-q")
    assert code == 1, err
    assert f"faceveil: error: {video_named_jpg}: is an MP4 video named .jpg, not an image; rename it to clip.mp4 to " \
        "anonymize it as a video\n" in err, err


def test_detect_takes_a_photo_named_mp4(photo, capsys):
    """holiday.jpg renamed .mp4: `detect` refused it as 'a video' by its name; it is a photo, and detection writes
    nothing under its name: detected as the photo it is."""
    import json

    mp4 = photo.rename(photo.with_suffix(".mp4"))
    code, out, err = run(capsys, "detect", mp4, "-q", "--detect", "fast")
    assert code == 0, err
    doc = json.loads(out)
    assert doc["files"][0]["path"] == str(mp4) and doc["files"][0]["faces"], doc


def test_process_file_knows_a_video_by_the_error_type_not_its_words(tmp_path, monkeypatch, video_named_jpg):
    """Anonymizer.process_file said 'is a video' only while io.images' message read exactly 'not an image or
    unsupported format': reworded, a video fell back to the image reader's words. Now by the type NotAnImage."""
    from faceveil.io import images
    from faceveil.pipeline import Anonymizer

    mp4 = video_named_jpg.rename(video_named_jpg.with_suffix(".mp4"))
    real = images._not_an_image

    def reworded(path, data):
        exc = real(path, data)
        return type(exc)(f"{path}: Pillow does not know this file", exc.video)

    monkeypatch.setattr(images, "_not_an_image", reworded)
    r = Anonymizer(detector="haar").process_file(mp4, tmp_path / "o.jpg")
    assert r.status == "failed" and r.error == f"{mp4}: is a video, not an image; faceveil.video.anonymize_video " \
        "takes videos", r.error
    assert not (tmp_path / "o.jpg").exists()
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(b"neither a photo nor a video")
    r = Anonymizer(detector="haar").process_file(junk, tmp_path / "o.jpg")
    assert r.error == f"{junk}: is a video, not an image; faceveil.video.anonymize_video takes videos", r.error
    r = Anonymizer(detector="haar").process_file(junk.rename(tmp_path / "junk.jpg"), tmp_path / "o.jpg")
    assert r.error == f"{tmp_path / 'junk.jpg'}: Pillow does not know this file", r.error


def test_not_an_image_is_typed_and_says_what_the_bytes_are(tmp_path):
    from faceveil.errors import InputError
    from faceveil.io.images import NotAnImage, read_image, video_container

    assert issubclass(NotAnImage, InputError)
    assert video_container(b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00") is None  # a HEIC photo
    assert video_container(b"\x00\x00\x00\x14ftypqt  \x00\x00\x00\x00") == ("QuickTime (MOV)", ".mov")
    assert video_container(b"\x1aE\xdf\xa3\x9fB\x86\x81\x01B\xf7\x81\x01B\x82\x84webm") == ("WebM", ".webm")
    assert video_container(b"RIFF\x00\x00\x00\x00AVI LIST") == ("AVI", ".avi")
    bad = tmp_path / "x.png"
    bad.write_bytes(b"RIFF\x00\x00\x00\x00AVI LIST" + bytes(100))
    with pytest.raises(NotAnImage, match=r"x.png: is an AVI video named .png, not an image; rename it to x.avi"):
        read_image(bad)
    bad.write_bytes(b"plain text")
    with pytest.raises(NotAnImage, match=r"x.png: not an image or unsupported format$"):
        read_image(bad)


def test_a_file_named_with_a_leading_dash(photo, tmp_path, capsys, monkeypatch):
    """`faceveil anonymize -dash.jpg -o out/`: argparse read -d ash.jpg (a detector) and said "the following
    arguments are required: INPUT". Now one line naming the file and the spellings that work; both work, and a
    folder holding -dash.jpg is processed as any other."""
    monkeypatch.chdir(tmp_path)
    dash = Path("-dash.jpg")
    dash.write_bytes(photo.read_bytes())
    with pytest.raises(SystemExit) as exc:
        main(["anonymize", "-dash.jpg", "-o", "out/", *FAST])
    err = capsys.readouterr().err
    assert exc.value.code == 2 and err == "faceveil: error: anonymize: -dash.jpg: a file name starting with '-' " \
        "reads as options; write ./-dash.jpg, or put it after -- (faceveil anonymize -o OUT -- -dash.jpg)\n", err
    assert not Path("out").exists()
    assert main(["anonymize", "-o", "out/", *FAST, "--", "-dash.jpg"]) == 0
    assert Path("out/-dash.jpg").is_file()
    assert main(["anonymize", "./-dash.jpg", "-o", "out2/", *FAST]) == 0
    assert Path("out2/-dash.jpg").is_file()
    folder = Path("photos")
    folder.mkdir()
    dash.rename(folder / "-dash.jpg")
    assert main(["anonymize", "photos", "-o", "out3", *FAST]) == 0
    assert Path("out3/-dash.jpg").is_file()


def test_options_that_are_also_file_names_still_work(photo, tmp_path, capsys, monkeypatch):
    """A file named like an option (`-q`) in the working folder does not make `-q` a file."""
    monkeypatch.chdir(tmp_path)
    Path("-q").write_bytes(b"")
    assert main(["anonymize", str(photo), "-q", "-o", "out/", "--detect", "fast"]) == 0


def test_a_misnamed_photo_is_written_as_its_name_says_in_anonymize_and_dataset(tmp_path, capsys, astronaut):
    """A PNG named x.jpg (a JPEG named y.png): both commands decode by content and write the format the output's
    extension names (a user's tools trust the name), the same rule in anonymize and dataset anonymize."""
    images = tmp_path / "images"
    images.mkdir()
    Image.fromarray(astronaut).save(images / "x.jpg", format="PNG")
    Image.fromarray(astronaut).save(images / "y.png", format="JPEG", quality=95)
    (tmp_path / "gt.txt").write_text("x.jpg\n1\n170 30 110 140 0 0 0 0 0 0\ny.png\n1\n170 30 110 140 0 0 0 0 0 0\n")
    code, _, err = run(capsys, "dataset", "anonymize", "-f", "wider", "--images", images, "--labels",
                       tmp_path / "gt.txt", "-o", tmp_path / "ds", "--boxes", "gt", "-q")
    assert code == 0, err
    code, _, err = run(capsys, "anonymize", images, "-o", tmp_path / "an", *FAST)
    assert code == 0, err
    for out in (tmp_path / "ds" / "images", tmp_path / "an"):
        assert (out / "x.jpg").read_bytes()[:3] == b"\xff\xd8\xff", out
        assert (out / "y.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", out
        for name in ("x.jpg", "y.png"):
            with Image.open(out / name) as im:
                assert im.size == (512, 512)


def _lab(rgb):
    from PIL import ImageCms

    t = ImageCms.buildTransform(ImageCms.createProfile("sRGB"), ImageCms.createProfile("LAB"), "RGB", "LAB")
    return ImageCms.applyTransform(Image.fromarray(rgb), t)


@pytest.mark.parametrize("keep", [False, True])
def test_a_lab_tiff_comes_out_rgb_in_its_colours(tmp_path, capsys, astronaut, keep):
    """A CIELAB TIFF (Pillow mode LAB): its bands L, A, B made the A taken for alpha, and the output was RGBA. Now
    converted to sRGB by LittleCMS and written RGB, colours as the original's (outside the faces)."""
    import numpy as np

    src = tmp_path / "in" / "lab.tif"
    src.parent.mkdir()
    _lab(astronaut).save(src)
    with Image.open(src) as im:
        assert im.mode == "LAB"
    out = tmp_path / "out"
    code, _, err = run(capsys, "anonymize", src, "-o", out, *FAST, *(("--keep-metadata",) if keep else ()))
    assert code == 0, err
    with Image.open(out / "lab.tif") as im:
        assert im.mode == "RGB" and not im.info.get("icc_profile"), (im.mode, im.info.keys())
        got = np.asarray(im).astype(int)
    diff = np.abs(got - astronaut.astype(int)).max(axis=2)
    assert np.median(diff) <= 2 and (diff > 8).mean() < 0.2, (np.median(diff), (diff > 8).mean())  # faces changed


def test_a_cmyk_photo_comes_out_rgb_in_its_colours(tmp_path, capsys, astronaut):
    """CMYK TIFF and JPEG (no profile): read as Pillow converts CMYK (what browsers show without a profile), written
    RGB; checked here so the LAB fix did not change it."""
    import numpy as np

    src = tmp_path / "in"
    src.mkdir()
    cmyk = Image.fromarray(astronaut).convert("CMYK")
    cmyk.save(src / "c.tif")
    cmyk.save(src / "c.jpg", quality=95)
    code, _, err = run(capsys, "anonymize", src, "-o", tmp_path / "out", *FAST)
    assert code == 0, err
    for name in ("c.tif", "c.jpg"):
        with Image.open(tmp_path / "out" / name) as im:
            assert im.mode == "RGB", name
            diff = np.abs(np.asarray(im).astype(int) - np.asarray(cmyk.convert("RGB")).astype(int)).max(axis=2)
        assert np.median(diff) <= 6, (name, np.median(diff))


def test_video_options_in_a_photo_run_are_named_unused(photo, tmp_path, capsys):
    """`--crf 30` for photos only was ignored without a word: one warning line now, not an error."""
    code, _, err = run(capsys, "anonymize", photo, "-o", tmp_path / "out", *FAST, "--crf", "30", "--no-audio")
    assert code == 0, err
    assert "faceveil: warning: --crf, --no-audio apply to videos only, and this run has only photos: not used\n" \
        in err, err
    code, _, err = run(capsys, "anonymize", photo, "-o", tmp_path / "out2", *FAST, "--keep-metadata")
    assert code == 0 and "warning" not in err, err


def test_photo_options_in_a_video_run_are_named_unused(tmp_path, capsys):
    import numpy as np
    from synthetic_video import write_clip

    clip = tmp_path / "clip.mp4"
    write_clip(clip, [np.full((64, 96, 3), 40 * i, np.uint8) for i in range(4)], audio=False)
    code, _, err = run(capsys, "anonymize", clip, "-o", tmp_path / "out", "-q", "--keep-metadata", "--crf", "30")
    assert code == 0, err
    assert "faceveil: warning: --keep-metadata applies to photos only, and this run has only videos: not used\n" \
        in err, err
    assert err.count("warning") == 1, err


def test_the_tiled_pass_of_a_huge_photo_can_be_bounded():
    """A 108 MP photo (12000x9000): balanced's tiled pass runs at its own size, 42 tiles of up to 1920 px, 124 of its
    130 s of detection, and nothing bounded it. tiled_max_mp bounds the pixels its tiles hold (opt-in: at its own
    size the pass finds the 10-20 px faces a smaller factor loses, docs/recall.md); up to the bound nothing changes."""
    from faceveil.detect.base import tile_factor

    assert tile_factor(9000, 12000, 1920, 1.0, 24e6) == pytest.approx((24e6 / 108e6) ** 0.5)
    assert tile_factor(9000, 12000, 1920, 1.0) == 1.0  # 0: any
    for h, w in ((4000, 6000), (3000, 4000), (2903, 4352), (1080, 1920)):
        assert tile_factor(h, w, 1920, 1.0, 24e6) == tile_factor(h, w, 1920, 1.0)
    assert tile_factor(9000, 12000, 1920, 0.5, 24e6) == pytest.approx((24e6 / 108e6) ** 0.5)  # fast: 0.5 -> 0.47


@pytest.mark.parametrize("bound,factor", [(None, 1.0), (24.0, (24e6 / 108e6) ** 0.5)])
def test_balanced_runs_the_huge_photos_tiles_within_the_bound(monkeypatch, bound, factor):
    import numpy as np

    from faceveil.detect import get_detector
    from faceveil.detect.centerface import CenterFace
    from faceveil.detect.multiscale import MultiScale
    from faceveil.detect.presets import PRESETS
    from faceveil.detections import Detections

    seen = []
    empty = Detections.empty("centerface")
    monkeypatch.setattr(MultiScale, "_pass", lambda self, image, factor, floor, flip=False, kind="main": empty)
    monkeypatch.setattr(MultiScale, "tiles_pass", lambda self, image, tiles, factor, floor: empty)
    monkeypatch.setattr(CenterFace, "detect_tiled",
                        lambda self, image, factor, floor, tile: seen.append(factor) or empty)
    extra = {} if bound is None else {"tiled_max_mp": bound}
    det = get_detector("multiscale", {**PRESETS["balanced"]["params"], **extra})
    det.passes(np.zeros((9000, 12000, 3), np.uint8))  # zero pages: not touched, no memory
    assert seen == [pytest.approx(factor)], seen
