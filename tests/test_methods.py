"""Every method: pixels change inside the region, and only there; each parameter does what it says."""
import cv2
import numpy as np
import pytest

from faceveil.anonymize import METHODS, Compositor, RegionParams, get_method
from faceveil.detections import Detections

REGIONAL = ["blur", "pixelate", "blackout", "block", "noise", "eyebar"]
# every method that changes the region's pixels and nothing else (fullblur: the whole image; outline draws around
# the box; overlay needs an image)
LOCAL = sorted(set(METHODS.names()) - {"overlay", "fullblur", "outline"})

LM = np.array([[[70, 55], [90, 55], [80, 65], [72, 75], [88, 75]]], np.float32)
FACE = Detections.from_boxes([[60, 40, 100, 90]], [0.9], LM)


def apply(name, image, params=None, region=None, dets=FACE, seed=0):
    method = get_method(name, params or {})
    comp = Compositor(RegionParams(**(region or {})))
    return method.apply(image, dets, comp, np.random.default_rng(seed)), comp


@pytest.mark.parametrize("name", REGIONAL)
@pytest.mark.parametrize("shape", ["box", "ellipse"])
def test_only_region_pixels_change(name, shape, noise_image):
    before = noise_image.copy()
    out, comp = apply(name, noise_image, region={"shape": shape, "mask_scale": 1.2})
    assert np.array_equal(noise_image, before), "input must not be modified"
    mask = comp.mask(FACE, noise_image.shape)
    changed = (out != noise_image).any(axis=2)
    assert not changed[mask == 0].any(), "a pixel outside the region changed"
    assert changed[mask == 1].mean() > (0.05 if name == "eyebar" else 0.9)


@pytest.mark.parametrize("name", [n for n in LOCAL if get_method(n).uses_rng])
def test_a_faces_random_pixels_depend_on_the_seed_and_its_own_box_only(name, noise_image):
    """A user audit (order2.py): a face anonymized alone or after another one changed 100 % / 93 % / 97 % of its
    pixels (noise / replace / learnedblur): every face drew in turn from the frame's one stream. Now each face has
    its own (base.face_rngs), keyed by the seed, the file and its box."""
    # another face beside this one, outside its learnedblur context (2x its box), listed first
    both = Detections.from_boxes([[124, 70, 156, 110], [60, 40, 100, 90]], [0.9, 0.9], np.r_[LM + [64, 30], LM])
    region = {"shape": "box", "mask_scale": 1.0}
    alone, _ = apply(name, noise_image, region=region, seed=1)
    after, _ = apply(name, noise_image, region=region, dets=both, seed=1)
    again, _ = apply(name, noise_image, region=region, dets=both, seed=1)
    other_seed, _ = apply(name, noise_image, region=region, seed=2)
    face = (slice(40, 90), slice(60, 100))
    assert np.array_equal(alone[face], after[face]) and np.array_equal(after, again)
    assert not np.array_equal(alone[face], other_seed[face])


def test_region_geometry_box_and_ellipse():
    comp = Compositor(RegionParams(shape="box", mask_scale=1.0))
    m = comp.mask(Detections.from_boxes([[10, 20, 30, 60]]), (100, 100))
    assert m.sum() == 20 * 40 and m[20:60, 10:30].all()
    comp = Compositor(RegionParams(shape="box", mask_scale=1.5))
    m = comp.mask(Detections.from_boxes([[10, 20, 30, 60]]), (100, 100))
    assert m.sum() == 30 * 60 and m[10:70, 5:35].all()
    comp = Compositor(RegionParams(shape="ellipse", mask_scale=1.1))
    m = comp.mask(Detections.from_boxes([[10, 10, 50, 50]]), (100, 100))
    assert abs(m.sum() - np.pi * 22 * 22) < 40 and m[30, 30] == 1 and m[8, 8] == 0


def test_regions_clip_at_image_border():
    comp = Compositor(RegionParams(shape="box", mask_scale=1.0))
    m = comp.mask(Detections.from_boxes([[-10, -10, 10, 10], [95, 95, 130, 130]]), (100, 100))
    assert m.sum() == 100 + 25


def test_feather_keeps_face_fully_covered_and_fades_outside():
    comp = Compositor(RegionParams(shape="box", mask_scale=1.0, feather=0.25))
    m = comp.mask(Detections.from_boxes([[40, 40, 60, 60]]), (100, 100))
    assert (m[40:60, 40:60] == 1).all()
    assert 0 < m[50, 37] < 1 and m[50, 30] == 0 and m[50, 38] > m[50, 36]


def test_blur_fixed_kernel_equals_opencv_on_region(noise_image):
    out, comp = apply("blur", noise_image, {"kernel": 9, "sigma": 3}, {"shape": "box", "mask_scale": 1.0})
    expect = cv2.GaussianBlur(noise_image[40:90, 60:100], (9, 9), 3, borderType=cv2.BORDER_REFLECT)
    assert np.array_equal(out[40:90, 60:100], expect)


@pytest.mark.parametrize("k", [3, 15, 31, 41])
def test_blur_is_exact_integer_arithmetic_close_to_opencv(k):
    """The fixed-point blur equals an integer reference computed here (so its bytes cannot depend on the CPU's
    float rounding) and stays within 2 levels of OpenCV's own uint8 Gaussian."""
    from faceveil.anonymize.methods.blur import _fixed_point_kernel, gaussian_blur

    patch = np.random.default_rng(k).integers(0, 256, (37, 45, 3), dtype=np.uint8)
    sigma = 0.3 * ((k - 1) * 0.5 - 1) + 0.8
    w = _fixed_point_kernel(k, sigma).astype(np.int64)
    assert w.sum() == 256 and (w >= 0).all()
    r = k // 2
    pad = np.pad(patch.astype(np.int64), ((r, r), (r, r), (0, 0)), mode="symmetric")  # OpenCV's BORDER_REFLECT
    rows = sum(w[i] * pad[:, i : i + patch.shape[1]] for i in range(k))
    acc = sum(w[i] * rows[i : i + patch.shape[0]] for i in range(k))
    expect = ((acc + 32768) >> 16).astype(np.uint8)
    out = gaussian_blur(patch, k)
    assert np.array_equal(out, expect)
    ref = cv2.GaussianBlur(patch, (k, k), sigma, borderType=cv2.BORDER_REFLECT)
    diff = np.abs(out.astype(int) - ref)
    assert diff.max() <= 2 and diff.mean() < 0.5


def _integer_blur(patch: np.ndarray, k: int) -> np.ndarray:
    """The fixed-point Gaussian in integers: 8-bit weights per pass, one rounding shift (OpenCV's BORDER_REFLECT)."""
    from faceveil.anonymize.methods.blur import _fixed_point_kernel

    w = _fixed_point_kernel(k, 0.3 * ((k - 1) * 0.5 - 1) + 0.8).astype(np.int64)
    r = k // 2
    pad = np.pad(patch.astype(np.int64), ((r, r), (r, r), (0, 0)), mode="symmetric")
    rows = sum(w[i] * pad[:, i : i + patch.shape[1]] for i in range(k))
    acc = sum(w[i] * rows[i : i + patch.shape[0]] for i in range(k))
    return ((acc + 32768) >> 16).astype(np.uint8)


@pytest.mark.parametrize("k", [1, 3, 9, 21, 41])
def test_blur_fixed_point_on_frame_views_and_extremes(k):
    """The blur reads a face's pixels straight from the frame (a strided view, no float copy): the same bytes
    as the integer reference on a view, on an all-white patch (the largest sums the float32 exactness needs)
    and on a black and white checkerboard (exact halves, where rounding could go either way)."""
    from faceveil.anonymize.methods.blur import gaussian_blur

    rng = np.random.default_rng(k)
    frame = rng.integers(0, 256, (120, 160, 3), dtype=np.uint8)
    view = frame[17:17 + 43, 29:29 + 51]  # not contiguous
    assert not view.flags.c_contiguous
    white = np.full((45, 47, 3), 255, np.uint8)
    checker = ((np.indices((44, 46)).sum(0) % 2) * 255).astype(np.uint8)[:, :, None].repeat(3, 2)
    for patch in (view, white, checker):
        out = gaussian_blur(patch, k)
        assert np.array_equal(out, _integer_blur(patch, k))
    assert (gaussian_blur(white, k) == 255).all()
    assert np.array_equal(frame[17:17 + 43, 29:29 + 51], view)  # the frame is not written


def test_blur_relative_kernel_scales_with_face():
    m = get_method("blur", {"relative": 0.3})
    assert m.kernel_for(100) == 31 and m.kernel_for(50) == 15
    assert get_method("blur", {"kernel": 24}).kernel_for(1000) == 25


def test_pixelate_grid_has_requested_cells(noise_image):
    out, _ = apply("pixelate", noise_image, {"cells": 5}, {"shape": "box", "mask_scale": 1.0})
    face = out[40:90, 60:100]
    assert len(np.unique(face.reshape(-1, 3), axis=0)) == 25
    # each cell is the mean of its pixels
    cell = noise_image[40:50, 60:68].reshape(-1, 3).mean(axis=0)
    assert np.abs(face[0, 0].astype(float) - cell).max() <= 1


def test_pixelate_fixed_block_size(noise_image):
    out, _ = apply("pixelate", noise_image, {"block": 10}, {"shape": "box", "mask_scale": 1.0})
    assert len(np.unique(out[40:90, 60:100].reshape(-1, 3), axis=0)) == 5 * 4


def test_blackout_colours(noise_image):
    out, _ = apply("blackout", noise_image, {"color": "128"}, {"shape": "box", "mask_scale": 1.0})
    assert (out[40:90, 60:100] == 128).all()
    out, _ = apply("blackout", noise_image, {"color": "#ff0010"}, {"shape": "box", "mask_scale": 1.0})
    assert (out[40:90, 60:100] == [255, 0, 16]).all()


def test_block_is_channel_mean(noise_image):
    out, _ = apply("block", noise_image, {}, {"shape": "box", "mask_scale": 1.0})
    mean = np.round(noise_image[40:90, 60:100].reshape(-1, 3).mean(axis=0))
    assert (out[40:90, 60:100] == mean.astype(np.uint8)).all()


def test_noise_amount_and_seed():
    flat = np.full((120, 160, 3), 7, np.uint8)
    region = {"shape": "box", "mask_scale": 1.0}
    out, _ = apply("noise", flat, {"amount": 30}, region, seed=5)
    frac = (out[40:90, 60:100] != 7).any(axis=2).mean()
    assert 0.25 < frac < 0.35
    again, _ = apply("noise", flat, {"amount": 30}, region, seed=5)
    other, _ = apply("noise", flat, {"amount": 30}, region, seed=6)
    assert np.array_equal(out, again) and not np.array_equal(out, other)
    from faceveil.errors import UsageError

    with pytest.raises(UsageError, match="0 hides nothing"):  # before: 'anonymized', every pixel as it was
        get_method("noise", {"amount": 0})


def test_eyebar_covers_eyes_not_mouth():
    flat = np.full((120, 160, 3), 200, np.uint8)
    out, _ = apply("eyebar", flat, {"color": "0"})
    assert (out[55, 70] == 0).all() and (out[55, 90] == 0).all() and (out[55, 80] == 0).all()
    assert (out[75, 72] == 200).all(), "the mouth stays visible"
    no_lm = Detections.from_boxes([[60, 40, 100, 90]])
    out, _ = apply("eyebar", flat, {"color": "0"}, {"shape": "box", "mask_scale": 1.0}, dets=no_lm)
    assert (out[51, 80] == 0).all() and (out[85, 80] == 200).all()  # the mean face's eye line (box_landmarks)


def test_eyebar_covers_the_eyes_of_a_labelled_box_without_landmarks():
    """A labelled box has no landmarks: the bar goes where the mean face's eyes sit in such a box
    (box_landmarks.MEAN_SHAPE), whatever region scale the preset draws (the default, 1.25x, put it below them)."""
    from faceveil.anonymize.box_landmarks import estimate_landmarks
    from faceveil.detect.presets import DEFAULT_PRESET, get_preset

    flat = np.full((300, 300, 3), 200, np.uint8)
    box = [100, 100, 200, 200]
    for region in ({**get_preset(DEFAULT_PRESET)["region"]}, {"shape": "box", "mask_scale": 1.0}):
        out, _ = apply("eyebar", flat, {"color": "0"}, region, dets=Detections.from_boxes([box]))
        for x, y in estimate_landmarks(box)[:2]:  # both eyes
            assert (out[int(round(y)), int(round(x))] == 0).all(), (region, x, y)
        mouth = estimate_landmarks(box)[3:].mean(axis=0)
        assert (out[int(mouth[1]), int(mouth[0])] == 200).all(), "the mouth stays visible"


def test_fullblur_blurs_everything(noise_image):
    out, _ = apply("fullblur", noise_image, {"kernel": 18}, dets=Detections.empty())
    assert np.array_equal(out, cv2.blur(noise_image, (18, 18)))


def test_overlay_pastes_with_alpha(tmp_path, noise_image):
    from PIL import Image

    art = np.zeros((10, 10, 4), np.uint8)
    art[..., 0] = 255
    art[..., 3] = 255
    art[:5, :, 3] = 0  # top half transparent
    Image.fromarray(art, "RGBA").save(tmp_path / "a.png")
    box = {"shape": "box", "mask_scale": 1.0}
    out, _ = apply("overlay", noise_image, {"image": str(tmp_path / "a.png")}, box)
    blurred, _ = apply("blur", noise_image, region=box)
    assert (out[80, 80] == [255, 0, 0]).all()
    assert np.array_equal(out[40:65, 60:100], blurred[40:65, 60:100])  # the transparent half: the face blurred


@pytest.mark.parametrize("kind", ["tint", "ring"])
def test_an_overlay_never_shows_the_face_through_it(kind, tmp_path, noise_image):
    """An image at alpha 128 everywhere (a tint) or an opaque ring with a transparent middle passed the opacity
    check and showed the face through it (dlib distance to the original 0.12-0.21: recognisable). Now what shows
    through is the face blurred, never its own pixels."""
    from PIL import Image

    art = np.zeros((20, 20, 4), np.uint8)
    art[..., 3] = 128
    if kind == "ring":
        art[..., 3] = 255
        art[4:16, 4:16, 3] = 0
    Image.fromarray(art, "RGBA").save(tmp_path / "a.png")
    box = {"shape": "box", "mask_scale": 1.0}
    out, _ = apply("overlay", noise_image, {"image": str(tmp_path / "a.png")}, box)
    blurred, _ = apply("blur", noise_image, region=box)
    face, middle = (slice(40, 90), slice(60, 100)), (slice(52, 78), slice(70, 90))
    assert (out[face] != noise_image[face]).any(axis=2).mean() > 0.95
    if kind == "ring":
        assert np.array_equal(out[middle], blurred[middle])
    else:
        assert np.abs(out[face].astype(int) - (blurred[face] // 2)).max() <= 1


def test_a_16_bit_grey_overlay_keeps_its_greys(tmp_path, noise_image):
    """Pillow's convert clipped every 16-bit value over 255 to white: a dark grey overlay pasted a white sheet."""
    from PIL import Image

    Image.fromarray(np.full((10, 10), 16384, np.uint16)).save(tmp_path / "g16.png")  # a quarter of full scale
    assert Image.open(tmp_path / "g16.png").mode.startswith("I")
    out, _ = apply("overlay", noise_image, {"image": str(tmp_path / "g16.png")}, {"shape": "box", "mask_scale": 1.0})
    assert (out[80, 80] == [64, 64, 64]).all()


def test_a_see_through_overlay_is_refused(tmp_path):
    """A fully transparent PNG hid nothing and the run said every face was anonymized."""
    from PIL import Image
    from faceveil.errors import UsageError

    art = np.zeros((10, 10, 4), np.uint8)
    art[:4, :, 3] = 255  # 40 % opaque
    Image.fromarray(art, "RGBA").save(tmp_path / "thin.png")
    with pytest.raises(UsageError, match="only 40% of the overlay image is opaque"):
        get_method("overlay", {"image": str(tmp_path / "thin.png")})


def test_overlay_missing_image_is_usage_error(tmp_path):
    from faceveil.errors import UsageError

    with pytest.raises(UsageError, match="cannot read overlay"):
        get_method("overlay", {"image": str(tmp_path / "missing.png")})


def test_outline_draws_but_hides_nothing(noise_image):
    out, _ = apply("outline", noise_image)
    assert (out != noise_image).any()
    inner = (out[50:80, 66:95] == noise_image[50:80, 66:95]).all(axis=2).mean()
    assert inner > 0.8


def test_all_registered_methods_have_help():
    for item in METHODS.describe():
        assert item["summary"], item["name"]
        assert all(p["help"] for p in item["params"]), item["name"]


@pytest.mark.parametrize("name", LOCAL)
def test_a_box_mostly_outside_the_frame_is_still_covered(name, noise_image):
    """A tracked box that drifts off the frame keeps a sliver inside (the masked-faces clip's backfilled box
    x -1.05..0.11 on a 960 px frame: replace raised on its 1-px work window and the video stopped). At every edge
    the sliver's pixels change, nothing else does, and no method raises."""
    h, w = noise_image.shape[:2]
    boxes = [[-1.05, 40, 0.11, 85], [w - 0.2, 40, w + 1.3, 85], [60, -1.2, 100, 0.3], [60, h - 0.4, 100, h + 2.0]]
    for box in boxes:
        dets = Detections.from_boxes([box], [0.9])
        out, comp = apply(name, noise_image, region={"shape": "box", "mask_scale": 1.0}, dets=dets)
        mask = comp.mask(dets, noise_image.shape)
        changed = (out != noise_image).any(axis=2)
        assert mask.sum() > 0 and not changed[mask == 0].any(), (name, box)
        assert changed[mask == 1].mean() > (0.05 if name == "eyebar" else 0.5), (name, box)


def test_tiny_boxes_near_the_edges_never_raise(noise_image):
    """Seeded boxes of 0.2-12 x 0.2-30 px inside, across and beyond every edge, with and without landmarks, each
    source a video gives (detected, held, backfilled; tracked or not): every method draws them without raising, and
    nothing outside the region changes. (The sliver that stopped replace came from a real clip; this covers its
    neighbours.)"""
    rng = np.random.default_rng(0)
    h, w = noise_image.shape[:2]
    shape = np.array([[0.3, 0.4], [0.7, 0.4], [0.5, 0.6], [0.35, 0.8], [0.65, 0.8]])
    methods = {n: get_method(n, {}) for n in LOCAL}
    for _ in range(40):
        bw, bh = rng.uniform(0.2, 12), rng.uniform(0.2, 30)
        x = rng.choice([rng.uniform(-bw, 2), rng.uniform(w - 2 - bw, w), rng.uniform(0, w - 10)])
        y = rng.choice([rng.uniform(-bh, 2), rng.uniform(h - 2 - bh, h), rng.uniform(0, h - 20)])
        lm = (shape * [bw, bh] + [x, y])[None].astype(np.float32) if rng.random() < 0.5 else None
        source = str(rng.choice(["detected", "held", "backfilled"]))
        dets = Detections(np.array([[x, y, x + bw, y + bh]], np.float32), np.array([0.9], np.float32), lm,
                          np.array([int(rng.integers(-1, 3))]), "track", [source])
        comp = Compositor(RegionParams(shape="box", mask_scale=1.0))
        outside = comp.mask(dets, noise_image.shape) == 0
        for name, method in methods.items():
            out = method.apply(noise_image, dets, comp, np.random.default_rng(0))
            assert np.array_equal(out[outside], noise_image[outside]), (name, dets.xyxy[0])


def test_the_api_takes_a_method_parameter_called_image_and_refuses_a_negative_seed(tmp_path, noise_image):
    """faceveil.anonymize(img, "overlay", image=...) raised TypeError (the photo's own argument was named image),
    and seed=-1 failed every file at its first face instead of before any work."""
    from PIL import Image

    import faceveil
    from faceveil.errors import UsageError

    art = np.zeros((8, 8, 4), np.uint8)
    art[..., 1] = art[..., 3] = 255
    Image.fromarray(art, "RGBA").save(tmp_path / "green.png")
    dets = Detections.from_boxes([[60, 40, 100, 90]])
    out = faceveil.anonymize(noise_image, "overlay", detections=dets, image=str(tmp_path / "green.png"),
                             region={"shape": "box", "mask_scale": 1.0})
    assert (out[45:85, 65:95] == [0, 255, 0]).all() and np.array_equal(out[:30], noise_image[:30])
    for bad in (-1, 1.5, "7", True):
        with pytest.raises(UsageError, match="seed must be a whole number"):
            faceveil.anonymize(noise_image, detections=dets, seed=bad)


def test_the_api_takes_boxes_and_refuses_ones_that_cannot_be_x1_y1_x2_y2(noise_image):
    """detections=[[...]] raised AttributeError deep inside; an x, y, w, h row passed as x1, y1, x2, y2 (x2 < x1)
    hid nothing and raised nothing."""
    import faceveil
    from faceveil.errors import UsageError

    out = faceveil.anonymize(noise_image, "blackout", detections=[[60, 40, 100, 90]],
                             region={"shape": "box", "mask_scale": 1.0})
    assert (out[45:85, 65:95] == 0).all() and np.array_equal(out[:30], noise_image[:30])
    for bad in ([[100, 40, 60, 90]], [[60, 40, float("nan"), 90]], [[1, 2, 3]]):
        with pytest.raises(UsageError, match="detections"):
            faceveil.anonymize(noise_image, detections=bad)


@pytest.mark.parametrize("name,params,fragment", [
    ("blur", {"kernel": 1}, "kernel must be 0 .* or at least 2"),
    ("blur", {"kernel": 3, "sigma": 0.01}, "sigma must be 0 .* or at least 0.8"),
    ("blur", {"sigma": 0.3}, "sigma must be 0 .* or at least 0.8"),
    ("blur", {"kernel": 3, "sigma": 0.4}, "sigma must be 0 .* or at least 0.8"),  # 1 level on average: accepted
    ("learnedblur", {"sigma": 0.6}, "sigma must be 0 .* or at least 0.8"),
    ("noise", {"amount": 0.0001}, "amount must be at least 5"),  # accepted: no pixel changed
    ("noise", {"amount": 2}, "amount must be at least 5"),
    ("learnedblur", {"kernel": 1}, "kernel must be 0 .* or at least 2"),
    ("pixelate", {"block": 1}, "block must be 0 .* or at least 2"),
    ("fullblur", {"kernel": 1}, "kernel must be at least 2"),
])
def test_settings_that_hide_nothing_are_refused(name, params, fragment, noise_image):
    """Each was accepted and changed no pixel, or next to none (a 1 px kernel or cell; a Gaussian whose 8-bit weights
    are 1 at the centre, or sigma 0.4: 0.4 levels on average; noise amount=0.0001): the run said every face was
    hidden. The smallest value the message names does change the face."""
    from faceveil.errors import UsageError

    with pytest.raises(UsageError, match=fragment):
        get_method(name, params)
    smallest = {k: {"kernel": 2, "block": 2, "sigma": 0.8, "amount": 5}[k] for k in params}
    out, _ = apply(name, noise_image, smallest, {"shape": "box", "mask_scale": 1.0})
    moved = (out[40:90, 60:100] != noise_image[40:90, 60:100]).any(axis=2).mean()
    assert moved > (0.04 if name == "noise" else 0.5)


@pytest.mark.parametrize("cells", [48, 64, 500])
def test_pixelate_grid_finer_than_the_face_still_hides_it(cells):
    """cells=64 on faces of 20-50 px made each cell under a pixel: every face came out byte-identical. The grid
    is capped so each cell is at least 2 px."""
    img = np.random.default_rng(3).integers(0, 256, (100, 200, 3), dtype=np.uint8)
    boxes = [[10, 10, 30, 30], [50, 20, 75, 50], [100, 30, 150, 80], [170, 60, 172, 63]]
    out, comp = apply("pixelate", img, {"cells": cells}, {"shape": "box", "mask_scale": 1.0},
                      dets=Detections.from_boxes(boxes))
    for x1, y1, x2, y2 in boxes:
        assert (out[y1:y2, x1:x2] != img[y1:y2, x1:x2]).any(axis=2).mean() > 0.5, (cells, x1)
    assert np.array_equal(out[comp.mask(Detections.from_boxes(boxes), img.shape) == 0],
                          img[comp.mask(Detections.from_boxes(boxes), img.shape) == 0])
