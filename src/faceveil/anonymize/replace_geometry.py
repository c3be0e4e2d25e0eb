"""Where a new face goes (``replace``): the template's coordinates over a face's work window, from its box and
5 landmarks and the head's turn, and the blend weights drawn from them (the face-shaped mask, the box ellipse, the
donors' face), all in template pixels of ``bank.SIZE``.

Split from ``methods/replace.py``, which composes a face from these, ``replace_looks`` (tone, light, focus and
grain from the surroundings) and ``replace_occluders`` (masks, scarves and hands kept over the lower face).
"""
from __future__ import annotations

import cv2
import numpy as np

from .bank import SIZE, TEMPLATE, yaw_ratio
from .replace_looks import nonzero_box, over_channels

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


EDGE_FADE = 0.05  # of the box width: the soft edge where the mask meets the region's border


RING = (1.18, 1.5)


OTHER_FACE = 1.1  # the ring leaves out the other faces' boxes grown this much


DONOR_CX, DONOR_CY, DONOR_AX, DONOR_AY = 64.0, 76.0, 36.0, 50.0  # the averaged face without its hair and neck


# Skin of the template face for its own tone (forehead, both cheeks, nose bridge); eyes, brows and mouth left out.
SKIN_SPOTS = ((64, 30, 12, 5), (44, 78, 7, 7), (84, 78, 7, 7), (64, 60, 4, 6))


def donor_alpha(tx: np.ndarray, ty: np.ndarray) -> np.ndarray:
    """Where the donors' averaged face itself is used (inside their jaw and hairline), feathered."""
    rho = np.sqrt(((tx - DONOR_CX) / DONOR_AX) ** 2 + ((ty - DONOR_CY) / DONOR_AY) ** 2)
    return np.clip((1.1 - rho) / 0.2, 0, 1).astype(np.float32, copy=False)  # float32 maps: no second copy


def drawn_at(tx: np.ndarray, ty: np.ndarray, scale: float, anchor_y: float = DONOR_CY
             ) -> tuple[np.ndarray, np.ndarray]:
    """Template coordinates of the donors' face to show at template coordinates ``tx``, ``ty`` of the person's face:
    the face ``scale`` times as large about its ellipse's centre line, at height ``anchor_y`` (template px)."""
    return ((tx - DONOR_CX) / scale + DONOR_CX).astype(np.float32, copy=False), \
        ((ty - anchor_y) / scale + anchor_y).astype(np.float32, copy=False)  # float32 maps: no second copy


def ease(t: np.ndarray) -> np.ndarray:
    """Smoothstep of a 0..1 ramp: the weight's slope is 0 where it starts and ends, so the edge of
    the changed area carries no step of its own."""
    t = np.clip(t, 0, 1)
    out = t * t  # t * t * (3 - 2 * t): the same operations, in two arrays
    np.subtract(3, np.multiply(t, 2, out=t), out=t)
    out *= t
    return out.astype(np.float32, copy=False)


def shaped_alpha(tx: np.ndarray, ty: np.ndarray) -> np.ndarray:
    rho = np.sqrt(((tx - FACE_CX) / FACE_AX) ** 2 + ((ty - FACE_CY) / FACE_AY) ** 2)
    return ease((1 + FEATHER - rho) / FEATHER)


def _box_terms(box: np.ndarray, xx: np.ndarray, yy: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The squared elliptic radii along x and along y of frame points in the box ellipse (box_radius: their sum's
    square root)."""
    hw, hh = max((box[2] - box[0]) / 2, 0.5), max((box[3] - box[1]) / 2, 0.5)
    cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2 + BOX_CV * hh
    return ((xx - cx) / (BOX_AU * hw)) ** 2, ((yy - cy) / (BOX_AV * hh)) ** 2


def box_radius(box: np.ndarray, xx: np.ndarray, yy: np.ndarray) -> np.ndarray:
    """Elliptic radius of frame points (pixel centres) in the box ellipse (1 on its rim)."""
    dx2, dy2 = _box_terms(box, xx, yy)
    return np.sqrt(dx2 + dy2)


def _box_ease(radius: np.ndarray) -> np.ndarray:
    return ease((1 + BOX_FEATHER - radius) / BOX_FEATHER)


def box_alpha(box: np.ndarray, xx: np.ndarray, yy: np.ndarray) -> np.ndarray:
    return _box_ease(box_radius(box, xx, yy))


def work_window(shape, region, box) -> tuple[int, int, int, int]:
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


# A cut face facing the camera (cut_frontal): eyes at least EDGE_EYES of the visible box's width apart (CenterFace
# draws a cut face's landmarks into what shows: 0.25-0.56 on cut frontal faces; a profile's collapse, 0.04-0.14), the
# nose at most EDGE_YAW eye distances off their middle (~35 degrees). Cut faces seen facing the camera (deepface-unit's
# crowd selfie, img62, facemask 264, the astronaut cut at 6/10): |yaw| 0.02-0.16; turned heads, which a frontal new
# face would not fit, 0.27-0.42 (facemask 268, 672), a logo at the edge 0.39, profiles 0.77-5.6.
EDGE_EYES, EDGE_YAW = 0.15, 0.25


def edge_extended(box: np.ndarray, shape) -> np.ndarray:
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


def cut_frontal(box: np.ndarray, lm: np.ndarray, shape) -> bool:
    """True for a face that the frame's edge cuts (``edge_extended`` grows its box) and whose landmarks, though
    they do not fit, say it faces the camera: the eyes in order and at least EDGE_EYES of the box's (visible) width
    apart, the nose within EDGE_YAW eye distances of their middle (``yaw_ratio``). A turned head, a profile or the
    back of a head at the edge is none (deepface-unit img59: eyes swapped, yaw 5.6) and stays blurred."""
    if edge_extended(box, shape) is box:
        return False
    lm = np.asarray(lm, np.float64)
    eye = lm[1] - lm[0]
    return bool(eye[0] >= EDGE_EYES * (box[2] - box[0]) and abs(yaw_ratio(lm)) <= EDGE_YAW)


def unknown_pixels(window, region, box) -> np.ndarray:
    """bool, over the work ``window``: the pixels a new face is never computed from, every pixel the region
    covers and the detection box."""
    wx1, wy1, wx2, wy2 = window
    hole = np.zeros((wy2 - wy1, wx2 - wx1), bool)
    hole[region.y1 - wy1: region.y2 - wy1, region.x1 - wx1: region.x2 - wx1] = region.weight > 0
    hole[max(int(np.floor(box[1])) - wy1, 0): max(int(np.ceil(box[3])) - wy1, 0),
         max(int(np.floor(box[0])) - wx1, 0): max(int(np.ceil(box[2])) - wx1, 0)] = True
    return hole


def template_step(tx: np.ndarray, ty: np.ndarray) -> float:
    """Template pixels per image pixel (median) of the template coordinate maps ``tx``, ``ty``."""
    return float(np.median(np.hypot(_x_gradient(tx), _x_gradient(ty))))


def _x_gradient(a: np.ndarray) -> np.ndarray:
    """``np.gradient(a, axis=1)`` of a 2-D float array: its operations (central differences halved, one-sided ones at
    the ends), the same values, written into the output without its temporaries (~9x faster on a 600 x 800 map)."""
    if a.ndim != 2 or a.shape[1] < 3 or a.dtype.kind != "f":
        return np.gradient(a, axis=1)
    out = np.empty_like(a)
    np.subtract(a[:, 2:], a[:, :-2], out=out[:, 1:-1])
    out[:, 1:-1] /= 2.0
    np.subtract(a[:, 1], a[:, 0], out=out[:, 0])
    np.subtract(a[:, -1], a[:, -2], out=out[:, -1])
    return out


class Geometry:
    """Where one face's template falls in its work window (a shrunk copy of the frame
    around the face): per-pixel template coordinates, the mask and the sampling ring."""

    def __init__(self, shape, region, box, lm, scale: float = 1.0, others: np.ndarray | None = None,
                 anchor_y: float = DONOR_CY):
        H, W = shape[:2]
        self.scale = scale  # the donors' face drawn this much larger than placed (FACE_SCALE) ...
        self.anchor_y = anchor_y  # ... about this height of the template (drawn_at)
        bw = box[2] - box[0]
        self.window = wx1, wy1, wx2, wy2 = work_window(shape, region, box)
        self.region_rect, self.frame_hw, self.box = (region.x1, region.y1, region.x2, region.y2), (H, W), box
        self.f = f = min(1.0, WORK_FACE / max(bw, 1.0))
        sw, sh = max(1, round((wx2 - wx1) * f)), max(1, round((wy2 - wy1) * f))
        self.small_size = (sw, sh)
        self.dst = (np.asarray(lm, np.float64) - [wx1, wy1]) * [sw / (wx2 - wx1), sh / (wy2 - wy1)]
        self.tx, self.ty = template_coords(pose_points(self.dst), sw, sh)
        rho = np.sqrt(((self.tx - FACE_CX) / FACE_AX) ** 2 + ((self.ty - FACE_CY) / FACE_AY) ** 2)
        # pixel centres of the work window in frame coordinates: the ring stays clear of the box ellipse too
        # (as a row and a column: the same values as full grids, broadcast where they meet)
        xx, yy = np.arange(sw, dtype=np.float64)[None, :] + 0.5, np.arange(sh, dtype=np.float64)[:, None] + 0.5
        px, py = wx1 + xx * (wx2 - wx1) / sw, wy1 + yy * (wy2 - wy1) / sh
        box_rho = box_radius(box, px, py)
        self.ring = self.ring_all = (rho >= RING[0]) & (rho <= RING[1]) & (box_rho >= RING[0])
        for ob in () if others is None else np.asarray(others, np.float64).reshape(-1, 4):
            gx, gy = (ob[2] - ob[0]) * (OTHER_FACE - 1) / 2, (ob[3] - ob[1]) * (OTHER_FACE - 1) / 2
            x1, y1, x2, y2 = ob[0] - gx, ob[1] - gy, ob[2] + gx, ob[3] + gy
            if x1 < wx2 and x2 > wx1 and y1 < wy2 and y2 > wy1:  # another face in the window
                self.ring = self.ring & ~((px >= x1) & (px < x2) & (py >= y1) & (py < y2))
        self.rho, self.box_rho = rho, box_rho  # elliptic radii in the face and box ellipses (1: their rims)

    def drawn(self) -> tuple[np.ndarray, np.ndarray]:
        """``drawn_at`` of the work window's maps (worked out once; read, never written)."""
        if not hasattr(self, "_drawn"):
            self._drawn = drawn_at(self.tx, self.ty, self.scale, self.anchor_y)
        return self._drawn

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

    def near(self, tx: np.ndarray, ty: np.ndarray, ellipse, radius: float) -> tuple[slice, slice] | None:
        """Rows and columns of the frame-resolution window outside which the maps ``tx``, ``ty`` of the work window,
        resized as coords_full resizes, are nowhere within ``radius`` (elliptic) of ``ellipse`` (cx, cy, ax, ay,
        template px); None: nowhere. A linear upsampling's value is a weighted mean of its (up to 4) neighbours in
        the small maps, none further from it than the longest step between two neighbours along x plus along y; so
        their elliptic radius is within that over min(ax, ay) of its own (1e-3 more: float32 rounding)."""
        cx, cy, ax, ay = ellipse
        reach = (np.hypot(np.diff(tx, axis=1), np.diff(ty, axis=1)).max(initial=0.0)
                 + np.hypot(np.diff(tx, axis=0), np.diff(ty, axis=0)).max(initial=0.0)) / min(ax, ay)
        box = nonzero_box(((tx - cx) / ax) ** 2 + ((ty - cy) / ay) ** 2 < (radius + reach + 1e-3) ** 2)
        if box is None or self.f >= 1:
            return box
        wx1, wy1, wx2, wy2 = self.window
        # a frame pixel at y reads small rows floor(ys) and floor(ys) + 1, ys = (y + 0.5) / k - 0.5 (k: frame px per
        # small px): every y with one of them in rows [a, b), 2 px spare
        return tuple(slice(max(int(np.floor((s.start - 0.5) * n / m - 0.5)) - 2, 0),
                           min(int(np.ceil((s.stop + 0.5) * n / m - 0.5)) + 2, n))
                     for s, n, m in zip(box, (wy2 - wy1, wx2 - wx1), tx.shape))

    def alpha_full(self, box_ellipse: bool = True) -> np.ndarray:
        """The blend weight at frame resolution: the template maps are smooth, so they are
        resized and the ellipse drawn at full resolution (a crisp, exactly known mask)."""
        wx1, wy1, wx2, wy2 = self.window
        tx, ty = self.coords_full()
        # 0 (float32 0.0, as shaped_alpha gives it) wherever the face ellipse and its feather cannot reach
        alpha = np.zeros(tx.shape, np.float32)
        near = self.near(self.tx, self.ty, (FACE_CX, FACE_CY, FACE_AX, FACE_AY), 1 + FEATHER)
        if near is not None:
            alpha[near] = shaped_alpha(tx[near], ty[near])
        if box_ellipse:
            # pixel centres as a row and a column (the same values as full grids, without building them)
            xx = np.arange(wx1, wx2, dtype=np.float64)[None, :] + 0.5
            yy = np.arange(wy1, wy2, dtype=np.float64)[:, None] + 0.5
            dx2, dy2 = _box_terms(self.box, xx, yy)
            # The box ellipse's weight is 0 wherever the radius along x or y alone is already past its feather (the
            # radius over both is no smaller, and the weight no larger): drawn over the other rows and columns only,
            # as box_alpha draws it over the whole window
            rows, cols = np.flatnonzero(_box_ease(np.sqrt(dy2[:, 0]))), np.flatnonzero(_box_ease(np.sqrt(dx2[0])))
            if len(rows) and len(cols):
                ys, xs = slice(rows[0], rows[-1] + 1), slice(cols[0], cols[-1] + 1)
                radius = dx2[:, xs] + dy2[ys]  # squared
                # Its weight is 1 (a t over 1, clipped) well inside the rim and 0 (a t under 0) well outside the
                # feather (1e-9 of the radius to spare: the root and the ramp round ~1e-16), there the maximum is 1
                # and alpha itself (0 <= alpha <= 1); worked out over the band between alone (the same values)
                a = alpha[ys, xs]  # a view: written into alpha
                a[radius < (1 - 1e-9) ** 2] = 1.0
                band = (radius >= (1 - 1e-9) ** 2) & (radius <= (1 + BOX_FEATHER + 1e-9) ** 2)
                a[band] = np.maximum(a[band], _box_ease(np.sqrt(radius[band])))
        alpha *= self._edge_fade(alpha.shape)  # this call's own array: the same float32 products, in place
        return alpha

    def _edge_fade(self, shape) -> np.ndarray:
        """1 inside the region, falling to 0 at those of its sides that are not the frame's edge:
        where the ellipse's feather meets a tight region, a soft edge instead of a straight cut
        (the face itself lies well inside; tests/test_replace_look.py checks the 68 points)."""
        wx1, wy1, wx2, wy2 = self.window
        rx1, ry1, rx2, ry2 = self.region_rect
        H, W = self.frame_hw
        # a Python float: the ramps stay float32, as the mask they multiply (a numpy float64 made the whole blend
        # float64)
        width = max(2.0, float(EDGE_FADE * (self.box[2] - self.box[0])))
        # the sides' ramps as a row and a column (each depends on x or y alone), joined by one broadcast minimum:
        # the same values and dtype as taken over full grids, at the cost of one pass over the window
        xx = np.arange(wx1, wx2, dtype=np.float32)[None, :] + 0.5
        yy = np.arange(wy1, wy2, dtype=np.float32)[:, None] + 0.5
        fade_x, fade_y = np.ones((1, shape[1]), np.float32), np.ones((shape[0], 1), np.float32)
        for dist, at_frame_edge in ((xx - rx1, rx1 <= 0), (rx2 - xx, rx2 >= W)):
            if not at_frame_edge:
                fade_x = np.minimum(fade_x, np.clip(dist / width, 0, 1))
        for dist, at_frame_edge in ((yy - ry1, ry1 <= 0), (ry2 - yy, ry2 >= H)):
            if not at_frame_edge:
                fade_y = np.minimum(fade_y, np.clip(dist / width, 0, 1))
        return np.minimum(fade_x, fade_y)


# A face at least DETAIL_FACE frame px wide gets its drawn face (the harmonized face upsampled from the work window,
# plus the bank face's detail, add_detail) made DETAIL_STEP times smaller than the frame, then upsampled (cubic) to
# frame resolution over the pixels it is read at (stop 63: ~4x fewer pixels for the remap and its sums; the mask,
# focus, grain, texture and the blend stay at frame resolution). The bank faces are 256 px (their box ~135 px, drawn
# 1.15x as large), but sampled twice (the coarse grid, then the upsampling) the face's edges come out softer, so this
# is done in a soft scene alone: its ring's sharper edges (match_focus's FOCUS_PCT-th percentile of their blur) at least
# this blurred (frame px). Drawn on the coarse grid the face's own edges read ~0.2 px more blurred (talking head
# 0.66 -> 0.83 median; deepface-unit's full-size portraits 0.87 -> 1.04): the talking head's scene reads 0.70-0.85
# (its face was made sharper than it: 75 % of its faces were blurred to match), the full-size portraits' 0.30-0.68,
# where the coarse grid softened the faces (the looks table's sharpness 0.82 -> 0.73 with it on every large face)
DETAIL_FACE, DETAIL_STEP, COARSE_SCENE_BLUR = 200.0, 2, 0.69


# On a Coarse grid the bank face is used at its own size down to COARSE_SIDE of the size the step asks for (up to
# ~1.1 bank px a grid px: no aliasing the eye sees), not resized each face (the talking head's steps ask for 230-256)
COARSE_SIDE = 0.9


class Coarse:
    """A Geometry's frame-resolution maps read ``step`` times smaller: what add_detail reads (the window's pixel
    (i, j) here covers frame pixels [step i, step i + step) of the window; OpenCV's resize by the exact factor, whose
    size rounds: ``size``). ``up(img, interpolation)``: a work-window image resized to this grid."""

    def __init__(self, g: "Geometry", step: int):
        wx1, wy1, wx2, wy2 = g.window
        sw, sh = g.small_size
        self.step, self.f, self.scale, self.anchor_y = step, g.f, g.scale, g.anchor_y
        self.fx, self.fy = (wx2 - wx1) / (step * sw), (wy2 - wy1) / (step * sh)
        self.tx, self.ty, self._g = g.tx, g.ty, g
        self._full = self.up(g.tx, cv2.INTER_LINEAR), self.up(g.ty, cv2.INTER_LINEAR)
        h, w = self._full[0].shape
        self.window, self.small_size = (0, 0, w, h), g.small_size

    def up(self, img: np.ndarray, interpolation: int) -> np.ndarray:
        return cv2.resize(img, (0, 0), fx=self.fx, fy=self.fy, interpolation=interpolation)

    def drawn(self):
        return self._g.drawn()

    def coords_full(self):
        return self._full

    def near(self, tx, ty, ellipse, radius):
        return Geometry.near(self, tx, ty, ellipse, radius)


def upsampled(img: np.ndarray, step: int, rows: slice, cols: slice, interpolation: int = cv2.INTER_CUBIC
              ) -> np.ndarray:
    """``img``, a Coarse grid's image, resized ``step`` times (cubic by default; OpenCV's mapping: frame pixel x reads
    the coarse grid at (x + 0.5) / step - 0.5) over the frame rows and columns given alone (the coarse pixels they
    read and 3 more on each side, edges replicated: the same values as the whole image resized)."""
    m = 3
    y0, x0 = max(rows.start // step - m, 0), max(cols.start // step - m, 0)
    y1, x1 = -(-rows.stop // step) + m, -(-cols.stop // step) + m
    part = img[y0:y1, x0:x1]
    pad_y, pad_x = max(y1 - img.shape[0], 0), max(x1 - img.shape[1], 0)
    if pad_y or pad_x:  # the window's last frame row or column past the coarse grid's (its size rounds down)
        part = cv2.copyMakeBorder(part, 0, pad_y, 0, pad_x, cv2.BORDER_REPLICATE)
    big = cv2.resize(part, (part.shape[1] * step, part.shape[0] * step), interpolation=interpolation)
    return big[rows.start - y0 * step: rows.stop - y0 * step, cols.start - x0 * step: cols.stop - x0 * step]


def nearest(small: np.ndarray, shape, at: tuple[slice, slice]) -> np.ndarray:
    """``small`` resized to ``shape`` (rows, columns) by nearest neighbour (OpenCV's INTER_NEAREST: frame pixel x
    reads floor(x * small's size / size)), over the rows and columns ``at`` alone."""
    if small.shape[:2] == tuple(shape[:2]):
        return small[at]
    ys = np.minimum((np.arange(at[0].start, at[0].stop) * (small.shape[0] / shape[0])).astype(np.intp),
                    small.shape[0] - 1)
    xs = np.minimum((np.arange(at[1].start, at[1].stop) * (small.shape[1] / shape[1])).astype(np.intp),
                    small.shape[1] - 1)
    return small.take(ys, axis=0).take(xs, axis=1)


def frame_box(small: np.ndarray, shape, box: tuple[slice, slice]) -> tuple[slice, slice]:
    """The bounding box (rows, columns of an array of ``shape``) of ``box`` and of the frame pixels that the non-zero
    pixels of ``small`` (a work-window mask: nearest()) cover."""
    nz = nonzero_box(small)
    if nz is None:
        return box
    out = []
    for s, b, n, m in zip(nz, box, shape[:2], small.shape[:2]):
        lo, hi = int(np.floor(s.start * n / m)), int(np.ceil(s.stop * n / m))
        out.append(slice(max(min(lo, b.start), 0), min(max(hi, b.stop), n)))
    return tuple(out)


def step_bound(g: "Geometry") -> float:
    """An upper bound of ``template_step`` of the frame-resolution maps of the donors' face (``drawn_at`` of
    ``g.coords_full()``), read off the small maps: their linear upsampling makes each x difference at frame resolution
    a weighted mean (weights >= 0, summing to <= 1, the same for tx and ty) of the small maps' x forward differences
    times sw / the window's width, so its length is at most their longest; drawn_at divides it by g.scale. The slack
    covers float32 rounding (~1e-4 template px) many times over."""
    longest = float(np.hypot(np.diff(g.tx, axis=1), np.diff(g.ty, axis=1)).max(initial=0.0))
    wx1, _, wx2, _ = g.window
    return longest * g.small_size[0] / (wx2 - wx1) / g.scale * 1.001 + 1e-3


def add_detail(up: np.ndarray, raw_small: np.ndarray, face_hi: np.ndarray, g: "Geometry",
               inplace: bool = False, lo: np.ndarray | None = None) -> np.ndarray:
    """The harmonized face at frame resolution (``up``, upsampled from the work window) plus the detail
    it lost: the bank face sampled straight at frame resolution, minus the same face through the work
    window (``raw_small``, upsampled the same way). Only inside the donors' face (``donor_alpha``):
    outside it the band continues the face's edge and has no detail of its own.
    Without it a 200 px face showed a 128 px bank face seen through a 96 px window (sharpness 0.03
    of the photo's before grain). ``inplace``: ``up`` is the caller's scratch, written into."""
    full = g.coords_full()
    h, w = full[0].shape
    # the bank face at about the resolution it is shown at (no aliasing from a larger one): its own size wherever
    # the step is surely under what rounds to it (a large face), without the median over every frame pixel
    top = face_hi.shape[0]
    if g.f < 1 and step_bound(g) < SIZE / (top + 0.5) / (COARSE_SIDE if isinstance(g, Coarse) else 1):
        side = top
    elif isinstance(g, Coarse):  # the work window's median step (every 2nd pixel) scaled to the coarse grid
        step = template_step(*(m[::2, ::2] for m in g.drawn())) * g.small_size[0] / g.window[2]
        side = int(np.clip(round(SIZE / max(step, 1e-3)), SIZE, top))
        side = top if side >= COARSE_SIDE * top else side
    else:
        drawn = g.drawn() if g.f >= 1 else drawn_at(*full, g.scale, g.anchor_y)  # full: the work window's maps
        side = int(np.clip(round(SIZE / max(template_step(*drawn), 1e-3)), SIZE, top))
    if g.f >= 1 and side <= SIZE:
        return up  # the work window is the frame and the face template-sized: nothing to add
    face = face_hi if side >= face_hi.shape[0] else cv2.resize(face_hi, (side, side), interpolation=cv2.INTER_AREA)
    k = side / SIZE
    if lo is None:  # the caller's, resized as up was (a Coarse grid's)
        lo = raw_small if raw_small.shape[:2] == (h, w) else cv2.resize(raw_small, (w, h),
                                                                        interpolation=cv2.INTER_CUBIC)
    # Outside the donors' face fa is 0: there the sum below is up + 0 + 0.5, truncated back to up itself. So it is
    # worked out only inside fa's bounding box (remap reads each pixel's own map values: the same samples there),
    # found among the pixels that can be in it (g.near)
    near = g.near(*g.drawn(), (DONOR_CX, DONOR_CY, DONOR_AX, DONOR_AY), 1.1)
    if near is None:
        return up
    if g.f >= 1:  # full: the work window's maps, whose drawn_at g has (per pixel: the same values)
        tx, ty = (m[near] for m in g.drawn())
    else:
        tx, ty = drawn_at(full[0][near], full[1][near], g.scale, g.anchor_y)
    fa = donor_alpha(tx, ty)
    inner = nonzero_box(fa)
    if inner is None:
        return up
    box = tuple(slice(o.start + i.start, o.start + i.stop) for i, o in zip(inner, near))
    fa = fa[inner]
    detail = cv2.remap(face, tx[inner] * k, ty[inner] * k, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE
                       ).astype(np.float32)
    # up + (hi - lo) * fa * scale^2 + 0.5 in float32, in place (uint8 operands convert exactly: the same sums). The
    # face drawn g.scale times as large: its fine detail as strong as at its own size (Laplacian ~ 1 / scale^2)
    detail -= lo[box]
    detail *= over_channels(fa, detail.shape[2])  # fa[:, :, None]: the same products
    detail *= g.scale**2
    detail += up[box]
    detail += 0.5
    out = up if inplace else up.copy()
    out[box] = np.clip(detail, 0, 255, out=detail).astype(np.uint8)
    return out


def face_weight(shape, region, box, landmarks) -> np.ndarray:
    """Full-frame blend weight of the face-shaped mask ``replace`` uses for one face
    (1: fully replaced, 0: the frame's own pixels), for tests and evaluation."""
    g = Geometry(shape, region, np.asarray(box, np.float64), np.asarray(landmarks, np.float64))
    out = np.zeros(shape[:2], np.float32)
    wx1, wy1, wx2, wy2 = g.window
    out[wy1:wy2, wx1:wx2] = g.alpha_full()
    keep = np.zeros(shape[:2], bool)
    keep[region.y1:region.y2, region.x1:region.x2] = True
    out[~keep] = 0  # a method only ever writes inside its region
    return out


def pose_points(dst: np.ndarray) -> np.ndarray:
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


def affine_fit(dst: np.ndarray) -> np.ndarray:
    """2x3 affine, template -> dst, through both eyes and the mouth's centre. Unlike a
    similarity it narrows the far side of a turned head; the mouth corners are left out
    because a smile widens them, which would blow the whole face up sideways."""
    t, d = TEMPLATE.astype(np.float64), np.asarray(dst, np.float64)
    src3 = np.array([t[0], t[1], (t[3] + t[4]) / 2], np.float32)
    dst3 = np.array([d[0], d[1], (d[3] + d[4]) / 2], np.float32)
    return cv2.getAffineTransform(src3, dst3).astype(np.float64)


# template_coords' displacement is worked out at every COORDS_STEP-th pixel along x and y where that grid is at most
# COORDS_SPACING template px apart (faces at the work window's size: ~0.8-1 template px a pixel; smaller faces' windows
# are small). Every 4th pixel (stop 63; was every 2nd, 2.5 px): at most 0.036 template px from the iteration at every
# pixel on 10 talking-head and 10 LFW faces (median 0.012; every 2nd: 0.008, 0.003), 6.2 -> 3.8 ms a face
COORDS_STEP, COORDS_SPACING = 4, 5.0


def template_coords(dst: np.ndarray, w: int, h: int, sigma: float = 16.0) -> tuple[np.ndarray, np.ndarray]:
    """For every pixel of a w x h image, where it falls in the template (float32 maps).

    Forward model: x = A(t + D(t)), A the affine fit and D a Gaussian radial-basis
    displacement that puts the 5 template points exactly on ``dst`` (scipy's RBF
    interpolators are slower than these 5 x 5 lines on a few thousand pixels).
    Inverted by fixed-point iteration (D is smooth and small next to the face); on a grid COORDS_STEP times coarser
    where that is fine enough (COORDS_SPACING), at its pixel centres in the image (cv2.resize's), the displacement
    from the affine part resized back and added to the affine part, exact at every pixel (~1/4 of the exponentials).
    """
    m = affine_fit(dst)
    lin, off = m[:, :2], m[:, 2]
    inv = np.linalg.inv(lin) if abs(np.linalg.det(lin)) > 1e-9 else np.eye(2)
    t_lm = TEMPLATE.astype(np.float64)
    resid = (np.asarray(dst, np.float64) - off) @ inv.T - t_lm
    phi = np.exp(-np.sum((t_lm[:, None] - t_lm[None]) ** 2, axis=2) / (2 * sigma**2))
    wts = np.linalg.solve(phi + 1e-6 * np.eye(5), resid)

    def affine(xs, ys):  # A^-1 of the points at pixel-centre coordinates xs x ys (the pixel centres: + 0.5)
        yy, xx = np.meshgrid(ys, xs, indexing="ij")
        return (np.stack([xx, yy], -1) - off) @ inv.T - 0.5

    def solved(u):
        # (t_x - x)^2 + (t_y - y)^2, exp(-d2 / (2 sigma^2)): the same float64 operations, in two arrays (-d2 / s is
        # d2 / -s, exactly)
        t = u
        d2, dy = np.empty((*u.shape[:-1], 5)), np.empty((*u.shape[:-1], 5))
        for _ in range(3):
            np.square(np.subtract(t[..., 0, None], t_lm[:, 0], out=d2), out=d2)
            d2 += np.square(np.subtract(t[..., 1, None], t_lm[:, 1], out=dy), out=dy)
            np.exp(np.divide(d2, -(2 * sigma**2), out=d2), out=d2)
            t = u - d2 @ wts
        return t

    cw, ch = -(-w // COORDS_STEP), -(-h // COORDS_STEP)
    if np.sqrt(abs(np.linalg.det(inv))) * COORDS_STEP > COORDS_SPACING or min(cw, ch) < 2:
        t = solved(affine(np.arange(w) + 0.5, np.arange(h) + 0.5))
        return t[..., 0].astype(np.float32), t[..., 1].astype(np.float32)
    uc = affine((np.arange(cw) + 0.5) * (w / cw), (np.arange(ch) + 0.5) * (h / ch))
    shift = cv2.resize((solved(uc) - uc).astype(np.float32), (w, h), interpolation=cv2.INTER_LINEAR)
    # the affine part at every pixel as a row plus a column (affine's products and sums, without its full grids)
    xs, ys = (np.arange(w) + 0.5 - off[0])[None, :], (np.arange(h) + 0.5 - off[1])[:, None]
    out = []
    for i in range(2):
        u = xs * inv[i, 0] + ys * inv[i, 1]
        u -= 0.5
        u += shift[..., i]
        out.append(u.astype(np.float32))
    return out[0], out[1]


def template_skin(tx: np.ndarray, ty: np.ndarray) -> np.ndarray:
    out = np.zeros(tx.shape, bool)
    for x, y, ax, ay in SKIN_SPOTS:
        out |= ((tx - x) / ax) ** 2 + ((ty - y) / ay) ** 2 <= 1
    return out
