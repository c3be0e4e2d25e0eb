"""The Python API (faceveil.anonymize, detect, Anonymizer, Detections) on what a caller may pass: every face asked
to be hidden is changed, and a bad argument is faceveil's own one-line error, never a raw exception from inside."""
import numpy as np
import pytest

import faceveil
from faceveil import Anonymizer, Detections
from faceveil.errors import InputError, UsageError

BOX = [60, 40, 100, 90]


def changed(out, img):
    return (out != img).any(axis=2)


@pytest.mark.parametrize("method,params", [("blackout", {"color": 0}), ("blackout", {"color": 128}),
                                           ("blackout", {"color": (255, 0, 16)}), ("eyebar", {"color": 0})])
def test_colour_as_a_number(method, params, noise_image):
    """color=0 (as the README writes it) raised AttributeError: 'int' object has no attribute 'strip'."""
    out = faceveil.anonymize(noise_image, method, detections=[BOX], region={"shape": "box", "mask_scale": 1.0},
                             **params)
    want = params["color"] if isinstance(params["color"], tuple) else (params["color"],) * 3
    assert (out[changed(out, noise_image)] == want).all() and changed(out, noise_image).sum() > 50
    anon = Anonymizer(method, method_params=params, load_detector=False)
    out2 = anon.anonymize(noise_image, Detections.from_boxes([BOX]))
    assert changed(out2, noise_image).sum() > 50
    with pytest.raises(UsageError, match="0..255"):
        faceveil.anonymize(noise_image, method, detections=[BOX], color=300)


@pytest.mark.parametrize("boxes", [[[200, 100, 50, 60]], [[np.nan, 0, 100, 100]]])
def test_anonymizer_refuses_boxes_that_hide_nothing(boxes, noise_image):
    """Anonymizer.anonymize(img, detections) with x, y, w, h rows or a NaN box hid nothing and raised nothing;
    it now checks them as faceveil.anonymize(..., detections=...) does."""
    anon = Anonymizer(load_detector=False)
    for given in (Detections.from_boxes(np.array(boxes, np.float32)), boxes, np.array(boxes)):
        with pytest.raises(UsageError, match="is not x1, y1, x2, y2"):
            anon.anonymize(noise_image, given)


def test_anonymizer_takes_boxes_as_a_list_or_array(noise_image):
    """A list or an ndarray of boxes raised AttributeError ('list' object has no attribute 'xyxy')."""
    anon = Anonymizer("blackout", region={"shape": "box", "mask_scale": 1.0}, load_detector=False)
    want = anon.anonymize(noise_image, Detections.from_boxes([BOX]))
    assert changed(want, noise_image).sum() == 40 * 50
    for given in ([BOX], np.array([BOX]), [tuple(BOX)]):
        assert np.array_equal(anon.anonymize(noise_image, given), want)
    with pytest.raises(UsageError, match="detections: expected a Detections or rows"):
        anon.anonymize(noise_image, {"faces": []})


def test_process_file_never_writes_over_its_input_or_an_existing_output(tmp_path, astronaut):
    """process_file(src, src) wrote over the original (status written); an existing output was replaced."""
    import os

    from PIL import Image

    src = tmp_path / "a.png"
    Image.fromarray(astronaut).save(src)
    original = src.read_bytes()
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "link.png").symlink_to(src)
    os.link(src, tmp_path / "hard.png")
    anon = Anonymizer(load_detector=False)
    for dst in (src, tmp_path / "sub" / ".." / "a.png", tmp_path / "sub" / "link.png", tmp_path / "hard.png"):
        for overwrite in (False, True):
            r = anon.process_file(src, dst, overwrite=overwrite)
            assert r.status == "failed" and r.output is None and "output is the input itself" in r.error, r
    assert src.read_bytes() == original
    dst = tmp_path / "out.png"
    dst.write_bytes(b"keep me")
    r = anon.process_file(src, dst)
    assert r.status == "failed" and r.error == f"{dst}: output exists; not replaced (overwrite=True replaces it)"
    assert dst.read_bytes() == b"keep me"
    r = anon.process_file(src, dst, overwrite=True)
    assert r.status == "written" and dst.read_bytes() != b"keep me" and src.read_bytes() == original


@pytest.mark.parametrize("mode", ["CMYK", "P", "PA", "LA", "L", "1", "RGBA", "YCbCr", "I;16"])
def test_pil_images_in_any_mode_are_read_as_their_colours(mode, astronaut, astronaut_faces):
    """np.asarray took a CMYK image for RGBA (colours inverted: 12 faces of 17 found, a negative returned) and a
    palette image's indices for grey levels; LA, I;16 and 1-bit images were refused or misread."""
    from PIL import Image

    pil = Image.fromarray(astronaut).convert(mode)
    rgb = np.asarray(pil.convert("RGB"))
    if mode == "I;16":  # 12-bit data in 16 bits, scaled by its maximum as read_image scales a 16-bit file
        grey = np.asarray(Image.fromarray(astronaut).convert("L")).copy()
        grey[0, 0] = 255
        pil = Image.fromarray(grey.astype(np.uint16) * 16)
        assert pil.mode.startswith("I;16")
        rgb = np.repeat(grey[:, :, None], 3, axis=2)
    if mode in ("CMYK", "RGBA"):
        assert np.array_equal(rgb, astronaut)  # Pillow's round trip is exact: the same faces must be found
        assert np.array_equal(faceveil.detect(pil).xyxy, astronaut_faces.xyxy)
    out = faceveil.anonymize(pil, "blackout", detections=astronaut_faces)
    assert np.array_equal(out, faceveil.anonymize(rgb, "blackout", detections=astronaut_faces))
    assert (out == 0).all(axis=2).sum() > 5000 and out.shape == astronaut.shape


def test_pil_images_without_a_faithful_rgb_are_refused(astronaut):
    from PIL import Image

    for img in (Image.fromarray(astronaut[:, :, 0].astype(np.float32)), Image.new("La", (8, 8))):
        with pytest.raises(InputError, match=f"a PIL image in mode {img.mode} .*convert it") as exc:
            faceveil.anonymize(img, detections=[])
        assert "\n" not in str(exc.value)


def test_detect_sees_a_1_bit_photo_as_files_are_seen(astronaut):
    """faceveil.detect (and faceveil.anonymize without detections) gave the detector a 1-bit photo unsmoothed,
    while process_file and the CLI smooth it (detect.base.detection_view): other faces for the same pixels."""
    from PIL import Image

    bw = np.asarray(Image.fromarray(astronaut).convert("1").convert("RGB"))
    want = Anonymizer().detect(bw)
    assert np.array_equal(faceveil.detect(bw).xyxy, want.xyxy) and len(want)


@pytest.mark.parametrize("orientation", [3, 6, 8])
def test_pil_images_are_turned_upright_by_their_exif_orientation(orientation, tmp_path):
    """faceveil.detect(Image.open(...)) of a photo stored on its side (EXIF orientation 6) found 2 of its 6 faces
    and faceveil.anonymize left 4 of 6 byte-identical (orientation 8: all 6), where the CLI turns it upright first.
    Now a PIL image is read as files are: upright in, the upright anonymized photo out, the CLI's faces."""
    from PIL import Image

    from conftest import shared_path

    upright = np.asarray(Image.open(shared_path("facemask", "images", "maksssksksss751.jpg")).convert("RGB"))
    turn = {3: Image.Transpose.ROTATE_180, 6: Image.Transpose.ROTATE_90, 8: Image.Transpose.ROTATE_270}
    exif = Image.Exif()
    exif[0x0112] = orientation
    Image.fromarray(upright).transpose(turn[orientation]).save(tmp_path / "o.png", exif=exif.tobytes())
    want = faceveil.detect(upright)
    assert len(want) == 6
    with Image.open(tmp_path / "o.png") as pil:
        assert np.array_equal(faceveil.detect(pil).xyxy, want.xyxy)
        out = faceveil.anonymize(pil, "blackout", seed=1)
    assert np.array_equal(out, faceveil.anonymize(upright, "blackout", seed=1)) and out.shape == upright.shape
    assert all((out[int(y1) + 2:int(y2) - 2, int(x1) + 2:int(x2) - 2] == 0).all() for x1, y1, x2, y2 in want.xyxy)


@pytest.mark.parametrize("box", [[-1e6, -1e6, 1e6, 1e6], [0, 0, 1e30, 1e30], [-1e6, 30, 1e6, 70]])
def test_learnedblur_clips_a_huge_box_to_the_image(box, noise_image):
    """learnedblur made its refiner's crop at the box's full size: MemoryError (43.7 TiB) or ValueError (Maximum
    allowed dimension exceeded). The part of the box inside the image is hidden, nothing else changes."""
    out = faceveil.anonymize(noise_image, "learnedblur", detections=[box], region={"shape": "box", "mask_scale": 1})
    inside = np.zeros(noise_image.shape[:2], bool)
    inside[max(0, int(box[1])):int(min(box[3], 120)), max(0, int(box[0])):int(min(box[2], 160))] = True
    assert changed(out, noise_image)[inside].mean() > 0.9 and not changed(out, noise_image)[~inside].any()


def test_tiny_images_and_huge_boxes_raise_no_raw_errors(noise_image):
    """replace on a 2x2 image raised IndexError (replace.py, no tone curve), outline with a 1e30 box cv2.error."""
    tiny = noise_image[:2, :2].copy()
    out = faceveil.anonymize(tiny, "replace", detections=[[0, 0, 2, 2]])
    assert changed(out, tiny).all()
    out = faceveil.anonymize(noise_image, "outline", detections=[[0, 0, 1e30, 1e30]], region={"mask_scale": 1})
    assert changed(out, noise_image)[0, 40:150].all() and changed(out, noise_image)[20:110, 0].all()
    assert not changed(out, noise_image)[20:, 20:].any()


def test_bad_arguments_are_faceveil_errors():
    """Each raised a raw ValueError, AttributeError or TypeError from inside (or, a region, was ignored)."""
    for bad in (np.zeros(3), [[1, 2, 3]], "abc"):
        with pytest.raises(UsageError, match="boxes: expected rows of x1, y1, x2, y2") as exc:
            Detections.from_boxes(bad)
        assert "\n" not in str(exc.value)
    for kw in ({"method_params": [1, 2]}, {"method_params": "kernel=3"}, {"detector_params": [1, 2]},
               {"region": [1, 2]}):
        with pytest.raises(UsageError, match=f"{next(iter(kw))}: expected a dict of name: value, got"):
            Anonymizer(load_detector=False, **kw)
    from faceveil.anonymize import get_method

    with pytest.raises(UsageError, match="parameters for method 'blur': expected a dict"):
        get_method("blur", [("kernel", 3)])


def test_a_path_or_a_video_where_a_photo_goes_is_named_as_such(tmp_path):
    """faceveil.detect("photo.jpg") said "expected a uint8 image, got <U9" (None: "got object"); process_file on a
    video "not an image or unsupported format"."""
    for bad, what in (("photo.jpg", "a path or bytes ('photo.jpg')"), (None, "None")):
        for call in (lambda: faceveil.detect(bad), lambda: faceveil.anonymize(bad, detections=[[0, 0, 2, 2]])):
            with pytest.raises(InputError) as exc:
                call()
            assert str(exc.value) == f"expected an image (RGB uint8 HxWx3 array, or a PIL image), got {what}; " \
                                     "Anonymizer.process_file takes files"
    clip = tmp_path / "clip.mp4"
    clip.write_bytes(b"\0" * 64)
    r = Anonymizer(load_detector=False).process_file(clip, tmp_path / "out.jpg")
    assert r.status == "failed" and r.error == f"{clip}: is a video, not an image; faceveil.video.anonymize_video " \
                                               "takes videos", r


def test_faceveil_video_is_reachable_after_import_faceveil():
    """The README's `import faceveil; faceveil.video.track("clip.mp4")` raised AttributeError until `import
    faceveil.video`; it is imported on first use, not by `import faceveil`."""
    import subprocess
    import sys

    code = ("import sys, faceveil; assert 'faceveil.video' not in sys.modules; "
            "assert callable(faceveil.video.track) and callable(faceveil.video.anonymize_video); "
            "import faceveil.video as v; assert v is faceveil.video\n"
            "try:\n    faceveil.nope\nexcept AttributeError as e:\n    print(e)")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "module 'faceveil' has no attribute 'nope'"


@pytest.mark.parametrize("kw", [{"keep_metadata": "false"}, {"keep_metadata": "no"}, {"keep_metadata": 0},
                                {"load_detector": "false"}])
def test_boolean_options_refuse_other_values(kw):
    """Anonymizer(keep_metadata='false') kept the photo's GPS position (a non-empty string is true)."""
    from faceveil.pipeline import AnonymizerConfig

    name = next(iter(kw))
    with pytest.raises(UsageError, match=f"^{name} must be True or False, got {kw[name]!r}$"):
        Anonymizer(**kw)
    if name == "keep_metadata":
        with pytest.raises(UsageError, match=f"^{name} must be True or False"):
            AnonymizerConfig(**kw)
    assert Anonymizer(keep_metadata=np.bool_(True), load_detector=False).keep_metadata is True
    with pytest.raises(UsageError, match=r"^scores \(for method 'outline'\) must be True or False, got 1$"):
        Anonymizer("outline", {"scores": 1}, load_detector=False)  # a method's: as text, 'false' is False
    assert Anonymizer("outline", {"scores": "false"}, load_detector=False).method.params.scores is False


@pytest.mark.parametrize("quality", [0, -5, 101, "high", 95.5, True, None])
def test_jpeg_quality_is_refused_at_construction(quality):
    """0 and -5 wrote a 1.9 kB JPEG as success, 101 was taken for 100, 'high' and 95.5 failed every file late
    with a raw TypeError: now the CLI's message, before any work."""
    with pytest.raises(UsageError, match=rf"^jpeg_quality must be an integer between 1 and 100, got {quality!r}$"):
        Anonymizer(jpeg_quality=quality, load_detector=False)


def test_cli_jpeg_quality_message_is_the_apis(tmp_path, astronaut, capsys):
    from PIL import Image

    from faceveil.cli import main

    Image.fromarray(astronaut).save(tmp_path / "a.png")
    assert main(["anonymize", str(tmp_path / "a.png"), "-o", str(tmp_path / "out"), "--jpeg-quality", "0"]) == 2
    assert "--jpeg-quality must be an integer between 1 and 100, got 0" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_pil_images_are_read_in_srgb_as_files_are(tmp_path):
    """A Display P3 PIL image's values were taken as sRGB by the API (the CLI converts them): other colours
    around the faces, other detections than the file's."""
    from PIL import Image

    from faceveil.io.images import read_image

    from conftest import shared_path

    adobe = Image.open(shared_path("deepface-unit", "img22.jpg")).info["icc_profile"]
    rgb = np.asarray(Image.open(shared_path("facemask", "images", "maksssksksss751.jpg")).convert("RGB"))
    Image.fromarray(rgb).save(tmp_path / "a.png", icc_profile=adobe)
    want = read_image(tmp_path / "a.png").rgb
    assert np.abs(want.astype(int) - rgb).max() > 20
    with Image.open(tmp_path / "a.png") as pil:
        assert np.array_equal(faceveil.anonymize(pil, "blackout", detections=[]), want)
        assert np.array_equal(faceveil.detect(pil).xyxy, faceveil.detect(want).xyxy)


def test_detect_takes_list_parameters(astronaut):
    """faceveil.detect(img, big_scales=[0.5, 0.25]) raised TypeError: unhashable type: 'list' (the detector cache);
    the same list worked through Anonymizer(detector_params=...)."""
    got = faceveil.detect(astronaut, big_scales=[0.5, 0.25])
    want = Anonymizer(detector_params={"big_scales": [0.5, 0.25]}).detect(astronaut)
    assert len(got) and np.array_equal(got.xyxy, want.xyxy)
    assert np.array_equal(faceveil.detect(astronaut, big_scales=(0.5, 0.25)).xyxy, got.xyxy)


def test_anonymize_takes_the_faces_a_detections_yields(noise_image):
    """faceveil.anonymize(img, detections=list(dets)) refused the Face objects iterating a Detections yields."""
    lm = np.array([[[70, 55], [90, 55], [80, 65], [72, 78], [88, 78]]], np.float32)
    dets = Detections(np.array([BOX], np.float32), np.array([0.9]), lm, np.array([4]))
    for method in ("blackout", "replace"):
        want = faceveil.anonymize(noise_image, method, detections=dets)
        assert changed(want, noise_image).sum() > 500
        assert np.array_equal(faceveil.anonymize(noise_image, method, detections=list(dets)), want)
    assert np.array_equal(Detections.from_faces(dets).landmarks, lm)


def test_a_video_option_given_in_the_wrong_place_says_where_it_goes(tmp_path):
    """Round 5: anonymize_video(src, dst, crf=30) said only "unknown parameter 'crf' for method 'blur' (known:
    kernel, relative, sigma)", and options={"crf": 30} "options: VideoOptions.__init__() got an unexpected keyword
    argument 'crf'": nothing said crf is an encoder option (options={"encode": {"crf": 30}}). Each error now ends
    with where the name goes; nothing is written."""
    import faceveil.video
    from synthetic_video import write_clip

    src, dst = tmp_path / "c.mp4", tmp_path / "o.mp4"
    write_clip(src, [np.full((32, 32, 3), 90, np.uint8)] * 2, 10, audio=False)
    cases = [({"crf": 30}, "unknown parameter 'crf' for method 'blur' (known: kernel, relative, sigma); crf is an "
                           "encoder option: options={'encode': {'crf': 30}}"),
             ({"hold": 3}, "unknown parameter 'hold' for method 'blur' (known: kernel, relative, sigma); hold is a "
                           "video option: options={'hold': 3}"),
             ({"options": {"crf": 30}}, "options: VideoOptions.__init__() got an unexpected keyword argument 'crf'; "
                                        "crf is an encoder option: options={'encode': {'crf': 30}}")]
    for kwargs, said in cases:
        with pytest.raises(UsageError) as exc:
            faceveil.video.anonymize_video(src, dst, **kwargs)
        assert str(exc.value) == said
    with pytest.raises(UsageError) as exc:  # a name that is no option anywhere: the method's own words, as before
        faceveil.video.anonymize_video(src, dst, nosuch=1)
    assert str(exc.value) == "unknown parameter 'nosuch' for method 'blur' (known: kernel, relative, sigma)"
    assert not dst.exists()
    faceveil.video.anonymize_video(src, dst, options={"encode": {"crf": 30}})
    assert dst.is_file()
