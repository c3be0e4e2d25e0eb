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
from ...errors import UsageError
from ...registry import param
from .. import replace_geometry as geo, replace_looks as looks, replace_occluders as occ
from ..bank import CANON_BOX, SIZE, TEMPLATE, face_mask, load_bank, plausible, yaw_ratio
from ..base import METHODS, Method, crop, face_rngs
from ..box_landmarks import estimate_landmarks
from ..identity import Synthesized, Synthesizer, mirror_side, seed_for
from .blur import gaussian_blur, odd

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
OTHERS_OUT_OF_RING = True
DARK_MARGIN = 15.0  # L*: with no skin in view, the face's skin at most this much above the ring's DARK_PCT percentile
DARK_PCT = 98
DARK_FULL = 50.0  # L*: where that percentile is darker, the margin shrinks in proportion (a dark scene's faces)
# A photo's face: the donors' face is drawn FACE_SCALE times as large as the 5-point fit places it, about the centre
# of its ellipse (the mask stays as it is). The fit sizes the template by the eyes, nose and mouth, and the averaged
# face it places (full weight out to 0.9 of the ellipse above) is narrower than the mask, which must reach the
# person's jaw (the face and box ellipses): the band between showed the fill continued from the face's edge, a flat
# skin-coloured plate around a face too small for its head, on 26 / 38 % of the fully replaced area (median face;
# deepface-unit / facemask tune; research/face_plate.py); at 1.15, 6 / 20 % (facemask held-out 40 -> 22 %),
# FD-dlib 0.253 -> 0.243. Larger features have less Laplacian energy (the central half box's sharpness 0.66 ->
# 0.52 on deepface-unit, the edges as wide), so the detail added at frame resolution (geo.add_detail) is scale**2 as
# strong (0.65). Growing the rim alone (the centre kept) made every face alike to dlib (pairs >= 0.6 apart 81 -> 33 %);
# 1.25 put the brows on the mask's top edge. A tracked face (video) is drawn TRACKED_FACE_SCALE as large about the
# eye line (template y TRACKED_ANCHOR_Y), so its eyes stay at the person's eye height: at 1.15 about the centre the
# talking head's light changed 0.233 a frame at a fixed box (tests/test_replace_video.py; the original 0.181, 1.0:
# 0.132), most of it in the eye half as the head moved; at 1.1 about the eye line 0.146 (7-bit build 0.152), the
# clips' plate 41 -> 30 %. Numbers: bench/replace_results.md.
FACE_SCALE = 1.15
FOCUS_REACH = 16  # frame px around a face's work crop that its focus blur reads (geo.DETAIL_STEP's upsampling)
TRACKED_FACE_SCALE = 1.1
TRACKED_ANCHOR_Y = 50.0  # the template's eye line


class Drawn(NamedTuple):
    """One face as replace drew it: the region's pixels, the identity placed there (None: blurred, no donor
    face) and the harmonization used (L*a*b* shift, light gradient, scale; None: none), which its track keeps."""
    patch: np.ndarray
    identity: Synthesized | None = None
    tone: np.ndarray | None = None


@lru_cache(maxsize=4)
def _synthesizer(path: str, k: int, reject: bool) -> Synthesizer:
    bank = load_bank(path or None)
    try:
        return Synthesizer(bank, k=k, reject=reject)
    except UsageError as exc:  # what the bank holds does not do: named like load_bank's errors
        raise UsageError(f"{path or 'the shipped bank'}: {exc}") from None


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
    w = geo.ease(1.0 - (ex ** 4 + ey ** 4) ** 0.25)[..., None]
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
        scene = looks.scene_colour(frame)  # from the input: the faces drawn so far are no part of the scene
        regions = compositor.regions(detections, frame.shape)
        # each face draws its identity from its own stream (face_rngs): the same with or without the other faces
        seeds = [self.identity_seed(int(detections.track_id[r.index]), r.index, face_rng)
                 for r, face_rng in zip(regions, face_rngs(rng, regions))]
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
        on a neighbour's face, replaced or not yet). ``scene``: ``looks.scene_colour`` of the frame (read from
        ``frame`` when not given): in a black-and-white scene the face is drawn without colour."""
        drawn = self._draw_face(frame, region, box, seed, track, others)
        scene = looks.scene_colour(frame) if scene is None else scene
        return drawn._replace(patch=looks.in_scene_colour(drawn.patch, frame[region.slices], scene))

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
        wx1, wy1, wx2, wy2 = geo.work_window(frame.shape, region, box)
        detected = use_lm and region.source not in ("held", "backfilled")  # a detection's own landmarks
        if use_lm and not fits and p.shape == "face" and p.no_landmarks != "fitted" \
                and min(wx2 - wx1, wy2 - wy1) >= 2 and geo.cut_frontal(box, lm, frame.shape):
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
        window = wx1, wy1, wx2, wy2 = geo.work_window(frame.shape, region, box)
        win = frame[wy1:wy2, wx1:wx2]
        f = min(1.0, geo.WORK_FACE / max(bw, 1.0))
        sw, sh = max(1, round((wx2 - wx1) * f)), max(1, round((wy2 - wy1) * f))
        small = cv2.resize(win, (sw, sh), interpolation=cv2.INTER_AREA) if f < 1 else win.copy()
        fx, fy = sw / (wx2 - wx1), sh / (wy2 - wy1)
        sbox = np.array([(box[0] - wx1) * fx, (box[1] - wy1) * fy, (box[2] - wx1) * fx, (box[3] - wy1) * fy])

        # Unknown: the detection box and every pixel the region covers. Filled from the context only.
        hole_full = geo.unknown_pixels(window, region, box)
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
            base = looks.fill_unknown(small, known, max(sbox[2] - sbox[0], sbox[3] - sbox[1]))
        else:  # no context at all (the face fills the frame): the bank face's own surroundings
            base = warped.copy()

        # Colour: the bank face's context ring -> the target's context ring.
        lab_face = looks.to_lab(warped)
        ring_t = known & self._ring(sbox, sw, sh, 1.0, 2.0)
        tgt = looks.lab_stats(looks.to_lab(small), ring_t)
        src = looks.lab_stats(looks.to_lab(face), ring_c)
        if tgt is not None and src is not None and p.color_strength > 0:
            (mt, st), (ms, ss) = tgt, src
            ratio = np.clip(st / ss, 0.6, 1.6)
            moved = (lab_face - ms) * ratio + mt
            lab_face += p.color_strength * (moved - lab_face)
        if p.appearance == "blurred":
            lab_face = self._shading_from_original(lab_face, frame, box, m, wx1, wy1, fx, fy, sw, sh)
        warped = looks.to_rgb(lab_face)

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
            box = geo.edge_extended(box, frame.shape)
        bw, bh = box[2] - box[0], box[3] - box[1]
        # the same window as geo.Geometry's, so the shaped renderer reads only filled or outside pixels
        window = wx1, wy1, wx2, wy2 = geo.work_window(frame.shape, region, box)
        win = frame[wy1:wy2, wx1:wx2]
        hole = geo.unknown_pixels(window, region, box)
        f = min(1.0, geo.WORK_FACE / max(bw, 1.0))
        sw, sh = max(1, round((wx2 - wx1) * f)), max(1, round((wy2 - wy1) * f))
        if f < 1:
            small = cv2.resize(win, (sw, sh), interpolation=cv2.INTER_AREA)
            hole_s = cv2.resize(hole.astype(np.float32), (sw, sh), interpolation=cv2.INTER_AREA) > 0
        else:
            small, hole_s = win.copy(), hole
        small[hole_s] = 0
        if (~hole_s).sum() >= 16:
            fill = looks.fill_unknown(small, ~hole_s, max(bw * f, bh * f))
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
        # does (occ.occluder_keep) but placed by the estimated shape
        g = geo.Geometry(frame.shape, region, box, lm)  # the occluder rule reads the whole ring (ring_all)
        small = cv2.resize(win, g.small_size, interpolation=cv2.INTER_AREA) if g.f < 1 else win
        lab_s = looks.to_lab(small)
        skin = looks.skin_pixels(small, lab_s, g.ring_all)
        keep, _ = occ.occluder_keep(small, lab_s, g.tx, g.ty, lab_s[skin] if skin.sum() >= 12 else None)
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
        scale, anchor_y = (FACE_SCALE, geo.DONOR_CY) if track < 0 else (TRACKED_FACE_SCALE, TRACKED_ANCHOR_Y)
        g = geo.Geometry(frame.shape, region, box, lm, scale=scale, others=others if OTHERS_OUT_OF_RING else None,
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
        sx, sy = g.drawn()
        k = face.shape[0] / SIZE
        warped = cv2.remap(face, sx * k, sy * k, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        raw = warped
        alpha = geo.shaped_alpha(tx, ty)
        ring = g.ring  # outside the mask: pixels the photo shows anyway

        lab_s = looks.to_lab(small)
        lab_f = looks.to_lab(warped)
        skin = looks.skin_pixels(small, lab_s, ring)
        # the occluder rule's skin model keeps the neighbours' faces: in a crowd of masked people their upper faces
        # are most of the skin in view (without them, 52 facemask masks kept: median 0.59 -> 0.53 of the mouth box)
        skin_occ = skin if g.ring_all is ring else looks.skin_pixels(small, lab_s, g.ring_all)
        keep = reach = None
        if p.occluders == "keep" and occluders:
            keep, reach = occ.occluder_keep(small, lab_s, tx, ty, lab_s[skin_occ] if skin_occ.sum() >= 12 else None,
                                            reach=True)
        # A masked face keeps its mask (occluders=keep) where the occluder rule finds it. On a frame the detector
        # skipped, the face is drawn at interpolated landmarks; with the rule off there (stop 29), a masked person's
        # lower face switched between the mask and a new mouth at half the frame rate (research/masked_video.py).
        # The rule runs on a skipped frame only for a track whose last detected face kept a cover (render_face
        # reads _cover): an unmasked face never starts keeping one at a guessed place, and the rule's own checks
        # (not skin, smooth, apart from the upper face's colour, covering the mouth) still decide every pixel.
        if track >= 0 and occluders and region.source != "held":
            self._store(self._cover, track, keep is not None and bool(keep.any()))
        fa = geo.donor_alpha(sx, sy)  # where the donors' face is used: for its skin here, the blend below
        src_skin = geo.template_skin(sx, sy) & (fa >= 1)
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
                g_t = looks.fit_plane(lab_s[..., 0], use, tx, ty)
                g_f = looks.fit_plane(lab_f[..., 0], src_skin, tx, ty)
                if g_t is not None and g_f is not None:
                    # at most 15 L across the face's half-width: a shadowed neck is not the light on the face
                    gx, gy = np.clip(g_t - g_f, -15 / geo.FACE_AX, 15 / geo.FACE_AY) * p.color_strength
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
            lab_f *= float(tone[5])  # this face's own array: the same float32 operations, in place
            lab_f += tone[:3].astype(np.float32)
            lab_f[..., 0] += tone[3] * (tx - geo.FACE_CX) + tone[4] * (ty - geo.FACE_CY)
        if p.appearance == "blurred":
            m = geo.affine_fit(dst)
            lab_f = self._shading_from_original(lab_f, frame, box, m, wx1, wy1, fx, fy, sw, sh)
        warped = looks.to_rgb(lab_f)
        # Between the donors' face and the mask's edge (jaw, hairline) their hair and background
        # would show: that band continues the new face's own edge (skin) outward instead.
        inside = fa >= 0.99
        base = looks.fill_unknown(warped, inside, 0.25 * (g.dst[1, 0] - g.dst[0, 0] + 1)) \
            if inside.sum() >= 16 else warped
        if p.harmonizer == "poisson":
            warped = self._poisson(warped, base, fa)
        else:
            # warped * fa + base * (1 - fa) + 0.5, clipped: the same operations, the weight repeated over the channels
            fa3 = cv2.merge([fa] * 3)
            mix = warped * fa3
            mix += base * np.subtract(1, fa3, out=fa3)
            mix += 0.5
            warped = np.clip(mix, 0, 255, out=mix).astype(np.uint8)
            if self.unet is not None:
                warped = self.unet(warped, fa)

        shape = (wy2 - wy1, wx2 - wx1)
        # the window's own pixels where the face is returned (the region) and where _finish writes (its crop of
        # the window): the rest of the window is never read
        ry, rx = region.y1 - wy1, region.x1 - wx1
        rs = slice(ry, ry + region.y2 - region.y1), slice(rx, rx + region.x2 - region.x1)
        # The scene's statistics (focus, grain, texture) read the ring, its visible skin and a kept cover at frame
        # resolution, within their filters' reach: the window's grey, the ring and the skin are made over the box
        # that holds the ring and the region (where the mask lies), grown by that reach, alone (stop 63: ~60 % of a
        # large face's window; Canny's hysteresis no longer follows an edge out of it and back)
        sb = looks.grown(geo.frame_box(ring, shape, rs), looks.TEXTURE_REACH + 2, shape)
        # the window's grey, which focus, grain and texture read the scene's from (computed once; uint8 for Canny)
        win_u8 = cv2.cvtColor(win[sb], cv2.COLOR_RGB2GRAY) if looks.FOCUS_MATCH or p.grain else None
        win_gray = None if win_u8 is None else win_u8.astype(np.float32)
        ring_at = geo.nearest(ring, shape, sb)
        # the scene's blur, read first: a large face in a soft scene is drawn on the coarse grid (geo.DETAIL_FACE)
        e_ring = looks.ring_edges(win_gray, ring_at, win_u8) if looks.FOCUS_MATCH else None
        soft = e_ring is not None and len(e_ring) >= 20 and \
            float(np.percentile(e_ring, looks.FOCUS_PCT)) >= geo.COARSE_SCENE_BLUR
        step = geo.DETAIL_STEP if f < 1 and box[2] - box[0] >= geo.DETAIL_FACE and soft else 1
        if step > 1:  # the drawn face made step times smaller than the frame (geo.DETAIL_FACE), upsampled below
            coarse = geo.Coarse(g, step)
            drawn = geo.add_detail(coarse.up(warped, cv2.INTER_CUBIC), raw, face_hi, coarse, inplace=True,
                                   lo=coarse.up(raw, cv2.INTER_CUBIC))
        else:
            if f < 1:  # back to frame resolution
                warped = cv2.resize(warped, (wx2 - wx1, wy2 - wy1), interpolation=cv2.INTER_CUBIC)
            warped = geo.add_detail(warped, raw, face_hi, g, inplace=True)  # warped: a new array, this face's own
        alpha = g.alpha_full(box_ellipse)
        if keep is not None and keep.any() and f < 1:
            keep = cv2.resize(keep, (wx2 - wx1, wy2 - wy1), interpolation=cv2.INTER_LINEAR)
        if reach is not None and f < 1:
            reach = tuple(cv2.resize(m, (wx2 - wx1, wy2 - wy1), interpolation=cv2.INTER_LINEAR) for m in reach)
        out = np.empty_like(win)
        out[rs] = win[rs]
        # The face's own pixels are changed only inside the bounding box of the mask (and of a kept cover's reach),
        # and read by grain and texture only there and within their filters' reach around it (the scene's ring, over
        # the whole window): focus, grain, texture and the composite give the face over that crop alone (the same
        # values there)
        # (alpha is >= 0: its non-zero pixels are those not <= 0); alpha's box, found once: focus, texture and the
        # composite read it
        abox = looks.nonzero_box(alpha)
        work = abox if reach is None else looks.nonzero_box(~(alpha <= 0) | (reach[0] > 0))
        if work is not None:
            work = looks.grown(work, looks.TEXTURE_REACH, alpha.shape)
            stats = (win_gray, ring_at, geo.nearest(skin, alpha.shape, sb),
                     None if keep is None or not keep.any() else keep[sb])
            if step > 1:
                # the drawn face at frame resolution over the crop and focus's blur's reach around it (its edges
                # replicated beyond: the context fill's smooth colour there, which no output pixel reads)
                at = looks.grown(work, FOCUS_REACH, alpha.shape)
                warped = np.empty((*alpha.shape, 3), np.uint8)  # read over ``at`` alone (match_focus's valid)
                warped[at] = geo.upsampled(drawn, step, *at)
            # the face in float32 over that crop alone: this face's own scratch, where focus, grain and texture work
            # in place
            if looks.FOCUS_MATCH:
                comp = looks.match_focus(warped, win_gray, ring_at, alpha, inplace=True, crop=work, win_u8=win_u8,
                                         alpha_box=abox, valid=at if step > 1 else None, e_ring=e_ring)
            else:
                comp = warped[work].astype(np.float32)
            self._finish(out[work], comp, alpha[work], win[work], stats, keep,
                         None if reach is None else tuple(m[work] for m in reach), work, seed, box, abox)
        return Drawn(out[rs], ident, tone)

    def _finish(self, out, comp, alpha, win, stats, keep, reach, work, seed, box, abox=None):
        """Grain, texture, a kept cover's reach and the composite into ``out``, over the crop ``work`` of the window
        (``comp``, ``alpha``, ``win`` and ``reach`` are that crop; ``keep``, the whole window's; ``stats``: the
        window's grey, the ring, its skin and the kept cover (None: none) at frame resolution over a box of the
        window, where the scene's and the kept cover's grain and texture are read). ``abox``: the window's alpha's
        non-zero box (None: none, or not known)."""
        p = self.params
        win_gray, ring, skin, keep_at = stats
        abox = None if abox is None else looks.within(abox, work)  # in the crop's coordinates
        if p.grain:
            comp = looks.add_grain(comp, win_gray, ring, alpha >= 1, seed_for(seed, int(box[0]), int(box[1])),
                                   inplace=True)
            comp = looks.add_texture(comp, win_gray, ring & skin, alpha,
                                     seed_for(seed, "texture", int(box[0]), int(box[1])), inplace=True,
                                     step=looks.stat_step(box[2] - box[0]), alpha_box=abox)
        if reach is not None:
            # a kept cover goes on above the nostrils (occ.cover_reach): drawn there, and in its fade, instead of the
            # new face, with the scene's grain and the kept cover's own fine texture (its fabric: the continued
            # colour is smooth); after the new face's own focus, grain and texture, which so read the same face
            # with or without a cover
            r_w, r_px = reach
            r_px = r_px.astype(np.float32)
            if p.grain:
                r_px = looks.add_grain(r_px, win_gray, ring, r_w >= 1,
                                       seed_for(seed, "cover", int(box[0]), int(box[1])))
                r_px = looks.add_texture(r_px, win_gray, keep_at >= 0.99, r_w,
                                         seed_for(seed, "cover texture", int(box[0]), int(box[1])))
            comp = comp * (1 - r_w[:, :, None]) + r_px * r_w[:, :, None]
        if keep is not None and keep.any():  # the occluder stays; the new face is drawn as before around it
            alpha = alpha * (1 - keep[work])
            abox = None
        # byte-identical outside the mask, whatever the float maths did: the window's own pixels, the blend worked out
        # only inside the bounding box of the pixels the mask changes
        changed = abox or looks.nonzero_box(alpha)  # alpha >= 0: the pixels where it is not <= 0
        if changed is not None:
            a2, c, w = alpha[changed], comp[changed], win[changed]
            # The face rounded to uint8 (+ 0.5, clipped, in place: comp is scratch), then c * a + w * (1 - a) by
            # OpenCV's blendLinear (one pass, the weight read once for the 3 channels, rounded; stop 63: ~2x fewer
            # passes than numpy's float sums over 3 channels, pixels within 1 of them)
            c = c if c.dtype == np.float32 else c.astype(np.float32)
            c += 0.5
            np.clip(c, 0, 255, out=c)
            a2 = a2 if a2.dtype == np.float32 else a2.astype(np.float32)
            mix = cv2.blendLinear(c.astype(np.uint8), w, a2, np.subtract(np.float32(1), a2))
            keep_px = a2 <= 0  # the window's own pixels there, whatever the float maths did (out holds them)
            cv2.copyTo(w, keep_px.view(np.uint8), mix)  # mix[keep_px] = w[keep_px]
            out[changed] = mix

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
        up = looks.to_lab(cv2.resize(summary, (bw, bh), interpolation=cv2.INTER_LINEAR))
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
