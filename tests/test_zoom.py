"""Zoom only where small faces can be (issue 20, lever 3): the balanced preset's 2x pass runs on tiles around
the 1x pass's small or weak candidates, not on the whole photo (docs/recall.md)."""
import numpy as np
import pytest

from faceveil.detect import get_detector
from faceveil.detect.multiscale import inside_tiles, plan_zoom_tiles
from faceveil.detect.presets import resolve
from faceveil.detections import Detections

from conftest import record_forwards, shared_path


def _params(**kw):
    from faceveil.detect.multiscale import MultiScale

    return MultiScale.Params(**{"zoom_seed_score": 0.05, "zoom_seed_px": 32.0, "zoom_tile_k": 4.0,
                                "zoom_tile_min": 48.0, **kw})


def test_tiles_go_around_small_or_weak_candidates_only():
    d = Detections.from_boxes([[100, 100, 112, 112],    # 12 px, weak (0.06): a tile of 48 px around it
                               [300, 50, 400, 150],     # 100 px, confident: no tile (the 1x pass sees it whole)
                               [200, 300, 210, 310],    # 10 px but under the seed score: no tile
                               [0, 0, 20, 20]],         # 20 px at the corner: 80 px tile, clipped to the photo
                              [0.06, 0.9, 0.03, 0.5])
    tiles = plan_zoom_tiles(d, 480, 640, _params())
    assert sorted(map(tuple, tiles.tolist())) == [(0, 0, 50, 50), (82, 82, 130, 130)]
    assert len(plan_zoom_tiles(Detections.empty(), 480, 640, _params())) == 0


def test_overlapping_tiles_merge_into_one_when_it_costs_little():
    row = Detections.from_boxes([[x, 200, x + 12, 212] for x in range(100, 340, 30)], np.full(8, 0.3))
    tiles = plan_zoom_tiles(row, 480, 640, _params())
    assert len(tiles) == 1 and tuple(tiles[0]) == (82, 182, 340, 230)  # a crowd's row: one strip
    capped = plan_zoom_tiles(row, 480, 640, _params(zoom_tile_max=100.0))
    assert len(capped) > 2 and (capped[:, 2:] - capped[:, :2]).max() <= 100  # never one tile over zoom_tile_max
    covered = np.zeros(640, bool)
    for x1, _, x2, _ in capped:
        covered[x1:x2] = True
    assert covered[82:340].all()  # every seed's tile still covered
    far = Detections.from_boxes([[100, 100, 112, 112], [400, 400, 412, 412]], [0.3, 0.3])
    assert len(plan_zoom_tiles(far, 480, 640, _params())) == 2  # apart: their bounding box would be mostly empty


def _plan_all_pairs(d, height, width, p):
    """plan_zoom_tiles' merging as it was first written: every step tests tile i against every tile (0.4 s on a
    crowd); the seeds' tiles are the shipped function's."""
    from faceveil.detect.multiscale import seed_tiles

    r = seed_tiles(d, height, width, p)
    alive = np.ones(len(r), bool)
    changed = True
    while changed:
        changed = False
        for i in range(len(r)):
            while alive[i]:
                area = (r[:, 2] - r[:, 0]) * (r[:, 3] - r[:, 1])
                ix = np.minimum(r[i, 2], r[:, 2]) - np.maximum(r[i, 0], r[:, 0])
                iy = np.minimum(r[i, 3], r[:, 3]) - np.maximum(r[i, 1], r[:, 1])
                bw = np.maximum(r[i, 2], r[:, 2]) - np.minimum(r[i, 0], r[:, 0])
                bh = np.maximum(r[i, 3], r[:, 3]) - np.minimum(r[i, 1], r[:, 1])
                union = area[i] + area - np.clip(ix, 0, None) * np.clip(iy, 0, None)
                cand = alive & (ix > 0) & (iy > 0) & (bw * bh <= 1.5 * union)
                cand &= (bw <= p.zoom_tile_max) & (bh <= p.zoom_tile_max)
                cand[i] = False
                j = np.flatnonzero(cand)
                if not len(j):
                    break
                j = j[0]
                r[i] = [min(r[i, 0], r[j, 0]), min(r[i, 1], r[j, 1]), max(r[i, 2], r[j, 2]), max(r[i, 3], r[j, 3])]
                alive[j] = False
                changed = True
    return r[alive]


@pytest.mark.parametrize("seed", range(6))
def test_tile_plan_is_the_all_pairs_plan(seed):
    """Testing only the tiles near tile i (the window its size test allows) plans exactly the same tiles, in the
    same order, as testing every tile: crowds of seeds, clustered as a heatmap's cells around faces, and scattered."""
    rng = np.random.default_rng(seed)
    h, w = 700, 1024
    faces = rng.uniform([0, 0], [w, h], (rng.integers(5, 60), 2))
    c = np.concatenate([faces[rng.integers(0, len(faces), 600)] + rng.normal(0, 6, (600, 2)),
                        rng.uniform([0, 0], [w, h], (100, 2))])
    s = rng.uniform(4, 50, len(c))
    d = Detections.from_boxes(np.concatenate([c - s[:, None] / 2, c + s[:, None] / 2], 1), rng.uniform(0, 1, len(c)))
    for kw in ({}, {"zoom_tile_max": 120.0}, {"zoom_tile_k": 3.5, "zoom_seed_px": 48.0, "zoom_seed_score": 0.03}):
        p = _params(**kw)
        new, old = plan_zoom_tiles(d, h, w, p), _plan_all_pairs(d, h, w, p)
        assert len(old) > 3 and new.tolist() == old.tolist(), kw


def test_boxes_cut_by_a_tile_edge_inside_the_photo_are_dropped():
    tiles = np.array([[0, 0, 100, 100], [200, 200, 300, 300]])
    d = Detections.from_boxes([[0, 0, 20, 20],        # on the photo's border: kept
                               [90, 40, 110, 60],     # crosses the first tile's right edge: dropped
                               [220, 220, 250, 250],  # inside the second: kept
                               [150, 150, 160, 160],  # in no tile: dropped
                               [260, 260, 290, 290]],  # 10 px from an edge, under half its 30 px: a part-face box
                              [0.5] * 5)
    assert inside_tiles(d, tiles, 480, 640, 0.5).tolist() == [True, False, True, False, False]


def _zoomed_pixels(det, image):
    """Pixels CenterFace is fed by the zoom pass (inputs larger than the photo, or tiles), counted by wrapping its
    forward; the 1x pass and the coarse pass (photo shrunk to 640 px) are left out."""
    seen = []
    forward = det.cf.forward

    def counting(img):
        seen.append(img.shape[:2])
        return forward(img)

    det.cf.forward = counting
    d = det.detect(image)
    h, w = image.shape[:2]
    coarse = (round(h * 640 / max(h, w)), round(w * 640 / max(h, w)))
    return d, sum(a * b for a, b in seen if (a, b) not in ((h, w), coarse))


@pytest.mark.slow
def test_balanced_zooms_tiles_and_finds_the_small_faces_the_whole_zoom_finds():
    """A WIDER parade photo (1024x661, 70 labelled faces of 10-20 px): the balanced preset zooms at most 60 % of
    the photo's 2x pixels and still anonymizes the labelled faces the whole-photo zoom does."""
    from faceveil.anonymize import Compositor, RegionParams
    from faceveil.eval.leaks import anonymized_mask, box_coverage
    from faceveil.io.images import read_rgb
    from faceveil.io.labels import read_eval_labels

    root = shared_path("widerface-val")
    key = "0--Parade/0_Parade_Parade_0_317.jpg"
    image = read_rgb(root / "images" / key)
    lab = read_eval_labels(root / "ground_truth" / "wider_face_val_bbx_gt.txt")[key]
    name, params, region = resolve("balanced")
    assert params["zoom_tiles"] is True
    comp = Compositor(RegionParams(region["shape"], region["mask_scale"], 0.0))
    covered, zoomed = {}, {}
    for tiles in (True, False):
        det = get_detector(name, {**params, "zoom_tiles": tiles, "threads": 1})
        d, zoomed[tiles] = _zoomed_pixels(det, image)
        covered[tiles] = box_coverage(anonymized_mask(comp, d, image.shape), lab.faces.xyxy)[0] >= 0.8
    full = 4 * image.shape[0] * image.shape[1]
    assert zoomed[False] >= full and zoomed[True] <= 0.6 * full, (zoomed, full)
    size = np.minimum(lab.faces.widths, lab.faces.heights)
    counted = size >= 10
    assert covered[True][counted].sum() >= covered[False][counted].sum() - 2, (covered[True].sum(), covered[False].sum())


@pytest.mark.slow
def test_small_photos_keep_their_whole_enlargement_unless_min_side_tiles():
    """A 400x156 facemask street photo: balanced enlarges it whole to 800 px as before (enlarged on tiles, facemask
    leaked 31 faces instead of 27); with min_side_tiles its main pass runs at 400 px and only tiles are enlarged."""
    from faceveil.io.images import read_rgb

    image = read_rgb(shared_path("facemask", "images", "maksssksksss1.jpg"))
    name, params, _ = resolve("balanced")
    sizes = {}
    for tiles in (False, True):
        # the big-face passes always run (not gated by the main pass): the last forward calls are theirs
        det = get_detector(name, {**params, "min_side_tiles": tiles, "threads": 1, "big_gate_px": 0.0})
        sizes[tiles] = record_forwards(det)
        det.detect(image)
    assert sizes[False][0] == (312, 800)  # the whole photo enlarged, no zoom tile
    assert sizes[True][0] == image.shape[:2]
    zoomed = sizes[True][1:-len(params["big_scales"])]
    assert zoomed and all(h * w < 312 * 800 for h, w in zoomed)  # tiles, never the whole photo
