"""Zoom only where small faces can be (issue 20, lever 3): the balanced preset's 2x pass runs on tiles around
the 1x pass's small or weak candidates, not on the whole photo (docs/recall.md)."""
import numpy as np
import pytest

from faceveil.detect import get_detector
from faceveil.detect.multiscale import inside_tiles, plan_zoom_tiles
from faceveil.detect.presets import resolve
from faceveil.detections import Detections

from conftest import shared_path


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


def test_boxes_cut_by_a_tile_edge_inside_the_photo_are_dropped():
    tiles = np.array([[0, 0, 100, 100], [200, 200, 300, 300]])
    d = Detections.from_boxes([[0, 0, 20, 20],        # on the photo's border: kept
                               [90, 40, 110, 60],     # crosses the first tile's right edge: dropped
                               [220, 220, 250, 250],  # inside the second: kept
                               [150, 150, 160, 160]],  # in no tile: dropped
                              [0.5] * 4)
    assert inside_tiles(d, tiles, 480, 640, 2.0).tolist() == [True, False, True, False]


def _zoomed_pixels(det, image):
    """Pixels CenterFace is fed beyond the 1x pass, counted by wrapping its forward."""
    seen = []
    forward = det.cf.forward

    def counting(img):
        seen.append(img.shape[0] * img.shape[1])
        return forward(img)

    det.cf.forward = counting
    d = det.detect(image)
    return d, sum(seen) - image.shape[0] * image.shape[1]


@pytest.mark.slow
def test_balanced_zooms_tiles_and_finds_the_small_faces_the_whole_zoom_finds():
    """A WIDER parade photo (1024x819, 270 labelled faces, most under 20 px): the balanced preset zooms at
    most half the photo's 2x pixels and still anonymizes the labelled faces the whole-photo zoom does."""
    from faceveil.anonymize import Compositor, RegionParams
    from faceveil.eval.leaks import anonymized_mask, box_coverage
    from faceveil.io.images import read_rgb
    from faceveil.io.labels import read_eval_labels

    root = shared_path("widerface-val")
    key = "0--Parade/0_Parade_Parade_0_102.jpg"
    image = read_rgb(root / "images" / key)
    lab = read_eval_labels(root / "ground_truth" / "wider_face_val_bbx_gt.txt")[key.split("/")[-1].rsplit(".", 1)[0]
                                                                               if False else key]
    name, params, region = resolve("balanced")
    assert params["zoom_tiles"] is True
    comp = Compositor(RegionParams(region["shape"], region["mask_scale"], 0.0))
    covered, zoomed = {}, {}
    for tiles in (True, False):
        det = get_detector(name, {**params, "zoom_tiles": tiles, "threads": 1})
        d, zoomed[tiles] = _zoomed_pixels(det, image)
        covered[tiles] = box_coverage(anonymized_mask(comp, d, image.shape), lab.faces.xyxy)[0] >= 0.8
    full = 4 * image.shape[0] * image.shape[1]
    assert zoomed[False] >= full and zoomed[True] <= 0.5 * full, (zoomed, full)
    size = np.minimum(lab.faces.widths, lab.faces.heights)
    counted = size >= 10
    assert covered[True][counted].sum() >= covered[False][counted].sum() - 2, (covered[True].sum(), covered[False].sum())


@pytest.mark.slow
def test_small_photos_get_their_main_pass_at_their_own_size_and_the_enlargement_on_tiles():
    """A 400x156 facemask street photo (the facemask set's size): balanced enlarged the whole photo to 800 px; now
    its main pass runs at 400 px and only tiles around small or weak candidates are enlarged."""
    from faceveil.io.images import read_rgb

    image = read_rgb(shared_path("facemask", "images", "maksssksksss0.jpg"))
    name, params, _ = resolve("balanced")
    det = get_detector(name, {**params, "threads": 1})
    assert det.main_factor(image) == 1.0 and det.zoom_factor(image) == 2.0
    sizes = []
    forward = det.cf.forward
    det.cf.forward = lambda img: sizes.append(img.shape[:2]) or forward(img)
    det.detect(image)
    assert sizes[0] == image.shape[:2]
    assert (1600 * 320 not in [h * w for h, w in sizes])  # never the whole photo enlarged
