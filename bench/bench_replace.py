"""Face replacement vs blur / pixelate / blackout: privacy, utility, quality, speed.

    python bench/bench_replace.py [--people 100] [--grid-only]

On LFW (../shared/data/lfw, evaluation only; nothing from it is written to the
repository): gallery = the first photo of every one of its people (original),
probes = the second photo of --people of them, anonymized. dlib descriptors
(5-point shape model) on the box dlib's HOG detector finds on the original,
reused on the anonymized image (CenterFace's box when HOG misses).

- naive attack: anonymized probe vs original gallery (all people): rank-1, and
  verification at distance < 0.6 (genuine pair + one impostor pair per probe);
- parrot attack: the gallery anonymized with the same method too (probe people only);
- detection rate of anonymized faces by CenterFace and dlib HOG (IoU >= 0.3 with
  the original box); SSIM vs the original (whole image and face box); FD-dlib
  (Frechet distance of descriptors, anonymized vs original probes);
- diversity: 10 identity seeds per face, pairwise descriptor distances;
- within 0.6 of own original: share of probes whose anonymized descriptor (same box) stays
  within dlib's 0.6 of the original photo's;
- speed: faces/s of the method alone (detections given), on these 250x250 photos, per wall-clock
  second and per CPU-second (the latter is what to compare on a shared machine);
- donor-match rate of the shipped bank (from its build) and of an experimental
  LFW donor bank built from people not among the probes (never saved).

Looks (``--looks``), on deepface-unit (MIT; photos shrunk to 640 px) and facemask (CC0; faces
of 40 px and more), each face detected with the default preset and replaced in the default
region: Delta-E (CIE76) between the mean Lab colour of the central half of the face box in
the original and in the output; region fill (changed pixels over their bounding box); seam
(mean Sobel gradient along the changed area's border, output over original); sharpness
(Laplacian variance over the central half box, output over original).
Also every 30th frame of the shared clips (real footage; evaluation only), faces of 40 px and more.

Flicker (``--flicker N``), the shared clips' first N frames through the video path (video preset, tracking, the
detector on every 2nd frame): for each tracked face of 24 px and more seen on two frames in a row, the change of the
mean L* of its box's central half, of its L* on an 8x8 grid (a face flipped or redrawn), and of the L* of the
box grown 1.25x (the region: what surrounds the face) on an 8x8 grid, and of the central half's fine detail at the
same pixels (grain and skin texture), in the output and in the original (motion and light alone); mean and 95th
percentile per clip.

Then draws bench/replace_grid.png from deepface-unit photos (MIT).
Timings are noisy on a shared machine: read them as rough.
"""
from __future__ import annotations

import argparse
import sys
import time
from itertools import islice
from pathlib import Path

import cv2
import numpy as np

from common import (COMP, DATA, ROOT, Face, deepface_face, detected, frechet, lfw_gallery_and_probes, rank1, ssim,
                    table)
from faceveil.anonymize import Compositor, RegionParams, get_method
from faceveil.anonymize.identity import MATCH, descriptor
from faceveil.anonymize.methods.replace import Replace
from faceveil.detect import get_detector
from faceveil.detections import Detections
from faceveil.io.images import read_rgb
from faceveil.io.video import probe, read_frames

VIDEO_EVERY = 30  # frames: 1 s apart at 30 fps
FLICKER_MIN_PX = 24  # the flicker table's smallest face (px)
REGION_SCALE = 1.25  # the flicker table's region: the box grown as the default region grows it

METHODS = {
    "replace": ("replace", {}),
    "replace-region": ("replace", {"shape": "region"}),
    "replace-nograin": ("replace", {"grain": False}),
    "replace-blurred": ("replace", {"appearance": "blurred"}),
    "replace-poisson": ("replace", {"harmonizer": "poisson"}),
    "replace-unet": ("replace", {"harmonizer": "unet"}),
    # every face's landmarks dropped: replace places the face by the mean shape (anonymize/box_landmarks.py), as
    # for a labelled box no detection matches (`faceveil eval train`, dataset mode --boxes gt)
    "replace-nolandmarks": ("replace", {"drop_landmarks": True}),
    "replace-nolandmarks-keep": ("replace", {"drop_landmarks": True, "no_landmarks": "estimated-keep"}),
    "blur": ("blur", {}),
    "pixelate": ("pixelate", {}),
    "blackout": ("blackout", {}),
}


class NoLandmarks:
    """A method applied to the same boxes with their landmarks dropped."""

    def __init__(self, inner):
        self.inner = inner
        self.counts = getattr(inner, "counts", None)

    def apply(self, frame, detections, compositor, rng):
        bare = Detections(detections.xyxy, detections.score, None, detections.track_id)
        return self.inner.apply(frame, bare, compositor, rng)


def make_method(name: str, params: dict):
    """get_method, plus this bench's own switch ``drop_landmarks``."""
    params = dict(params)
    drop = params.pop("drop_landmarks", False)
    method = get_method(name, params)
    return NoLandmarks(method) if drop else method


def anonymize(method, face: Face, seed: int) -> np.ndarray:
    return method.apply(face.img, face.det, COMP, np.random.default_rng(seed))


def verification(probes, gallery, truth, rng) -> tuple[float, float, float]:
    gen = np.linalg.norm(probes - gallery[truth], axis=1)
    other = (truth + rng.integers(1, len(gallery), len(truth))) % len(gallery)
    imp = np.linalg.norm(probes - gallery[other], axis=1)
    tar, far = float((gen < MATCH).mean()), float((imp < MATCH).mean())
    return (tar + 1 - far) / 2, tar, far


def bench(n_people: int, seed: int, gallery_limit: int = 0, methods: dict = METHODS) -> None:
    rng = np.random.default_rng(seed)
    cf = get_detector("centerface", {"threads": 1})
    hog = get_detector("dlib-hog", {})
    t = time.perf_counter()
    gallery, probes, truth = lfw_gallery_and_probes(n_people, rng, cf, hog, gallery_limit)
    print(f"gallery {len(gallery)} people, {len(probes)} probes ({time.perf_counter() - t:.0f} s to read)",
          file=sys.stderr)
    g_desc = np.stack([f.desc for f in gallery])
    p_desc = np.stack([f.desc for f in probes])

    rows = []
    r1 = rank1(p_desc, g_desc, truth)
    acc, tar, far = verification(p_desc, g_desc, truth, np.random.default_rng(1))
    rows.append({"method": "original", "naive rank-1": r1, "naive verif. acc": acc, "TAR@0.6": tar, "FAR@0.6": far,
                 "parrot rank-1": r1, "det CenterFace": 1.0, "det dlib HOG": 1.0, "SSIM img": 1.0, "SSIM box": 1.0,
                 "FD-dlib": 0.0, "within 0.6 of own original": 1.0, "faces/s": float("nan"),
                 "faces/CPU-s": float("nan")})
    chance = 1 / len(gallery)
    for label, (name, params) in methods.items():
        method = make_method(name, params)
        t, c = time.perf_counter(), time.process_time()
        outs = [anonymize(method, f, 1000 + i) for i, f in enumerate(probes)]
        fps = len(probes) / (time.perf_counter() - t)
        fpc = len(probes) / (time.process_time() - c)
        a_desc = np.stack([descriptor(o, f.dbox) for o, f in zip(outs, probes)])
        # parrot: the attacker anonymizes the gallery (probe people only) the same way
        gal_idx = truth
        par_gal = np.stack([descriptor(anonymize(method, gallery[g], 5000 + j), gallery[g].dbox)
                            for j, g in enumerate(gal_idx)])
        par = rank1(a_desc, par_gal, np.arange(len(probes)))
        acc, tar, far = verification(a_desc, g_desc, truth, np.random.default_rng(1))
        det_cf = np.mean([detected(cf.detect(o), f.det.xyxy[0]) for o, f in zip(outs, probes)])
        det_hog = np.mean([detected(hog.detect(o), f.det.xyxy[0]) for o, f in zip(outs, probes)])
        s_img = np.mean([ssim(o, f.img) for o, f in zip(outs, probes)])
        s_box = []
        for o, f in zip(outs, probes):
            x1, y1, x2, y2 = np.clip(f.det.xyxy[0], 0, 249).astype(int)
            s_box.append(ssim(o[y1:y2, x1:x2], f.img[y1:y2, x1:x2]) if min(x2 - x1, y2 - y1) >= 7 else np.nan)
        row = {"method": label, "naive rank-1": rank1(a_desc, g_desc, truth), "naive verif. acc": acc,
               "TAR@0.6": tar, "FAR@0.6": far, "parrot rank-1": par, "det CenterFace": float(det_cf),
               "det dlib HOG": float(det_hog), "SSIM img": float(s_img), "SSIM box": float(np.nanmean(s_box)),
               "FD-dlib": frechet(a_desc, p_desc), "within 0.6 of own original": float(
                   (np.linalg.norm(a_desc - p_desc, axis=1) < MATCH).mean()), "faces/s": fps, "faces/CPU-s": fpc}
        if getattr(method, "counts", None) is not None:
            row["method"] += f" {dict(method.counts)}"
        rows.append(row)
        print(f"{label}: done", file=sys.stderr)
    print(f"\n## LFW: {len(probes)} probes, naive gallery {len(gallery)} people (chance rank-1 {chance:.3f}), "
          f"parrot gallery {len(probes)} (chance {1 / len(probes):.3f})\n")
    print(table(rows, list(rows[0])))

    # diversity: 10 identities per face on 20 faces
    method = get_method("replace", {})
    dists, orig_d = [], []
    for f in probes[:20]:
        d = []
        for ident in range(10):
            m = get_method("replace", {"identity": ident})
            d.append(descriptor(m.apply(f.img, f.det, COMP, np.random.default_rng(0)), f.dbox))
        d = np.stack(d)
        pd = np.linalg.norm(d[:, None] - d[None], axis=2)[np.triu_indices(10, 1)]
        dists.extend(pd)
        orig_d.extend(np.linalg.norm(d - f.desc, axis=1))
    dists, orig_d = np.array(dists), np.array(orig_d)
    print(f"\n## Diversity over 10 identity seeds x {min(20, len(probes))} faces (replace, shipped bank)\n")
    print(f"pairwise descriptor distance: median {np.median(dists):.3f}, min {dists.min():.3f}, "
          f"pairs >= 0.6: {(dists >= MATCH).mean():.1%}; distance to the original face: median "
          f"{np.median(orig_d):.3f}, min {orig_d.min():.3f}, below 0.6: {(orig_d < MATCH).mean():.1%}")

    # the shipped bank's donor check, and an experimental LFW donor bank (people not among the probes)
    from faceveil.anonymize.bank import Bank, align, load_bank, plausible
    from faceveil.anonymize.identity import synthesize_bank

    bank = load_bank()
    print(f"\n## Donor banks\n\nshipped: {len(bank)} averages, k = {sorted(set(bank.k.tolist()))}, source: {bank.source}")
    used = set(truth.tolist())  # the probes' people are not donors
    faces, ids = [], []
    for f in [g for i, g in enumerate(gallery) if i not in used][:120]:
        lm = f.det.landmarks[0]
        if plausible(lm, f.det.xyxy[0]):
            faces.append(align(f.img, lm))
            ids.append(f.path.parent.name)  # one gallery photo per person: the folder names the person
    lfw_bank = Bank(np.stack(faces), np.array(ids), np.ones(len(ids), np.int32), np.array(ids), "donors", "LFW (experiment)")
    for k in (3, 5):
        t = time.perf_counter()
        _, st = synthesize_bank(lfw_bank, 40, k=k, seed=0, candidates=40)
        print(f"LFW donor bank, {len(ids)} people, k={k}: donor-match rate before rejection "
              f"{st['donor_match_rate_before']:.1%} ({st['averages_drawn']} drawn), after 0 %; kept "
              f"{st['kept']}, pairwise min {st['pairwise_min']:.3f} ({time.perf_counter() - t:.0f} s)")


def looks(n_facemask: int, methods: dict) -> None:
    """Colour, shape, seam and sharpness of replaced faces on real photos (see the module doc)."""
    import faceveil
    from faceveil.detect.presets import DEFAULT_PRESET, get_preset

    comp = Compositor(RegionParams(**get_preset(DEFAULT_PRESET)["region"]))
    photos = []
    for path in sorted((DATA / "deepface-unit").glob("*.jpg")):
        img = read_rgb(path)
        f = 640 / max(img.shape[:2])
        if f < 1:
            img = cv2.resize(img, None, fx=f, fy=f, interpolation=cv2.INTER_AREA)
        photos.append(("deepface-unit", img, 24))
    fm = sorted((DATA / "facemask" / "images").glob("*.jpg"))
    for path in fm[:n_facemask]:
        photos.append(("facemask", read_rgb(path), 40))
    for frame in video_frames():
        photos.append(("video", frame, 40))
    dets = [faceveil.detect(img) for _, img, _ in photos]
    rows = []
    for label, (name, params) in methods.items():
        m = make_method(name, params)
        per = {}
        c, n = time.process_time(), 0
        for (src, img, min_px), d in zip(photos, dets):
            out = m.apply(img, d, comp, np.random.default_rng(n))
            n += len(d)
            for r in comp.regions(d, img.shape):
                b = d.xyxy[r.index]
                if min(b[2] - b[0], b[3] - b[1]) < min_px:
                    continue
                # replace blurs a photo's weak detections (most are no face) instead of drawing a face there: the
                # faces it does draw are measured apart too (the same faces for every method and version)
                weak = float(d.score[r.index]) < Replace.Params().min_score
                per.setdefault(src, []).append((*_face_looks(img, out, b, r), weak))
        for src, vals in per.items():
            v = np.array(vals)
            new = v[v[:, 4] == 0]
            rows.append({"method": label, "set": src, "faces": len(v), "Delta-E median": float(np.nanmedian(v[:, 0])),
                         "Delta-E p90": float(np.nanpercentile(v[:, 0], 90)), "fill median": float(np.nanmedian(v[:, 1])),
                         "seam median": float(np.nanmedian(v[:, 2])), "sharpness median": float(np.nanmedian(v[:, 3])),
                         "weak (< min_score)": int(v[:, 4].sum()),
                         "Delta-E median, others": float(np.nanmedian(new[:, 0])) if len(new) else float("nan"),
                         "sharpness median, others": float(np.nanmedian(new[:, 3])) if len(new) else float("nan"),
                         "faces/CPU-s (all)": n / (time.process_time() - c)})
        print(f"{label}: done", file=sys.stderr)
    print(f"\n## Looks: deepface-unit ({sum(s == 'deepface-unit' for s, *_ in photos)} photos, faces >= 24 px), "
          f"facemask (first {n_facemask} photos, faces >= 40 px), video ({sum(s == 'video' for s, *_ in photos)} "
          f"frames of the shared clips, faces >= 40 px); default preset and region\n")
    print(table(rows, list(rows[0])))


def video_frames(every: int = VIDEO_EVERY):
    """Every ``every``-th frame of each shared clip (real footage: a talking head, a dark audience, hikers, a crowd)."""
    for path in sorted((DATA / "videos").glob("*.mp4")) + sorted((DATA / "videos").glob("*.mkv")):
        yield from (f.rgb for f in islice(read_frames(path), 0, None, every))


def _face_looks(img, out, box, region) -> tuple[float, float, float, float]:
    x1, y1, x2, y2 = box
    cx, cy, hw, hh = (x1 + x2) / 2, (y1 + y2) / 2, (x2 - x1) / 4, (y2 - y1) / 4
    cy1, cy2 = int(max(cy - hh, 0)), int(np.ceil(cy + hh))
    cx1, cx2 = int(max(cx - hw, 0)), int(np.ceil(cx + hw))
    lab = lambda a: cv2.cvtColor(a.astype(np.float32) / 255, cv2.COLOR_RGB2Lab).reshape(-1, 3).mean(0)
    c_o, c_a = img[cy1:cy2, cx1:cx2], out[cy1:cy2, cx1:cx2]
    if c_o.size == 0:
        return (np.nan,) * 4
    de = float(np.linalg.norm(lab(c_o) - lab(c_a)))
    sl = region.slices
    changed = (out[sl] != img[sl]).any(axis=2)
    if not changed.any():
        return de, np.nan, np.nan, np.nan
    ys, xs = np.nonzero(changed)
    fill = changed.sum() / ((np.ptp(ys) + 1) * (np.ptp(xs) + 1))
    # the changed area's border: its outermost changed pixels and the first unchanged ones around them
    k = np.ones((3, 3), np.uint8)
    ch = changed.astype(np.uint8)
    border = (cv2.dilate(ch, k) - cv2.erode(ch, k)) > 0
    grad = lambda a: np.hypot(cv2.Sobel(a, cv2.CV_32F, 1, 0), cv2.Sobel(a, cv2.CV_32F, 0, 1))
    g_o = grad(cv2.cvtColor(img[sl], cv2.COLOR_RGB2GRAY).astype(np.float32))
    g_a = grad(cv2.cvtColor(out[sl], cv2.COLOR_RGB2GRAY).astype(np.float32))
    seam = float(g_a[border].mean() / max(g_o[border].mean(), 1e-6))
    lap = lambda a: cv2.Laplacian(cv2.cvtColor(a, cv2.COLOR_RGB2GRAY).astype(np.float32), cv2.CV_32F).var()
    sharp = float(lap(c_a) / max(lap(c_o), 1e-6))
    return de, float(fill), seam, sharp


def _scaled(box, scale: float) -> tuple[slice, slice]:
    """The pixels of ``box`` scaled by ``scale`` about its centre (0.5: its central half), as slices."""
    x1, y1, x2, y2 = box
    cx, cy, hw, hh = (x1 + x2) / 2, (y1 + y2) / 2, (x2 - x1) * scale / 2, (y2 - y1) * scale / 2
    return slice(int(max(cy - hh, 0)), int(np.ceil(cy + hh))), slice(int(max(cx - hw, 0)), int(np.ceil(cx + hw)))


def _lightness(patch: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(patch, cv2.COLOR_RGB2Lab)[..., 0].astype(np.float32) * 100 / 255


def _light(img: np.ndarray, box, scale: float = 0.5) -> np.ndarray:
    """L* (0..100) of ``box`` scaled by ``scale`` about its centre (0.5: its central half), resampled to 8x8 (nan
    outside the frame)."""
    c = img[_scaled(box, scale)]
    if c.size == 0:
        return np.full((8, 8), np.nan, np.float32)
    lum = _lightness(c)
    return cv2.resize(lum, (8, 8), interpolation=cv2.INTER_AREA)


def _detail_change(now: np.ndarray, before: np.ndarray, box) -> float:
    """Mean absolute change of the fine detail (L* minus its Gaussian blur of sigma 1.5 px: grain, skin texture)
    over ``box``'s central half, at the same pixels on two frames (nan outside the frame)."""
    sl = _scaled(box, 0.5)
    if now[sl].size == 0:
        return float("nan")

    def detail(img):
        lum = _lightness(img[sl])
        return lum - cv2.GaussianBlur(lum, (0, 0), 1.5)

    return float(np.abs(detail(now) - detail(before)).mean())


def flicker(n_frames: int, methods: dict, min_px: int = FLICKER_MIN_PX) -> None:
    """Temporal stability on the shared clips' first ``n_frames``, the video path as the CLI runs it (video preset,
    tracking, a detector run every 2nd frame, one method state per clip): for every track seen on two frames in a
    row with its box >= ``min_px``, at each frame's tracked box, output and original: the change of its central half
    box's mean L*, of that half box's L* on an 8x8 grid, of the region's (the box grown REGION_SCALE) L* on an
    8x8 grid, and of the half box's fine detail at the same pixels (grain, texture: _detail_change) (mean absolute
    changes); mean and 95th percentile, per clip and over all."""
    from faceveil.api import resolved_detector
    from faceveil.pipeline import Anonymizer
    from faceveil.video.options import VideoOptions, video_preset
    from faceveil.video.tracking import tracked_frames

    det = resolved_detector(None, video_preset(None, None), {})
    clips = {}
    for path in sorted((DATA / "videos").glob("*.mp4")) + sorted((DATA / "videos").glob("*.mkv")):
        frames = (f for f in read_frames(path) if f.index < n_frames)
        clips[path.name] = [(it.frame.rgb, it.detections)
                            for it in tracked_frames(frames, det.detect, VideoOptions(), float(probe(path).fps))]
    rows = []
    for label, (name, params) in methods.items():
        an = Anonymizer(method=name, preset="video", load_detector=False)
        an.method = make_method(name, params)
        every: dict[str, list] = {"out": [], "orig": []}
        for clip, items in clips.items():
            if hasattr(an.method, "begin_stream"):
                an.method.begin_stream()  # each clip's tracks are new, as in the video job
            prev: dict[int, tuple] = {}  # track -> its 8x8 grids on the last frame
            last = None  # the last frame: (output, original)
            d_out, d_orig = [], []
            for i, (f, d) in enumerate(items):
                out = an.anonymize(f, d, an.rng_for(f"{i}"))
                now = {}
                for j in range(len(d)):
                    b, t = d.xyxy[j], int(d.track_id[j])
                    if t < 0 or min(b[2] - b[0], b[3] - b[1]) < min_px:
                        continue
                    now[t] = (_light(out, b), _light(f, b), _light(out, b, REGION_SCALE), _light(f, b, REGION_SCALE))
                    if t in prev and np.isfinite(np.stack(now[t] + prev[t])).all():  # nan: outside the frame
                        # mean L* (tone, light), the 8x8 pattern (a face flipped or redrawn, which the mean hides),
                        # and the pattern over the region (what surrounds the face: hair, background, a fill)
                        ch = [np.abs(a - b) for a, b in zip(now[t], prev[t])]
                        d_out.append((abs(now[t][0].mean() - prev[t][0].mean()), ch[0].mean(), ch[2].mean(),
                                      _detail_change(out, last[0], b)))
                        d_orig.append((abs(now[t][1].mean() - prev[t][1].mean()), ch[1].mean(), ch[3].mean(),
                                       _detail_change(f, last[1], b)))
                prev, last = now, (out, f)
            every["out"] += d_out
            every["orig"] += d_orig
            rows.append(_flicker_row(label, clip, d_out, d_orig))
        rows.append(_flicker_row(label, "all", every["out"], every["orig"]))
        print(f"{label}: flicker done", file=sys.stderr)
    print(f"\n## Flicker: change of a tracked face's L* a frame (central half box: mean, 8x8; region: 8x8; the half "
          f"box's fine detail), shared clips' first {n_frames} frames, faces >= {min_px} px; video preset and path\n")
    print(table(rows, list(rows[0])))


def _flicker_row(label: str, clip: str, out: list, orig: list) -> dict:
    o, g = np.asarray(out, float).reshape(-1, 4), np.asarray(orig, float).reshape(-1, 4)
    stat = lambda v, f: float(f(v)) if len(v) else float("nan")  # noqa: E731
    p95 = lambda v: np.percentile(v, 95)  # noqa: E731
    return {"method": label, "clip": clip, "frame pairs": len(o), "mean L* change": stat(o[:, 0], np.mean),
            "p95": stat(o[:, 0], p95), "original": stat(g[:, 0], np.mean), "original p95": stat(g[:, 0], p95),
            "8x8 L* change": stat(o[:, 1], np.mean), "8x8 p95": stat(o[:, 1], p95),
            "8x8 original": stat(g[:, 1], np.mean), "region 8x8": stat(o[:, 2], np.mean),
            "region 8x8 p95": stat(o[:, 2], p95), "region 8x8 original": stat(g[:, 2], np.mean),
            "detail change": stat(o[:, 3], np.mean), "detail original": stat(g[:, 3], np.mean)}


def grid(out: Path) -> None:
    """Originals and replacements (two seeds, Poisson, U-Net, blur) from deepface-unit (MIT)."""
    cf = get_detector("centerface", {"threads": 1})
    tiles = []
    for n, name in enumerate(["img3.jpg", "img20.jpg", "img41.jpg", "img17.jpg", "couple.jpg", "img22.jpg"]):
        img, dets, (x1, y1, x2, y2) = deepface_face(name, cf, 0.95)
        row = [img]
        for mname, params in [("replace", {"identity": 2 * n}), ("replace", {"identity": 2 * n + 1}),
                              ("replace", {"identity": 2 * n, "harmonizer": "poisson"}),
                              ("replace", {"identity": 2 * n, "harmonizer": "unet"}), ("blur", {})]:
            row.append(get_method(mname, params).apply(img, dets, COMP, np.random.default_rng(0)))
        tiles.append(np.concatenate([cv2.resize(r[y1:y2, x1:x2], (150, 150), interpolation=cv2.INTER_AREA)
                                     for r in row], 1))
    g = np.concatenate(tiles, 0)
    head = np.full((22, g.shape[1], 3), 255, np.uint8)
    for i, t in enumerate(["original", "replace id 2n", "replace id 2n+1", "poisson id 2n", "unet id 2n", "blur"]):
        cv2.putText(head, t, (i * 150 + 6, 16), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (0, 0, 0), 1, cv2.LINE_AA)
    g = np.concatenate([head, g], 0)
    from PIL import Image

    Image.fromarray(g).quantize(256, dither=Image.Dither.NONE).save(out, optimize=True)
    print(f"grid -> {out} ({out.stat().st_size // 1024} KB)", file=sys.stderr)


def main() -> int:
    from faceveil.heap import keep_freed

    keep_freed()  # as the CLI's process and its workers do: the speed a user gets
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--people", type=int, default=100)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--gallery", type=int, default=0, help="limit the gallery to this many people (0: all)")
    ap.add_argument("--grid-only", action="store_true")
    ap.add_argument("--methods", default="", help="comma-separated labels of the methods to run (default: all)")
    ap.add_argument("--looks", type=int, default=-1, metavar="N",
                    help="also the looks table, on deepface-unit and the first N facemask photos")
    ap.add_argument("--no-lfw", action="store_true", help="skip the LFW privacy and realism table")
    ap.add_argument("--flicker", type=int, default=0, metavar="N",
                    help="also the flicker table: the shared clips' first N frames through the video path")
    ap.add_argument("--no-grid", action="store_true")
    ap.add_argument("--grid", default=str(ROOT / "bench" / "replace_grid.png"))
    args = ap.parse_args()
    methods = {k: v for k, v in METHODS.items() if not args.methods or k in args.methods.split(",")}
    if not args.grid_only and not args.no_lfw:
        bench(args.people, args.seed, args.gallery, methods)
    if not args.grid_only and args.looks >= 0:
        looks(args.looks, methods)
    if not args.grid_only and args.flicker > 0:
        flicker(args.flicker, methods)
    if not args.no_grid:
        grid(Path(args.grid))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
