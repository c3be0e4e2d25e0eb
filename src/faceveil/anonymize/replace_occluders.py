"""What ``replace`` keeps over a face: a cover (a mask, a scarf, a hand) over the lower face, judged in template
pixels from the pixels below the nostrils, and continued up to its own top edge.
"""
from __future__ import annotations

import cv2
import numpy as np

from .replace_geometry import DONOR_AX, DONOR_AY, DONOR_CX, DONOR_CY, ease, template_step
from .replace_looks import fill_unknown

# Occluders (a mask, a scarf, a hand over the lower face), in template pixels: only below the nostrils
# (nose tip at y 70.5), and only when they cover the mouth (TEMPLATE's corners at y 91.5).
OCC_TOP, OCC_RAMP = 74.0, 10.0  # kept from OCC_TOP + OCC_RAMP down (nostrils), fading in over OCC_RAMP above it


OCC_MOUTH = (49.0, 84.0, 79.0, 99.0)  # x1, y1, x2, y2: the mouth's box


OCC_MOUTH_COVER = 0.6  # share of the mouth box an occluder must cover


# The fade from the new face into the occluder, template pixels (a third of the eye distance), inside the
# occluder only. 4.5 followed the occluder's ragged outline (the gradient along that border 1.8x the photo's);
# 12 smooths it (1.21x) at the price of the occluder's pixels within 12 template px of its edge, which now
# carry some of the new face (fails safe: more is changed, never less).
OCC_SOFT = 12.0


OCC_TEXTURE = 9.0  # local L* standard deviation over ~5 template pixels: smoother is cloth


# A cover must stand apart from the face it covers: Delta-E (CIE76) between its pixels', and its median, colour and
# the upper face's median (forehead, brows, eyes: template y 20-60 inside the donors' ellipse) at least OCC_APART
# (the original's upper face is read for this decision only, as the lower face is); and one darker than
# OCC_DARK (L*) is kept only when the person's skin shows in the ring. Without these, a face in the dark or in a
# grey photo (its lower half as dark and colourless as a black mask) kept its own chin and mouth: bare facemask
# faces that kept their lower face, tune half 7 of 258 -> 0, held-out half 4 of 219 -> 0; masked ones keeping
# their mask 44.1 -> 38.1 % and 38.5 -> 33.5 % (research/occluder_labels.py); the shared stage clip's dark audience,
# every 10th frame, 35 faces -> 2.
OCC_APART, OCC_DARK = 10.0, 30.0


# No cover is kept on a face whose mouth box spans fewer than OCC_MIN_MOUTH pixels (of the work window: ~4.5 x 2.2
# px, a face ~20 px high): there the 3x3 texture and opening cannot tell cloth from skin, and video compression
# smooths a bare face's lower half into a "cover". Every 10th frame of the shared clips (no one wears a mask; the
# default photo preset on each frame), covers kept: marathon 57 -> 1, hikers 14 -> 3, stage 1 -> 1; facemask's
# masked faces keeping their mask, tune half 38.1 -> 35.4 % (chosen there; research/occluder_labels.py).
OCC_MIN_MOUTH = 10


# A kept cover is drawn on above the nostrils up to its own top edge (OCC_REACH at most, template px: the eyes are at
# y 50), with its own colours continued upward from its kept part (``cover_reach``), instead of the new face's nose
# over the upper half of a mask: facemask's masked faces read as a new face with a strip of mask over the mouth.
# OCC_REACH_SOFT: the fade inside the cover's outline; OCC_REACH_RAMP: in below OCC_REACH; OCC_REACH_FILL: the
# coarsest scale of the continued colour (template px).
OCC_REACH, OCC_REACH_SOFT, OCC_REACH_RAMP, OCC_REACH_FILL = 56.0, 3.0, 4.0, 24.0


OCC_REACH_GROW, OCC_REACH_NEAR = 3.0, 15.0


# A clear cover (a piece covering OCC_CLEAN_SHARE of the mouth box or more, on a face whose mouth box spans
# OCC_CLEAN_MOUTH work-window pixels or more: ~32 px high) is kept with a cleaner outline: closed over OCC_CLEAN_CLOSE
# template px (holes filled) and faded in over OCC_CLEAN_SOFT template px instead of OCC_SOFT. The rule found most
# masks, but kept a ragged piece of them, faded in from every notch that a fold, a nose wire's highlight or shade cut
# into it: the new face showed through the middle of the mask. Masks kept (more than half the mouth box) on
# facemask's tune half: 37.2 -> 41.6 % (faces >= 32 px: 54.8 -> 62.9 %), bare faces 0 of 258 as before
# (research/occluder_labels.py; the held-out half in bench/replace_results.md). Not on weaker covers: there the
# closed outline kept a bare chin or two on WIDER's crowds. A learned "is it covered" classifier as the gate instead
# (research/cover_classifier.py) did no better and called many of WIDER's bare faces covered.
OCC_CLEAN_SHARE, OCC_CLEAN_MOUTH, OCC_CLEAN_CLOSE, OCC_CLEAN_SOFT = 0.8, 26, 6.0, 8.0


def skin_like(rgb: np.ndarray, lab: np.ndarray, skin_lab: np.ndarray | None, where: np.ndarray | None = None
              ) -> np.ndarray:
    """Pixels that may be skin or lips: a loose chroma rule (reddish-to-yellow hue with some chroma) or
    near the person's own visible skin. Loose on purpose: what may be skin is replaced (fail closed).
    ``where``: only among these pixels (False elsewhere; per pixel, the same answer there)."""
    at = np.nonzero(np.ones(lab.shape[:2], bool) if where is None else where)
    px = lab[at]
    chroma = np.hypot(px[:, 1], px[:, 2])
    hue = np.degrees(np.arctan2(px[:, 2], px[:, 1]))
    ok = (chroma >= 7) & (hue >= -20) & (hue <= 80)
    if skin_lab is not None and len(skin_lab) >= 12:
        med = np.median(skin_lab, axis=0)
        ok |= np.linalg.norm((px - med) * [0.5, 1.5, 1.5], axis=-1) <= 20
    out = np.zeros(lab.shape[:2], bool)
    out[at] = ok
    return out


def holes_filled(mask: np.ndarray) -> np.ndarray:
    """uint8 copy of the 0/1 ``mask`` with every hole its outer outlines enclose filled."""
    out = mask.astype(np.uint8)
    cnts, _ = cv2.findContours(out, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
    cv2.drawContours(out, cnts, -1, 1, thickness=cv2.FILLED)
    return out


def closed_outline(mask: np.ndarray, scale: float, across: float) -> np.ndarray:
    """uint8 copy of the 0/1 ``mask`` closed with an ellipse ~``across`` template px wide (``scale``: one image pixel
    in template px), holes filled: a cover's outline without the notches and ragged edge the rule leaves."""
    k = 2 * max(1, int(round(across / 2 / scale))) + 1
    return holes_filled(cv2.morphologyEx(mask.astype(np.uint8), cv2.MORPH_CLOSE,
                                         cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (k, k))))


def occluder_keep(rgb: np.ndarray, lab: np.ndarray, tx: np.ndarray, ty: np.ndarray,
                  skin_lab: np.ndarray | None, reach: bool = False):
    """float32 weight (0..1) of the pixels to keep as they are: an occluder over the lower face.

    Occluder: apart from the upper face (OCC_APART, OCC_DARK), not skin-coloured (``skin_like``, the
    person's skin model included), smooth (cloth, not a beard's texture or noise), below the nostrils,
    and one connected piece that covers most of the mouth. Anything else is replaced, and the eyes,
    brows and nose always are. A clear cover gets a cleaner outline (OCC_CLEAN_*). Hand-written: no
    licence-clean face-parsing model small enough to ship; this is a few OpenCV calls per face. Returns (that
    weight, ``cover_reach``'s (weight, pixels) where ``reach`` asks for it and a cover is kept, else None).
    """
    h, w = tx.shape
    none = np.zeros((h, w), np.float32), None
    mx1, my1, mx2, my2 = OCC_MOUTH
    mouth = (tx >= mx1) & (tx <= mx2) & (ty >= my1) & (ty <= my2)
    n_mouth = int(mouth.sum())
    if n_mouth < OCC_MIN_MOUTH:
        return none
    # A cover is one piece of the candidates (below the nostrils, smooth, apart from the face's colour, not skin-like,
    # then opened: never more pixels), which must span OCC_MOUTH_COVER of the mouth box: with fewer pixels there that
    # are not skin-like at all (a bare mouth's lips and skin), none is kept. Told first from the mouth box's own
    # pixels (the rule's answer, none, without its work over the window: most faces wear no cover)
    if n_mouth - int(skin_like(rgb, lab, skin_lab, mouth).sum()) < OCC_MOUTH_COVER * n_mouth:
        return none
    # one image pixel in template pixels (the eyes are 36 template pixels apart)
    scale = template_step(tx, ty)
    lower = ty >= OCC_TOP
    if lower.sum() < 16 or not np.isfinite(scale) or scale <= 0:
        return none
    L = lab[..., 0].astype(np.float32)
    k = 2 * max(1, int(round(2.0 / scale))) + 1  # texture over ~5 template pixels, at least 3x3

    mu = cv2.blur(L, (k, k))
    sd = np.sqrt(np.maximum(cv2.blur(L * L, (k, k)) - mu * mu, 0))
    upper = (((tx - DONOR_CX) / DONOR_AX) ** 2 + ((ty - DONOR_CY) / DONOR_AY) ** 2 <= 1) & (ty >= 20) & (ty <= 60)
    if upper.sum() < 4:
        return none
    face_lab = np.median(lab[upper], axis=0)
    # smooth and apart from the face's own colour (which is no cover's)
    plain = (sd <= OCC_TEXTURE) & (np.linalg.norm(lab - face_lab, axis=-1) >= OCC_APART)
    cand = lower & plain
    cand &= ~skin_like(rgb, lab, skin_lab, cand)
    cand = cv2.morphologyEx(cand.astype(np.uint8), cv2.MORPH_OPEN, np.ones((3, 3), np.uint8))
    n, lab_cc, stats, _ = cv2.connectedComponentsWithStats(cand, connectivity=8)
    if n <= 1:
        return none
    cover = np.bincount(lab_cc[mouth], minlength=n)
    cover[0] = 0
    best = int(cover.argmax())
    if cover[best] < OCC_MOUTH_COVER * n_mouth:
        return none
    clear = bool(cover[best] >= OCC_CLEAN_SHARE * n_mouth and n_mouth >= OCC_CLEAN_MOUTH)
    keep = (lab_cc == best).astype(np.uint8)
    # its colour over the mouth: a mask that runs smoothly into a dark collar or coat is one piece with it, and the
    # whole piece's median read as a dark cover (refused with no skin in view; research/occluder_labels.py, masked
    # faces keeping their mask: tune 35.3 -> 37.2 %, held-out 29.8 -> 30.9 %, bare faces 0 of 258 / 219 as before;
    # the shared marathon clip's covers, every 10th frame: 1 -> 0)
    cover_lab = np.median(lab[(keep > 0) & mouth], axis=0)
    if skin_lab is None and cover_lab[0] < OCC_DARK:  # dark, and no skin of the person's to tell it apart from
        return none
    if np.linalg.norm(cover_lab - face_lab) < OCC_APART:
        return none  # as a whole the same colour as the face above it: the face itself, in the dark or in grey
    # holes inside the occluder (a print, a fold's highlight) are part of it: fill what it encloses
    filled = holes_filled(keep) & lower.astype(np.uint8)
    if clear:  # the outline without the rule's notches (folds, a nose wire's highlight, shade)
        filled = closed_outline(filled, scale, OCC_CLEAN_CLOSE) & lower.astype(np.uint8)
    # never beyond the occluder's own outline: erode by one pixel, then soften inward only
    core = cv2.erode(filled, np.ones((3, 3), np.uint8))
    # the new face fades into the occluder over ~OCC_SOFT template pixels, inside the occluder only, from its
    # own edges: where it goes on above OCC_TOP, the ramp below is the fade (the cut is no edge of the occluder)
    inside = cv2.distanceTransform(cv2.erode(filled | (~lower).astype(np.uint8), np.ones((3, 3), np.uint8)),
                                   cv2.DIST_L2, 3)
    soft = ease(inside / max((OCC_CLEAN_SOFT if clear else OCC_SOFT) / scale, 1.0)) * (core > 0)
    ramp = ease((ty - OCC_TOP) / OCC_RAMP)
    kept = (soft * ramp).astype(np.float32)
    if not reach:
        return kept, None
    return kept, cover_reach(rgb, lab, plain, keep, cover_lab, ty, scale)


def cover_reach(rgb: np.ndarray, lab: np.ndarray, plain: np.ndarray, keep: np.ndarray, cover_lab: np.ndarray,
                ty: np.ndarray, scale: float):
    """(weight, pixels) drawn instead of the new face where a kept cover goes on above the nostrils, up to its
    own top edge (OCC_REACH at most: below the eyes), and in the kept cover's fade: the cover's colours
    continued upward from its kept pixels below the nostrils (``fill_unknown``). The nose zone's own pixels are read
    only to tell cover from face (smooth and apart from the face's colour, ``plain``, and of the cover's colour;
    not the keeping rule's skin test: nothing here is kept), never for a colour, and none of them is kept.
    None where the cover does not reach above the nostrils or too little of it is kept to continue."""
    lower = ty >= OCC_TOP + OCC_RAMP
    # only the cover's own colour (Delta-E, lightness at half weight for its shading, <= OCC_REACH_NEAR from its
    # median over the mouth): a wall or hair that the rule joins to it beside the face is no part of a mask to continue
    near = np.linalg.norm((lab - cover_lab) * [0.5, 1.0, 1.0], axis=-1) <= OCC_REACH_NEAR
    src = (keep > 0) & lower & near
    zone = (ty >= OCC_REACH) & ~lower
    if src.sum() < 12 or not zone.any():
        return None
    ext = cv2.morphologyEx((plain & near & zone).astype(np.uint8), cv2.MORPH_OPEN, np.ones((3, 3), np.uint8))
    _, cc = cv2.connectedComponents(ext | src.astype(np.uint8), connectivity=8)
    ext = np.isin(cc, np.unique(cc[src])) & zone  # joined to the kept cover
    if not ext.any():
        return None
    # the cover's outline without the rule's ragged edge: closed over ~6 template px, holes filled
    shape = closed_outline(ext | ((keep > 0) & near), scale, 6.0)
    # the rule's texture window straddles the cover's edge, where it finds no cover: grown back over the cover's
    # own colour (``near``) up to that window's reach
    k = 2 * max(1, int(round(OCC_REACH_GROW / scale))) + 1
    shape |= cv2.dilate(shape, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (k, k))) & near.astype(np.uint8)
    # faded in from its edge, inside it only, and in over OCC_REACH_RAMP below OCC_REACH
    inside = cv2.distanceTransform(shape, cv2.DIST_L2, 3)
    w = ease(inside / max(OCC_REACH_SOFT / scale, 1.0)) * ease((ty - OCC_REACH) / OCC_REACH_RAMP)
    return w.astype(np.float32), fill_unknown(rgb, src, OCC_REACH_FILL / scale)
