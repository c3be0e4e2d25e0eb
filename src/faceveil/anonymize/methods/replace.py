"""Face replacement: a new, non-existent face in the original pose (decoupled design).

Identity and appearance never come from the original face's pixels:

- identity: an average of k donors of k different people from a bank, picked by a
  seed (see ``anonymize/identity.py``);
- pose: only the detection's box and 5 landmarks: position, size, roll and the head's
  turn (yaw, from where the nose and mouth sit between the eyes), not the landmarks'
  own layout (which is part of who the person is); the template follows the turn with
  a narrower far side, and the identity is mirrored to the head's side;
- shape (``shape=face``, the default): the new face replaces a feathered ellipse
  from forehead to chin drawn in the template and warped with the face, joined with
  an ellipse in the detection box that carries the jaw line, so hair,
  ears, background and the box corners keep their pixels; it covers eyes, brows,
  nose, mouth and jaw line (tests/test_replace_look.py checks that against dlib's
  68 points) and fades out softly where it meets the region's border. Faces without
  usable landmarks get the whole region filled from the context around the box (fail
  closed) and the face placed by a mean 5-point shape fitted to the box (``no_landmarks``);
- harmonization, from visible pixels only (a ring outside the mask): the tone of
  the person's visible skin (skin-coloured pixels of the ring: neck, ears,
  forehead edge; with none in view, the face's own tone, lit no brighter than its surroundings),
  a first-order light gradient fitted to them, the photo's
  noise level and the visible skin's fine texture; feathered blend or Poisson cloning (``harmonizer=poisson``);
  ``harmonizer=unet`` then corrects the pasted face with the learned U-Net
  (``anonymize/harmonizer.py``), which sees only the pasted face, its mask and
  the context-filled window, never the original face.

The only opt-in exception is ``appearance=blurred``: a 4x4 colour summary of the
original region sets the face's low-frequency shading.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from functools import lru_cache
from typing import Literal, NamedTuple

import cv2
import numpy as np

from ...detections import box_inside, box_overlap
from ...registry import param
from ..bank import CANON_BOX, SIZE, TEMPLATE, face_mask, load_bank, plausible, yaw_ratio
from ..base import METHODS, Method, crop
from ..box_landmarks import estimate_landmarks
from ..identity import Synthesized, Synthesizer, mirror_side, seed_for
from .blur import gaussian_blur, odd

WORK_FACE = 96  # faces are composed at this box width at most, then resized (bank faces are 68 px wide)

# The face-shaped region, in template pixels (bank.SIZE): an ellipse from the forehead
# (brows at y ~34) to below the chin (CenterFace's box ends at 115.5), cheek to cheek, fully
# replaced, then feathered outward over FEATHER of its radius. Checked against dlib's 68
# points on deepface-unit and facemask faces (tests/test_replace_look.py).
FACE_CX, FACE_CY, FACE_AX, FACE_AY = 64.0, 77.0, 42.0, 55.0
FEATHER = 0.12
# ... joined (maximum) with an ellipse in the detection box's own frame, in half box sizes from the
# box's centre: the jaw line sits on the box's sides and bottom far more steadily than it follows
# the 5 landmarks (a wide jaw, a turned head, a masked face), so this one carries the jaw: fully
# replaced up to it, feathered (BOX_FEATHER of its radius) only outside. Fitted on dlib's 68 points
# (jaw points 2-14) of deepface-unit and facemask faces (bench/replace_results.md).
BOX_CV, BOX_AU, BOX_AV = 0.15, 1.10, 1.00
# The box ellipse's feather, wider than FEATHER: the seam (gradient along the changed area's border over the
# photo's own) 1.26 -> 1.19 on facemask, 1.08 -> 1.04 on deepface-unit (bench/replace_results.md). Only
# outward, so the face stays covered; below RING[0] - 1, so the sampling ring stays outside it. The landmark
# ellipse keeps 0.12: wider, a big head's soft edge reaches into the region's corners (test_replace_look).
BOX_FEATHER = 0.17
NESTED_INSIDE = 0.95  # a strong box this much inside a larger strong one is part of its face (Replace.apply)
# Two boxes that both get a face and overlap by this share of the smaller one's area: one face boxed twice, and the
# weaker gets the soft blur under the other's face. The video default returns offset boxes of one small face whose
# tracks each scored >= min_score once (the hikers clip: up to 4 new faces on one hiker's face); photos rarely do.
# Pairs overlapping >= 0.5 (tune halves; research/replace_weak.py `dupes`): facemask 1 on two labelled faces and
# none on one; WIDER 7 on two, 15 on one (2 left under 0.5); bench_video.py's labelled 1080p clips 1 / 30 (0 left).
# 0.6 left more duplicates (9 + 5) for fewer faces lost (2 + 0).
DUPLICATE_OVERLAP = 0.5
HELD_GROW = 1.1  # a skipped video frame's face: its box's ellipse grown this much (the tracker's box is a guess)
# A tracked face the detector lost (a held box without landmarks: no detection, not a skipped frame between two)
# keeps its new face HELD_FACE_S, then gets the soft blur a weak box gets until it is found again. The face is drawn
# where the track guesses it; the longer it is lost, the less often a face is there (hidden behind someone, turned
# away, gone): on the shared clips, a `thorough` face lay where the face was drawn on 69-83 % of the frames 1-2
# frames after the loss, 31-62 % at 3-4, 27-44 % at 5-8, 17-30 % at 9-15, 0-16 % later. Drawn over the whole hold
# (1 s), the hikers clip got faces on the hair and back of the woman in front and in the trees: 2,835 faces drawn
# on no reference face over the four clips. 0.2 s (6 frames at 30 fps): 836 faces drawn on no face, 377 blurred on
# one, 112 tracks that go from a face to the blur and back; 4 frames had the fewest errors (1,150 against 1,213)
# but 195 such switches (research/replace_weak.py, `lost`).
HELD_FACE_S = 0.2
EDGE_FADE = 0.05  # of the box width: the soft edge where the mask meets the region's border
RING = (1.18, 1.5)
OTHER_FACE = 1.1  # the ring leaves out the other faces' boxes grown this much
OTHERS_OUT_OF_RING = True
DARK_MARGIN = 15.0  # L*: with no skin in view, the face's skin at most this much above the ring's DARK_PCT percentile
DARK_PCT = 98
DARK_FULL = 50.0  # L*: where that percentile is darker, the margin shrinks in proportion (a dark scene's faces)
DONOR_CX, DONOR_CY, DONOR_AX, DONOR_AY = 64.0, 76.0, 36.0, 50.0  # the averaged face without its hair and neck
# A photo's face: the donors' face is drawn FACE_SCALE times as large as the 5-point fit places it, about the centre
# of its ellipse (the mask stays as it is). The fit sizes the template by the eyes, nose and mouth, and the averaged
# face it places (full weight out to 0.9 of the ellipse above) is narrower than the mask, which must reach the
# person's jaw (the face and box ellipses): the band between showed the fill continued from the face's edge, a flat
# skin-coloured plate around a face too small for its head, on 26 / 38 % of the fully replaced area (median face;
# deepface-unit / facemask tune; research/face_plate.py); at 1.15, 6 / 20 % (facemask held-out 40 -> 22 %),
# FD-dlib 0.253 -> 0.243. Larger features have less Laplacian energy (the central half box's sharpness 0.66 ->
# 0.52 on deepface-unit, the edges as wide), so the detail added at frame resolution (_add_detail) is scale**2 as
# strong (0.65). Growing the rim alone (the centre kept) made every face alike to dlib (pairs >= 0.6 apart 81 -> 33 %);
# 1.25 put the brows on the mask's top edge. A tracked face (video) is drawn TRACKED_FACE_SCALE as large about the
# eye line (template y TRACKED_ANCHOR_Y), so its eyes stay at the person's eye height: at 1.15 about the centre the
# talking head's light changed 0.233 a frame at a fixed box (tests/test_replace_video.py; the original 0.181, 1.0:
# 0.132), most of it in the eye half as the head moved; at 1.1 about the eye line 0.146 (7-bit build 0.152), the
# clips' plate 41 -> 30 %. Numbers: bench/replace_results.md.
FACE_SCALE = 1.15
TRACKED_FACE_SCALE = 1.1
TRACKED_ANCHOR_Y = 50.0  # the template's eye line
# Skin of the template face for its own tone (forehead, both cheeks, nose bridge); eyes, brows and mouth left out.
SKIN_SPOTS = ((64, 30, 12, 5), (44, 78, 7, 7), (84, 78, 7, 7), (64, 60, 4, 6))


class Drawn(NamedTuple):
    """One face as replace drew it: the region's pixels, the identity placed there (None: blurred, no donor
    face) and the harmonization used (L*a*b* shift, light gradient, scale; None: none), which its track keeps."""
    patch: np.ndarray
    identity: Synthesized | None = None
    tone: np.ndarray | None = None


@lru_cache(maxsize=4)
def _synthesizer(path: str, k: int, reject: bool) -> Synthesizer:
    return Synthesizer(load_bank(path or None), k=k, reject=reject)


@lru_cache(maxsize=2)
def _canon_masks(size: int, head: bool):
    alpha = face_mask(size, 0.1 if head else 0.06, head)
    s = size / SIZE
    bx1, by1, bx2, by2 = (v * s for v in CANON_BOX)
    ring = np.zeros((size, size), bool)
    cx, cy, hw, hh = (bx1 + bx2) / 2, (by1 + by2) / 2, (bx2 - bx1) / 2 * 1.05, (by2 - by1) / 2 * 1.05
    yy, xx = np.mgrid[0:size, 0:size]
    ring[(np.abs(xx + 0.5 - cx) > hw) | (np.abs(yy + 0.5 - cy) > hh)] = True
    ring &= alpha < 0.01
    return alpha, ring


def _blur(img: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian blur; large sigmas on a shrunk copy (a 50 px sigma at full size costs ~30 ms)."""
    if sigma <= 3:
        return cv2.GaussianBlur(img, (0, 0), sigma)
    h, w = img.shape[:2]
    f = 3.0 / sigma
    small = cv2.resize(img, (max(1, round(w * f)), max(1, round(h * f))), interpolation=cv2.INTER_AREA)
    small = cv2.GaussianBlur(small, (0, 0), 3.0)
    return cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR)


def _fill(img: np.ndarray, known: np.ndarray, size: float) -> np.ndarray:
    """Smooth fill of the unknown pixels from the known ones (normalized convolution,
    coarse to fine); OpenCV's Telea inpainting leaves streaks across large holes."""
    k = known.astype(np.float32)
    src = img.astype(np.float32) * k[:, :, None]
    out = np.broadcast_to(img[known].reshape(-1, 3).mean(axis=0), src.shape).astype(np.float32)
    for sigma in (size / 2, size / 6, size / 20):
        sigma = max(sigma, 1.0)
        den = _blur(k, sigma)
        est = _blur(src, sigma) / np.maximum(den, 1e-6)[:, :, None]
        w = np.clip(den * 4, 0, 1)[:, :, None]  # finer scales only where enough known pixels are near
        out = out * (1 - w) + est * w
    out[known] = img[known]
    return np.clip(out + 0.5, 0, 255).astype(np.uint8)


def _lab(img: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(img.astype(np.float32) / 255.0, cv2.COLOR_RGB2Lab)


def _rgb(lab: np.ndarray) -> np.ndarray:
    return np.clip(cv2.cvtColor(lab, cv2.COLOR_Lab2RGB) * 255.0 + 0.5, 0, 255).astype(np.uint8)


# A black-and-white (or sepia) photo, or a night camera's infrared footage, got a new face in full colour: the face
# takes the scene's colourfulness. SCENE_GREY: the 99th percentile of the frame's chroma away from its median colour
# (a*b*, on a <= 160 px copy); at or under the first value the face is drawn in the scene's own colour at each
# lightness (its tone curve: grey in a grey photo, brown in a sepia one) with its lightness kept, from the second up
# as it is, in between with its chroma scaled. Shared sets (that percentile): colour photos read >= 10.8 but one (a
# pale face and a black-and-white mask on white, 6.5), the shared clips >= 18.4; black-and-white and toned photos
# 0.1-7.7 (WIDER val 9 of 476, LFW 5 of 2,659; one sepia WIDER photo reads 9.4): research/replace_weak.py grey.
SCENE_GREY = (5.0, 10.0)
SCENE_BINS = 16  # the tone curve: the median a*b* in this many bands of L*


def _scene_colour(frame: np.ndarray) -> tuple[float, np.ndarray]:
    """(how much of a face's own chroma to keep, 0..1; the scene's tone curve: rows L*, a*, b*) for ``frame``."""
    h, w = frame.shape[:2]
    f = min(1.0, 160.0 / max(h, w, 1))
    small = cv2.resize(frame, (max(1, round(w * f)), max(1, round(h * f))), interpolation=cv2.INTER_AREA) \
        if f < 1 else frame
    lab = _lab(small).reshape(-1, 3)
    spread = float(np.percentile(np.linalg.norm(lab[:, 1:] - np.median(lab[:, 1:], axis=0), axis=1), 99))
    lo, hi = SCENE_GREY
    keep = float(np.clip((spread - lo) / (hi - lo), 0.0, 1.0))
    if keep >= 1.0:
        return keep, np.zeros((3, 0), np.float32)
    band = np.minimum((lab[:, 0] * SCENE_BINS / 100).astype(int), SCENE_BINS - 1)
    curve = [(np.float32((b + 0.5) * 100 / SCENE_BINS), *np.median(lab[band == b, 1:], axis=0))
             for b in range(SCENE_BINS) if (band == b).sum() >= 8]
    return keep, np.array(curve, np.float32).reshape(-1, 3).T  # (3, 0) when no band has 8 pixels (a 2x2 image)


def _in_scene_colour(patch: np.ndarray, under: np.ndarray, scene: tuple[float, np.ndarray]) -> np.ndarray:
    """``patch`` with the chroma of the pixels it changes (against ``under``, the frame's pixels there) scaled
    toward the scene's tone curve (``_scene_colour``); the pixels it leaves as they are stay byte for byte."""
    keep, curve = scene
    if keep >= 1.0 or curve.shape[1] == 0:
        return patch
    changed = (patch != under).any(axis=-1)
    if not changed.any():
        return patch
    lab = _lab(patch[changed][None])[0]
    for c in (1, 2):
        tone = np.interp(lab[:, 0], curve[0], curve[c])
        lab[:, c] = tone + keep * (lab[:, c] - tone)
    out = patch.copy()
    out[changed] = _rgb(lab[None])[0]
    return out


def _stats(lab: np.ndarray, where: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    if where.sum() < 16:
        return None
    px = lab[where]
    return px.mean(axis=0), px.std(axis=0) + 1e-3


def _blurred(frame: np.ndarray, region) -> np.ndarray:
    """The region's patch under a blur as strong as the face is large: what replace gives a face it cannot place."""
    return gaussian_blur(crop(frame, region), odd(max(region.face_width, region.face_height)))


TURN_RUN = 2  # detections in a row that must say so before a tracked face turns away (blurred) or back (a face)


def _nested(boxes: np.ndarray, i: int, among: np.ndarray) -> bool:
    """Whether box ``i`` lies at least NESTED_INSIDE inside a larger box of ``among`` (indices into ``boxes``)."""
    o = boxes[among[among != i]]
    if not len(o):
        return False
    inside = box_inside(boxes[i], o)[0]
    larger = np.prod(o[:, 2:] - o[:, :2], axis=1) > np.prod(boxes[i, 2:] - boxes[i, :2])
    return bool((larger & (inside >= NESTED_INSIDE)).any())


def _lost_frames(fps: float | None) -> int:
    """HELD_FACE_S in frames of a video at ``fps`` (30 without one)."""
    return max(1, round(HELD_FACE_S * (fps if fps and fps > 0 else 30)))


def _found(region) -> bool:
    """Whether a region's face was found on its frame: detected, or a skipped video frame's held box with landmarks
    interpolated between two detections (a lost face's held box and a back-filled one have none)."""
    return region.source == "detected" or region.landmarks is not None


def _duplicates(boxes: np.ndarray, scores: np.ndarray, regions: list, weak: list[bool]) -> list[int]:
    """Positions (into ``regions``) of the boxes that get a face but overlap one ranked above them that keeps its face
    by DUPLICATE_OVERLAP of the smaller box's area or more: one face boxed twice. Ranked: a face found on this frame
    first (detected, or a skipped frame's landmarks between two detections), then by score, then the larger: a
    lost face's held box (a guess, grown with its uncertainty) never takes a found face's place, and a video's
    tracks keep their order from frame to frame (their scores are the tracks' best)."""
    def rank(k: int) -> tuple:
        r = regions[k]
        return not _found(r), -float(scores[r.index]), -float(np.prod(boxes[r.index, 2:] - boxes[r.index, :2]))

    kept: list[int] = []
    out = []
    for k in sorted((k for k in range(len(regions)) if not weak[k]), key=rank):
        if kept and (box_overlap(boxes[regions[k].index], boxes[kept])[0] >= DUPLICATE_OVERLAP).any():
            out.append(k)
            continue
        kept.append(regions[k].index)
    return out


def _soft_blurred(frame: np.ndarray, region, box: np.ndarray) -> np.ndarray:
    """``_blurred`` with a soft edge: the whole detected ``box`` blurred, the region's margin around it (1.25x the box
    by default) fading out to the region's edge, its corners rounded (a superellipse of power 4 in the margin). A
    face replace cannot place, or a weak detection, showed a sharp-edged rectangle of blur among the new faces; as
    private where the face is (its box is covered as a drawn face's is, in full)."""
    patch = crop(frame, region).astype(np.float32)
    soft = _blurred(frame, region).astype(np.float32)
    bx1, by1, bx2, by2 = np.asarray(box, np.float64)
    rx1, ry1, rx2, ry2 = region.box
    cx, cy = (bx1 + bx2) / 2, (by1 + by2) / 2
    hx, hy = max((bx2 - bx1) / 2, 1e-6), max((by2 - by1) / 2, 1e-6)
    mx, my = max((rx2 - rx1) / 2 - hx, 1.0), max((ry2 - ry1) / 2 - hy, 1.0)  # the margin, frame px (>= 1)
    yy, xx = np.mgrid[region.y1:region.y2, region.x1:region.x2].astype(np.float32) + 0.5
    ex = np.maximum(np.abs(xx - cx) - hx, 0) / mx
    ey = np.maximum(np.abs(yy - cy) - hy, 0) / my
    w = _ease(1.0 - (ex ** 4 + ey ** 4) ** 0.25)[..., None]
    return np.clip(patch + (soft - patch) * w + 0.5, 0, 255).astype(np.uint8)


@METHODS.register("replace")
class Replace(Method):
    """A new face (average of >= 3 donors, never the original's pixels) in the original pose.

    Identity: the seed picks an identity from the bank (same seed, same face).
    Faces without landmarks or under `min_landmark_face` px get the face placed by a
    mean face shape fitted to the box (`no_landmarks`), as do faces cut by the frame's
    edge that face the camera (their box grown past that edge); profiles and turned
    heads whose landmarks a similarity cannot fit get a strong blur (counted in `counts`),
    as do weak detections (`min_score`: most of them are no face; in a video, weak tracks), with a soft
    edge, boxes inside a larger detected face's box (parts of that face: it gets one new face), and in a
    video a face lost for more than HELD_FACE_S (0.2 s) until it is found again.
    In a black-and-white photo the face has no colour.
    """

    uses_rng = True
    uses_landmarks = True

    @dataclass(frozen=True)
    class Params:
        bank: str = param("", "donor or averages bank (.npz from `faceveil bank build`); empty: the bank shipped "
                          "with faceveil (averages of 5 people each)")
        k: int = param(5, "people averaged per identity when the bank holds single donors (>= 3)")
        identity: int = param(-1, "identity seed: >= 0 gives every face this identity (combined with the track id "
                               "in video); -1 draws one per face from the run's seed")
        harmonizer: Literal["classic", "poisson", "unet"] = param(
            "classic", "classic: Lab colour transfer from the context ring + feathered blend; poisson: "
            "OpenCV seamless cloning; unet: classic, then the learned U-Net corrects colour and light")
        harmonizer_model: str = param("", "ONNX model for harmonizer=unet (`faceveil train harmonizer`); empty: "
                                      "the one shipped with faceveil")
        color_strength: float = param(0.9, "how far the face's colour moves toward the person's visible skin "
                                      "(shape=face) or the context ring (0..1)")
        appearance: Literal["none", "blurred"] = param(
            "none", "blurred: let a 4x4 colour summary of the original region set the light (opt-in: it uses "
            "the original pixels)")
        paste: Literal["face", "head"] = param("head", "shape=region only. face: paste the face only (forehead to "
                                               "chin), fill the rest of the region from the context; head: also the "
                                               "donors' averaged hair")
        shape: Literal["face", "region"] = param(
            "face", "face: replace a feathered face-shaped ellipse warped from the landmarks (hair and background "
            "keep their pixels); region: the whole region, filled from the context around it. Faces without usable "
            "landmarks get the whole region (see no_landmarks)")
        grain: bool = param(True, "add noise and fine skin texture so the face is as grainy and detailed as the photo "
                           "around it (shape=face)")
        occluders: Literal["keep", "replace"] = param(
            "keep", "shape=face. keep: a mask, scarf or hand over the lower face keeps its pixels below the "
            "nostrils (smooth, not skin-coloured, covering the mouth) and goes on up to its own top edge in its "
            "colours (drawn, not kept); eyes, brows and nose are always replaced. replace: replace it too")
        min_landmark_face: float = param(12.0, "faces narrower than this (px) are placed by the box (no_landmarks), "
                                         "not the landmarks")
        reject: bool = param(True, "with a donor bank: redraw averages that dlib matches to a donor, as an aligned "
                             "crop and where placed in the photo (else blurred after 8 draws; needs dlib)")
        no_landmarks: Literal["estimated", "estimated-keep", "fitted"] = param(
            "estimated", "shape=face, faces without usable landmarks (none, or under min_landmark_face): "
            "estimated: the face-shaped face placed by a mean 5-point shape fitted to the box, over the whole region "
            "filled from its context; estimated-keep: the same, but with occluders=keep a mask over the lower face "
            "keeps its pixels as on the landmark path (opt-in: no gain in `eval train` at two seeds, "
            "docs/learned-models.md); fitted: the older frontal paste fitted to the box. estimated and fitted "
            "rebuild the whole region")

        min_score: float = param(
            0.4, "detections scoring under this get a soft-edged strong blur instead of a new face: most "
            "of them are no face (a shirt, a medal, a toy, a backpack), and a face drawn there is worse than a blur; "
            "in a video, by the best score of the face's track so far in its shot (0: a face on every detection)")

        def __post_init__(self):
            if self.k < 3:
                raise ValueError("k must be at least 3")
            if not 0 <= self.color_strength <= 1:
                raise ValueError("color_strength must be between 0 and 1")
            if not 0 <= self.min_score <= 1:
                raise ValueError("min_score must be between 0 and 1 (a detection's score)")

    def __init__(self, params=None):
        super().__init__(params)
        p = self.params
        self.synth = _synthesizer(p.bank, p.k, p.reject)
        self.unet = None
        if p.harmonizer == "unet":
            from ..harmonizer import load_harmonizer

            self.unet = load_harmonizer(p.harmonizer_model)
        self.counts: Counter = Counter()  # replaced / fitted / estimated / interpolated / blurred, over its lifetime
        self._placed: dict[int, int | None] = {}  # a track's seed -> the draw that passed (None: blurred), donors banks
        self._tone: dict[int, np.ndarray] = {}  # a track -> its harmonization, smoothed over its frames
        self._yaw: dict[int, float] = {}  # a track -> the head turn its identity was drawn for
        self._lm: dict[int, tuple] = {}  # a track -> (frame, before it, now): its landmarks relative to its box
        self._cover: dict[int, bool] = {}  # a track -> whether its last detected face kept an occluder
        self._turned: dict[int, tuple] = {}  # a track -> (turned away, detections in a row saying otherwise)
        self._size: dict[int, tuple] = {}  # a track -> its last detected box's width and height
        self._seen: dict[int, int] = {}  # a track -> the frame (apply call) its face was last found on
        self._lost_frames = _lost_frames(None)  # begin_stream sets it from the video's fps
        self._frames = 0  # apply calls: which frame a track's smoothing state was last updated on
        self._stream_seed = 0  # this video's identities: drawn by begin_stream from the run's seed

    # what a video's tracks leave behind, per track id
    STREAM_STATE = ("_placed", "_tone", "_yaw", "_lm", "_cover", "_turned", "_size", "_seen")
    TRACK_STATE_MAX = 4096  # tracks each of them remembers; past that it starts again (a very long crowd video)

    @classmethod
    def _store(cls, state: dict, key: int, value) -> None:
        """``state[key] = value``, the dict emptied first once it holds TRACK_STATE_MAX tracks."""
        if len(state) > cls.TRACK_STATE_MAX:
            state.clear()
        state[key] = value

    def begin_stream(self, rng: np.random.Generator | None = None, fps: float | None = None) -> None:
        """A new video: its tracks are new (their ids start again), and so are their identities (drawn from
        ``rng``: another ``--seed``, other faces; without one, those of seed 0). ``fps`` sets how long a lost
        face keeps its new face (HELD_FACE_S; 30 fps without one)."""
        for name in self.STREAM_STATE:
            getattr(self, name).clear()
        self._stream_seed = int(rng.integers(2**62)) if rng is not None else 0
        self._lost_frames = _lost_frames(fps)

    # A track's harmonization (tone, light, the dark limit) follows its ring, which changes with every frame's
    # landmarks and the mouth's motion: the face's brightness jumped from frame to frame (shared talking head: mean
    # |change of L*| 3.3 a frame over the central half box, the original's 0.18; smoothed, 0.55). It is smoothed
    # along the track (exponential, TONE_EMA of the new frame's value): a real change of light still comes through
    # in a few frames.
    TONE_EMA = 0.25

    def _track_tone(self, track: int, tone: np.ndarray | None) -> np.ndarray | None:
        """The harmonization to use for this face: ``tone`` itself without a track, else smoothed along it (the
        face's Drawn.tone; ``apply`` keeps it for the track once the face is drawn)."""
        prev = self._tone.get(track) if track >= 0 else None
        if prev is not None:
            tone = prev if tone is None else prev + self.TONE_EMA * (tone - prev)
        return tone

    # A near-frontal face's yaw (from its 5 landmarks) wavers around 0 from frame to frame, and the identity is
    # mirrored to the side the head turns to (identity.mirror_side): the new face flipped left-right between
    # frames (talking head: yaw -0.018 -> -0.036). A track keeps the side it was drawn for until its head has
    # clearly turned (|yaw| >= YAW_HOLD).
    YAW_HOLD = 0.08

    def _track_yaw(self, track: int, yaw: float) -> float:
        if track < 0 or not np.isfinite(yaw):
            return yaw
        prev = self._yaw.get(track)
        if prev is not None and mirror_side(yaw) != mirror_side(prev) and abs(yaw) < self.YAW_HOLD:
            return prev
        self._store(self._yaw, track, yaw)
        return yaw

    # CenterFace's landmarks jitter by a few pixels from one detection to the next while the box (smoothed by the
    # tracker) stays: the new face shifted and changed scale within its box every frame (talking head: its
    # central half box's L* on an 8x8 grid changed 3.9 a frame, the original's 1.3). A track's landmarks are
    # smoothed relative to its current box (exponential, LM_EMA of the new frame's), so the face follows the box's
    # motion at once and only the jitter within it is averaged out; the box ellipse still covers the box.
    LM_EMA = 0.5

    def _track_landmarks(self, track: int, lm: np.ndarray, box: np.ndarray) -> np.ndarray:
        """The face's landmarks smoothed along its track; drawn again on the same frame (a redraw), the same."""
        wh = np.maximum(box[2:] - box[:2], 1.0)
        rel = (lm - box[:2]) / wh
        frame, before, now = self._lm.get(track, (None, None, None))
        prev = before if frame == self._frames else now  # this frame's face again: from the state before it
        if prev is not None:
            rel = prev + self.LM_EMA * (rel - prev)
        self._store(self._lm, track, (self._frames, prev, rel))
        return box[:2] + rel * wh

    def _lost(self, detections, regions) -> list[bool]:
        """Per region: a tracked face lost for more than HELD_FACE_S (its held box, without landmarks, since the
        frame its face was last found on: detected, or a skipped frame's landmarks between two detections)."""
        out = []
        for r in regions:
            track = int(detections.track_id[r.index])
            if track < 0:
                out.append(False)
            elif _found(r):
                self._store(self._seen, track, self._frames)
                out.append(False)
            else:
                seen = self._seen.get(track)
                out.append(r.source == "held" and seen is not None and self._frames - seen > self._lost_frames)
        return out

    def _held_face(self, track: int, region, box: np.ndarray) -> np.ndarray | None:
        """Landmarks for a tracked face held or back-filled without any (None: estimated from its box as for any
        face without landmarks). A held box grows while it is held (and is the union of where the face was and
        where it may have gone): drawn to fill it, the face grew with it, to 2-5x the person's face on the
        marathon clip (track 468: a 199 px box, its last detection 73 px high). The face keeps its track's last
        detected size (HELD_GROW larger, as a skipped frame's face with landmarks), centred in the box; the
        whole region is still filled from its context first, so every pixel of the box is changed."""
        size = self._size.get(track) if track >= 0 and region.source in ("held", "backfilled") else None
        if size is None:
            return None
        w, h = min(box[2] - box[0], size[0] * HELD_GROW), min(box[3] - box[1], size[1] * HELD_GROW)
        if w * h >= 0.8 * (box[2] - box[0]) * (box[3] - box[1]):
            return None  # about the face's own size: as before
        c = (box[:2] + box[2:]) / 2
        return estimate_landmarks(np.r_[c[0] - w / 2, c[1] - h / 2, c[0] + w / 2, c[1] + h / 2])

    def _track_turned(self, track: int, turned: bool | None) -> bool:
        """Whether a tracked face counts as turned away: its first detection says, then TURN_RUN detections in
        a row that say otherwise flip it (``turned``: this detection's landmarks do not fit; None: a frame
        without a detection's landmarks, which changes nothing)."""
        state = self._turned.get(track)
        if turned is None:
            return bool(state and state[0])
        if state is None:
            state = (turned, 0)
        elif turned != state[0]:
            state = (turned, 0) if state[1] + 1 >= TURN_RUN else (state[0], state[1] + 1)
        else:
            state = (state[0], 0)
        self._store(self._turned, track, state)
        return state[0]

    def _keep_tone(self, track: int, tone: np.ndarray | None) -> None:
        if track >= 0 and tone is not None:
            self._store(self._tone, track, tone)

    # identities -----------------------------------------------------------
    def identity_seed(self, track_id: int, index: int, rng: np.random.Generator) -> int:
        """Tracked faces keep one identity per track (the identity parameter's, or the video's draw: see
        begin_stream); otherwise the identity parameter fixes it, or the run's generator draws one."""
        ident = self.params.identity
        if track_id >= 0:
            return seed_for(ident if ident >= 0 else self._stream_seed, "track", track_id)
        if ident >= 0:
            return ident
        return int(rng.integers(2**62))

    def apply(self, frame, detections, compositor, rng):
        self._frames += 1
        out = frame.copy()
        check = self.synth.bank.kind == "donors" and self.params.reject
        boxes = np.asarray(detections.xyxy, np.float64).reshape(-1, 4)
        scene = _scene_colour(frame)  # from the input: the faces drawn so far are no part of the scene
        regions = compositor.regions(detections, frame.shape)
        # identities drawn for every region in order, the weak ones too: the rng gives each face the identity it
        # had when all regions were drawn in one pass
        seeds = [self.identity_seed(int(detections.track_id[r.index]), r.index, rng) for r in regions]
        # Weak detections. The default preset is recall-first: on WIDER val's tune half it returns more boxes on no
        # labelled face (>= 24 px: 4,810: uniforms, medals, a dog, toys, the gap between two heads; under 24 px:
        # 6,413 against 1,023 on faces) than on faces, and replace drew a new face on every one. Under min_score they
        # get the strong blur replace gives a face it cannot place, with a soft edge. New faces on no face / on faces,
        # tune halves: WIDER 10,883 / 4,987 -> 312 / 3,199, facemask 1,777 / 1,468 -> 122 / 1,213; 0.4 made the
        # fewest of both errors on both (research/replace_weak.py; stop 36 gated boxes >= 24 px only, on the belief
        # that smaller weak ones were mostly far faces: they are 84-86 % no face, and 4-26 small faces a photo were
        # drawn on shirts, walls and flags). In a video a tracked box scores its track's best detection so
        # far in its shot (video/tracking.py): a track is a blur or a face as a whole, from its first frame, and
        # never goes back from a face to the blur, and a box carried over a scene cut (score 0) is blurred
        # (bench_video.py's labelled clips, held-out: faces on no face 9,403 -> 812 face-frames, real faces blurred
        # 748 of 3,062). The blurs go first and the faces over them: a weak box on a face (a second, offset track
        # of one face in a video, a box on a face's edge) blurred the new face drawn before it.
        weak = [bool(detections.score[r.index] < self.params.min_score) for r in regions]
        lost = self._lost(detections, regions)
        # Parts of a larger face. On a large photo of one big face the default preset's passes at other sizes also
        # box parts of it (eyes to mouth, half the face), and a new face was drawn on each: a person got two or three
        # faces over each other. A box at least NESTED_INSIDE inside a larger one that gets a face is taken as part of
        # that face: it gets the soft blur a weak one gets, under the larger face (what that face's mask leaves of its
        # region stays hidden; fail closed: were it a face of its own, it is blurred, never shown). deepface-unit: 5
        # such boxes on 4 of 64 photos; the tune halves: none on facemask or WIDER (at 0.8 inside, WIDER had one,
        # a face of its own), research/nested_faces.py. Only a box its detector found holds others: in a video a held
        # or back-filled box grows with its uncertainty and took in whole neighbours (the marathon clip's first 2 s:
        # 2,092 of 11,690 strong boxes inside one; inside a detected one: 21).
        guessed = np.isin(np.asarray(detections.sources), ("held", "backfilled"))
        holders = np.flatnonzero((detections.score >= self.params.min_score) & ~guessed)
        for k, region in enumerate(regions):
            if not weak[k] and _nested(boxes, region.index, holders):
                weak[k] = True
                self.counts["nested_blurred"] += 1
            elif weak[k]:
                self.counts["weak_blurred"] += 1
            elif lost[k]:
                weak[k] = True
                self.counts["lost_blurred"] += 1
        for k in _duplicates(boxes, detections.score, regions, weak):
            weak[k] = True
            self.counts["duplicate_blurred"] += 1
        for region, is_weak in zip(regions, weak):
            if is_weak:
                compositor.blend(out, region, _soft_blurred(out, region, boxes[region.index]))
        for region, seed, is_weak in zip(regions, seeds, weak):
            if is_weak:
                continue
            track = int(detections.track_id[region.index])
            box = boxes[region.index]
            others = np.delete(boxes, region.index, axis=0)  # their faces are no part of this one's surroundings
            if check:
                self._place_checked(out, region, box, seed, compositor, track, others, scene)
            else:
                # drawn on `out`, not `frame`: a neighbour would restore this face
                drawn = self.draw_face(out, region, box, seed, track, others, scene)
                compositor.blend(out, region, drawn.patch)
                self._keep_tone(track, drawn.tone)
        return out

    # A donors bank's averages are drawn per face, with the aligned donor check only (Synthesizer). Placed into a
    # photo, such an average can still come within dlib's MATCH of one of its donors (research/donor_drift.py: 15 %
    # of replaced LFW faces), which `bank build --average` and the shipped bank rule out with photos to place into
    # (anonymize/placement.py). Here the photo being anonymized is that photo: dlib's descriptor of the output at
    # the face (dlib's box mapped from the landmarks) must stay >= MATCH from every photo of the average's donor
    # people, or the next identity is drawn; after PLACED_DRAWS draws the face is blurred (fail closed). A track
    # keeps the identity its first face passed with (a video runs in one process, frame after frame); other faces
    # are each checked, so a photo's output never depends on which photos a worker saw before it. ~0.1 s of dlib
    # per face and draw.
    PLACED_DRAWS = 8

    def _place_checked(self, out, region, box, seed, compositor, track: int, others=None, scene=None) -> None:
        if track >= 0 and seed in self._placed:  # the track's draw, decided on its first face
            passed = self._placed[seed]
            if passed is not None:
                drawn = self.draw_face(out, region, box, passed, track, others, scene)
                compositor.blend(out, region, drawn.patch)
                self._keep_tone(track, drawn.tone)
        else:
            passed, tone = self._first_draw_away_from_donors(out, region, box, seed, compositor, track, others,
                                                             scene)
            if track >= 0:
                self._store(self._placed, seed, passed)
            if passed is not None:
                self._keep_tone(track, tone)
        if passed is None:  # every draw came within MATCH of a donor: fail closed
            self.counts["placement_blurred"] += 1
            compositor.blend(out, region, _soft_blurred(out, region, box))

    def _first_draw_away_from_donors(self, out, region, box, seed, compositor, track: int = -1,
                                     others=None, scene=None) -> tuple[int | None, np.ndarray | None]:
        """Blend draws of ``seed`` into ``out`` until one passes the check: (its seed, its tone); after
        PLACED_DRAWS fail, (None, None) and ``out`` as it was."""
        before = out[region.slices].copy()
        for s in [seed] + [seed_for(seed, "placed", i) for i in range(1, self.PLACED_DRAWS)]:
            drawn = self.draw_face(out, region, box, s, track, others, scene)
            compositor.blend(out, region, drawn.patch)
            # no identity: no donor face was placed (blurred instead)
            if drawn.identity is None or self._far_from_donors(out, region, box, drawn.identity.donors):
                return s, drawn.tone
            self.counts["placement_redraws"] += 1
            out[region.slices] = before
        return None, None

    def _far_from_donors(self, out, region, box, people) -> bool:
        from ..identity import DLIB_BOX, MATCH, descriptor

        lm = region.landmarks
        dbox = box
        if lm is not None and np.isfinite(lm).all():
            m, _ = cv2.estimateAffinePartial2D(TEMPLATE, np.asarray(lm, np.float32))
            if m is not None:
                x1, y1, x2, y2 = DLIB_BOX
                pts = np.array([[x1, y1], [x2, y1], [x1, y2], [x2, y2]], np.float64) @ m[:, :2].T + m[:, 2]
                dbox = np.r_[pts.min(axis=0), pts.max(axis=0)]
        d = descriptor(out, dbox)
        return bool(np.linalg.norm(self.synth.donor_descriptors(people) - d, axis=1).min() >= MATCH)

    def render(self, frame, region, rng):  # the Method interface, when called region by region
        b = np.asarray(region.box, np.float64)
        c, half = (b[:2] + b[2:]) / 2, (b[2:] - b[:2]) / 2
        return self.render_face(frame, region, np.r_[c - half, c + half], int(rng.integers(2**62)))

    # one face ---------------------------------------------------------------
    def render_face(self, frame: np.ndarray, region, box: np.ndarray, seed: int, track: int = -1,
                    others: np.ndarray | None = None) -> np.ndarray:
        """One face's pixels for ``region`` (``draw_face``'s patch)."""
        return self.draw_face(frame, region, box, seed, track, others).patch

    def draw_face(self, frame: np.ndarray, region, box: np.ndarray, seed: int, track: int = -1,
                  others: np.ndarray | None = None, scene: tuple[float, np.ndarray] | None = None) -> Drawn:
        """One face for ``region``: its pixels, the identity placed (None where it was blurred) and the
        harmonization used (for its track). ``others``: the frame's other face boxes, left out of the ring that
        tone, light, grain and focus are read from (in a crowd a third of the faces had >= 30 % of their ring
        on a neighbour's face, replaced or not yet). ``scene``: ``_scene_colour`` of the frame (read from
        ``frame`` when not given): in a black-and-white scene the face is drawn without colour."""
        drawn = self._draw_face(frame, region, box, seed, track, others)
        scene = _scene_colour(frame) if scene is None else scene
        return drawn._replace(patch=_in_scene_colour(drawn.patch, frame[region.slices], scene))

    def _draw_face(self, frame: np.ndarray, region, box: np.ndarray, seed: int, track: int = -1,
                   others: np.ndarray | None = None) -> Drawn:
        p = self.params
        lm = region.landmarks
        bw, bh = box[2] - box[0], box[3] - box[1]
        if track >= 0 and region.source == "detected":
            self._store(self._size, track, (bw, bh))
        use_lm = lm is not None and min(bw, bh) >= p.min_landmark_face
        fits = use_lm and plausible(lm, box)
        if region.source == "held" and not fits:
            lm, use_lm = None, False  # interpolated landmarks that do not fit: the box alone, as before them
        if fits and track >= 0:
            lm = self._track_landmarks(track, np.asarray(lm, np.float64), box)
        wx1, wy1, wx2, wy2 = _work_window(frame.shape, region, box)
        detected = use_lm and region.source not in ("held", "backfilled")  # a detection's own landmarks
        if use_lm and not fits and p.shape == "face" and p.no_landmarks != "fitted" \
                and min(wx2 - wx1, wy2 - wy1) >= 2 and _cut_frontal(box, lm, frame.shape):
            # a face cut by the frame's edge: its landmarks do not fit, but it is no profile. Drawn from its box
            # grown past that edge to a face's shape (_render_estimated), the face cut by the same edge; blurred,
            # it was a large smooth capsule at the photo's edge
            lm, use_lm = None, False
        # A tracked face turned away (a profile: landmarks that do not fit) is blurred on all its frames, the ones
        # without landmarks too (skipped, back-filled), until it turns back: drawn from its box there, the stage
        # clip's singer in profile got a frontal face on 255 frames of 10 s (research/turned_tracks.py). The turn
        # is the track's (``_track_turned``: TURN_RUN detections in a row must agree), so that small faces whose
        # landmarks are judged now one way, now the other do not switch between a blur and a face. A track not
        # (yet) turned draws a detection whose landmarks do not fit from its box, as its skipped frames (stop 31:
        # blurred there, the track switched between a blur and a face every other frame).
        turned = track >= 0 and self._track_turned(track, bool(use_lm and not fits) if detected else None)
        if not turned and use_lm and not fits and track >= 0 and p.shape == "face" and p.no_landmarks != "fitted":
            lm, use_lm = None, False
        if turned or (use_lm and not fits) or min(wx2 - wx1, wy2 - wy1) < 2:
            # a track turned away, landmarks that do not fit the box, or a box that drifted off the frame to a
            # sliver (its work window under 2 px across: no face to draw; the masked-faces clip's backfilled box
            # x -1.05..0.11 raised)
            self.counts["blurred"] += 1
            return Drawn(_soft_blurred(frame, region, box))
        if not use_lm and p.shape == "face" and p.no_landmarks != "fitted":
            self.counts["estimated"] += 1
            return self._render_estimated(frame, region, box, seed, track, lm=self._held_face(track, region, box),
                                          others=others)
        if region.source == "held" and p.shape == "face" and p.no_landmarks != "fitted":
            # a video frame the detector skipped: landmarks interpolated between the detections around it
            # (video/tracking.py), drawn as a detected face is (the face mask and the box's ellipse, the frame's
            # own pixels around them), with the ellipse of the held box grown HELD_GROW for where the face may
            # lie, the track's harmonization as it is, and a cover kept as on its last detected face (see
            # _render_shaped). Drawn over the whole region filled from its context
            # instead (stop 29), the surroundings alternated between the frame's own pixels and the fill at
            # half the frame rate (talking head, stage); faces with a point showing > 1 / > 10 / > 50 %
            # (research/skipped_cover.py, 60 frames): hikers' skipped 7.8 / 0.1 / 0.1 % -> 1.2 / 0.3 / 0.1 %
            # (its detected frames: 2.0 / 0.3 / 0.3 %), stage 1.9 / 1.3 / 1.3 % -> 1.3 / 1.3 / 1.3 %.
            self.counts["interpolated"] += 1
            c, half = (box[:2] + box[2:]) / 2, (box[2:] - box[:2]) / 2 * HELD_GROW
            return self._render_shaped(frame, region, np.r_[c - half, c + half], np.asarray(lm, np.float64), seed,
                                       occluders=self._cover.get(track, False), track=track,
                                       measure_tone=track not in self._tone, others=others)
        self.counts["replaced" if use_lm else "fitted"] += 1
        if use_lm and p.shape == "face":
            return self._render_shaped(frame, region, box, np.asarray(lm, np.float64), seed, track=track,
                                       others=others)

        # Work window: the region plus context around the box, in frame pixels.
        window = wx1, wy1, wx2, wy2 = _work_window(frame.shape, region, box)
        win = frame[wy1:wy2, wx1:wx2]
        f = min(1.0, WORK_FACE / max(bw, 1.0))
        sw, sh = max(1, round((wx2 - wx1) * f)), max(1, round((wy2 - wy1) * f))
        small = cv2.resize(win, (sw, sh), interpolation=cv2.INTER_AREA) if f < 1 else win.copy()
        fx, fy = sw / (wx2 - wx1), sh / (wy2 - wy1)
        sbox = np.array([(box[0] - wx1) * fx, (box[1] - wy1) * fy, (box[2] - wx1) * fx, (box[3] - wy1) * fy])

        # Unknown: the detection box and every pixel the region covers. Filled from the context only.
        hole_full = _unknown(window, region, box)
        hole = (cv2.resize(hole_full.astype(np.float32), (sw, sh), interpolation=cv2.INTER_AREA) > 0
                if f < 1 else hole_full)
        small[hole] = 0

        ident = self.synth.identity(seed)
        face = ident.face
        size = face.shape[0]
        alpha_c, ring_c = _canon_masks(size, p.paste == "head")
        ring_c = _canon_masks(size, False)[1]
        scale_t = size / SIZE
        if use_lm:
            dst = (np.asarray(lm, np.float64) - [wx1, wy1]) * [fx, fy]
            m, _ = cv2.estimateAffinePartial2D((TEMPLATE * scale_t).astype(np.float32), dst.astype(np.float32))
        else:
            m = None
        if m is None:  # fit the template's box to the detection box
            cb = np.array(CANON_BOX) * scale_t
            sx, sy = (sbox[2] - sbox[0]) / (cb[2] - cb[0]), (sbox[3] - sbox[1]) / (cb[3] - cb[1])
            m = np.array([[sx, 0, sbox[0] - sx * cb[0]], [0, sy, sbox[1] - sy * cb[1]]])
        warped = cv2.warpAffine(face, m, (sw, sh), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        alpha = cv2.warpAffine(alpha_c, m, (sw, sh), flags=cv2.INTER_LINEAR, borderValue=0)

        known = ~hole
        if known.sum() >= 16:
            base = _fill(small, known, max(sbox[2] - sbox[0], sbox[3] - sbox[1]))
        else:  # no context at all (the face fills the frame): the bank face's own surroundings
            base = warped.copy()

        # Colour: the bank face's context ring -> the target's context ring.
        lab_face = _lab(warped)
        ring_t = known & self._ring(sbox, sw, sh, 1.0, 2.0)
        tgt = _stats(_lab(small), ring_t)
        src = _stats(_lab(face), ring_c)
        if tgt is not None and src is not None and p.color_strength > 0:
            (mt, st), (ms, ss) = tgt, src
            ratio = np.clip(st / ss, 0.6, 1.6)
            moved = (lab_face - ms) * ratio + mt
            lab_face += p.color_strength * (moved - lab_face)
        if p.appearance == "blurred":
            lab_face = self._shading_from_original(lab_face, frame, box, m, wx1, wy1, fx, fy, sw, sh)
        warped = _rgb(lab_face)

        if p.harmonizer == "poisson":
            comp = self._poisson(warped, base, alpha)
        else:
            a = alpha[:, :, None]
            comp = np.clip(warped * a + base * (1 - a) + 0.5, 0, 255).astype(np.uint8)
            if self.unet is not None:  # its input: the pasted face, its mask, the context-filled window
                comp = self.unet(comp, alpha)

        # Back to frame resolution; the original pixels survive only outside the box and the face.
        weight = np.maximum(hole.astype(np.float32), alpha)
        if f < 1:
            comp = cv2.resize(comp, (wx2 - wx1, wy2 - wy1), interpolation=cv2.INTER_LINEAR)
            weight = cv2.resize(weight, (wx2 - wx1, wy2 - wy1), interpolation=cv2.INTER_LINEAR)
        # The box and the region are always fully replaced, whatever the resizing did.
        weight[hole_full] = 1.0
        w3 = weight[:, :, None]
        out = np.where(w3 >= 1.0, comp, np.clip(comp * w3 + win * (1 - w3) + 0.5, 0, 255)).astype(np.uint8)
        ry, rx = region.y1 - wy1, region.x1 - wx1
        return Drawn(out[ry: ry + (region.y2 - region.y1), rx: rx + (region.x2 - region.x1)], ident)

    # the face-shaped path ---------------------------------------------------------
    def _render_estimated(self, frame: np.ndarray, region, box: np.ndarray, seed: int, track: int = -1,
                          lm: np.ndarray | None = None, others: np.ndarray | None = None) -> Drawn:
        """A face without usable landmarks: the whole region (and the box) is first filled from its context,
        as the box-fitted path does, then the face-shaped face is drawn over that fill at landmarks
        estimated from the box alone (box_landmarks.MEAN_SHAPE). The original face's pixels are never read:
        the shaped renderer sees a frame whose box and region hold the fill, and every pixel it leaves
        unchanged inside them is that fill (fail closed: at least what the fitted path changed)."""
        if lm is None:  # a face cut by the frame's edge: its landmarks estimated from a face's whole box
            box = _edge_extended(box, frame.shape)
        bw, bh = box[2] - box[0], box[3] - box[1]
        # the same window as _Geometry's, so the shaped renderer reads only filled or outside pixels
        window = wx1, wy1, wx2, wy2 = _work_window(frame.shape, region, box)
        win = frame[wy1:wy2, wx1:wx2]
        hole = _unknown(window, region, box)
        f = min(1.0, WORK_FACE / max(bw, 1.0))
        sw, sh = max(1, round((wx2 - wx1) * f)), max(1, round((wy2 - wy1) * f))
        if f < 1:
            small = cv2.resize(win, (sw, sh), interpolation=cv2.INTER_AREA)
            hole_s = cv2.resize(hole.astype(np.float32), (sw, sh), interpolation=cv2.INTER_AREA) > 0
        else:
            small, hole_s = win.copy(), hole
        small[hole_s] = 0
        if (~hole_s).sum() >= 16:
            fill = _fill(small, ~hole_s, max(bw * f, bh * f))
        else:  # no context at all (the face fills the frame): a flat mid-grey the face is drawn over
            fill = np.full_like(small, 128)
        if f < 1:
            fill = cv2.resize(fill, (wx2 - wx1, wy2 - wy1), interpolation=cv2.INTER_LINEAR)
        filled = frame.copy()
        filled[wy1:wy2, wx1:wx2][hole] = fill[hole]
        lm = estimate_landmarks(box) if lm is None else np.asarray(lm, np.float64)
        # no jaw to cover (the fill already hides the face): the face ellipse alone, without the box's.
        # A track that has a harmonization keeps it: around a filled region the ring shows the fill, not the
        # person's skin, and a tone read there alternated with the detected frames' (stage clip: the face's L*
        # jumped 5-20 between detected and skipped frames)
        drawn = self._render_shaped(filled, region, box, lm, seed, occluders=False, box_ellipse=False, track=track,
                                    measure_tone=track not in self._tone, others=others)
        if self.params.no_landmarks != "estimated-keep" or self.params.occluders != "keep":
            return drawn
        patch = drawn.patch
        # opt-in: an occluder over the lower face (mask, scarf) keeps its pixels, judged as the landmark path
        # does (_occluder_keep) but placed by the estimated shape
        g = _Geometry(frame.shape, region, box, lm)  # the occluder rule reads the whole ring (ring_all)
        small = cv2.resize(win, g.small_size, interpolation=cv2.INTER_AREA) if g.f < 1 else win
        lab_s = _lab(small)
        skin = _skin(small, lab_s, g.ring_all)
        keep, _ = _occluder_keep(small, lab_s, g.tx, g.ty, lab_s[skin] if skin.sum() >= 12 else None)
        if not keep.any():
            return drawn
        if g.f < 1:
            keep = cv2.resize(keep, (wx2 - wx1, wy2 - wy1), interpolation=cv2.INTER_LINEAR)
        ry, rx = region.y1 - wy1, region.x1 - wx1
        k = keep[ry: ry + patch.shape[0], rx: rx + patch.shape[1], None]
        orig = win[ry: ry + patch.shape[0], rx: rx + patch.shape[1]]
        return drawn._replace(patch=np.clip(patch * (1 - k) + orig * k + 0.5, 0, 255).astype(np.uint8))

    def _render_shaped(self, frame: np.ndarray, region, box: np.ndarray, lm: np.ndarray, seed: int,
                       occluders: bool = True, box_ellipse: bool = True, track: int = -1,
                       measure_tone: bool = True, others: np.ndarray | None = None) -> Drawn:
        """The new face inside a feathered face-shaped mask; every pixel outside it is the frame's own.
        Only pixels outside the mask (which stay visible anyway) and the landmarks are read. Without
        ``measure_tone`` the face takes its track's harmonization as it is (none without one)."""
        p = self.params
        scale, anchor_y = (FACE_SCALE, DONOR_CY) if track < 0 else (TRACKED_FACE_SCALE, TRACKED_ANCHOR_Y)
        g = _Geometry(frame.shape, region, box, lm, scale=scale, others=others if OTHERS_OUT_OF_RING else None,
                      anchor_y=anchor_y)
        wx1, wy1, wx2, wy2 = g.window
        win = frame[wy1:wy2, wx1:wx2]
        sw, sh = g.small_size
        f = g.f
        small = cv2.resize(win, (sw, sh), interpolation=cv2.INTER_AREA) if f < 1 else win
        fx, fy = sw / (wx2 - wx1), sh / (wy2 - wy1)
        dst = g.dst
        ident = self.synth.identity(seed, self._track_yaw(track, yaw_ratio(lm)))
        face_hi = ident.face
        # colour, light and the blend are worked out on the shrunk window from a template-sized face; the
        # detail of a larger bank face is added back at frame resolution below
        face = cv2.resize(face_hi, (SIZE, SIZE), interpolation=cv2.INTER_AREA) if face_hi.shape[0] > SIZE else face_hi
        tx, ty = g.tx, g.ty
        # where each pixel reads the donors' face (tx, ty: where the person's is)
        sx, sy = _drawn_at(tx, ty, g.scale, g.anchor_y)
        k = face.shape[0] / SIZE
        warped = cv2.remap(face, sx * k, sy * k, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        raw = warped
        alpha = _shaped_alpha(tx, ty)
        ring = g.ring  # outside the mask: pixels the photo shows anyway

        lab_s = _lab(small)
        lab_f = _lab(warped)
        skin = _skin(small, lab_s, ring)
        # the occluder rule's skin model keeps the neighbours' faces: in a crowd of masked people their upper faces
        # are most of the skin in view (without them, 52 facemask masks kept: median 0.59 -> 0.53 of the mouth box)
        skin_occ = skin if g.ring_all is ring else _skin(small, lab_s, g.ring_all)
        keep = reach = None
        if p.occluders == "keep" and occluders:
            keep, reach = _occluder_keep(small, lab_s, tx, ty, lab_s[skin_occ] if skin_occ.sum() >= 12 else None,
                                         reach=True)
        # A masked face keeps its mask (occluders=keep) where the occluder rule finds it. On a frame the detector
        # skipped, the face is drawn at interpolated landmarks; with the rule off there (stop 29), a masked person's
        # lower face switched between the mask and a new mouth at half the frame rate (research/masked_video.py).
        # The rule runs on a skipped frame only for a track whose last detected face kept a cover (render_face
        # reads _cover): an unmasked face never starts keeping one at a guessed place, and the rule's own checks
        # (not skin, smooth, apart from the upper face's colour, covering the mouth) still decide every pixel.
        if track >= 0 and occluders and region.source != "held":
            self._store(self._cover, track, keep is not None and bool(keep.any()))
        src_skin = _template_skin(sx, sy) & (_donor_alpha(sx, sy) >= 1)
        tone = None  # what the harmonization does to the face: L*a*b* shift, light gradient, scale
        if measure_tone and p.color_strength > 0 and src_skin.sum() >= 4:
            own = np.median(lab_f[src_skin], axis=0)
            # no skin visible (hair, a mask, a scarf all round): the face keeps its own tone; the ring's
            # colours are the background's, not the person's
            if skin.sum() >= max(12, 0.03 * ring.sum()):  # a few stray pixels are no one's skin
                use = skin
                tgt = np.median(lab_s[use], axis=0)
                # the visible skin is mostly neck and ears, in the face's shadow: the lit face is brighter
                # (deepface-unit: the 75th percentile of their L* is closer to the face's than the median)
                tgt[0] = np.percentile(lab_s[use][:, 0], 75)
                gx = gy = 0.0
                # light: the first-order fit of the visible skin's L, minus the face's own
                g_t = _plane(lab_s[..., 0], use, tx, ty)
                g_f = _plane(lab_f[..., 0], src_skin, tx, ty)
                if g_t is not None and g_f is not None:
                    # at most 15 L across the face's half-width: a shadowed neck is not the light on the face
                    gx, gy = np.clip(g_t - g_f, -15 / FACE_AX, 15 / FACE_AY) * p.color_strength
                tone = np.array([*(p.color_strength * (tgt - own)), gx, gy, 1.0])
            elif ring.sum() >= 16:
                # no skin in view: the face keeps its own tone, but is lit no brighter than the brightest of what
                # surrounds it, plus DARK_MARGIN (a dark audience's faces were bright discs: ring L* <= 13, face ~65),
                # a margin that shrinks with that brightest L* under DARK_FULL (the full margin left the shared stage
                # clip's dark faces 15.7 L* brighter than the originals, median; scaled, 4.7);
                # a limit, not a move toward a tone, whatever color_strength (> 0) is; L* with a* and b*: darker
                # skin, less chroma
                top = float(np.percentile(lab_s[ring][:, 0], DARK_PCT))
                cap = top + DARK_MARGIN * min(1.0, top / max(DARK_FULL, 1e-6))
                tone = np.array([0.0, 0.0, 0.0, 0.0, 0.0, min(1.0, cap / max(float(own[0]), 1e-3))])
        tone = self._track_tone(track, tone)
        if tone is not None:
            lab_f = lab_f * float(tone[5]) + tone[:3].astype(np.float32)
            lab_f[..., 0] += tone[3] * (tx - FACE_CX) + tone[4] * (ty - FACE_CY)
        if p.appearance == "blurred":
            m = _affine(dst)
            lab_f = self._shading_from_original(lab_f, frame, box, m, wx1, wy1, fx, fy, sw, sh)
        warped = _rgb(lab_f)
        # Between the donors' face and the mask's edge (jaw, hairline) their hair and background
        # would show: that band continues the new face's own edge (skin) outward instead.
        fa = _donor_alpha(sx, sy)
        inside = fa >= 0.99
        base = _fill(warped, inside, 0.25 * (g.dst[1, 0] - g.dst[0, 0] + 1)) if inside.sum() >= 16 else warped
        if p.harmonizer == "poisson":
            warped = self._poisson(warped, base, fa)
        else:
            warped = np.clip(warped * fa[:, :, None] + base * (1 - fa[:, :, None]) + 0.5, 0, 255).astype(np.uint8)
            if self.unet is not None:
                warped = self.unet(warped, fa)

        if f < 1:  # back to frame resolution
            warped = cv2.resize(warped, (wx2 - wx1, wy2 - wy1), interpolation=cv2.INTER_CUBIC)
            ring = cv2.resize(ring.astype(np.uint8), (wx2 - wx1, wy2 - wy1), interpolation=cv2.INTER_NEAREST) > 0
        warped = _add_detail(warped, raw, face_hi, g)
        alpha = g.alpha_full(box_ellipse)
        comp = warped.astype(np.float32)
        # the window's grey, which focus, grain and texture read the scene's from (computed once)
        win_gray = cv2.cvtColor(win, cv2.COLOR_RGB2GRAY).astype(np.float32) if FOCUS_MATCH or p.grain else None
        if FOCUS_MATCH:
            comp = _match_focus(comp, win_gray, ring, alpha)
        if p.grain:
            comp = _add_grain(comp, win_gray, ring, alpha >= 1, seed_for(seed, int(box[0]), int(box[1])))
            skin_full = skin if f >= 1 else cv2.resize(skin.astype(np.uint8), (wx2 - wx1, wy2 - wy1),
                                                       interpolation=cv2.INTER_NEAREST) > 0
            comp = _add_texture(comp, win_gray, ring & skin_full, alpha,
                                seed_for(seed, "texture", int(box[0]), int(box[1])))
        if keep is not None and keep.any() and f < 1:
            keep = cv2.resize(keep, (wx2 - wx1, wy2 - wy1), interpolation=cv2.INTER_LINEAR)
        if reach is not None:
            # a kept cover goes on above the nostrils (_cover_reach): drawn there, and in its fade, instead of the
            # new face, with the scene's grain and the kept cover's own fine texture (its fabric: the continued
            # colour is smooth); after the new face's own focus, grain and texture, which so read the same face
            # with or without a cover
            r_w, r_px = reach
            if f < 1:
                r_w = cv2.resize(r_w, (wx2 - wx1, wy2 - wy1), interpolation=cv2.INTER_LINEAR)
                r_px = cv2.resize(r_px, (wx2 - wx1, wy2 - wy1), interpolation=cv2.INTER_LINEAR)
            r_px = r_px.astype(np.float32)
            if p.grain:
                r_px = _add_grain(r_px, win_gray, ring, r_w >= 1, seed_for(seed, "cover", int(box[0]), int(box[1])))
                r_px = _add_texture(r_px, win_gray, keep >= 0.99, r_w,
                                    seed_for(seed, "cover texture", int(box[0]), int(box[1])))
            comp = comp * (1 - r_w[:, :, None]) + r_px * r_w[:, :, None]
        if keep is not None and keep.any():  # the occluder stays; the new face is drawn as before around it
            alpha = alpha * (1 - keep)
        a = alpha[:, :, None]
        out = np.where(a >= 1, np.clip(comp + 0.5, 0, 255),
                       np.clip(comp * a + win * (1 - a) + 0.5, 0, 255)).astype(np.uint8)
        out[alpha <= 0] = win[alpha <= 0]  # byte-identical outside the mask, whatever the float maths did
        ry, rx = region.y1 - wy1, region.x1 - wx1
        return Drawn(out[ry: ry + (region.y2 - region.y1), rx: rx + (region.x2 - region.x1)], ident, tone)

    @staticmethod
    def _ring(sbox, sw, sh, inner: float = 1.1, outer: float = 1.6) -> np.ndarray:
        cx, cy = (sbox[0] + sbox[2]) / 2, (sbox[1] + sbox[3]) / 2
        hw, hh = (sbox[2] - sbox[0]) / 2, (sbox[3] - sbox[1]) / 2
        yy, xx = np.mgrid[0:sh, 0:sw]
        dx, dy = np.abs(xx + 0.5 - cx), np.abs(yy + 0.5 - cy)
        inside_outer = (dx <= hw * outer) & (dy <= hh * outer)
        inside_inner = (dx <= hw * inner) & (dy <= hh * inner)
        return inside_outer & ~inside_inner

    @staticmethod
    def _poisson(warped, base, alpha):
        mask = (alpha > 0.5).astype(np.uint8) * 255
        mask[0, :] = mask[-1, :] = 0
        mask[:, 0] = mask[:, -1] = 0
        ys, xs = np.nonzero(mask)
        if len(ys) < 16:
            return base
        center = (int((xs.min() + xs.max() + 1) // 2), int((ys.min() + ys.max() + 1) // 2))
        try:
            cloned = cv2.seamlessClone(warped, base, mask, center, cv2.NORMAL_CLONE)
        except cv2.error:  # degenerate masks at the frame edge: fall back to the feathered blend
            cloned = warped
        a = np.clip(alpha * 1.5, 0, 1)[:, :, None]  # soften the clone's hard mask edge
        return np.clip(cloned * a + base * (1 - a) + 0.5, 0, 255).astype(np.uint8)

    @staticmethod
    def _shading_from_original(lab_face, frame, box, m, wx1, wy1, fx, fy, sw, sh):
        """Replace the face's low frequencies by a 4x4 summary of the original box (opt-in)."""
        x1, y1 = max(int(box[0]), 0), max(int(box[1]), 0)
        x2, y2 = min(int(np.ceil(box[2])), frame.shape[1]), min(int(np.ceil(box[3])), frame.shape[0])
        if x2 - x1 < 2 or y2 - y1 < 2:
            return lab_face
        summary = cv2.resize(frame[y1:y2, x1:x2], (4, 4), interpolation=cv2.INTER_AREA)  # all that is kept
        bx1, by1 = (x1 - wx1) * fx, (y1 - wy1) * fy
        bw, bh = max(1, round((x2 - x1) * fx)), max(1, round((y2 - y1) * fy))
        target = np.zeros((sh, sw, 3), np.float32)
        have = np.zeros((sh, sw), np.float32)
        up = _lab(cv2.resize(summary, (bw, bh), interpolation=cv2.INTER_LINEAR))
        ty, tx = int(round(by1)), int(round(bx1))
        hh, ww = min(bh, sh - ty), min(bw, sw - tx)
        if hh <= 0 or ww <= 0 or ty < 0 or tx < 0:
            return lab_face
        target[ty:ty + hh, tx:tx + ww] = up[:hh, :ww]
        have[ty:ty + hh, tx:tx + ww] = 1
        sigma = max(bw, bh) / 8
        low = cv2.GaussianBlur(lab_face, (0, 0), sigma)
        den = cv2.GaussianBlur(have, (0, 0), sigma)
        tgt_low = cv2.GaussianBlur(target, (0, 0), sigma) / np.maximum(den, 1e-6)[:, :, None]
        w = np.clip(den * 2 - 0.5, 0, 1)[:, :, None]  # fades out at the box edge instead of a seam
        return lab_face + (tgt_low - low) * w


# helpers of the face-shaped path ------------------------------------------------

def _donor_alpha(tx: np.ndarray, ty: np.ndarray) -> np.ndarray:
    """Where the donors' averaged face itself is used (inside their jaw and hairline), feathered."""
    rho = np.sqrt(((tx - DONOR_CX) / DONOR_AX) ** 2 + ((ty - DONOR_CY) / DONOR_AY) ** 2)
    return np.clip((1.1 - rho) / 0.2, 0, 1).astype(np.float32)


def _drawn_at(tx: np.ndarray, ty: np.ndarray, scale: float, anchor_y: float = DONOR_CY
              ) -> tuple[np.ndarray, np.ndarray]:
    """Template coordinates of the donors' face to show at template coordinates ``tx``, ``ty`` of the person's face:
    the face ``scale`` times as large about its ellipse's centre line, at height ``anchor_y`` (template px)."""
    return ((tx - DONOR_CX) / scale + DONOR_CX).astype(np.float32), \
        ((ty - anchor_y) / scale + anchor_y).astype(np.float32)


def _ease(t: np.ndarray) -> np.ndarray:
    """Smoothstep of a 0..1 ramp: the weight's slope is 0 where it starts and ends, so the edge of
    the changed area carries no step of its own."""
    t = np.clip(t, 0, 1)
    return (t * t * (3 - 2 * t)).astype(np.float32)


def _shaped_alpha(tx: np.ndarray, ty: np.ndarray) -> np.ndarray:
    rho = np.sqrt(((tx - FACE_CX) / FACE_AX) ** 2 + ((ty - FACE_CY) / FACE_AY) ** 2)
    return _ease((1 + FEATHER - rho) / FEATHER)


def _box_rho(box: np.ndarray, xx: np.ndarray, yy: np.ndarray) -> np.ndarray:
    """Elliptic radius of frame points (pixel centres) in the box ellipse (1 on its rim)."""
    hw, hh = max((box[2] - box[0]) / 2, 0.5), max((box[3] - box[1]) / 2, 0.5)
    cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2 + BOX_CV * hh
    return np.sqrt(((xx - cx) / (BOX_AU * hw)) ** 2 + ((yy - cy) / (BOX_AV * hh)) ** 2)


def _box_alpha(box: np.ndarray, xx: np.ndarray, yy: np.ndarray) -> np.ndarray:
    return _ease((1 + BOX_FEATHER - _box_rho(box, xx, yy)) / BOX_FEATHER)


def _work_window(shape, region, box) -> tuple[int, int, int, int]:
    """(x1, y1, x2, y2) of one face's work window in the frame: its region and one box size around the box's
    centre, which reaches the sampling ring (RING[1] x the face ellipse, < 1 box size from the centre)."""
    H, W = shape[:2]
    bw, bh = box[2] - box[0], box[3] - box[1]
    cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
    return (int(max(0, min(region.x1, np.floor(cx - bw)))), int(max(0, min(region.y1, np.floor(cy - bh)))),
            int(min(W, max(region.x2, np.ceil(cx + bw)))), int(min(H, max(region.y2, np.ceil(cy + bh)))))


# A face box's width over its height (CenterFace, the default preset's calibration): median 0.79 on deepface-unit's
# faces (88), 0.82 on 516 facemask tune faces, 5th-95th percentile 0.71-0.98, for faces >= 20 px away from the
# frame's edges with landmarks that fit. A box meeting an edge that is narrower than EDGE_CUT[0] (left, right) or
# wider than EDGE_CUT[1] (top, bottom) holds a face the edge cuts.
FACE_ASPECT, EDGE_CUT = 0.8, (0.65, 1.1)
# A cut face facing the camera (_cut_frontal): eyes at least EDGE_EYES of the visible box's width apart (CenterFace
# draws a cut face's landmarks into what shows: 0.25-0.56 on cut frontal faces; a profile's collapse, 0.04-0.14), the
# nose at most EDGE_YAW eye distances off their middle (~35 degrees). Cut faces seen facing the camera (deepface-unit's
# crowd selfie, img62, facemask 264, the astronaut cut at 6/10): |yaw| 0.02-0.16; turned heads, which a frontal new
# face would not fit, 0.27-0.42 (facemask 268, 672), a logo at the edge 0.39, profiles 0.77-5.6.
EDGE_EYES, EDGE_YAW = 0.15, 0.25


def _edge_extended(box: np.ndarray, shape) -> np.ndarray:
    """``box`` grown past the frame's edge it meets to a face's shape (FACE_ASPECT), where that edge cuts the face
    (EDGE_CUT); else ``box`` itself (the same object)."""
    H, W = shape[:2]
    x1, y1, x2, y2 = (float(v) for v in box)
    w, h = x2 - x1, y2 - y1
    if w <= 0 or h <= 0:
        return box
    if w < EDGE_CUT[0] * h and (x1 <= 1 or x2 >= W - 1):
        grow = FACE_ASPECT * h - w
        x1, x2 = (x1 - grow, x2) if x1 <= 1 else (x1, x2 + grow)
    elif w > EDGE_CUT[1] * h and (y1 <= 1 or y2 >= H - 1):
        grow = w / FACE_ASPECT - h
        y1, y2 = (y1 - grow, y2) if y1 <= 1 else (y1, y2 + grow)
    else:
        return box
    return np.array([x1, y1, x2, y2], np.float64)


def _cut_frontal(box: np.ndarray, lm: np.ndarray, shape) -> bool:
    """True for a face that the frame's edge cuts (``_edge_extended`` grows its box) and whose landmarks, though
    they do not fit, say it faces the camera: the eyes in order and at least EDGE_EYES of the box's (visible) width
    apart, the nose within EDGE_YAW eye distances of their middle (``yaw_ratio``). A turned head, a profile or the
    back of a head at the edge is none (deepface-unit img59: eyes swapped, yaw 5.6) and stays blurred."""
    if _edge_extended(box, shape) is box:
        return False
    lm = np.asarray(lm, np.float64)
    eye = lm[1] - lm[0]
    return bool(eye[0] >= EDGE_EYES * (box[2] - box[0]) and abs(yaw_ratio(lm)) <= EDGE_YAW)


def _unknown(window, region, box) -> np.ndarray:
    """bool, over the work ``window``: the pixels a new face is never computed from, every pixel the region
    covers and the detection box."""
    wx1, wy1, wx2, wy2 = window
    hole = np.zeros((wy2 - wy1, wx2 - wx1), bool)
    hole[region.y1 - wy1: region.y2 - wy1, region.x1 - wx1: region.x2 - wx1] = region.weight > 0
    hole[max(int(np.floor(box[1])) - wy1, 0): max(int(np.ceil(box[3])) - wy1, 0),
         max(int(np.floor(box[0])) - wx1, 0): max(int(np.ceil(box[2])) - wx1, 0)] = True
    return hole


def _template_step(tx: np.ndarray, ty: np.ndarray) -> float:
    """Template pixels per image pixel (median) of the template coordinate maps ``tx``, ``ty``."""
    return float(np.median(np.hypot(np.gradient(tx, axis=1), np.gradient(ty, axis=1))))


class _Geometry:
    """Where one face's template falls in its work window (a shrunk copy of the frame
    around the face): per-pixel template coordinates, the mask and the sampling ring."""

    def __init__(self, shape, region, box, lm, scale: float = 1.0, others: np.ndarray | None = None,
                 anchor_y: float = DONOR_CY):
        H, W = shape[:2]
        self.scale = scale  # the donors' face drawn this much larger than placed (FACE_SCALE) ...
        self.anchor_y = anchor_y  # ... about this height of the template (_drawn_at)
        bw, bh = box[2] - box[0], box[3] - box[1]
        self.window = wx1, wy1, wx2, wy2 = _work_window(shape, region, box)
        self.region_rect, self.frame_hw, self.box = (region.x1, region.y1, region.x2, region.y2), (H, W), box
        self.f = f = min(1.0, WORK_FACE / max(bw, 1.0))
        sw, sh = max(1, round((wx2 - wx1) * f)), max(1, round((wy2 - wy1) * f))
        self.small_size = (sw, sh)
        self.dst = (np.asarray(lm, np.float64) - [wx1, wy1]) * [sw / (wx2 - wx1), sh / (wy2 - wy1)]
        self.tx, self.ty = _template_coords(_pose_points(self.dst), sw, sh)
        rho = np.sqrt(((self.tx - FACE_CX) / FACE_AX) ** 2 + ((self.ty - FACE_CY) / FACE_AY) ** 2)
        # pixel centres of the work window in frame coordinates: the ring stays clear of the box ellipse too
        yy, xx = np.mgrid[0:sh, 0:sw].astype(np.float64) + 0.5
        px, py = wx1 + xx * (wx2 - wx1) / sw, wy1 + yy * (wy2 - wy1) / sh
        box_rho = _box_rho(box, px, py)
        self.ring = self.ring_all = (rho >= RING[0]) & (rho <= RING[1]) & (box_rho >= RING[0])
        for ob in () if others is None else np.asarray(others, np.float64).reshape(-1, 4):
            gx, gy = (ob[2] - ob[0]) * (OTHER_FACE - 1) / 2, (ob[3] - ob[1]) * (OTHER_FACE - 1) / 2
            x1, y1, x2, y2 = ob[0] - gx, ob[1] - gy, ob[2] + gx, ob[3] + gy
            if x1 < wx2 and x2 > wx1 and y1 < wy2 and y2 > wy1:  # another face in the window
                self.ring = self.ring & ~((px >= x1) & (px < x2) & (py >= y1) & (py < y2))
        self.rho, self.box_rho = rho, box_rho  # elliptic radii in the face and box ellipses (1: their rims)

    def coords_full(self) -> tuple[np.ndarray, np.ndarray]:
        """Template coordinates of every frame pixel of the window (the maps are smooth: resized)."""
        if self.f >= 1:
            return self.tx, self.ty
        if not hasattr(self, "_full"):
            wx1, wy1, wx2, wy2 = self.window
            size = (wx2 - wx1, wy2 - wy1)
            self._full = (cv2.resize(self.tx, size, interpolation=cv2.INTER_LINEAR),
                          cv2.resize(self.ty, size, interpolation=cv2.INTER_LINEAR))
        return self._full

    def alpha_full(self, box_ellipse: bool = True) -> np.ndarray:
        """The blend weight at frame resolution: the template maps are smooth, so they are
        resized and the ellipse drawn at full resolution (a crisp, exactly known mask)."""
        wx1, wy1, wx2, wy2 = self.window
        alpha = _shaped_alpha(*self.coords_full())
        yy, xx = np.mgrid[wy1:wy2, wx1:wx2].astype(np.float64) + 0.5
        if box_ellipse:
            alpha = np.maximum(alpha, _box_alpha(self.box, xx, yy))
        return alpha * self._edge_fade(alpha.shape)

    def _edge_fade(self, shape) -> np.ndarray:
        """1 inside the region, falling to 0 at those of its sides that are not the frame's edge:
        where the ellipse's feather meets a tight region, a soft edge instead of a straight cut
        (the face itself lies well inside; tests/test_replace_look.py checks the 68 points)."""
        wx1, wy1, wx2, wy2 = self.window
        rx1, ry1, rx2, ry2 = self.region_rect
        H, W = self.frame_hw
        width = max(2.0, EDGE_FADE * (self.box[2] - self.box[0]))
        yy, xx = np.mgrid[wy1:wy2, wx1:wx2].astype(np.float32) + 0.5
        fade = np.ones(shape, np.float32)
        for dist, at_frame_edge in ((xx - rx1, rx1 <= 0), (rx2 - xx, rx2 >= W), (yy - ry1, ry1 <= 0),
                                    (ry2 - yy, ry2 >= H)):
            if not at_frame_edge:
                fade = np.minimum(fade, np.clip(dist / width, 0, 1))
        return fade


def _add_detail(up: np.ndarray, raw_small: np.ndarray, face_hi: np.ndarray, g: "_Geometry") -> np.ndarray:
    """The harmonized face at frame resolution (``up``, upsampled from the work window) plus the detail
    it lost: the bank face sampled straight at frame resolution, minus the same face through the work
    window (``raw_small``, upsampled the same way). Only inside the donors' face (``_donor_alpha``):
    outside it the band continues the face's edge and has no detail of its own.
    Without it a 200 px face showed a 128 px bank face seen through a 96 px window (sharpness 0.03
    of the photo's before grain)."""
    tx, ty = _drawn_at(*g.coords_full(), g.scale, g.anchor_y)
    h, w = tx.shape
    # the bank face at about the resolution it is shown at (no aliasing from a larger one)
    step = _template_step(tx, ty)
    side = int(np.clip(round(SIZE / max(step, 1e-3)), SIZE, face_hi.shape[0]))
    if g.f >= 1 and side <= SIZE:
        return up  # the work window is the frame and the face template-sized: nothing to add
    face = face_hi if side >= face_hi.shape[0] else cv2.resize(face_hi, (side, side), interpolation=cv2.INTER_AREA)
    k = side / SIZE
    hi = cv2.remap(face, tx * k, ty * k, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE).astype(np.float32)
    lo = raw_small if raw_small.shape[:2] == (h, w) else cv2.resize(raw_small, (w, h), interpolation=cv2.INTER_CUBIC)
    fa = _donor_alpha(tx, ty)[:, :, None]
    # the face drawn g.scale times as large: its fine detail as strong as at its own size (Laplacian ~ 1 / scale^2)
    return np.clip(up.astype(np.float32) + (hi - lo.astype(np.float32)) * fa * g.scale**2 + 0.5, 0,
                   255).astype(np.uint8)


def face_weight(shape, region, box, landmarks) -> np.ndarray:
    """Full-frame blend weight of the face-shaped mask ``replace`` uses for one face
    (1: fully replaced, 0: the frame's own pixels), for tests and evaluation."""
    g = _Geometry(shape, region, np.asarray(box, np.float64), np.asarray(landmarks, np.float64))
    out = np.zeros(shape[:2], np.float32)
    wx1, wy1, wx2, wy2 = g.window
    out[wy1:wy2, wx1:wx2] = g.alpha_full()
    keep = np.zeros(shape[:2], bool)
    keep[region.y1:region.y2, region.x1:region.x2] = True
    out[~keep] = 0  # a method only ever writes inside its region
    return out

def _pose_points(dst: np.ndarray) -> np.ndarray:
    """Where the template's 5 points go for a head in this pose: a similarity fit (position,
    size, roll), then the head's turn alone (yaw_ratio r): the nose moves r eye distances
    sideways, the mouth 0.6 r, and the eyes close up as the head turns.

    Not the target's own landmarks: their layout (eye distance against nose and mouth) is
    part of who the person is, and warping the new face onto it brought dlib's descriptor
    of the result closer to the original's (astronaut, 8 identities: mean distance 0.70
    with the landmarks themselves, 0.73 this way; the shape coefficients are a rough
    rigid-head model, not fitted).
    """
    dst = np.asarray(dst, np.float64)
    m, _ = cv2.estimateAffinePartial2D(TEMPLATE.astype(np.float32), dst.astype(np.float32))
    if m is None:
        return dst
    r = yaw_ratio(dst)
    if not np.isfinite(r):
        r = 0.0
    t = TEMPLATE.astype(np.float64).copy()
    ed = float(TEMPLATE[1, 0] - TEMPLATE[0, 0])
    t[2, 0] += r * ed
    t[3:, 0] += 0.6 * r * ed
    t[:2, 0] = FACE_CX + (t[:2, 0] - FACE_CX) * np.sqrt(max(1 - (r / 0.6) ** 2, 0.3))
    return t @ m[:, :2].T + m[:, 2]


def _affine(dst: np.ndarray) -> np.ndarray:
    """2x3 affine, template -> dst, through both eyes and the mouth's centre. Unlike a
    similarity it narrows the far side of a turned head; the mouth corners are left out
    because a smile widens them, which would blow the whole face up sideways."""
    t, d = TEMPLATE.astype(np.float64), np.asarray(dst, np.float64)
    src3 = np.array([t[0], t[1], (t[3] + t[4]) / 2], np.float32)
    dst3 = np.array([d[0], d[1], (d[3] + d[4]) / 2], np.float32)
    return cv2.getAffineTransform(src3, dst3).astype(np.float64)


def _template_coords(dst: np.ndarray, w: int, h: int, sigma: float = 16.0) -> tuple[np.ndarray, np.ndarray]:
    """For every pixel of a w x h image, where it falls in the template (float32 maps).

    Forward model: x = A(t + D(t)), A the affine fit and D a Gaussian radial-basis
    displacement that puts the 5 template points exactly on ``dst`` (scipy's RBF
    interpolators are slower than these 5 x 5 lines on a few thousand pixels).
    Inverted by fixed-point iteration (D is smooth and small next to the face).
    """
    m = _affine(dst)
    lin, off = m[:, :2], m[:, 2]
    inv = np.linalg.inv(lin) if abs(np.linalg.det(lin)) > 1e-9 else np.eye(2)
    t_lm = TEMPLATE.astype(np.float64)
    resid = (np.asarray(dst, np.float64) - off) @ inv.T - t_lm
    phi = np.exp(-np.sum((t_lm[:, None] - t_lm[None]) ** 2, axis=2) / (2 * sigma**2))
    wts = np.linalg.solve(phi + 1e-6 * np.eye(5), resid)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    u = (np.stack([xx + 0.5, yy + 0.5], -1) - off) @ inv.T - 0.5  # pixel centres
    t = u
    for _ in range(3):
        d2 = np.sum((t[..., None, :] - t_lm) ** 2, axis=-1)
        t = u - np.exp(-d2 / (2 * sigma**2)) @ wts
    return t[..., 0].astype(np.float32), t[..., 1].astype(np.float32)


def _template_skin(tx: np.ndarray, ty: np.ndarray) -> np.ndarray:
    out = np.zeros(tx.shape, bool)
    for x, y, ax, ay in SKIN_SPOTS:
        out |= ((tx - x) / ax) ** 2 + ((ty - y) / ay) ** 2 <= 1
    return out


# The colour limits of skin found in a ring, on the median of what the rule found (L*a*b* chroma; (chroma, hue in
# degrees): above that chroma and redder than that hue is no skin). Faces' own skin (their central half box, the
# rule's pixels): per-face median chroma at most 36.6 on deepface-unit (95 faces), 34.8 on facemask's bare tune
# faces (70); faces with a median chroma >= 30 all had a hue >= 42.5. The rings the new face took a red tone from
# (facemask tune photos: a red jacket, an orange umbrella, a pink coat; median chroma 38-45, hue 19-41) pass neither.
# Per pixel instead, the rule dropped a blonde's warm neck and left her face dark brown.
SKIN_MAX_CHROMA, SKIN_RED = 45.0, (30.0, 42.0)


def _skin(rgb: np.ndarray, lab: np.ndarray, where: np.ndarray) -> np.ndarray:
    """Skin-coloured pixels among ``where``: a broad chroma rule in YCrCb (after Chai and
    Ngan's Cr 133-173, Cb 77-127, widened for dark and warm-lit skin), then only the
    pixels near the median of those (a beige wall or wood next to the face drops out)."""
    ycc = cv2.cvtColor(rgb, cv2.COLOR_RGB2YCrCb)
    y, cr, cb = ycc[..., 0], ycc[..., 1].astype(np.int16), ycc[..., 2].astype(np.int16)
    cand = where & (cr >= 133) & (cr <= 180) & (cb >= 77) & (cb <= 135) & (y >= 25) & (y <= 250)
    # skin's hue in Lab lies between ~20 and ~70 degrees with some chroma: blond hair is yellower, grey and
    # pinkish-grey walls greyer (measured on deepface-unit: faces' cheeks have chroma 12-35)
    hue = np.degrees(np.arctan2(lab[..., 2], lab[..., 1]))
    cand &= (hue >= 15) & (hue <= 68) & (np.hypot(lab[..., 1], lab[..., 2]) >= 10)
    cand &= lab[..., 0] >= 22  # darker is hair or shadow (the darkest skin in deepface-unit and facemask: L* ~30)
    if cand.sum() < 12:
        return cand
    med = np.median(lab[cand], axis=0)
    d = np.linalg.norm((lab - med) * [1.0, 2.0, 2.0], axis=-1)  # chroma counts more than light
    out = cand & (d <= 30)
    # what was found is no one's skin when its median colour is more saturated, or redder at its saturation, than
    # faces' skin is (SKIN_MAX_CHROMA, SKIN_RED): red or orange clothes, umbrellas and pink coats passed the rule,
    # and the new face took their colour; then none is found (the face keeps its own tone, as with no skin in view)
    if out.sum() >= 12:
        a, b = np.median(lab[out][:, 1:], axis=0)
        chroma, hue = float(np.hypot(a, b)), float(np.degrees(np.arctan2(b, a)))
        if chroma > SKIN_MAX_CHROMA or (chroma > SKIN_RED[0] and hue < SKIN_RED[1]):
            return np.zeros_like(out)
    return out


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
# y 50), with its own colours continued upward from its kept part (``_cover_reach``), instead of the new face's nose
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


def _skin_like(rgb: np.ndarray, lab: np.ndarray, skin_lab: np.ndarray | None) -> np.ndarray:
    """Pixels that may be skin or lips: a loose chroma rule (reddish-to-yellow hue with some chroma) or
    near the person's own visible skin. Loose on purpose: what may be skin is replaced (fail closed)."""
    chroma = np.hypot(lab[..., 1], lab[..., 2])
    hue = np.degrees(np.arctan2(lab[..., 2], lab[..., 1]))
    out = (chroma >= 7) & (hue >= -20) & (hue <= 80)
    if skin_lab is not None and len(skin_lab) >= 12:
        med = np.median(skin_lab, axis=0)
        out |= np.linalg.norm((lab - med) * [0.5, 1.5, 1.5], axis=-1) <= 20
    return out


def _holes_filled(mask: np.ndarray) -> np.ndarray:
    """uint8 copy of the 0/1 ``mask`` with every hole its outer outlines enclose filled."""
    out = mask.astype(np.uint8)
    cnts, _ = cv2.findContours(out, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
    cv2.drawContours(out, cnts, -1, 1, thickness=cv2.FILLED)
    return out


def _closed_outline(mask: np.ndarray, scale: float, across: float) -> np.ndarray:
    """uint8 copy of the 0/1 ``mask`` closed with an ellipse ~``across`` template px wide (``scale``: one image pixel
    in template px), holes filled: a cover's outline without the notches and ragged edge the rule leaves."""
    k = 2 * max(1, int(round(across / 2 / scale))) + 1
    return _holes_filled(cv2.morphologyEx(mask.astype(np.uint8), cv2.MORPH_CLOSE,
                                          cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (k, k))))


def _occluder_keep(rgb: np.ndarray, lab: np.ndarray, tx: np.ndarray, ty: np.ndarray,
                   skin_lab: np.ndarray | None, reach: bool = False):
    """float32 weight (0..1) of the pixels to keep as they are: an occluder over the lower face.

    Occluder: apart from the upper face (OCC_APART, OCC_DARK), not skin-coloured (``_skin_like``, the
    person's skin model included), smooth (cloth, not a beard's texture or noise), below the nostrils,
    and one connected piece that covers most of the mouth. Anything else is replaced, and the eyes,
    brows and nose always are. A clear cover gets a cleaner outline (OCC_CLEAN_*). Hand-written: no
    licence-clean face-parsing model small enough to ship; this is a few OpenCV calls per face. Returns (that
    weight, ``_cover_reach``'s (weight, pixels) where ``reach`` asks for it and a cover is kept, else None).
    """
    h, w = tx.shape
    none = np.zeros((h, w), np.float32), None
    # one image pixel in template pixels (the eyes are 36 template pixels apart)
    scale = _template_step(tx, ty)
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
    cand = lower & plain & ~_skin_like(rgb, lab, skin_lab)
    cand = cv2.morphologyEx(cand.astype(np.uint8), cv2.MORPH_OPEN, np.ones((3, 3), np.uint8))
    mx1, my1, mx2, my2 = OCC_MOUTH
    mouth = (tx >= mx1) & (tx <= mx2) & (ty >= my1) & (ty <= my2)
    if mouth.sum() < OCC_MIN_MOUTH:
        return none
    n, lab_cc, stats, _ = cv2.connectedComponentsWithStats(cand, connectivity=8)
    if n <= 1:
        return none
    cover = np.bincount(lab_cc[mouth], minlength=n)
    cover[0] = 0
    best = int(cover.argmax())
    if cover[best] < OCC_MOUTH_COVER * mouth.sum():
        return none
    clear = bool(cover[best] >= OCC_CLEAN_SHARE * mouth.sum() and mouth.sum() >= OCC_CLEAN_MOUTH)
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
    filled = _holes_filled(keep) & lower.astype(np.uint8)
    if clear:  # the outline without the rule's notches (folds, a nose wire's highlight, shade)
        filled = _closed_outline(filled, scale, OCC_CLEAN_CLOSE) & lower.astype(np.uint8)
    # never beyond the occluder's own outline: erode by one pixel, then soften inward only
    core = cv2.erode(filled, np.ones((3, 3), np.uint8))
    # the new face fades into the occluder over ~OCC_SOFT template pixels, inside the occluder only, from its
    # own edges: where it goes on above OCC_TOP, the ramp below is the fade (the cut is no edge of the occluder)
    inside = cv2.distanceTransform(cv2.erode(filled | (~lower).astype(np.uint8), np.ones((3, 3), np.uint8)),
                                   cv2.DIST_L2, 3)
    soft = _ease(inside / max((OCC_CLEAN_SOFT if clear else OCC_SOFT) / scale, 1.0)) * (core > 0)
    ramp = _ease((ty - OCC_TOP) / OCC_RAMP)
    kept = (soft * ramp).astype(np.float32)
    if not reach:
        return kept, None
    return kept, _cover_reach(rgb, lab, plain, keep, cover_lab, ty, scale)


def _cover_reach(rgb: np.ndarray, lab: np.ndarray, plain: np.ndarray, keep: np.ndarray, cover_lab: np.ndarray,
                 ty: np.ndarray, scale: float):
    """(weight, pixels) drawn instead of the new face where a kept cover goes on above the nostrils, up to its
    own top edge (OCC_REACH at most: below the eyes), and in the kept cover's fade: the cover's colours
    continued upward from its kept pixels below the nostrils (``_fill``). The nose zone's own pixels are read
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
    shape = _closed_outline(ext | ((keep > 0) & near), scale, 6.0)
    # the rule's texture window straddles the cover's edge, where it finds no cover: grown back over the cover's
    # own colour (``near``) up to that window's reach
    k = 2 * max(1, int(round(OCC_REACH_GROW / scale))) + 1
    shape |= cv2.dilate(shape, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (k, k))) & near.astype(np.uint8)
    # faded in from its edge, inside it only, and in over OCC_REACH_RAMP below OCC_REACH
    inside = cv2.distanceTransform(shape, cv2.DIST_L2, 3)
    w = _ease(inside / max(OCC_REACH_SOFT / scale, 1.0)) * _ease((ty - OCC_REACH) / OCC_REACH_RAMP)
    return w.astype(np.float32), _fill(rgb, src, OCC_REACH_FILL / scale)


def _plane(values: np.ndarray, where: np.ndarray, tx: np.ndarray, ty: np.ndarray) -> np.ndarray | None:
    """Gradient (d/dtx, d/dty) of the least-squares plane through values[where]; None when
    the pixels span too little of the face to tell a slope."""
    if where.sum() < 12:
        return None
    x, y = tx[where].astype(np.float64), ty[where].astype(np.float64)
    if x.std() < 5 or y.std() < 5:
        return None
    a = np.c_[x - x.mean(), y - y.mean(), np.ones(len(x))]
    sol, *_ = np.linalg.lstsq(a, values[where].astype(np.float64), rcond=None)
    return sol[:2]


def _noise_sigma(gray: np.ndarray, where: np.ndarray) -> float | None:
    """Noise level (grey levels) by Immerkaer's fast estimate (1996) restricted to a mask:
    skimage's estimate_sigma has no mask, and the ring is not a rectangle."""
    k = np.array([[1, -2, 1], [-2, 4, -2], [1, -2, 1]], np.float32)
    r = np.abs(cv2.filter2D(gray, cv2.CV_32F, k, borderType=cv2.BORDER_REPLICATE))
    inner = cv2.erode(where.astype(np.uint8), np.ones((3, 3), np.uint8)) > 0
    if inner.sum() < 32:
        return None
    return float(np.sqrt(np.pi / 2) / 6 * r[inner].mean())


TEX_SIGMA = 1.5  # the skin-detail band: the photo minus its Gaussian blur of this sigma (frame px)
TEX_GRAIN = 0.5  # the added texture: white noise blurred by this sigma (frame px), then its detail band
TEX_PCT = 15  # see _texture_level: 30 made faces next to blond hair or a sequinned dress look gritty


def _texture_level(gray: np.ndarray, where: np.ndarray) -> float:
    """How much fine detail the smoother parts of ``where`` hold: the TEX_PCT-th percentile of the local
    RMS of the detail band. A low percentile: hair, lashes, a beaded dress or jewellery that pass the skin
    colour test are the textured tail, skin is the smooth part (the median made faces gritty next to them)."""
    e = np.sqrt(cv2.GaussianBlur(_detail(gray) ** 2, (0, 0), 3.0))
    return float(np.percentile(e[where], TEX_PCT))


def _detail(gray: np.ndarray) -> np.ndarray:
    return gray - cv2.GaussianBlur(gray, (0, 0), TEX_SIGMA)


def _add_texture(comp: np.ndarray, win_gray: np.ndarray, skin: np.ndarray, alpha: np.ndarray, seed: int
                 ) -> np.ndarray:
    """Fine luminance texture so the face's skin detail matches the person's visible skin around it
    (``win_gray``: the frame's window in grey, float32).

    An average of registered donors keeps their shapes but not their skin texture (pores, fine lines are
    not shared between people), so on sharp photos the face came out smooth (Laplacian variance 0.48 of
    the original's, deepface-unit). The level is measured in the detail band (frame minus its blur) of the
    visible skin of the ring (``skin``: outside the mask, never the original face) and of the new face's
    core (``_texture_level``); what is missing is added as seeded, slightly correlated Gaussian noise in
    that band, fading with the mask. A sharpened average reached the same numbers only with crunchy edges
    and ghosts (bench/replace_results.md); patches of the ring's own detail band copied hair strands onto
    the face where blond hair passed the skin test, and measured lower (0.55-0.59).
    """
    inner = cv2.erode(skin.astype(np.uint8), np.ones((5, 5), np.uint8)) > 0  # away from the skin's edges
    core = alpha >= 1
    if inner.sum() < 64 or core.sum() < 64:  # too little visible skin to tell its texture: none added
        return comp
    t = _texture_level(win_gray, inner)
    gray = cv2.cvtColor(np.clip(comp + 0.5, 0, 255).astype(np.uint8), cv2.COLOR_RGB2GRAY).astype(np.float32)
    f = _texture_level(gray, core)
    if t <= f:
        return comp
    noise = np.random.default_rng(seed).normal(0, 1, gray.shape).astype(np.float32)
    tex = _detail(cv2.GaussianBlur(noise, (0, 0), TEX_GRAIN))
    tex *= np.sqrt(t * t - f * f) / max(float(np.sqrt(np.mean(tex[core] ** 2))), 1e-6)
    return comp + (tex * alpha)[:, :, None]


FOCUS_MATCH = True
FOCUS_PCT = 10  # the ring's sharper edges (this percentile of their widths) tell how sharp the scene is there
FOCUS_S0 = 1.0  # the re-blur of the edge-width estimate (px)


def _edge_sigmas(gray: np.ndarray, where: np.ndarray) -> np.ndarray:
    """The blur (Gaussian sigma, px) of each Canny edge pixel of ``gray`` inside ``where``: the gradient ratio r
    before and after a re-blur of FOCUS_S0 gives s0 / sqrt(r^2 - 1) (Zhuo and Sim, 2011). Written here: OpenCV and
    scikit-image have no defocus estimate of this kind."""
    grad = lambda a: np.hypot(cv2.Sobel(a, cv2.CV_32F, 1, 0), cv2.Sobel(a, cv2.CV_32F, 0, 1))  # noqa: E731
    edges = (cv2.Canny(np.clip(gray + 0.5, 0, 255).astype(np.uint8), 50, 120) > 0) & where
    r = grad(gray)[edges] / np.maximum(grad(cv2.GaussianBlur(gray, (0, 0), FOCUS_S0))[edges], 1e-3)
    r = r[r > 1.01]
    return FOCUS_S0 / np.sqrt(r * r - 1)


def _match_focus(comp: np.ndarray, win_gray: np.ndarray, ring: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """The new face blurred as much as the photo around it is, where that is blurrier than the face: the bank
    faces are sharp, and in soft footage (motion, compression) or an out-of-focus part of a photo the face came
    out crisper than everything around it. The scene's blur is read off the ring's sharper edges of the frame's
    window in grey (``win_gray``; outside the mask: never the original face), the face's off its own core."""
    inner = cv2.erode(ring.astype(np.uint8), np.ones((3, 3), np.uint8)) > 0
    e_r = _edge_sigmas(win_gray, inner)
    if len(e_r) < 20:
        return comp
    gray = cv2.cvtColor(np.clip(comp + 0.5, 0, 255).astype(np.uint8), cv2.COLOR_RGB2GRAY).astype(np.float32)
    e_f = _edge_sigmas(gray, alpha >= 1)
    if len(e_f) < 20:
        return comp
    s_r, s_f = float(np.percentile(e_r, FOCUS_PCT)), float(np.percentile(e_f, FOCUS_PCT))
    if s_r <= s_f:
        return comp
    soft = cv2.GaussianBlur(comp, (0, 0), float(np.sqrt(s_r * s_r - s_f * s_f)))
    return comp + (soft - comp) * alpha[:, :, None]


def _add_grain(comp: np.ndarray, win_gray: np.ndarray, ring: np.ndarray, core: np.ndarray, seed: int) -> np.ndarray:
    """Gaussian luminance noise so the face's noise level matches the visible ring's (``win_gray``: the frame's
    window in grey, float32)."""
    g_t = _noise_sigma(win_gray, ring)
    g_f = _noise_sigma(cv2.cvtColor(np.clip(comp, 0, 255).astype(np.uint8), cv2.COLOR_RGB2GRAY).astype(np.float32),
                       core)
    if g_t is None or g_f is None or g_t <= g_f:
        return comp
    sigma = min(np.sqrt(g_t**2 - g_f**2), 20.0)
    noise = np.random.default_rng(seed).normal(0, sigma, comp.shape[:2]).astype(np.float32)
    return comp + noise[:, :, None]
