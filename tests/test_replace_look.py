"""`-m replace` that looks right: a face-shaped region, sharp identities turned like the head,
the person's skin tone and the photo's grain (issue 22, items 1-3)."""
from __future__ import annotations

import importlib
from functools import lru_cache

import cv2
import numpy as np
import pytest

from conftest import default_comp, detect_default as _detect, replace_default as _replace, shared_path
from faceveil.anonymize.bank import TEMPLATE, align, load_bank, plausible
from faceveil.detections import Detections
from faceveil.io.images import read_rgb

G = importlib.import_module("faceveil.anonymize.replace_geometry")
COMP = default_comp()  # the default region: a 1.25x box


def _photo(name: str, side: int = 640) -> np.ndarray:
    img = read_rgb(shared_path("deepface-unit", name))
    f = side / max(img.shape[:2])
    return cv2.resize(img, None, fx=f, fy=f, interpolation=cv2.INTER_AREA) if f < 1 else img




def _weights(img, dets, keep=None):
    """(region, full-frame face mask) of every face that gets the face-shaped mask (and that ``keep(region)`` keeps,
    when given: a test that measures some of the faces only makes their masks)."""
    out = []
    for r in COMP.regions(dets, img.shape):
        box, lm = dets.xyxy[r.index].astype(np.float64), dets.landmarks[r.index]
        if np.isfinite(lm).all() and min(box[2] - box[0], box[3] - box[1]) >= 12 and plausible(lm, box) and \
                (keep is None or keep(r)):
            out.append((r, G.face_weight(img.shape, r, box, lm)))
    return out


PORTRAITS = ["img3.jpg", "img20.jpg", "img41.jpg", "couple.jpg", "img22.jpg", "img17.jpg"]


@pytest.mark.slow
def test_hair_background_and_box_corners_keep_their_pixels():
    """Before: the whole 1.25x box was rebuilt (fill ~100 %, a visible rectangle)."""
    for name in PORTRAITS:
        img = _photo(name)
        dets = _detect(img)
        out = _replace(img, dets)
        for r, _ in _weights(img, dets):  # faces without usable landmarks get their whole region
            changed = (out[r.slices] != img[r.slices]).any(axis=2)
            ys, xs = np.nonzero(changed)
            fill = changed.sum() / ((np.ptp(ys) + 1) * (np.ptp(xs) + 1))
            assert fill <= 0.85, f"{name}: the replaced area fills {fill:.0%} of its bounding box: a rectangle"
            h, w = changed.shape
            c = max(2, min(h, w) // 8)
            top, bottom = r.y1 > 0, r.y2 < img.shape[0]  # a region cut by the frame has no corner there
            left, right = r.x1 > 0, r.x2 < img.shape[1]
            for corner, real in ((changed[:c, :c], top and left), (changed[:c, -c:], top and right),
                                 (changed[-c:, :c], bottom and left), (changed[-c:, -c:], bottom and right)):
                # (a big head in a tight box may reach into a corner with the ellipse's soft edge)
                assert not (real and corner.mean() > 0.1), f"{name}: the region's corners were rebuilt"


@pytest.mark.slow
def test_everything_outside_the_face_mask_is_unchanged_and_the_hidden_face_never_shows():
    for name in ["img3.jpg", "couple.jpg"]:
        img = _photo(name)
        dets = _detect(img)
        weights = _weights(img, dets)
        dets = dets[[r.index for r, _ in weights]]  # faces without usable landmarks get their whole region
        assert len(weights) >= 1
        mask = np.max([w for _, w in weights], axis=0)
        out = _replace(img, dets, seed=3)
        assert np.array_equal(out[mask <= 0], img[mask <= 0]), "pixels outside the face mask changed"
        assert (out != img).any(axis=2)[mask >= 1].mean() > 0.95
        # the fully replaced core depends on nothing it hides: scramble it, same output
        scrambled = img.copy()
        core = mask >= 1
        scrambled[core] = np.random.default_rng(0).integers(0, 256, (int(core.sum()), 3), dtype=np.uint8)
        assert np.array_equal(_replace(scrambled, dets, seed=3), out)


@lru_cache(maxsize=1)
def _dlib68_model():
    """Loaded once per test session: the 95 MB file took ~1-2 s to load, per face, before."""
    dlib = pytest.importorskip("dlib")
    frm = pytest.importorskip("face_recognition_models")
    # the 68-point model is for evaluation only here (non-commercial licence): faceveil never uses it
    return dlib, dlib.shape_predictor(frm.pose_predictor_model_location())


def _dlib68(img, box):
    dlib, sp = _dlib68_model()
    rect = dlib.rectangle(*[int(v) for v in box])
    return np.array([[p.x, p.y] for p in sp(np.ascontiguousarray(img), rect).parts()])


def _facemask_faces(count: int):
    import xml.etree.ElementTree as ET

    root = shared_path("facemask")
    out = []
    for xml in sorted((root / "annotations").glob("*.xml")):
        boxes = [[float(o.find("bndbox").find(k).text) for k in ("xmin", "ymin", "xmax", "ymax")]
                 for o in ET.parse(xml).getroot().iter("object")]
        big = [b for b in boxes if min(b[2] - b[0], b[3] - b[1]) >= 60]
        if big:
            out.append((root / "images" / (xml.stem + ".jpg"), big))
        if len(out) == count:
            break
    return out


@pytest.mark.slow
def test_the_mask_covers_brows_eyes_nose_mouth_and_jaw_of_real_faces():
    """dlib's 68 points of each face (on the labelled box for facemask, on the detection for
    deepface-unit): brows, eyes, nose and mouth fully replaced; the jaw line (but for its ends
    at the ears) at least half-way into the feathered edge, on most faces."""
    from faceveil.detections import box_iou

    cases = []
    for name in PORTRAITS + ["img1.jpg", "img4.jpg", "img11.jpg", "img14.jpg", "img23.jpg", "img43.jpg"]:
        img = _photo(name)
        dets = _detect(img)
        for r, w in _weights(img, dets):
            box = dets.xyxy[r.index]
            if box[2] - box[0] >= 60:
                cases.append((name, w, _dlib68(img, box)))
    for path, labels in _facemask_faces(12):
        img = read_rgb(path)
        dets = _detect(img)
        for r, w in _weights(img, dets):
            iou = box_iou(np.asarray(labels, np.float32), dets.xyxy[[r.index]]).ravel()
            if iou.max() >= 0.4:
                cases.append((path.name, w, _dlib68(img, labels[int(iou.argmax())])))
    assert len(cases) >= 15
    inner_ok, jaw_ok = [], []
    for name, w, pts in cases:
        pts = np.clip(pts, 0, [w.shape[1] - 1, w.shape[0] - 1])
        v = w[pts[:, 1], pts[:, 0]]
        inner_ok.append((v[17:] >= 1).mean())
        jaw_ok.append((v[2:15] >= 0.5).mean())
    inner_ok, jaw_ok = np.array(inner_ok), np.array(jaw_ok)
    assert np.median(inner_ok) >= 0.95 and (inner_ok >= 0.9).mean() >= 0.9, inner_ok.round(2)
    # the jaw line is covered on (nearly) every face, not only on most (before the box ellipse: 75 % of
    # faces with >= 60 % of it; tests/test_replace_jaw.py measures more faces; bench/replace_results.md)
    assert (jaw_ok >= 0.9).mean() >= 0.95 and jaw_ok.min() >= 0.6, jaw_ok.round(2)


def test_faces_without_usable_landmarks_fall_back_to_the_whole_region(astronaut, astronaut_faces):
    face = astronaut_faces[[int(np.argmax(astronaut_faces.areas))]]
    nolm = Detections.from_boxes(face.xyxy, [0.9])
    out = _replace(astronaut, nolm)
    (r,) = COMP.regions(nolm, astronaut.shape)
    assert (out[r.slices] != astronaut[r.slices]).any(axis=2).mean() > 0.95


def test_dense_alignment_keeps_an_average_sharp(astronaut, astronaut_faces):
    """Five copies of one real face, each moved a little (what five donors' 5-point
    alignment leaves): the plain average is soft, the densely aligned one as sharp as the face."""
    from faceveil.anonymize.identity import average, dense_average

    face = align(astronaut, astronaut_faces.landmarks[int(np.argmax(astronaut_faces.areas))])
    rng = np.random.default_rng(0)
    moved = []
    for _ in range(5):
        a, s = np.radians(rng.uniform(-4, 4)), rng.uniform(0.94, 1.06)
        m = cv2.getRotationMatrix2D((64, 64), np.degrees(a), s)
        m[:, 2] += rng.uniform(-3, 3, 2)
        moved.append(cv2.warpAffine(face, m, (128, 128), borderMode=cv2.BORDER_REPLICATE))
    moved = np.stack(moved)

    def sharp(f):
        return cv2.Laplacian(cv2.cvtColor(f, cv2.COLOR_RGB2GRAY)[40:110, 36:92].astype(np.float32), cv2.CV_32F).var()

    ref = np.mean([sharp(f) for f in moved])
    assert sharp(average(moved)) < 0.6 * ref  # the measure can fail
    assert sharp(dense_average(moved)) >= 0.6 * ref


def test_the_shipped_bank_is_dense_averages_with_yaw():
    bank = load_bank()
    assert "DIS" in bank.source and "deepface" in bank.source
    assert bank.yaw.shape == (len(bank),) and np.isfinite(bank.yaw).all()


def test_a_turned_head_gets_a_face_turned_the_same_way():
    from faceveil.anonymize.bank import yaw_ratio
    from faceveil.anonymize.identity import Synthesizer

    lm = TEMPLATE.astype(np.float64).copy()
    assert abs(yaw_ratio(lm)) < 1e-6
    right, left = lm.copy(), lm.copy()
    right[2:, 0] += 9  # nose and mouth moved to the image's right
    left[2:, 0] -= 9
    assert yaw_ratio(right) > 0.2 and yaw_ratio(left) < -0.2
    syn = Synthesizer(load_bank())
    i = int(np.argmax(np.abs(syn.bank.yaw)))
    own = float(syn.bank.yaw[i])
    same = syn.identity(i, own * 10)
    other = syn.identity(i, -own * 10)
    assert np.array_equal(same.face, syn.bank.faces[i])
    assert np.array_equal(other.face, syn.bank.faces[i][:, ::-1]) and np.sign(other.yaw) == -np.sign(own)
    # the warp follows the landmarks: the template's nose lands on the turned nose
    tx, ty = G.template_coords(right, 128, 128)
    x, y = np.round(right[2]).astype(int)
    assert abs(tx[y, x] - TEMPLATE[2, 0]) < 1.5 and abs(ty[y, x] - TEMPLATE[2, 1]) < 1.5


@pytest.mark.slow
def test_the_face_keeps_the_persons_skin_tone():
    """Delta-E (CIE76) of the central half's mean Lab colour, original vs replaced, over the
    portraits' faces: before, ~20 (the colour came from a ring that is mostly background)."""
    des = []
    for name in PORTRAITS + ["img1.jpg", "img4.jpg", "img11.jpg", "img14.jpg", "img23.jpg", "img43.jpg"]:
        img = _photo(name)
        dets = _detect(img)
        for i, seed in ((i, s) for i in range(len(dets)) for s in (0, 1)):
            d = dets[[i]]
            out = _replace(img, d, seed=seed)
            x1, y1, x2, y2 = d.xyxy[0]
            cx, cy, hw, hh = (x1 + x2) / 2, (y1 + y2) / 2, (x2 - x1) / 4, (y2 - y1) / 4
            sl = np.s_[int(cy - hh): int(cy + hh), int(cx - hw): int(cx + hw)]
            lab = [cv2.cvtColor(a[sl].astype(np.float32) / 255, cv2.COLOR_RGB2Lab).reshape(-1, 3).mean(0)
                   for a in (img, out)]
            des.append(np.linalg.norm(lab[0] - lab[1]))
    assert np.median(des) <= 10, f"median Delta-E {np.median(des):.1f}"


@pytest.mark.slow
def test_the_face_tone_follows_the_person_not_the_background():
    """The same portraits with everything beyond 1.8x the face box painted blue: the new face's
    colour must not move (before: it came from a ring around the box, i.e. mostly background)."""
    moved = []
    for name in ["img3.jpg", "img17.jpg", "img22.jpg", "img41.jpg"]:
        img = _photo(name)
        dets = _detect(img)
        d = dets[[int(np.argmax(dets.areas))]]
        x1, y1, x2, y2 = d.xyxy[0]
        cx, cy, hw, hh = (x1 + x2) / 2, (y1 + y2) / 2, (x2 - x1) / 2 * 1.8, (y2 - y1) / 2 * 1.8
        yy, xx = np.mgrid[0:img.shape[0], 0:img.shape[1]]
        painted = img.copy()
        painted[(np.abs(xx - cx) > hw) | (np.abs(yy - cy) > hh)] = (40, 60, 200)
        sl = np.s_[int(cy - hh / 3.6): int(cy + hh / 3.6), int(cx - hw / 3.6): int(cx + hw / 3.6)]
        lab = [cv2.cvtColor(_replace(a, d)[sl].astype(np.float32) / 255, cv2.COLOR_RGB2Lab).reshape(-1, 3).mean(0)
               for a in (img, painted)]
        moved.append(float(np.linalg.norm(lab[0] - lab[1])))
    assert max(moved) <= 4, f"Delta-E moved by the background: {np.round(moved, 1)}"


def _noise(gray, where):
    """Immerkaer's noise estimate over a mask (grey levels)."""
    k = np.array([[1, -2, 1], [-2, 4, -2], [1, -2, 1]], np.float32)
    r = np.abs(cv2.filter2D(gray.astype(np.float32), cv2.CV_32F, k))
    return float(np.sqrt(np.pi / 2) / 6 * r[where].mean())


def test_the_face_is_as_grainy_as_the_photo(astronaut, astronaut_faces):
    """A photo with sensor-like noise: before, the pasted face was clean (noise ratio ~0.3)."""
    face = astronaut_faces[[int(np.argmax(astronaut_faces.areas))]]
    noisy = np.clip(astronaut + np.random.default_rng(0).normal(0, 8, astronaut.shape[:2])[:, :, None], 0, 255
                    ).astype(np.uint8)
    out = _replace(noisy, face)
    x1, y1, x2, y2 = face.xyxy[0]
    cx, cy, hw, hh = (x1 + x2) / 2, (y1 + y2) / 2, (x2 - x1) / 2, (y2 - y1) / 2
    yy, xx = np.mgrid[0:out.shape[0], 0:out.shape[1]]
    dx, dy = np.abs(xx - cx) / hw, np.abs(yy - cy) / hh
    core = (dx <= 0.5) & (dy <= 0.5)
    around = (np.maximum(dx, dy) >= 1.5) & (np.maximum(dx, dy) <= 2.0)
    gray = cv2.cvtColor(out, cv2.COLOR_RGB2GRAY)
    ratio = _noise(gray, core) / _noise(gray, around)
    assert 0.7 <= ratio <= 1.4, f"face noise / photo noise = {ratio:.2f}"
