"""Recall-first detection: CenterFace at several scales, optionally flipped, optionally with YuNet.

A missed face is a leak, a false alarm only hides some background, and the
background it hides grows with the false box's area. So the score cut depends on
the box size: small boxes are kept at a lower score (a false one costs a few
pixels), large ones need the normal score. Passes are pooled and merged with NMS.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ..detections import Detections, box_iou, nms
from ..registry import MAX_THREADS, check_threads, param
from .base import DETECTORS, Detector, tile_factor


# The kinds of CenterFace pass multiscale runs (precision=mixed picks int8 for some): the main pass (1x, or enlarged
# to min_side, and its mirror), the zoom pass or tiles, the big-face passes, the coarse pass of a large photo and the
# tiled pass of a panorama.
PASSES = ("main", "zoom", "big", "coarse", "tiled")


def flip_detections(d: Detections, width: int) -> Detections:
    """Map detections found on a horizontally flipped image back onto the original."""
    b = d.xyxy.copy()
    b[:, [0, 2]] = width - d.xyxy[:, [2, 0]]
    lm = d.landmarks.copy()
    lm[:, :, 0] = width - lm[:, :, 0]
    lm = lm[:, [1, 0, 2, 4, 3]]  # the eyes and the mouth corners change sides
    return Detections(b, d.score, lm, d.track_id, d.source)


def size_threshold(size: np.ndarray, small: float, large: float, small_px: float, large_px: float) -> np.ndarray:
    """Score cut per box: ``small`` at or below ``small_px``, ``large`` from ``large_px``, log-linear between."""
    size = np.asarray(size, np.float64)
    if large_px <= small_px:
        return np.where(size <= small_px, small, large)
    t = (np.log(np.maximum(size, 1e-6)) - math.log(small_px)) / (math.log(large_px) - math.log(small_px))
    return small + (large - small) * np.clip(t, 0.0, 1.0)


def calibrate(d: Detections, dy: float, grow: float, small_px: float, large_px: float) -> Detections:
    """Shift boxes down by ``dy`` of their height; enlarge small ones up to ``grow`` (1 from ``large_px``)."""
    if len(d) == 0 or (dy == 0 and grow == 1):
        return d
    size = np.sqrt(d.areas)
    g = size_threshold(size, grow, 1.0, small_px, large_px)
    b = d.xyxy.astype(np.float64)
    c = (b[:, :2] + b[:, 2:]) / 2
    half = (b[:, 2:] - b[:, :2]) / 2 * g[:, None]
    c[:, 1] += dy * (b[:, 3] - b[:, 1])
    return Detections(np.concatenate([c - half, c + half], axis=1), d.score, d.landmarks, d.track_id, d.source)


def reshape(d: Detections, min_px: float, dy: float, sw: float, sh: float) -> Detections:
    """Boxes from ``min_px`` (sqrt of area): moved down ``dy`` of their height, scaled ``sw`` x ``sh`` around
    their centre. CenterFace boxes big WIDER faces high and narrow against WIDER's labels (issue 21)."""
    if len(d) == 0:
        return d
    big = np.sqrt(d.areas) >= min_px
    if not big.any():
        return d
    b = d.xyxy.astype(np.float64)
    c = (b[:, :2] + b[:, 2:]) / 2
    half = (b[:, 2:] - b[:, :2]) / 2
    c[big, 1] += dy * 2 * half[big, 1]
    half[big] *= [sw, sh]
    return Detections(np.concatenate([c - half, c + half], axis=1), d.score, d.landmarks, d.track_id, d.source,
                      d.sources)


def confirmed(fused: Detections, parts: list[Detections], score: float, iou: float) -> np.ndarray:
    """Per merged box: whether it stands, i.e. scores at least ``score`` or two passes of ``parts`` (its own
    among them) kept a box on it with IoU >= ``iou``. A weak box one pass alone found is more often a texture
    (thorough's low cuts, issue 21); a face is found again mirrored or at another scale."""
    ok = fused.score >= score
    weak = np.flatnonzero(~ok)
    if len(weak) == 0:
        return ok
    votes = np.zeros(len(weak), np.int64)
    for d in parts:
        if len(d):
            votes += box_iou(fused.xyxy[weak], d.xyxy).max(1) >= iou
    ok[weak] = votes >= 2
    return ok


def add_masked(cf: Detections, mk: Detections, same: float = 0.6, extend: float = 0.5, nms_iou: float = 0.4,
               add: bool = True) -> Detections:
    """CenterFace's fused boxes plus the masked-face detector's, where those add recall.

    A masked box that overlaps a CenterFace box of a similar size (intersection over the smaller box's
    area >= ``same``, sizes within 2x) is the same face: it adds no box, but when it reaches lower it
    extends that box's bottom down to its own (by at most ``extend`` of the box's height; 0: never),
    for CenterFace's boxes of masked faces stop at the mask's top edge. A masked box no CenterFace box
    matches is added as it is (``add=False``: never). Hand-written: a few lines of box logic no fusion library does this way.
    """
    if len(mk) == 0:
        return cf
    mk = nms(mk, nms_iou)
    if len(cf) == 0:
        return Detections.merge([cf, mk], cf.source) if add else cf
    a, b = cf.xyxy.astype(np.float64), mk.xyxy.astype(np.float64)
    iw = np.clip(np.minimum(a[:, None, 2], b[None, :, 2]) - np.maximum(a[:, None, 0], b[None, :, 0]), 0, None)
    ih = np.clip(np.minimum(a[:, None, 3], b[None, :, 3]) - np.maximum(a[:, None, 1], b[None, :, 1]), 0, None)
    area_a, area_b = cf.areas.astype(np.float64), mk.areas.astype(np.float64)
    inter_small = iw * ih / np.maximum(np.minimum(area_a[:, None], area_b[None, :]), 1e-9)
    ratio = np.sqrt(np.maximum(area_a[:, None], 1e-9) / np.maximum(area_b[None, :], 1e-9))
    match = (inter_small >= same) & (ratio >= 0.5) & (ratio <= 2.0)  # C x M
    new = ~match.any(axis=0)
    if extend > 0 and match.any():
        iou = np.where(match, box_iou(a, b), -1.0)
        a = a.copy()
        for j in np.flatnonzero(~new):
            i = int(np.argmax(iou[:, j]))
            h = a[i, 3] - a[i, 1]
            a[i, 3] = max(a[i, 3], min(b[j, 3], a[i, 3] + extend * h))
        cf = Detections(a, cf.score, cf.landmarks, cf.track_id, cf.source, cf.sources)
    return Detections.merge([cf, mk[new]], cf.source) if add else cf


def seed_tiles(d: Detections, height: int, width: int, p) -> np.ndarray:
    """plan_zoom_tiles' tiles before merging: one per seed (a candidate scoring at least ``p.zoom_seed_score`` and
    at most ``p.zoom_seed_px``), ``p.zoom_tile_k`` x its size a side (at least ``p.zoom_tile_min``), clipped."""
    size = np.sqrt(d.areas)
    ok = (d.score >= p.zoom_seed_score) & (size <= p.zoom_seed_px)
    if not ok.any():
        return np.zeros((0, 4), np.int64)
    b = d.xyxy[ok].astype(np.float64)
    c = (b[:, :2] + b[:, 2:]) / 2
    half = np.maximum(p.zoom_tile_min, p.zoom_tile_k * size[ok])[:, None] / 2
    r = np.concatenate([np.floor(c - half), np.ceil(c + half)], axis=1)
    return np.clip(r, 0, [width, height, width, height]).astype(np.int64)


def plan_zoom_tiles(d: Detections, height: int, width: int, p) -> np.ndarray:
    """Where the zoom pass looks: integer tiles (x1, y1, x2, y2, image pixels) around the 1x pass's candidates
    that score at least ``p.zoom_seed_score`` and measure at most ``p.zoom_seed_px`` (a small face, found or
    only hinted at), each ``p.zoom_tile_k`` x its size a side (at least ``p.zoom_tile_min``), clipped to the
    photo. Overlapping tiles are merged into their bounding box when that box is at most 1.5x their
    combined area and ``p.zoom_tile_max`` a side, so a crowd becomes a few larger tiles instead of many
    overlapping small ones.
    """
    r = seed_tiles(d, height, width, p)
    if not len(r):
        return r
    # Greedy merging (written here: no library plans detector tiles): sweep until no pair merges; tile i takes the
    # first (lowest-index) live tile that overlaps it and passes both tests, grows, and tries again.
    alive = np.ones(len(r), bool)
    area = (r[:, 2] - r[:, 0]) * (r[:, 3] - r[:, 1])
    m = p.zoom_tile_max
    changed = True
    while changed:
        changed = False
        for i in range(len(r)):
            if not alive[i]:
                continue
            # Only tiles within zoom_tile_max of i's far edges can pass the size test, and i only grows while it
            # takes tiles, so this window holds every tile it can take: the tests run on those few (a crowd
            # photo seeds thousands of tiles; testing all of them per step took up to 0.4 s a photo).
            near = alive & (r[:, 0] >= r[i, 2] - m) & (r[:, 2] <= r[i, 0] + m)
            near &= (r[:, 1] >= r[i, 3] - m) & (r[:, 3] <= r[i, 1] + m)
            near[i] = False
            s = np.flatnonzero(near)
            if not len(s):
                continue
            rs, area_s, live = r[s], area[s], np.ones(len(s), bool)
            x1, y1, x2, y2 = r[i].tolist()
            while True:
                ix = np.minimum(x2, rs[:, 2]) - np.maximum(x1, rs[:, 0])
                iy = np.minimum(y2, rs[:, 3]) - np.maximum(y1, rs[:, 1])
                bw = np.maximum(x2, rs[:, 2]) - np.minimum(x1, rs[:, 0])
                bh = np.maximum(y2, rs[:, 3]) - np.minimum(y1, rs[:, 1])
                union = (x2 - x1) * (y2 - y1) + area_s - np.maximum(ix, 0) * np.maximum(iy, 0)
                k = np.flatnonzero(live & (ix > 0) & (iy > 0) & (bw * bh <= 1.5 * union) & (bw <= m) & (bh <= m))
                if not len(k):
                    break
                # Taking a tile inside i leaves i as it is (and the next candidate the next one in k): the leading
                # run of those goes at once; the first that reaches out grows i, and the tests run again.
                out = ~((rs[k, 0] >= x1) & (rs[k, 1] >= y1) & (rs[k, 2] <= x2) & (rs[k, 3] <= y2))
                k = k[: int(np.argmax(out)) + 1] if out.any() else k
                alive[s[k]] = live[k] = False
                changed = True
                a1, b1, a2, b2 = rs[k[-1]].tolist()
                x1, y1, x2, y2 = min(x1, a1), min(y1, b1), max(x2, a2), max(y2, b2)
            r[i] = x1, y1, x2, y2
            area[i] = (x2 - x1) * (y2 - y1)
    return r[alive]


def align_tiles(tiles: np.ndarray, factor: float, height: int, width: int, grid: int = 32) -> np.ndarray:
    """Tiles (image pixels) in the pixels of the photo resized by ``factor`` (``height`` x ``width``), widened
    to CenterFace's ``grid`` (its coarsest stride): a tile that starts off the grid sees the faces shifted
    against the network's strides and scores them differently (measured on facemask: 0.17 whole, 0.09 in a
    tile off the grid; 42 leaked faces instead of 28)."""
    t = np.asarray(tiles, np.float64).reshape(-1, 4) * factor
    lo = np.maximum(np.floor(t[:, :2] / grid) * grid, 0)
    hi = np.minimum(np.ceil(t[:, 2:] / grid) * grid, [width, height])
    return np.concatenate([lo, hi], axis=1).astype(np.int64)


def inside_tiles(d: Detections, tiles: np.ndarray, height: int, width: int, edge: float) -> np.ndarray:
    """Per box: whether it lies inside some tile, at least ``edge`` x its size (sqrt of area) from that tile's
    edges inside the photo (a tile edge on the photo's border cuts nothing)."""
    ok = np.zeros(len(d), bool)
    if len(d) == 0 or len(tiles) == 0:
        return ok
    edge = (edge * np.sqrt(d.areas))[:, None, None]
    b = d.xyxy[:, None, :]
    t = tiles[None, :, :].astype(np.float64)
    lo = np.where(t[..., :2] > 0, t[..., :2] + edge, -np.inf)
    hi = np.where(t[..., 2:] < [width, height], t[..., 2:] - edge, np.inf)
    inside = (b[..., :2] >= lo).all(-1) & (b[..., 2:] <= hi).all(-1)
    return inside.any(1)


@DETECTORS.register("multiscale")
class MultiScale(Detector):
    """CenterFace at several scales (+ flip, + YuNet), size-aware score cut: the recall-first presets (the default)."""

    @dataclass(frozen=True)
    class Params:
        threshold: float = param(0.2, "score cut for large boxes (>= large_px); lower finds more faces")
        small_threshold: float = param(0.2, "score cut for small boxes (<= small_px): a false small box hides little")
        small_px: float = param(16.0, "boxes up to this size (sqrt of area, image pixels) use small_threshold")
        large_px: float = param(64.0, "boxes from this size use threshold; log-linear in between")
        min_side: int = param(0, "upscale images whose longer side is below this to this (0: never)")
        zoom: float = param(1.0, "extra pass on the original enlarged this much, for faces under ~16 px (1: off)")
        zoom_max_side: int = param(2048, "cap on the zoomed image's longer side")
        zoom_min_score: float = param(0.0, "zoomed-pass boxes need at least this score too (it sees more false faces)")
        zoom_max_px: float = param(64.0, "zoomed-pass boxes larger than this (sqrt of area, image pixels) are dropped: "
                                   "enlarged, a big face breaks into part-face boxes that could win the merge")
        zoom_tiles: bool = param(False, "zoom only tiles around the 1x pass's small or weak candidates instead of the "
                                 "whole photo (docs/recall.md)")
        min_side_tiles: bool = param(False, "with zoom_tiles, photos under min_side too: their main pass at their own "
                                     "size and the enlargement on tiles only (measured on facemask: 0.6x the time, "
                                     "31 leaked faces instead of 27: off in the presets)")
        zoom_seed_score: float = param(0.05, "1x candidates from this score seed a zoom tile (below the cut: a "
                                       "small face too small for the 1x pass still leaves a weak peak)")
        zoom_seed_px: float = param(32.0, "1x candidates up to this size (sqrt of area, image pixels) seed a tile")
        zoom_tile_k: float = param(4.0, "a seed's tile is this many times its size a side (at least zoom_tile_min)")
        zoom_tile_min: float = param(48.0, "smallest tile side, image pixels")
        zoom_tile_max: float = param(320.0, "overlapping tiles merge only up to this side, image pixels (one huge "
                                     "zoomed tile runs slower per pixel than several smaller ones)")
        zoom_tile_replace: bool = param(False, "with zoom_tiles, drop the 1x pass's boxes up to zoom_seed_px inside a "
                                        "tile (the tile sees them enlarged; used with min_side_tiles: at 1x, small "
                                        "boxes hide more background; on WIDER it leaked 47 more faces)")
        zoom_tile_edge: float = param(0.5, "tile boxes closer to a tile edge inside the photo than this times their "
                                      "size are dropped: a face cut by the tile gives a part-face box near that "
                                      "edge (the face is whole in the 1x pass or in its own tile)")
        flip: bool = param(False, "also detect on the mirrored image (main pass)")
        yunet: bool = param(False, "add YuNet as a second, independent detector (needs yuface)")
        yunet_threshold: float = param(0.6, "YuNet's score cut")
        max_size: int = param(1920, "downscale so the longer side is at most this first (0: never)")
        min_factor: float = param(0.5, "never shrink a photo more than this for max_size: a wide panorama or huge "
                                  "photo also gets a pass in tiles of max_size, at the factor that keeps a "
                                  "max_size square's pixel count (at least this), for its small faces (0: off)")
        tiled_max_mp: float = param(0.0, "the tiled pass (min_factor) holds at most this many megapixels, shrinking "
                                    "a larger photo further (0: any): bounds a huge photo's time (a 108 MP photo at "
                                    "its own size: 42 tiles, about 2 minutes; 24: a quarter) for its faces under "
                                    "~20 px (docs/recall.md)")
        coarse_size: int = param(640, "also detect on a copy shrunk to this longer side, for very large faces (0: off)")
        big_scales: tuple[float, ...] = param((), "photos enlarged by min_side also get passes at these factors of "
                                              "their own size (e.g. 0.6,0.9), for big faces: enlarged, CenterFace "
                                              "boxes a big face short, above its chin or mask")
        big_min_px: float = param(48.0, "big-face passes keep boxes from this size (sqrt of area, image pixels)")
        big_min_score: float = param(0.5, "big-face passes keep boxes from this score (a false big box hides much)")
        big_gate_px: float = param(0.0, "run the big-face passes only on photos whose main pass (or its mirror) has "
                                   "a candidate from big_gate_score at least this size (sqrt of area, the photo's "
                                   "own pixels): a photo with no big face skips them (0: always run them)")
        big_gate_score: float = param(0.05, "the score from which a main-pass candidate opens the big-face passes "
                                      "(big_gate_px)")
        nms_iou: float = param(0.3, "boxes overlapping more than this are merged")
        confirm_score: float = param(0.0, "merged boxes scoring under this count only where a second pass (the "
                                     "mirror, the zoom, a big-face pass) also kept a box on them (0: off)")
        confirm_iou: float = param(0.4, "a pass's box on a merged box with at least this IoU confirms it")
        confirm_all: bool = param(False, "confirm weak boxes on every photo, not only on photos min_side enlarges "
                                  "(at their own size, WIDER's small faces are often found by one pass alone)")
        confirm_floor: float = param(0.0, "a pass's boxes confirm from this score even under its cut (0: only the "
                                     "boxes it keeps)")
        box_dy: float = param(0.0, "shift boxes down by this fraction of their height (CenterFace's boxes sit "
                              "high: forehead in, chin and face masks partly out)")
        small_grow: float = param(1.0, "enlarge boxes up to small_px by this factor (their outline is noisier), "
                                  "tapering to 1 at large_px")
        shape_px: float = param(0.0, "boxes from this size (sqrt of area, image pixels) get the shape_* calibration "
                                "too (0: off)")
        shape_all: bool = param(False, "the shape_* calibration on every photo, not only photos at their own size "
                                "(enlarged by min_side, facemask's big faces are boxed as their labels already)")
        shape_dy: float = param(0.0, "boxes from shape_px: moved down this fraction of their height more")
        shape_w: float = param(1.0, "boxes from shape_px: width scaled by this, around the centre")
        shape_h: float = param(1.0, "boxes from shape_px: height scaled by this, around the centre")
        masked: bool = param(False, "add the masked-face detector (faceveil/data/masked.onnx, docs/masked-detector.md) "
                             "where it adds recall: a box where CenterFace has none, or a CenterFace box "
                             "extended down to its bottom")
        masked_threshold: float = param(0.5, "masked-face boxes from large_px need this score")
        masked_small_threshold: float = param(0.3, "masked-face boxes up to small_px need this score (log-linear "
                                              "between, like threshold and small_threshold)")
        masked_min_side: int = param(0, "run the masked-face detector on photos enlarged to this longer side "
                                     "(0: at their own size, shrunk to 1024)")
        masked_same: float = param(0.6, "a masked-face box and a CenterFace box overlapping this much (of the "
                                   "smaller box) are one face")
        masked_add: bool = param(True, "add masked-face boxes no CenterFace box matches (false: only extend)")
        masked_extend: float = param(0.5, "extend a CenterFace box down to its masked-face box's bottom by at most "
                                     "this share of its height (0: never)")
        threads: int = param(0, f"onnxruntime threads, 0 to {MAX_THREADS} (0: all cores)")
        spin: bool = param(True, "CenterFace's onnxruntime threads spin between runs: fastest alone, wasteful "
                           "beside other work (videos turn it off)")
        precision: str = param("fp32", "CenterFace weights: fp32 (the original), int8 (quantized: faster, a "
                                "little less accurate; 7-bit weights on x86 without VNNI; docs/int8.md) or mixed "
                                "(int8 on int8_passes)")
        int8_passes: tuple[str, ...] = param(("big",), "with precision=mixed, the passes that run int8 (of main, "
                                             "zoom, big, coarse, tiled); the others fp32 (docs/int8.md)")

        def __post_init__(self):
            check_threads(self.threads)
            for name in ("threshold", "small_threshold", "masked_threshold", "masked_small_threshold"):
                if not 0.0 < getattr(self, name) < 1.0:
                    raise ValueError(f"{name} must be between 0 and 1")
            if self.zoom < 1.0 or self.min_side < 0 or self.max_size < 0:
                raise ValueError("zoom must be >= 1 and sizes >= 0")
            if not 0.0 <= self.min_factor <= 1.0:
                raise ValueError("min_factor must be between 0 and 1")
            if self.tiled_max_mp < 0:
                raise ValueError("tiled_max_mp must be >= 0")
            if not all(0.0 < s <= 1.0 for s in self.big_scales):
                raise ValueError("big_scales must be factors in (0, 1]")
            if self.big_gate_px < 0 or not 0.0 < self.big_gate_score < 1.0:
                raise ValueError("big_gate_px must be >= 0 and big_gate_score between 0 and 1")
            from .centerface import PRECISIONS

            if self.precision not in (*PRECISIONS, "mixed"):
                raise ValueError(f"precision must be one of: {', '.join(PRECISIONS)}, mixed")
            if not set(self.int8_passes) <= set(PASSES):
                raise ValueError(f"int8_passes must be among: {', '.join(PASSES)}")

    def __init__(self, params=None):
        super().__init__(params)
        from .centerface import CenterFace

        p = self.params
        # self.cf: the main pass's network; a mixed setting's other precision is loaded on its first use (_net)
        self.cf = CenterFace(CenterFace.Params(threshold=min(p.threshold, p.small_threshold), threads=p.threads,
                                             spin=p.spin, precision=self.pass_precision("main")))
        self._other = None
        self.yn = None
        if p.yunet:
            from .yunet import YuNet

            self.yn = YuNet(YuNet.Params(threshold=p.yunet_threshold))
        self.mk = None
        if p.masked:
            from .masked import MaskedFace

            self.mk = MaskedFace(MaskedFace.Params(threshold=self.masked_floor, min_side=p.masked_min_side,
                                                   threads=p.threads))

    @property
    def int8_7bit(self) -> bool:
        """int8 was asked for (``precision`` int8 or mixed) and runs the 7-bit build: no VNNI on this CPU
        (centerface.int8_build). Asked of the parameters, not self.cf: with ``mixed`` the main pass may be fp32."""
        from .centerface import int8_build

        return self.params.precision != "fp32" and int8_build() == "int8_7bit"

    def pass_precision(self, kind: str) -> str:
        """The weights a pass of this kind (one of PASSES) runs: ``precision``, or with ``mixed`` int8 for the kinds
        in ``int8_passes`` and fp32 for the others."""
        p = self.params
        if p.precision != "mixed":
            return p.precision
        return "int8" if kind in p.int8_passes else "fp32"

    def _net(self, kind: str):
        """The CenterFace that runs passes of this kind (self.cf, or the other precision's, made on first use)."""
        return self._net_of(self.pass_precision(kind))

    def _net_of(self, precision: str):
        if precision == self.cf.params.precision:
            return self.cf
        if self._other is None:
            from dataclasses import replace

            # Its threads never spin: two sessions' spinning threads fight over the cores between passes (facemask,
            # balanced with the big-face passes int8, 2 cores: 190-210 CPU ms a photo with both spinning, 115-125
            # with this one not, fp32 alone 125-145; docs/int8.md "Mixed precision").
            self._other = type(self.cf)(replace(self.cf.params, precision=precision, spin=False))
        return self._other

    @property
    def floor(self) -> float:
        return min(self.params.threshold, self.params.small_threshold)

    @property
    def masked_floor(self) -> float:
        return min(self.params.masked_threshold, self.params.masked_small_threshold)

    def _pass(self, image: np.ndarray, factor: float, floor: float, flip: bool = False, kind: str = "main"
              ) -> Detections:
        """Raw CenterFace detections (before NMS) on ``image`` resized by ``factor``, in ``image``'s pixels."""
        import cv2

        h, w = image.shape[:2]
        img = image[:, ::-1] if flip else image
        if factor != 1.0:
            interp = cv2.INTER_AREA if factor < 1 else cv2.INTER_LINEAR
            img = cv2.resize(img, (max(1, round(w * factor)), max(1, round(h * factor))), interpolation=interp)
        elif flip:
            img = np.ascontiguousarray(img)
        d = self._net(kind).detect_raw(img, floor).scaled(1.0 / factor)
        return flip_detections(d, w) if flip else d

    def main_factor(self, image: np.ndarray) -> float:
        """The main pass's resize factor: down to ``max_size``, or up to ``min_side`` for small photos."""
        p = self.params
        side = max(image.shape[:2])
        f = p.max_size / side if p.max_size and side > p.max_size else 1.0  # downscale's factor, without its resize
        return p.min_side / side if self.enlarged(image) and not self.tiles_enlarge(image) else f

    def enlarged(self, image: np.ndarray) -> bool:
        """Whether ``min_side`` enlarges this photo (its main pass, or with ``min_side_tiles`` its zoom tiles)."""
        return self.enlarges(image.shape[1], image.shape[0])

    def enlarges(self, width: int, height: int) -> bool:
        """``enlarged`` for a photo of this size."""
        p = self.params
        return bool(p.min_side) and max(width, height) < p.min_side

    def tiles_enlarge(self, image: np.ndarray) -> bool:
        """Whether this photo's enlargement to ``min_side`` runs on zoom tiles (``min_side_tiles``)."""
        p = self.params
        return p.zoom_tiles and p.min_side_tiles and self.enlarged(image)

    def zoom_factor(self, image: np.ndarray) -> float:
        """The zoom pass's factor: ``zoom`` capped at ``zoom_max_side``; enlarged on tiles, at least ``min_side``'s."""
        p = self.params
        side = max(image.shape[:2])
        zf = min(p.zoom, p.zoom_max_side / side)
        if self.tiles_enlarge(image):
            zf = max(zf, p.min_side / side)
        return zf

    def passes(self, image: np.ndarray, floor: float | None = None) -> list[Detections]:
        """Every pass's raw detections in image pixels, cut at ``floor`` (default: the lowest threshold)."""
        p = self.params
        floor = self.floor if floor is None else floor
        side = max(image.shape[:2])
        f = self.main_factor(image)
        zf = self.zoom_factor(image)
        zoom = zf > f * 1.05 and (p.zoom > 1.0 or self.tiles_enlarge(image))
        gate = self.big_gated(image)
        if zoom and p.zoom_tiles:
            # the main pass down to the seeds' score: its weak candidates say where the zoom tiles go (and, gated,
            # down to the big-face gate's score: a big face's weak peak opens the big-face passes)
            low = min(floor, p.zoom_seed_score)
            d = self._pass(image, f, min(low, p.big_gate_score) if gate else low)
            seen = [d]
            tiles = plan_zoom_tiles(d[d.score > low] if gate else d, *image.shape[:2], p)
            out = [d[(d.score >= floor) & ~self.replaced(d, tiles, *image.shape[:2])]]
        elif gate and p.big_gate_score < floor:
            d = self._pass(image, f, p.big_gate_score)
            seen, out = [d], [d[d.score > floor]]  # detect_raw's own cut (heat > floor)
        else:
            out = [self._pass(image, f, floor)]
            seen = out[:]
        if p.flip:
            m = self._pass(image, f, min(floor, p.big_gate_score) if gate else floor, flip=True)
            seen.append(m)
            out.append(m[m.score > floor] if gate and p.big_gate_score < floor else m)
        # zoom is relative to the original: a small photo already enlarged by min_side gets no second pass
        if zoom:
            z = self.tiles_pass(image, tiles, zf, floor) if p.zoom_tiles else self._pass(image, zf, floor, kind="zoom")
            z = z[np.sqrt(z.areas) <= p.zoom_max_px]
            # a small photo's tiles stand in for its enlarged main pass: their boxes are cut as main-pass boxes
            source = "centerface" if self.tiles_enlarge(image) else "zoom"
            out.append(Detections(z.xyxy, z.score, z.landmarks, None, source))
        # Shrunk to max_size, a panorama's or huge photo's small faces fall under what CenterFace finds;
        # the tiled pass sees them at (nearly) their own size. Photos max_size shrinks less than min_factor
        # never take it, so their detections stay exactly what they were.
        t = tile_factor(*image.shape[:2], p.max_size, p.min_factor, p.tiled_max_mp * 1e6)
        if t is not None:
            out.append(self._net("tiled").detect_tiled(image, t, floor, p.max_size))
        if p.coarse_size and side * f > 1.5 * p.coarse_size:
            out.append(self._pass(image, p.coarse_size / side, floor, kind="coarse"))
        if not gate or self.big_gate_open(seen):
            out += self.big_passes(image, floor)
        if self.yn is not None:
            out.append(self.yn.detect(image))
        if self.mk is not None:
            out.append(self.masked_pass(image, min(floor, self.masked_floor)))
        return out

    def masked_pass(self, image: np.ndarray, floor: float) -> Detections:
        """The masked-face detector's raw peaks (before NMS), source "masked"; ``fuse`` adds them last."""
        return self.mk.detect_raw(image, floor)

    def big_passes(self, image: np.ndarray, floor: float, scales: tuple[float, ...] | None = None,
                   min_px: float | None = None) -> list[Detections]:
        """Passes at ``scales`` (default ``big_scales``) of a photo's own size, boxes from ``min_px`` only.

        Run only when the main pass enlarged the photo: enlarged for its small faces, a photo's big
        faces outgrow the sizes CenterFace boxes well and their boxes stop above the chin or mask
        (masked profiles most of all). At or under the photo's own size the same faces get taller
        boxes with higher scores.
        """
        p = self.params
        if not self.enlarged(image):
            return []
        min_px = p.big_min_px if min_px is None else min_px
        return [self.as_big(self._pass(image, s, floor, kind="big"), min_px) for s in (p.big_scales if scales is None else scales)]

    def big_gated(self, image: np.ndarray) -> bool:
        """Whether this photo's big-face passes wait on the main pass's candidates (``big_gate_px``)."""
        p = self.params
        return p.big_gate_px > 0 and bool(p.big_scales) and self.enlarged(image)

    def big_gate_open(self, main: list[Detections]) -> bool:
        """Whether the main pass (and its mirror) say a big face can be: a candidate scoring at least
        ``big_gate_score`` whose box (sqrt of area, the photo's own pixels) measures at least ``big_gate_px``."""
        p = self.params
        return any(bool(((d.score >= p.big_gate_score) & (np.sqrt(d.areas) >= p.big_gate_px)).any()) for d in main)

    def replaced(self, d: Detections, tiles: np.ndarray, height: int, width: int) -> np.ndarray:
        """Per 1x box: whether a zoom tile replaces it (``zoom_tile_replace``: small and inside a tile)."""
        if not self.params.zoom_tile_replace:
            return np.zeros(len(d), bool)
        return (np.sqrt(d.areas) <= self.params.zoom_seed_px) & inside_tiles(d, tiles, height, width, 0.0)

    def tiles_pass(self, image: np.ndarray, tiles: np.ndarray, factor: float, floor: float) -> Detections:
        """Raw detections on the tiles (x1, y1, x2, y2 in image pixels) of ``image`` resized by ``factor``, in
        image pixels. The photo is resized whole (cheap beside the network) and cut on CenterFace's 32 px grid
        (``align_tiles``): a tile then gives the scores the whole zoomed photo gives there. Boxes reaching a
        tile edge inside the photo are dropped (``inside_tiles``)."""
        import cv2

        h, w = image.shape[:2]
        img = cv2.resize(image, (max(1, round(w * factor)), max(1, round(h * factor))), interpolation=cv2.INTER_LINEAR)
        zh, zw = img.shape[:2]
        zoomed = align_tiles(tiles, factor, zh, zw)
        parts, net = [], self._net("zoom")
        for i, (x1, y1, x2, y2) in enumerate(zoomed):
            d = net.detect_raw(np.ascontiguousarray(img[y1:y2, x1:x2]), floor).translated(x1, y1)
            parts.append(d[inside_tiles(d, zoomed[[i]], zh, zw, self.params.zoom_tile_edge)])
        if not parts:
            return Detections.empty("centerface")
        return Detections.merge(parts, "centerface").scaled(1.0 / factor)

    @staticmethod
    def as_big(d: Detections, min_px: float) -> Detections:
        """A big-face pass's boxes from ``min_px`` (sqrt of area) on, marked for ``keep``'s big_min_score."""
        d = d[np.sqrt(d.areas) >= min_px]
        return Detections(d.xyxy, d.score, d.landmarks, None, "big")

    def cut(self, d: Detections) -> np.ndarray:
        """The score each box needs, by its size (sqrt of area)."""
        p = self.params
        return size_threshold(np.sqrt(d.areas), p.small_threshold, p.threshold, p.small_px, p.large_px)

    def keep(self, d: Detections) -> Detections:
        """The operating point: YuNet's own cut, the zoom and big-face passes' minimums, then the size-aware cut."""
        p = self.params
        if d.source == "yunet":
            return d
        if d.source == "masked":
            return d[d.score >= size_threshold(np.sqrt(d.areas), p.masked_small_threshold, p.masked_threshold,
                                               p.small_px, p.large_px)]
        ok = d.score >= self.cut(d)
        if d.source == "zoom":
            ok &= d.score >= p.zoom_min_score
        if d.source == "big":
            ok &= d.score >= p.big_min_score
        return d[ok]

    def fuse(self, parts: list[Detections], width: int, height: int, raw: list[Detections] | None = None) -> Detections:
        """Merge the passes' kept boxes: NMS, calibration, the masked-face boxes (``add_masked``), clipped.
        ``raw``: the passes before ``keep`` (what confirms a weak box with ``confirm_floor``)."""
        masked = [d for d in parts if d.source == "masked"]
        parts = [d for d in parts if d.source != "masked"]
        merged = Detections.merge(parts, "multiscale")
        p = self.params
        fused = nms(Detections(merged.xyxy, merged.score, merged.landmarks, None, "multiscale"), p.nms_iou)
        enlarged = self.enlarges(width, height)
        if p.confirm_score > 0 and (p.confirm_all or enlarged):
            votes = parts
            if p.confirm_floor > 0 and raw is not None:
                votes = [d[d.score >= p.confirm_floor] for d in raw if d.source != "masked"]
            fused = fused[confirmed(fused, votes, p.confirm_score, p.confirm_iou)]
        fused = calibrate(fused, p.box_dy, p.small_grow, p.small_px, p.large_px)
        if p.shape_px > 0 and (p.shape_all or not enlarged):
            fused = reshape(fused, p.shape_px, p.shape_dy, p.shape_w, p.shape_h)
        if masked:
            fused = add_masked(fused, Detections.merge(masked, "multiscale"), p.masked_same, p.masked_extend,
                               add=p.masked_add)
        return fused.clipped(width, height)

    def detect(self, image: np.ndarray) -> Detections:
        h, w = image.shape[:2]
        parts = self.passes(image, min(self.floor, self.params.confirm_floor or 1.0))
        return self.fuse([self.keep(d) for d in parts], w, h, parts)

    def detect_candidates(self, image: np.ndarray, floor: float) -> tuple[Detections, Detections]:
        """(what ``detect`` returns, every candidate down to ``floor``) from one set of passes (for PR curves)."""
        parts = self.passes(image, min(floor, self.floor, self.params.confirm_floor or 1.0))
        h, w = image.shape[:2]
        return self.fuse([self.keep(d) for d in parts], w, h, parts), self.fuse(parts, w, h, parts)
