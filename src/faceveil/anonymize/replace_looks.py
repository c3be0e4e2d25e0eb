"""How a new face is made to look like its photo (``replace``): colour spaces, the scene's colourfulness, the
visible skin's tone, a light plane, and the photo's noise, skin texture, focus and grain, read from the pixels
around the face (never from the face itself), plus the context fill under it.
"""
from __future__ import annotations

from functools import lru_cache

import cv2
import numpy as np


def nonzero_box(a: np.ndarray) -> tuple[slice, slice] | None:
    """(rows, columns) slices of the bounding box of the non-zero pixels of 2-D ``a`` (NaN counts as non-zero);
    None where there are none."""
    if not a.size:
        return None
    # OpenCV's bounding rectangle of an 8-bit image's non-zero pixels (a bool mask read as its bytes): the same box,
    # ~5x faster than numpy's any() over both axes (called ~12 times a face, over the work window)
    nz = a.view(np.uint8) if a.dtype == bool else (a != 0).view(np.uint8)
    x, y, w, h = cv2.boundingRect(nz)
    if not w:
        return None
    return slice(y, y + h), slice(x, x + w)


def grown(box: tuple[slice, slice], margin: int, shape) -> tuple[slice, slice]:
    """``box`` grown by ``margin`` pixels on every side, within an array of ``shape``."""
    return tuple(slice(max(b.start - margin, 0), min(b.stop + margin, n)) for b, n in zip(box, shape[:2]))


def within(box: tuple[slice, slice], outer: tuple[slice, slice]) -> tuple[slice, slice]:
    """``box`` in the coordinates of the crop ``outer`` that holds it."""
    return tuple(slice(b.start - o.start, b.stop - o.start) for b, o in zip(box, outer))


def around(img: np.ndarray, where: np.ndarray, reach: int) -> tuple[np.ndarray, np.ndarray]:
    """``img`` and the mask ``where`` cropped to the bounding box of ``where`` grown by ``reach`` px: a filter that
    reaches no further gives the same values at ``where``'s pixels (the crop's edges are the image's own where the
    box meets them), read in the same order."""
    box = nonzero_box(where)
    if box is None:
        return img, where
    box = grown(box, reach, where.shape)
    return img[box], where[box]


# Grain and texture are drawn from two cached tiles of seeded noise (NOISE_TILE px square, made once a process from
# NOISE_TILE_SEED), each face reading its own window of them at an offset its seed picks (``noise_window``), instead
# of a fresh draw over every face's crop (~3.7 ms a talking-head face for each of the two, and the texture's two
# blurs of it, ~3 ms). The tiles wrap around (the texture's blurs are worked out over the wrapped tile), so any
# offset and size reads seamless noise; a face's crop up to NOISE_TILE px never sees a repeat (the talking head's
# ~460 x 510 px crop: none; a larger face's repeats NOISE_TILE px apart, under grain of a few grey levels).
NOISE_TILE, NOISE_TILE_SEED = 512, 22


@lru_cache(maxsize=2)
def noise_tile(kind: str) -> np.ndarray:
    """The cached, seeded tile of ``kind`` ("grain": white Gaussian noise, standard deviation 1; "texture": that
    noise blurred by TEX_GRAIN, then its detail band, scaled to an RMS of 1), repeated 2 x 2 (a window of up to
    NOISE_TILE px at any offset is one slice: a view). Read-only."""
    n = NOISE_TILE
    noise = np.random.default_rng([NOISE_TILE_SEED, kind == "texture"]).standard_normal((n, n), dtype=np.float32)
    if kind == "texture":
        pad = 24  # the blurs' reach (TEX_SIGMA's and TEX_GRAIN's kernels: 6 + 2 px), with room to spare
        wrapped = np.pad(noise, pad, mode="wrap")
        noise = detail_band(cv2.GaussianBlur(wrapped, (0, 0), TEX_GRAIN))[pad:-pad, pad:-pad]
        noise /= np.float32(np.sqrt(np.mean(np.square(noise, dtype=np.float64))))
    tile = np.tile(np.ascontiguousarray(noise, np.float32), (2, 2))
    tile.flags.writeable = False
    return tile


def noise_window(kind: str, seed: int, shape, at: tuple[int, int] = (0, 0)) -> np.ndarray:
    """The ``shape`` (rows, columns) window of ``noise_tile(kind)`` that ``seed`` places, starting ``at`` (row,
    column) of the face's crop: the same seed reads the same noise at the same place (read-only; a view where
    it fits)."""
    n = NOISE_TILE
    oy, ox = (int(v) for v in np.random.default_rng([seed, 7]).integers(0, n, 2))
    y0, x0 = (oy + at[0]) % n, (ox + at[1]) % n
    h, w = shape[:2]
    tile = noise_tile(kind)
    if h <= n and w <= n:
        return tile[y0: y0 + h, x0: x0 + w]
    return tile[:n, :n].take(np.arange(y0, y0 + h) % n, axis=0).take(np.arange(x0, x0 + w) % n, axis=1)


def over_channels(a: np.ndarray, n: int) -> np.ndarray:
    """2-D ``a`` repeated over ``n`` channels, HxWxn and contiguous: ``np.repeat(a[:, :, None], n, axis=2)``, the same
    values and dtype. An operation between an HxWxn array and this runs ~4x faster than numpy's broadcast of
    ``a[:, :, None]`` (3 values at a time); cv2.merge writes it ~7x faster than np.repeat."""
    if n >= 2 and a.size and a.dtype in (np.uint8, np.float32, np.float64):
        return cv2.merge([a] * n)
    return np.repeat(a[:, :, None], n, axis=2)


def weighted_add(comp: np.ndarray, delta, weight: np.ndarray, inplace: bool = False,
                 box: tuple[slice, slice] | None = None) -> np.ndarray:
    """``comp + delta * weight[:, :, None]``, the same values and dtype, worked out only inside the bounding box of
    ``weight``'s non-zero pixels: outside it the term is 0 and the sum is ``comp`` itself (as the whole window's
    sum, only ever converted to the wider dtype). ``delta(box)``: the term's first factor over the box, HxWx1 or
    HxWx3 (the face's pixels fill about a third of their work window). ``inplace``: ``comp`` is the caller's
    scratch, added into where the sum keeps its dtype. The products and sums are numpy's own, in the same dtypes
    (a float32 operand widened exactly first), written into fresh arrays once instead of into temporaries; an HxWx1
    factor or term repeated over the channels first (``over_channels``: the same values, not numpy's slow broadcast).
    ``box``: ``nonzero_box(weight)`` where the caller has it (None: found here)."""
    box = box or nonzero_box(weight) or (slice(0, 0), slice(0, 0))  # none: an empty box, which still gives the dtype
    d = delta(box)
    w = weight[box]
    tdtype = np.result_type(d, weight)
    if d.ndim == 3 and d.shape[2] > 1 and d.dtype == w.dtype == tdtype:  # no dtype argument: numpy's slow path
        term = np.multiply(d, over_channels(w, d.shape[2]))  # a new array
    elif d.ndim == 3 and comp.ndim == 3 and d.dtype == w.dtype == tdtype:  # HxWx1: per pixel, then over comp's channels
        term = over_channels(np.multiply(d[:, :, 0], w), comp.shape[2])
    else:
        term = np.multiply(d, w[:, :, None], dtype=tdtype)
    dtype = np.result_type(comp, term)
    out = comp if inplace and comp.dtype == dtype else comp.astype(dtype)
    out[box] += term
    return out


def grey_u8(comp: np.ndarray) -> np.ndarray:
    """The grey (uint8) of an RGB image: of a float one rounded to uint8 (its + 0.5, clipped, truncated), one
    temporary less than written out."""
    if comp.dtype == np.uint8:
        return cv2.cvtColor(comp, cv2.COLOR_RGB2GRAY)
    rounded = comp + 0.5
    np.clip(rounded, 0, 255, out=rounded)
    return cv2.cvtColor(rounded.astype(np.uint8), cv2.COLOR_RGB2GRAY)


def grey_of(comp: np.ndarray) -> np.ndarray:
    """``grey_u8`` as float32."""
    return grey_u8(comp).astype(np.float32)


def fast_blur(img: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian blur; large sigmas on a shrunk copy (a 50 px sigma at full size costs ~30 ms)."""
    if sigma <= 3:
        return cv2.GaussianBlur(img, (0, 0), sigma)
    h, w = img.shape[:2]
    f = 3.0 / sigma
    small = cv2.resize(img, (max(1, round(w * f)), max(1, round(h * f))), interpolation=cv2.INTER_AREA)
    small = cv2.GaussianBlur(small, (0, 0), 3.0)
    return cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR)


def fill_unknown(img: np.ndarray, known: np.ndarray, size: float) -> np.ndarray:
    """Smooth fill of the unknown pixels of ``img`` (uint8, 3 channels) from the known ones (normalized convolution,
    coarse to fine); OpenCV's Telea inpainting leaves streaks across large holes."""
    k8 = known.astype(np.uint8)
    k = k8.astype(np.float32)
    # The same float32 values as written out (img * k, numpy's per-pixel weights broadcast over the channels, the
    # known pixels' mean colour, the known pixels put back), with the weights repeated over the channels (numpy's
    # broadcast of an HxWx1 array runs 3 values at a time) and the masked work done by OpenCV's masked copies:
    # x * 1 is x and x * 0 is 0 (x >= 0), the mean the exact integer sum over the count
    masked = cv2.copyTo(img, k8)  # the known pixels, 0 elsewhere
    src = masked.astype(np.float32)
    n = int(np.count_nonzero(k8))
    out = np.empty(src.shape, np.float32)
    out[:] = (np.array(cv2.sumElems(masked)[:3], np.float64) / n).astype(np.float32)
    for sigma in (size / 2, size / 6, size / 20):
        sigma = max(sigma, 1.0)
        den = fast_blur(k, sigma)
        est = fast_blur(src, sigma)  # a new array: divided and weighted in place (the same float32 operations)
        est /= cv2.merge([np.maximum(den, 1e-6)] * 3)
        w = cv2.merge([np.clip(den * 4, 0, 1)] * 3)  # finer scales only where enough known pixels are near
        est *= w
        out *= np.subtract(1, w, out=w)
        out += est  # out * (1 - w) + est * w
    cv2.copyTo(src, k8, out)  # out[known] = img[known]
    out += 0.5
    np.clip(out, 0, 255, out=out)
    return out.astype(np.uint8)


def to_lab(img: np.ndarray) -> np.ndarray:
    x = img.astype(np.float32)
    x /= 255.0  # a new array (an astype of float32 input too): in place, the same float32 operations
    return cv2.cvtColor(x, cv2.COLOR_RGB2Lab)


def to_rgb(lab: np.ndarray) -> np.ndarray:
    x = cv2.cvtColor(lab, cv2.COLOR_Lab2RGB)  # * 255 + 0.5, clipped, in place (the same float32 operations)
    x *= 255.0
    x += 0.5
    return np.clip(x, 0, 255, out=x).astype(np.uint8)


# A black-and-white (or sepia) photo, or a night camera's infrared footage, got a new face in full colour: the face
# takes the scene's colourfulness. SCENE_GREY: the 99th percentile of the frame's chroma away from its median colour
# (a*b*, on a <= 160 px copy); at or under the first value the face is drawn in the scene's own colour at each
# lightness (its tone curve: grey in a grey photo, brown in a sepia one) with its lightness kept, from the second up
# as it is, in between with its chroma scaled. Shared sets (that percentile): colour photos read >= 10.8 but one (a
# pale face and a black-and-white mask on white, 6.5), the shared clips >= 18.4; black-and-white and toned photos
# 0.1-7.7 (WIDER val 9 of 476, LFW 5 of 2,659; one sepia WIDER photo reads 9.4): research/replace_weak.py grey.
SCENE_GREY = (5.0, 10.0)


SCENE_BINS = 16  # the tone curve: the median a*b* in this many bands of L*


def scene_colour(frame: np.ndarray) -> tuple[float, np.ndarray]:
    """(how much of a face's own chroma to keep, 0..1; the scene's tone curve: rows L*, a*, b*) for ``frame``."""
    h, w = frame.shape[:2]
    # averaged over k x k blocks, k the smallest integer that brings the frame to <= 160 px (its last rows and
    # columns that fill no block left out): OpenCV's INTER_AREA by an integer factor is its fast path, ~6x faster on
    # an 844 px frame than to 160 px exactly (~3.5 ms)
    k = -(-max(h, w) // 160)
    small = cv2.resize(frame[: h // k * k, : w // k * k], (w // k, h // k), interpolation=cv2.INTER_AREA) \
        if k > 1 and min(h, w) >= k else frame
    lab = to_lab(small).reshape(-1, 3)
    # the chroma's distance from its median: np.linalg.norm's operations over a*, b* (the sum of their squares, its
    # root), each channel's median over its own contiguous copy (the same values)
    a, b = lab[:, 1].copy(), lab[:, 2].copy()
    a -= np.median(a)
    b -= np.median(b)
    a *= a
    a += np.multiply(b, b, out=b)
    spread = float(np.percentile(np.sqrt(a, out=a), 99))
    lo, hi = SCENE_GREY
    keep = float(np.clip((spread - lo) / (hi - lo), 0.0, 1.0))
    if keep >= 1.0:
        return keep, np.zeros((3, 0), np.float32)
    band = np.minimum((lab[:, 0] * SCENE_BINS / 100).astype(int), SCENE_BINS - 1)
    curve = [(np.float32((b + 0.5) * 100 / SCENE_BINS), *np.median(lab[band == b, 1:], axis=0))
             for b in range(SCENE_BINS) if (band == b).sum() >= 8]
    return keep, np.array(curve, np.float32).reshape(-1, 3).T  # (3, 0) when no band has 8 pixels (a 2x2 image)


def in_scene_colour(patch: np.ndarray, under: np.ndarray, scene: tuple[float, np.ndarray]) -> np.ndarray:
    """``patch`` with the chroma of the pixels it changes (against ``under``, the frame's pixels there) scaled
    toward the scene's tone curve (``scene_colour``); the pixels it leaves as they are stay byte for byte."""
    keep, curve = scene
    if keep >= 1.0 or curve.shape[1] == 0:
        return patch
    changed = (patch != under).any(axis=-1)
    if not changed.any():
        return patch
    lab = to_lab(patch[changed][None])[0]
    for c in (1, 2):
        tone = np.interp(lab[:, 0], curve[0], curve[c])
        lab[:, c] = tone + keep * (lab[:, c] - tone)
    out = patch.copy()
    out[changed] = to_rgb(lab[None])[0]
    return out


def lab_stats(lab: np.ndarray, where: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    if where.sum() < 16:
        return None
    px = lab[where]
    return px.mean(axis=0), px.std(axis=0) + 1e-3


# The colour limits of skin found in a ring, on the median of what the rule found (L*a*b* chroma; (chroma, hue in
# degrees): above that chroma and redder than that hue is no skin). Faces' own skin (their central half box, the
# rule's pixels): per-face median chroma at most 36.6 on deepface-unit (95 faces), 34.8 on facemask's bare tune
# faces (70); faces with a median chroma >= 30 all had a hue >= 42.5. The rings the new face took a red tone from
# (facemask tune photos: a red jacket, an orange umbrella, a pink coat; median chroma 38-45, hue 19-41) pass neither.
# Per pixel instead, the rule dropped a blonde's warm neck and left her face dark brown.
SKIN_MAX_CHROMA, SKIN_RED = 45.0, (30.0, 42.0)


def skin_pixels(rgb: np.ndarray, lab: np.ndarray, where: np.ndarray) -> np.ndarray:
    """Skin-coloured pixels among ``where``: a broad chroma rule in YCrCb (after Chai and
    Ngan's Cr 133-173, Cb 77-127, widened for dark and warm-lit skin), then only the
    pixels near the median of those (a beige wall or wood next to the face drops out)."""
    # every rule over the pixels still in question alone (per pixel: the same values there; the ring is ~15-30 % of
    # a face's work window), in the window's row-major order
    at = np.nonzero(where)
    ycc = cv2.cvtColor(rgb, cv2.COLOR_RGB2YCrCb)[at]
    y, cr, cb = ycc[:, 0], ycc[:, 1].astype(np.int16), ycc[:, 2].astype(np.int16)
    rule = (cr >= 133) & (cr <= 180) & (cb >= 77) & (cb <= 135) & (y >= 25) & (y <= 250)
    at = tuple(i[rule] for i in at)
    cand = np.zeros(where.shape, bool)  # what passes every rule below
    px = lab[at]
    # skin's hue in Lab lies between ~20 and ~70 degrees with some chroma: blond hair is yellower, grey and
    # pinkish-grey walls greyer (measured on deepface-unit: faces' cheeks have chroma 12-35)
    hue = np.degrees(np.arctan2(px[:, 2], px[:, 1]))
    ok = (hue >= 15) & (hue <= 68) & (np.hypot(px[:, 1], px[:, 2]) >= 10)
    ok &= px[:, 0] >= 22  # darker is hair or shadow (the darkest skin in deepface-unit and facemask: L* ~30)
    cand[at] = ok
    if ok.sum() < 12:
        return cand
    px = px[ok]
    med = np.median(px, axis=0)
    d = np.linalg.norm((px - med) * [1.0, 2.0, 2.0], axis=-1)  # chroma counts more than light
    out = np.zeros_like(cand)
    near = d <= 30
    out[tuple(i[ok] for i in at)] = near
    # what was found is no one's skin when its median colour is more saturated, or redder at its saturation, than
    # faces' skin is (SKIN_MAX_CHROMA, SKIN_RED): red or orange clothes, umbrellas and pink coats passed the rule,
    # and the new face took their colour; then none is found (the face keeps its own tone, as with no skin in view)
    if near.sum() >= 12:
        a, b = np.median(px[near][:, 1:], axis=0)  # lab[out]: the same pixels, in the same order
        chroma, hue = float(np.hypot(a, b)), float(np.degrees(np.arctan2(b, a)))
        if chroma > SKIN_MAX_CHROMA or (chroma > SKIN_RED[0] and hue < SKIN_RED[1]):
            return np.zeros_like(out)
    return out


def fit_plane(values: np.ndarray, where: np.ndarray, tx: np.ndarray, ty: np.ndarray) -> np.ndarray | None:
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


def noise_sigma(gray: np.ndarray, where: np.ndarray) -> float | None:
    """Noise level (grey levels) by Immerkaer's fast estimate (1996) restricted to a mask:
    skimage's estimate_sigma has no mask, and the ring is not a rectangle."""
    gray, where = around(gray, where, 2)  # the filter and the erosion reach 1 px each
    k = np.array([[1, -2, 1], [-2, 4, -2], [1, -2, 1]], np.float32)
    r = cv2.filter2D(gray, cv2.CV_32F, k, borderType=cv2.BORDER_REPLICATE)
    inner = cv2.erode(where.astype(np.uint8), np.ones((3, 3), np.uint8)) > 0
    if inner.sum() < 32:
        return None
    return float(np.sqrt(np.pi / 2) / 6 * np.abs(r[inner]).mean())  # |r| of the pixels read alone


TEX_SIGMA = 1.5  # the skin-detail band: the photo minus its Gaussian blur of this sigma (frame px)


TEX_GRAIN = 0.5  # the added texture: white noise blurred by this sigma (frame px), then its detail band


# How far from the pixels it reads (the face's core, its mask) a face's grain and texture read it: texture_level's
# blurs (OpenCV's kernels for sigma 1.5 and 3 reach 6 and 12 px), with room to spare
TEXTURE_REACH = 24


TEX_PCT = 15  # see texture_level: 30 made faces next to blond hair or a sequinned dress look gritty


# A large face's texture levels (the scene's visible skin, and the new face's own core) are read STAT_STEP times
# smaller in each direction: faces at least STAT_FACE frame px wide (the talking head's ~310 px box, deepface-unit's
# portraits). The detail band stays at frame resolution; its local energy is averaged over STAT_STEP x STAT_STEP
# blocks, then blurred by 3 / STAT_STEP (the same 3 frame px), and its percentile read over the blocks wholly inside
# the pixels read: the levels of 48 faces (talking head, deepface-unit) within 2 % of those read at frame resolution
# (1.46 / 1.46, 13.49 / 13.38, 0.81 / 0.84). Focus is not read smaller: the edge-width estimate on a 2x smaller copy
# read 1.4-1.9x wider, unevenly between the scene and the face (the blur it added 1.7x as strong on some frames).
STAT_FACE, STAT_STEP = 200.0, 2


def stat_step(face_width: float) -> int:
    """How many times smaller a face's texture levels are read (1: at frame resolution)."""
    return STAT_STEP if face_width >= STAT_FACE else 1


def shrunk(img: np.ndarray, where: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """``img`` averaged over k x k blocks (INTER_AREA, the last rows and columns that fill no block left out) and
    ``where`` the blocks wholly inside it."""
    h, w = (img.shape[0] // k, img.shape[1] // k)
    if k <= 1 or min(h, w) < 1:
        return img, where
    img, where = img[: h * k, : w * k], where[: h * k, : w * k]
    small = cv2.resize(img, (w, h), interpolation=cv2.INTER_AREA)
    inside = where[::k, ::k].copy()  # every pixel of the block (k x k strided views: numpy's all over axes is slow)
    for dy in range(k):
        for dx in range(k):
            inside &= where[dy::k, dx::k]
    return small, inside


def texture_level(gray: np.ndarray, where: np.ndarray, step: int = 1) -> float:
    """How much fine detail the smoother parts of ``where`` hold: the TEX_PCT-th percentile of the local
    RMS of the detail band. A low percentile: hair, lashes, a beaded dress or jewellery that pass the skin
    colour test are the textured tail, skin is the smooth part (the median made faces gritty next to them).
    ``step``: the local RMS read ``step`` times smaller (``stat_step``)."""
    gray, where = around(gray, where, TEXTURE_REACH)
    energy = detail_band(gray)
    energy *= energy  # ** 2: the same values
    sigma = 3.0
    if step > 1:
        small, inside = shrunk(energy, where, step)
        if inside.sum() >= 16:  # else too few whole blocks: at frame resolution
            energy, where, sigma = small, inside, 3.0 / step
    e = np.sqrt(cv2.GaussianBlur(energy, (0, 0), sigma)[where])  # the pixels read alone
    return float(np.percentile(e, TEX_PCT))


def detail_band(gray: np.ndarray) -> np.ndarray:
    return gray - cv2.GaussianBlur(gray, (0, 0), TEX_SIGMA)


def add_texture(comp: np.ndarray, win_gray: np.ndarray, skin: np.ndarray, alpha: np.ndarray, seed: int,
                inplace: bool = False, step: int = 1, alpha_box: tuple[slice, slice] | None = None) -> np.ndarray:
    """Fine luminance texture so the face's skin detail matches the person's visible skin around it
    (``win_gray``: the frame's window in grey, float32).

    An average of registered donors keeps their shapes but not their skin texture (pores, fine lines are
    not shared between people), so on sharp photos the face came out smooth (Laplacian variance 0.48 of
    the original's, deepface-unit). The level is measured in the detail band (frame minus its blur) of the
    visible skin of the ring (``skin``: outside the mask, never the original face) and of the new face's
    core (``texture_level``); what is missing is added as seeded, slightly correlated Gaussian noise in
    that band, fading with the mask. A sharpened average reached the same numbers only with crunchy edges
    and ghosts (bench/replace_results.md); patches of the ring's own detail band copied hair strands onto
    the face where blond hair passed the skin test, and measured lower (0.55-0.59).
    ``inplace``: ``comp`` is the caller's scratch, which the result may be (the same values either way).
    ``step``: both levels read that many times smaller (``stat_step``). ``alpha_box``: ``nonzero_box(alpha)`` where
    the caller has it (None: found where needed).
    """
    inner = cv2.erode(skin.astype(np.uint8), np.ones((5, 5), np.uint8)) > 0  # away from the skin's edges
    core = alpha >= 1
    if inner.sum() < 64 or core.sum() < 64:  # too little visible skin to tell its texture: none added
        return comp
    t = texture_level(win_gray, inner, step)
    part, at = around(comp, core, TEXTURE_REACH)  # the face's grey where texture_level reads it alone (the same)
    f = texture_level(grey_of(part), at, step)
    if t <= f:
        return comp
    gain = np.float32(np.sqrt(t * t - f * f))  # the tile's RMS is 1

    def tex(box):  # the seed's window of the texture tile over the box alone, scaled
        return np.multiply(noise_window("texture", seed, (box[0].stop - box[0].start, box[1].stop - box[1].start),
                                        (box[0].start, box[1].start)), gain)[:, :, None]
    return weighted_add(comp, tex, alpha, inplace, box=alpha_box)


FOCUS_MATCH = True


FOCUS_PCT = 10  # the ring's sharper edges (this percentile of their widths) tell how sharp the scene is there


FOCUS_S0 = 1.0  # the re-blur of the edge-width estimate (px)


def edge_sigmas(gray: np.ndarray, where: np.ndarray, u8: np.ndarray | None = None) -> np.ndarray:
    """The blur (Gaussian sigma, px) of each Canny edge pixel of ``gray`` inside ``where``: the gradient ratio r
    before and after a re-blur of FOCUS_S0 gives s0 / sqrt(r^2 - 1) (Zhuo and Sim, 2011). Written here: OpenCV and
    scikit-image have no defocus estimate of this kind. ``u8``: ``gray`` rounded to uint8 where the caller has it
    (a grey read from uint8 pixels is that grey itself)."""
    # Canny over the box of ``where`` grown by its own reach alone (stop 63: the ring's box, not the window's; its
    # hysteresis no longer follows an edge out of the box and back)
    box = nonzero_box(where)
    if box is None:
        return np.zeros(0, np.float32)
    box = grown(box, 8, where.shape)
    gray, where = gray[box], where[box]
    u8 = np.clip(gray + 0.5, 0, 255).astype(np.uint8) if u8 is None else u8[box]
    edges = (cv2.Canny(u8, 50, 120) > 0) & where
    gray, edges = around(gray, edges, 8)  # the Sobels, the re-blur and its Sobels reach 1 + 4 + 1 px

    def grad(a):  # the gradient's magnitude at the edge pixels alone: hypot per pixel, the same values
        return np.hypot(cv2.Sobel(a, cv2.CV_32F, 1, 0)[edges], cv2.Sobel(a, cv2.CV_32F, 0, 1)[edges])

    r = grad(gray) / np.maximum(grad(cv2.GaussianBlur(gray, (0, 0), FOCUS_S0)), 1e-3)
    r = r[r > 1.01]
    return FOCUS_S0 / np.sqrt(r * r - 1)


def ring_edges(win_gray: np.ndarray, ring: np.ndarray, win_u8: np.ndarray | None = None) -> np.ndarray:
    """The blur of the scene's edges around a face (``edge_sigmas`` inside the ring, away from its edges)."""
    inner = cv2.erode(ring.astype(np.uint8), np.ones((3, 3), np.uint8)) > 0
    return edge_sigmas(win_gray, inner, win_u8)


def match_focus(comp: np.ndarray, win_gray: np.ndarray, ring: np.ndarray, alpha: np.ndarray, inplace: bool = False,
                crop: tuple[slice, slice] | None = None, win_u8: np.ndarray | None = None,
                alpha_box: tuple[slice, slice] | None = None, valid: tuple[slice, slice] | None = None,
                e_ring: np.ndarray | None = None) -> np.ndarray:
    """The new face blurred as much as the photo around it is, where that is blurrier than the face: the bank
    faces are sharp, and in soft footage (motion, compression) or an out-of-focus part of a photo the face came
    out crisper than everything around it. The scene's blur is read off the ring's sharper edges of the frame's
    window in grey (``win_gray``; outside the mask: never the original face), the face's off its own core.
    ``inplace``: ``comp`` is the caller's scratch, which the result may be (the same values either way).
    ``crop``: the result over these rows and columns alone (holding alpha's non-zero pixels; None: all). ``comp``
    may be uint8 (the face as drawn): float32 then only over ``crop`` (and the blur's reach), a new array the result
    may be; the same values as from its float32 copy. ``win_u8``: ``win_gray``'s uint8 grey, where the caller has it.
    ``alpha_box``: ``nonzero_box(alpha)``, where the caller has it (None: found here; ``crop`` holds it).
    ``valid``: the rows and columns of ``comp`` that hold the face (None: all; ``crop`` lies inside): the blur reads
    no further, its edges replicated there. ``e_ring``: ``ring_edges(win_gray, ring, win_u8)``, where the caller has it.
    """
    crop = crop or (slice(0, comp.shape[0]), slice(0, comp.shape[1]))
    e_r = ring_edges(win_gray, ring, win_u8) if e_ring is None else e_ring
    if comp.dtype == np.uint8:
        part, inplace = comp[crop].astype(np.float32), True
    else:
        part = comp[crop]
    if len(e_r) < 20:
        return part
    # the face's own edges over the crop alone (its core lies TEXTURE_REACH px inside it): Canny's hysteresis no
    # longer follows an edge out of the crop and back (~4 ms less a large face)
    core = alpha[crop] >= 1
    cb = nonzero_box(core)
    if cb is None:
        return part
    cb = grown(cb, 8, core.shape)  # what edge_sigmas reads of it (the same values)
    u8 = grey_u8(comp[crop][cb])
    e_f = edge_sigmas(u8.astype(np.float32), core[cb], u8)
    if len(e_f) < 20:
        return part
    s_r, s_f = float(np.percentile(e_r, FOCUS_PCT)), float(np.percentile(e_f, FOCUS_PCT))
    if s_r <= s_f:
        return part
    sigma = float(np.sqrt(s_r * s_r - s_f * s_f))
    box = alpha_box or nonzero_box(alpha)
    if box is None:  # nothing blended: weighted_add's empty sum (its dtype)
        return weighted_add(part, lambda b: part[b], alpha[crop], inplace)
    # the blur is read inside alpha's box alone: worked out over that box and the kernel's reach around it (OpenCV's
    # kernel for a float image reaches at most 4 sigma + 1 px: the same sums at the box's pixels)
    reach = grown(box, int(np.ceil(4 * sigma)) + 2, comp.shape)
    border = cv2.BORDER_DEFAULT
    if valid is not None and any(r.start < v.start or r.stop > v.stop for r, v in zip(reach, valid)):
        reach = tuple(slice(max(r.start, v.start), min(r.stop, v.stop)) for r, v in zip(reach, valid))
        border = cv2.BORDER_REPLICATE
    soft = cv2.GaussianBlur(comp[reach].astype(np.float32, copy=False), (0, 0), sigma,
                            borderType=border)[within(box, reach)]
    return weighted_add(part, lambda b: soft - part[b], alpha[crop], inplace, box=within(box, crop))


def add_grain(comp: np.ndarray, win_gray: np.ndarray, ring: np.ndarray, core: np.ndarray, seed: int,
              inplace: bool = False) -> np.ndarray:
    """Gaussian luminance noise so the face's noise level matches the visible ring's (``win_gray``: the frame's
    window in grey, float32). ``inplace``: ``comp`` is the caller's scratch, which the result may be (the same
    values either way)."""
    g_t = noise_sigma(win_gray, ring)
    # the face's grey over the pixels noise_sigma reads alone (its core and the filter's reach: per pixel, the same)
    part, core = around(comp, core, 2)
    g_f = noise_sigma(cv2.cvtColor(np.clip(part, 0, 255).astype(np.uint8), cv2.COLOR_RGB2GRAY).astype(np.float32),
                      core)
    if g_t is None or g_f is None or g_t <= g_f:
        return comp
    sigma = min(np.sqrt(g_t**2 - g_f**2), 20.0)
    noise = np.multiply(noise_window("grain", seed, comp.shape[:2]), np.float32(sigma))
    noise = over_channels(noise, comp.shape[2]) if comp.ndim == 3 else noise[:, :, None]  # the same sums
    if inplace:  # the caller's scratch: the same sum, written over it
        comp += noise
        return comp
    return comp + noise
