"""`-m replace` keeps what covers a face (a mask, a hand, a scarf) and replaces only the face
above it (issue 22, follow-up): eyes, brows and nose are always replaced."""
from __future__ import annotations

import importlib
import xml.etree.ElementTree as ET

import cv2
import numpy as np
import pytest

from conftest import (default_comp, detect_default as _detect, replace_default as _replace, replaced_portraits,
                      shared_path)
from faceveil.anonymize.bank import plausible
from faceveil.io.images import read_rgb

replace_mod = importlib.import_module("faceveil.anonymize.methods.replace")
O = importlib.import_module("faceveil.anonymize.replace_occluders")
COMP = default_comp()




def _iou(a, b):
    x1, y1 = np.maximum(a[:2], b[:, :2]).T
    x2, y2 = np.minimum(a[2:], b[:, 2:]).T
    inter = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1]) - inter)


def _zones(lm, shape):
    """From the 5 landmarks only (not the method's template), in the face's own frame (x along the eyes):
    the band of brows, eyes and nose (outer eye corners to the nose tip, from half an eye distance above
    the eyes) and the mouth's box, as boolean masks of the frame."""
    lm = np.asarray(lm, np.float64)
    c = (lm[0] + lm[1]) / 2
    ex = (lm[1] - lm[0]) / np.linalg.norm(lm[1] - lm[0])
    ey = np.array([-ex[1], ex[0]])
    ed = float(np.linalg.norm(lm[1] - lm[0]))
    yy, xx = np.mgrid[0:shape[0], 0:shape[1]].astype(np.float64) + 0.5
    u, v = (xx - c[0]) * ex[0] + (yy - c[1]) * ex[1], (xx - c[0]) * ey[0] + (yy - c[1]) * ey[1]
    lu, lv = (lm - c) @ ex, (lm - c) @ ey
    band = (np.abs(u) <= 0.5 * ed + 0.3 * ed) & (v >= -0.5 * ed) & (v <= lv[2])
    mouth = (u >= lu[3]) & (u <= lu[4]) & (np.abs(v - lv[3:].mean()) <= 0.15 * ed)
    return band, mouth


def _share_changed(img, out, zone):
    return float((img != out).any(axis=2)[zone].mean()) if zone.any() else np.nan


def _share_kept(img, out, new, zone):
    """Share of the zone that still shows the input more than the new face (``new``: the same face drawn
    with occluders=replace): a kept mask's pixels fade into the new face near its edge (a band of
    OCC_SOFT template pixels), so "kept" means mostly the mask's own, not byte for byte."""
    d_in = np.abs(out.astype(np.int16) - img).sum(axis=2)
    d_new = np.abs(out.astype(np.int16) - new).sum(axis=2)
    return float((d_in < d_new)[zone].mean()) if zone.any() else np.nan


def _labelled_faces(count: int, min_side: float = 40):
    """(photo, detections, [(index, label)]) for the first `count` facemask photos: detected faces with usable
    landmarks matched to a labelled box (IoU >= 0.3)."""
    root = shared_path("facemask")
    for path in sorted((root / "images").glob("*.jpg"))[:count]:
        objs = ET.parse(root / "annotations" / f"{path.stem}.xml").getroot().iter("object")
        labels = [(o.find("name").text,
                   [float(o.find("bndbox").find(k).text) for k in ("xmin", "ymin", "xmax", "ymax")]) for o in objs]
        if not labels:
            continue
        img = read_rgb(path)
        dets = _detect(img)
        faces = []
        for i in range(len(dets)):
            box, lm = dets.xyxy[i].astype(np.float64), dets.landmarks[i]
            if min(box[2] - box[0], box[3] - box[1]) < min_side or not np.isfinite(lm).all() or not plausible(lm, box):
                continue
            o = _iou(box, np.array([b for _, b in labels]))
            if o.max() >= 0.3:
                faces.append((i, labels[int(o.argmax())][0]))
        if faces:
            yield img, dets, faces


@pytest.mark.slow
def test_a_mask_keeps_its_pixels_and_the_eyes_brows_and_nose_are_always_replaced():
    """Before: the whole face-shaped mask was rebuilt, the mask included (mouth box 100 % changed):
    masked faces came out as bare faces, and facemask's Delta-E measured the mask's removal."""
    band_changed, mouth_kept, n_masked = [], [], 0
    for img, dets, faces in _labelled_faces(60):
        out = _replace(img, dets)
        new = _replace(img, dets, occluders="replace")
        for i, label in faces:
            band, mouth = _zones(dets.landmarks[i], img.shape)
            band_changed.append(_share_changed(img, out, band))
            if label == "with_mask":
                n_masked += 1
                mouth_kept.append(_share_kept(img, out, new, mouth))
    band_changed, mouth_kept = np.array(band_changed), np.array(mouth_kept)
    assert n_masked >= 40 and len(band_changed) >= 50
    # privacy, fail closed: every face's eyes, brows and nose are new (a pixel may by chance keep its value)
    assert band_changed.min() >= 0.9 and np.median(band_changed) >= 0.97, np.sort(band_changed)[:5].round(2)
    # the mask itself stays on most masked faces (some masks are skin-coloured: those are replaced, fail closed)
    # (measured with the 4.5-template-px fade, byte for byte: median 0.70, 58 % of masked faces keep half of the
    # mouth box, 25 % keep none; with the 12 px fade (tests/test_replace_looks3.py), mostly the mask's own: median
    # 0.62, 60 % keep half, 27 % none)
    # (a cover must also stand apart from the face above it, OCC_APART / OCC_DARK: 1 of these 52 masks more is
    # replaced, median 0.62 -> 0.59, keep half 60 -> 58 %; bare faces that kept their lower face on facemask's
    # held-out half 4 of 219 -> 0, research/occluder_labels.py)
    # (the ring that tone and light are read from leaves out the neighbours' faces since stop 33: the faces drawn
    # before a masked one in a crowd change, and with them the skin it sees; one mask of 52 more is replaced,
    # median 0.59 -> 0.57, keep half 56 -> 54 %: the bar moved from 0.55 to 0.5 for that crowd cascade)
    assert np.median(mouth_kept) >= 0.55 and (mouth_kept >= 0.4).mean() >= 0.5, np.round(mouth_kept, 2)


@pytest.mark.slow
def test_bare_faces_beards_and_dark_skin_are_replaced_whole():
    """No occluder, no pixel kept: the mouth of every bare face in the deepface-unit portraits (beards, dark
    skin, open mouths among them) is replaced."""
    mouth_changed = []
    for img, dets, out in replaced_portraits():
        for i in range(len(dets)):
            box, lm = dets.xyxy[i], dets.landmarks[i]
            if min(box[2] - box[0], box[3] - box[1]) >= 40 and np.isfinite(lm).all() and plausible(lm, box):
                mouth_changed.append(_share_changed(img, out, _zones(lm, img.shape)[1]))
    mouth_changed = np.array(mouth_changed)
    assert len(mouth_changed) >= 40
    assert (mouth_changed >= 0.9).mean() >= 0.95, np.sort(mouth_changed)[:8].round(2)


def _covered(img, lm, colour=(150, 200, 225)):
    """A copy of ``img`` with a flat light-blue surgical mask from below the nose over the lower face (inside the
    face: the ring around it, where the person's skin tone is read, stays as it is), and the mask's x1, y1, x2, y2."""
    ed = float(np.hypot(*(lm[1] - lm[0])))
    x1, x2 = int(lm[3, 0] - 0.4 * ed), int(lm[4, 0] + 0.4 * ed)
    y1, y2 = int(lm[2, 1] + 0.15 * ed), int(lm[3:, 1].mean() + 0.9 * ed)
    masked = img.copy()
    masked[y1:y2, x1:x2] = colour
    return masked, (x1, y1, x2, y2)


def test_noise_or_a_skin_coloured_cover_is_replaced_and_occluders_replace_turns_it_off(astronaut, astronaut_faces):
    """Fail closed: only a smooth, non-skin cover over the mouth is kept; anything else is replaced."""
    img, dets = astronaut, astronaut_faces
    band, mouth = _zones(dets.landmarks[0], img.shape)
    masked, (x1, y1, x2, y2) = _covered(img, dets.landmarks[0])
    out = _replace(masked, dets)
    # (the mouth sits just below this cover's top edge: part of it lies in the fade; measured 0.83)
    assert _share_kept(masked, out, _replace(masked, dets, occluders="replace"), mouth) >= 0.75, \
        "the mask over the mouth was replaced"
    assert _share_changed(masked, out, band) >= 0.97
    # the same cover, replaced when asked
    assert _share_changed(masked, _replace(masked, dets, occluders="replace"), mouth) >= 0.97
    # noise (no cloth is that rough) and a skin-coloured cover are replaced
    noisy = img.copy()
    noisy[y1:y2, x1:x2] = np.random.default_rng(0).integers(0, 256, (y2 - y1, x2 - x1, 3), dtype=np.uint8)
    assert _share_changed(noisy, _replace(noisy, dets), mouth) >= 0.97
    skin = img.copy()
    skin[y1:y2, x1:x2] = (205, 160, 135)
    assert _share_changed(skin, _replace(skin, dets), mouth) >= 0.97
    # beyond the fade what is kept is kept byte for byte (tests/test_replace_looks3.py checks the cover's core;
    # measured here: 26 % of the whole cover), and the eyes and nose do not depend on the cover
    kept = (out == masked).all(axis=2)[y1:y2, x1:x2]
    assert kept.mean() >= 0.2
    assert np.array_equal(out[band], _replace(noisy, dets)[band])


def _high_mask(img, lm, folds_above: float, colour=(150, 200, 225)):
    """A copy of ``img`` with a light-blue mask from under the eyes (over the nose) to below the mouth, its part
    above the nostrils with folds of amplitude ``folds_above`` (its part below flat), and the mask's y1 and the
    nostrils' y (where the part kept as it is begins)."""
    ed = float(np.hypot(*(lm[1] - lm[0])))
    x1, x2 = int(lm[3, 0] - 0.45 * ed), int(lm[4, 0] + 0.45 * ed)
    y1, y2 = int(lm[:2, 1].mean() + 0.3 * ed), int(lm[3:, 1].mean() + 0.9 * ed)
    masked = img.copy()
    masked[y1:y2, x1:x2] = colour
    nostrils = int(np.ceil(lm[2, 1] + (O.OCC_TOP + O.OCC_RAMP - 70.5) / 36 * ed))
    rng = np.random.default_rng(3)
    folds = folds_above * np.sin(np.arange(x2 - x1) / 2.5)[None, :] * np.ones((nostrils - y1, 1))
    masked[y1:nostrils, x1:x2] = np.clip(np.array(colour, np.float32) + folds[:, :, None]
                                         + rng.normal(0, 1, (nostrils - y1, x2 - x1, 1)), 0, 255).astype(np.uint8)
    return masked, (x1, y1, x2, nostrils)


def test_a_mask_over_the_nose_goes_on_up_to_its_top_edge(astronaut, astronaut_faces):
    """Before: a mask was kept below the nostrils only, and the new face's nose drawn over its upper half, so
    masked faces came out as a new face with a strip of mask over the mouth (facemask's 60 first photos: Delta-E of
    the face's central half to the original 17.9 median). Now the mask goes on up to its own top edge, drawn in
    its colours continued from its kept part (cover_reach); nothing of the nose zone is kept, and its pixels are
    read only to tell mask from face: two masks that differ there only in their folds give the same pixels."""
    lm = astronaut_faces.landmarks[0]
    masked, (x1, y1, x2, nostrils) = _high_mask(astronaut, lm, 6.0)
    out = _replace(masked, astronaut_faces)
    new = _replace(masked, astronaut_faces, occluders="replace")
    ed = float(np.hypot(*(lm[1] - lm[0])))
    # the mask's upper part, inside its edges (the fade), from below its top ramp (OCC_REACH_RAMP) down to where a
    # cover starts to be kept (OCC_TOP, with a ramp to the nostrils)
    m = int(np.ceil(0.12 * ed))
    top_keep = int(np.floor(lm[2, 1] + (O.OCC_TOP - 70.5) / 36 * ed)) - 1
    up = np.s_[y1 + m: top_keep, x1 + m: x2 - m]
    lab = lambda a: cv2.cvtColor(a.astype(np.float32) / 255, cv2.COLOR_RGB2Lab)
    d_mask = np.linalg.norm(lab(out[up]) - lab(masked[up]), axis=-1)
    d_new = np.linalg.norm(lab(new[up]) - lab(masked[up]), axis=-1)
    assert np.median(d_mask) <= 5 and np.median(d_new) >= 20, (np.median(d_mask), np.median(d_new))
    # drawn, not kept: the colour comes from the kept part below the nostrils only. Folds of another amplitude
    # above them give the same pixels, but where the outline (read there) moves by a pixel (measured: 2 pixels of
    # 536 by 1 level); a pixel may equal the input's by chance, the mask's colour being continued
    other, _ = _high_mask(astronaut, lm, 3.0)
    d_other = np.abs(_replace(other, astronaut_faces)[up].astype(int) - out[up]).max(axis=2)
    assert d_other.max() <= 2 and (d_other == 0).mean() >= 0.98
    # a mask kept below the nostrils only (the cover of the other tests) has nothing above them to go on with
    low, (_, ly1, _, _) = _covered(astronaut, lm)
    zone = np.s_[int(lm[2, 1] - 0.3 * ed): ly1, x1: x2]
    plain = _replace(low, astronaut_faces, occluders="replace")
    assert np.array_equal(_replace(low, astronaut_faces)[zone], plain[zone])



def test_a_mask_joined_to_a_dark_collar_is_judged_by_its_part_over_the_mouth(astronaut, astronaut_faces):
    """A light mask whose lower edge runs smoothly into a black collar or coat is one piece to the rule. Its colour
    was the median of that whole piece: dark, and with no skin in view (a grey photo) a dark cover is refused, so the
    mask was replaced (facemask's masked faces, tune half: 35.3 % kept; held-out 29.8 %). The colour is now read over
    the mouth, where the rule needs the cover (37.2 %, held-out 30.9 %; bare faces still 0 of 258 and 0 of 219)."""
    lm = astronaut_faces.landmarks[0]
    grey = np.repeat(astronaut.mean(axis=2, keepdims=True), 3, axis=2).astype(np.uint8)
    masked, (x1, y1, x2, y2) = _covered(grey, lm)
    ed = float(np.hypot(*(lm[1] - lm[0])))
    top, bottom = int(lm[3:, 1].mean() + 0.35 * ed), int(lm[3:, 1].mean() + 0.85 * ed)
    light, dark = np.array((150, 200, 225), np.float32), np.array((14, 14, 16), np.float32)
    for y in range(top, bottom):  # the mask darkens smoothly into the collar
        t = (y - top) / (bottom - top)
        masked[y, x1:x2] = (light * (1 - t) + dark * t).astype(np.uint8)
    masked[bottom:, max(0, int(x1 - 1.2 * ed)): int(x2 + 1.2 * ed)] = dark.astype(np.uint8)
    _, mouth = _zones(lm, astronaut.shape)
    new = _replace(masked, astronaut_faces, occluders="replace")
    assert _share_kept(masked, _replace(masked, astronaut_faces), new, mouth) >= 0.75

def test_a_clear_mask_with_creases_keeps_its_middle_as_it_is(astronaut, astronaut_faces, monkeypatch):
    """A mask whose creases (shade cutting in from its sides) fail the rule's texture test was kept as a ragged
    piece, faded OCC_SOFT template px in from every notch: the new face showed through the middle of the mask
    (facemask tune half: 37.2 % of masks kept more than half the mouth box). A clear cover (most of the mouth)
    is now closed over its notches and faded over OCC_CLEAN_SOFT (41.6 %, bare faces 0 of 258 as before)."""
    lm = astronaut_faces.landmarks[0]
    masked, (x1, y1, x2, y2) = _covered(astronaut, lm)
    w = x2 - x1
    for k in range(1, 5):  # creases from each side, 30 % of the mask's width in
        y = y1 + k * (y2 - y1) // 5
        masked[y:y + 2, x1:x1 + int(0.3 * w)] = (60, 90, 110)
        masked[y + 3:y + 5, x2 - int(0.3 * w):x2] = (60, 90, 110)
    ed = float(np.hypot(*(lm[1] - lm[0])))
    nostrils = int(np.ceil(lm[2, 1] + (O.OCC_TOP + O.OCC_RAMP - 70.5) / 36 * ed))
    m = int(np.ceil(0.1 * ed))
    inner = np.s_[nostrils + m: y2 - m, x1 + m: x2 - m]  # the mask below the nostrils, inside its edges
    out = _replace(masked, astronaut_faces)
    monkeypatch.setattr(O, "OCC_CLEAN_SHARE", 2.0)  # no cover is that clear: the outline as before
    ragged = _replace(masked, astronaut_faces)
    # measured: 66 % of it byte for byte as it was, before 19 %
    assert (out[inner] == masked[inner]).all(axis=-1).mean() >= 0.55
    assert (ragged[inner] == masked[inner]).all(axis=-1).mean() <= 0.3
    band, _ = _zones(lm, astronaut.shape)
    assert _share_changed(masked, out, band) >= 0.97  # eyes, brows and nose: new as ever


def test_a_neighbour_never_puts_back_a_replaced_faces_original_pixels(astronaut, astronaut_faces):
    """Before: each face was rendered from the input frame, so a later face whose region overlapped an
    earlier face wrote that face's original pixels back over its replacement (crowds: up to 17 % of the
    eyes-and-nose band of a facemask face came out original)."""
    from faceveil.detections import Detections

    lm = astronaut_faces.landmarks[0].astype(np.float64)
    box = astronaut_faces.xyxy[0].astype(np.float64)
    shift = np.array([0.55 * (box[2] - box[0]), 0.0])
    second = Detections.from_boxes([box, np.r_[box[:2] + shift, box[2:] + shift]], [0.9, 0.9],
                                   np.stack([lm, lm + shift]).astype(np.float32))
    band, _ = _zones(lm, astronaut.shape)
    out = _replace(astronaut, second)
    assert _share_changed(astronaut, out, band) >= 0.97


def test_a_tiny_face_keeps_no_cover(astronaut, astronaut_faces):
    """Below OCC_MIN_MOUTH pixels of mouth box (a face ~20 px high) no cover is kept: there cloth and a bare face
    smoothed by compression look alike (the shared marathon clip, where no one wears a mask: 57 covers kept over
    every 10th frame, 56 of them on faces under 21 px). The same light-blue cover on the astronaut shrunk to a
    17 px face was kept before (share kept 1.0); at 25 px it still is."""
    import cv2

    from faceveil.detections import Detections

    def covered_at(f):
        small = cv2.resize(astronaut, None, fx=f, fy=f, interpolation=cv2.INTER_AREA)
        d = Detections(astronaut_faces.xyxy * f, astronaut_faces.score, astronaut_faces.landmarks * f, None)
        masked, _ = _covered(small, d.landmarks[0])
        return masked, d, _zones(d.landmarks[0], small.shape)[1]

    masked, d, mouth = covered_at(0.135)  # the mouth box spans 8-9 pixels
    assert 15 <= d.xyxy[0, 3] - d.xyxy[0, 1] <= 20
    assert _share_changed(masked, _replace(masked, d), mouth) >= 0.97
    masked, d, mouth = covered_at(0.2)
    out = _replace(masked, d)
    assert _share_kept(masked, out, _replace(masked, d, occluders="replace"), mouth) >= 0.75


@pytest.mark.parametrize("scene", ["grey", "dark"])
def test_a_face_in_grey_or_in_the_dark_keeps_no_lower_face(astronaut, astronaut_faces, scene):
    """Before, a face in a dark room (no skin shows in the ring either) passed for masked: its lower half was as
    dark, colourless and smooth as a cover, and its own chin and mouth were kept (the shared stage clip: 35 faces
    over every 10th frame). A cover must now stand apart from the face above it, and a dark one needs the
    person's skin in view. In grey the astronaut's lower face was replaced before too; there the cover over it
    must still be kept (before the pixel rule, the grey face joined the cover in one piece and was kept with it)."""
    img, dets = astronaut, astronaut_faces
    if scene == "grey":
        scene_img = np.repeat(img.mean(axis=2, keepdims=True), 3, axis=2).astype(np.uint8)
    else:
        scene_img = (img.astype(np.float32) * 0.12 + 0.5).astype(np.uint8)
    _, mouth = _zones(dets.landmarks[0], img.shape)
    assert _share_changed(scene_img, _replace(scene_img, dets), mouth) >= 0.97
    # a light-blue cover over the same grey or dark face stands apart from it and is kept (grey: the skin model
    # is unknown, but the cover is bright)
    masked, _ = _covered(scene_img, dets.landmarks[0])
    out = _replace(masked, dets)
    assert _share_kept(masked, out, _replace(masked, dets, occluders="replace"), mouth) >= 0.75


@pytest.mark.slow
def test_the_dark_audience_of_the_stage_clip_keeps_no_mouth_and_is_not_lit_up():
    """Real footage: frame 60 of the shared stage clip, an audience in the dark (7 faces, no masks). Before, 4 of
    its 7 faces kept their own lower face: dark, colourless and smooth, it passed for a cover."""
    from itertools import islice

    import cv2

    from faceveil.io.video import read_frames

    img = next(islice(read_frames(shared_path("videos") / "multi_shot_stage_audience_360p.mp4"), 60, None)).rgb
    dets = _detect(img)
    out = _replace(img, dets)
    changed = [_share_changed(img, out, _zones(dets.landmarks[i], img.shape)[1]) for i in range(len(dets))
               if np.isfinite(dets.landmarks[i]).all() and plausible(dets.landmarks[i], dets.xyxy[i])]
    assert len(changed) >= 5
    assert min(changed) >= 0.9, np.round(changed, 2)
    # no skin shows around these faces: each keeps its own tone, but lit no brighter than the dark around it (the
    # ring's 98th percentile of L* plus a margin, DARK_MARGIN 15 scaled down by that percentile over DARK_FULL 50).
    # The central half box's median L*: 4.7-15.7 (the original faces: 1.2-9.8); with the full margin 18-40, and
    # before the cap they were bright discs: 60-74
    lab = cv2.cvtColor(out, cv2.COLOR_RGB2Lab).astype(np.float32) * [100 / 255, 1, 1]
    light = []
    for x1, y1, x2, y2 in dets.xyxy:
        cx, cy, hw, hh = (x1 + x2) / 2, (y1 + y2) / 2, (x2 - x1) / 4, (y2 - y1) / 4
        light.append(float(np.median(lab[int(cy - hh):int(cy + hh), int(cx - hw):int(cx + hw), 0])))
    assert max(light) <= 20, np.round(light, 1)


def test_a_tracked_mask_stays_on_the_frames_the_detector_skips(astronaut, astronaut_faces):
    """Video: a skipped frame's face (source "held", interpolated landmarks) keeps its cover when its track's last
    detected face kept one. Before, the rule was off on skipped frames, so a masked person's lower face switched
    between the mask and a new mouth every other frame (research/masked_video.py: masked face-frames kept on
    skipped frames 0 % against 17.8 % on detected ones, now 16.2 %). A track whose last detected face kept no cover
    keeps none on a skipped frame (no cover starts at a guessed place), and a new video forgets the tracks."""
    from faceveil.anonymize import get_method
    from faceveil.detections import Detections

    d = astronaut_faces
    masked, _ = _covered(astronaut, d.landmarks[0])
    _, mouth = _zones(d.landmarks[0], astronaut.shape)
    ids = np.zeros(len(d), np.int64)
    detected = Detections(d.xyxy, d.score, d.landmarks, ids, "track", ["detected"] * len(d))
    held = Detections(d.xyxy, d.score, d.landmarks, ids, "track", ["held"] * len(d))

    def held_frame(first, begin, params):
        m = get_method("replace", params)
        m.apply(first, detected, COMP, np.random.default_rng(0))
        if begin:
            m.begin_stream()
        return m.apply(masked, held, COMP, np.random.default_rng(0))

    def kept_on_held(first, begin=False):  # against the same frames drawn with occluders=replace
        new = held_frame(first, begin, {"occluders": "replace"})
        return _share_kept(masked, held_frame(first, begin, {}), new, mouth)

    assert kept_on_held(masked) >= 0.75, "the mask was replaced on the skipped frame"
    assert kept_on_held(astronaut) <= 0.05, "a cover started on a skipped frame of a bare face's track"
    assert kept_on_held(masked, begin=True) <= 0.05, "a new video's track 0 kept the last video's cover"
