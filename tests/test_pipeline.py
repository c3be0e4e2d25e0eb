"""End to end on real photos: every detected face is changed, nothing else is."""
import numpy as np
import pytest

from faceveil import Anonymizer, anonymize, detect
from faceveil.errors import InputError

from conftest import shared_path, swap_on_open

METHODS = ["blur", "pixelate", "blackout", "block", "noise"]


@pytest.mark.parametrize("method", METHODS)
def test_api_on_astronaut(method, astronaut, astronaut_faces):
    out = anonymize(astronaut, method, detections=astronaut_faces)
    anon = Anonymizer(method)
    mask = anon.compositor.mask(astronaut_faces, astronaut.shape)
    changed = (out != astronaut).any(axis=2)
    assert not changed[mask == 0].any()
    assert changed[mask == 1].mean() > 0.9


def test_default_blur_defeats_the_detector(astronaut):
    out = anonymize(astronaut)
    assert len(detect(out, threshold=0.5)) == 0


def test_bad_array_is_input_error():
    with pytest.raises(InputError, match="uint8"):
        anonymize(np.zeros((10, 10, 3), np.float32))
    with pytest.raises(InputError, match="HxWx3"):
        anonymize(np.zeros((10, 10, 2), np.uint8))


def test_process_file_fails_closed_when_detection_breaks(tmp_path, astronaut):
    from PIL import Image

    Image.fromarray(astronaut).save(tmp_path / "a.png")
    anon = Anonymizer()

    class Broken:
        params = None

        def detect(self, image):
            raise RuntimeError("model crashed")

    anon._detector = Broken()
    r = anon.process_file(tmp_path / "a.png", tmp_path / "out" / "a.png")
    assert r.status == "failed" and "model crashed" in r.error
    assert not (tmp_path / "out" / "a.png").exists()


def test_process_file_seeds_with_the_bytes_it_anonymizes(tmp_path, astronaut, monkeypatch):
    """The random stream's key is the hash of the very bytes whose pixels are anonymized: before, a photo replaced
    between the two reads (pixels, then hash) was anonymized with the other file's key."""
    from PIL import Image

    Image.fromarray(astronaut).save(tmp_path / "a.png")
    Image.fromarray(astronaut[:, ::-1]).save(tmp_path / "b.png")
    anon = Anonymizer("noise")
    assert anon.process_file(tmp_path / "a.png", tmp_path / "clean" / "a.png").status == "written"
    swap_on_open(monkeypatch, tmp_path / "a.png", tmp_path / "b.png")
    assert anon.process_file(tmp_path / "a.png", tmp_path / "out" / "a.png").status == "written"
    monkeypatch.undo()
    assert (tmp_path / "out" / "a.png").read_bytes() == (tmp_path / "clean" / "a.png").read_bytes()


@pytest.mark.slow
@pytest.mark.parametrize("name", ["couple.jpg", "selfie-many-people.jpg", "img55.jpg", "img3.jpg"])
def test_real_photos_every_face_changed_nothing_else(name):
    from faceveil.io.images import read_rgb

    image = read_rgb(shared_path("deepface-unit", name))
    anon = Anonymizer("pixelate")
    dets = anon.detect(image)
    assert len(dets) >= 1
    out = anon.anonymize(image, dets)
    regions = anon.compositor.regions(dets, image.shape)
    mask = anon.compositor.mask(dets, image.shape)
    assert np.array_equal(out[mask == 0], image[mask == 0])
    for r in regions:
        inside = r.weight >= 1
        diff = (out[r.slices][inside] != image[r.slices][inside]).any(axis=1).mean()
        assert diff > 0.5, f"face {r.index} of {name} barely changed"


def test_faces_in_a_1_bit_dithered_photo_are_found_and_hidden(tmp_path):
    """A 1-bit photo was dots to CenterFace: 0 of its 5 faces found, written unchanged with exit 0."""
    from PIL import Image

    from faceveil.detections import box_iou
    from faceveil.io.images import read_rgb

    Image.open(shared_path("facemask", "images", "maksssksksss5.jpg")).convert("1").save(tmp_path / "bw.png")
    grey = read_rgb(shared_path("facemask", "images", "maksssksksss5.jpg"))
    anon = Anonymizer("blackout")
    faces = anon.detect(grey)  # what the detector finds on the grey photo
    assert len(faces) >= 4
    r = anon.process_file(tmp_path / "bw.png", tmp_path / "out" / "bw.png")
    assert r.status == "written"
    found = np.array([f["box"] for f in r.detections])
    assert (box_iou(faces.xyxy, found).max(axis=1) >= 0.3).sum() >= len(faces) - 1
    src, out = read_rgb(tmp_path / "bw.png"), read_rgb(tmp_path / "out" / "bw.png")
    mask = anon.compositor.mask(anon.detect(src), src.shape)
    assert not (out != src).any(axis=2)[mask == 0].any()  # the rest keeps its own black and white pixels
    assert (out[mask == 1] == 0).all()
