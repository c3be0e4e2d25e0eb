"""Levers measured for issue 3 that did NOT pay on facemask: replayed exactly on the cached passes.

They were measured against the balanced preset as it was before its big-face passes (1.27 % / 2.46 %):
`run` leaves the cache's big-face passes out, so its rows stay exactly those of docs/recall.md; `runbig` replays
the same levers on top of the shipped preset, big-face passes included (without the verify rows).

Builds on research/replay_recall.py's cache (run its `cache` stage first). Stage `cache` adds, per
photo, the mirrored main pass (CenterFace, floor 0.05) and YuNet's boxes (score >= 0.2); stage
`run` prints leaked faces (>= 10 px) and away-from-face area for each lever next to the balanced
preset, so the closing note's claims can be checked:

  python research/replay_recall.py cache fm                      # ~10 min
  python research/recall_levers.py cache fm                      # ~3 min
  python research/recall_levers.py verify fm                     # optional, ~7 min: YuNet as a verifier
  python research/recall_levers.py run fm
  python research/recall_levers.py runbig fm                     # the same levers on top of the big-face passes

Levers: (1) flip agreement: main-pass boxes below the cut but >= s2 are kept when the mirrored
pass has a box at IoU >= 0.5 (>= s2 too), and boxes under 0.3 need that agreement at >= 0.1;
(2) YuNet as a second detector, its boxes added after the merge; (3) box fusion inside NMS: the
winner grows to the union (or only its lower edge to the lowest) of the boxes it suppresses with
IoU >= 0.5, or takes their score-weighted mean (WBF); (4) taller boxes (lower edge + 10-20 %);
(5) landmark-driven boxes (the cache's landmarks): the lower edge moved to the chin estimated from
eyes and mouth (mouth + k x the eye-to-mouth drop), or, for turned faces (nose off the eyes' midpoint
by more than t of the box width), the lower edge moved down k x the height or the box widened on the
nose's side; (6) an ellipse region (circumscribing the box at 1.41x) instead of a box. With the
`verify` cache, `run` also prints the away-from-face area when the candidates YuNet confirms (>= 0.6)
that overlap no labelled face count as faces (about half of them are: background faces the labels omit).
"""
from __future__ import annotations

import pickle
import sys
import time
from dataclasses import asdict

import numpy as np

from replay_recall import FLOOR, OUT, SETS, as_detections, has_landmarks, replayed_passes
from faceveil.anonymize import Compositor, RegionParams
from faceveil.detect import get_detector
from faceveil.detect.multiscale import MultiScale, calibrate
from faceveil.detect.presets import resolve
from faceveil.detections import Detections, box_iou as iou, nms
from faceveil.io.labels import find_image as resolve_image, read_eval_labels as read_labels
from faceveil.eval.leaks import LeakMetric, anonymized_mask
from faceveil.io.images import read_rgb


def without_big(cached: dict) -> dict:
    """The cache with its big-face passes left out (they come last, so the verify cache's offsets hold)."""
    passes = {k: [(s, a) for s, a in v if not s.startswith("big@")] for k, v in cached["passes"].items()}
    return {**cached, "passes": passes}


def balanced_before_big() -> tuple[dict, dict]:
    """The balanced preset's detector and region params without big-face passes."""
    _, params, region = resolve("balanced")
    return {**params, "big_scales": ()}, region


def _arr(d: Detections) -> np.ndarray:
    return np.concatenate([d.xyxy, d.score[:, None]], 1)


def cache(setname: str) -> None:
    from faceveil.detect.yunet import YuNet

    images, labels = SETS[setname]
    name, params, _ = resolve("balanced")
    det = get_detector(name, {**params, "threshold": 0.1, "small_threshold": FLOOR})
    yn = YuNet(YuNet.Params(threshold=0.2))
    flip, yunet, t = {}, {}, time.perf_counter()
    for key in read_labels(labels):
        img = read_rgb(resolve_image(images, key))
        flip[key] = _arr(det._pass(img, det.main_factor(img), FLOOR, flip=True))
        yunet[key] = _arr(yn.detect(img))
    with open(OUT / f"{setname}_levers.pkl", "wb") as fh:
        pickle.dump({"flip": flip, "yunet": yunet, "seconds": time.perf_counter() - t}, fh)


def verify(setname: str, crop: int = 160) -> None:
    """YuNet's score for a face where each raw candidate is (0: none), by its NMS-0.5 survivor."""
    import cv2

    from faceveil.detect.yunet import YuNet

    with open(OUT / f"{setname}.pkl", "rb") as fh:
        cached = without_big(pickle.load(fh))
    yn = YuNet(YuNet.Params(threshold=0.05))
    out = {}
    for key, parts in cached["passes"].items():
        raw = np.concatenate([a for _, a in parts]) if parts else np.zeros((0, 5))
        if not len(raw):
            out[key] = np.zeros(0)
            continue
        img = read_rgb(resolve_image(SETS[setname][0], key))
        keep = nms(Detections(raw[:, :4], raw[:, 4], None, None, "raw"), 0.5)
        ver = np.zeros(len(keep))
        for i, b in enumerate(keep.xyxy):
            side = 2.2 * max(b[2] - b[0], b[3] - b[1], 4)
            x0, y0, f = (b[0] + b[2] - side) / 2, (b[1] + b[3] - side) / 2, crop / side
            m = np.array([[f, 0, -x0 * f], [0, f, -y0 * f]], np.float32)
            found = yn.detect(cv2.warpAffine(img, m, (crop, crop), flags=cv2.INTER_LINEAR))
            if len(found):
                ok = iou(((b - [x0, y0, x0, y0]) * f)[None], found.xyxy)[0] >= 0.3
                ver[i] = found.score[ok].max() if ok.any() else 0.0
        out[key] = ver[iou(raw[:, :4], keep.xyxy).argmax(1)]
    with open(OUT / f"{setname}_verify.pkl", "wb") as fh:
        pickle.dump(out, fh)


def fused_nms(d: Detections, thr: float, mode: str, u: float = 0.5) -> Detections:
    """Greedy NMS whose winner absorbs the boxes it suppresses (IoU >= u): union, lower edge, or WBF."""
    order = np.argsort(-d.score)
    b = d.xyxy.astype(np.float64)
    alive = np.ones(len(d), bool)
    out, scores = [], []
    for i in order:
        if not alive[i]:
            continue
        io = iou(b[i : i + 1], b)[0]
        cluster = alive & (io > thr)
        alive &= ~cluster
        nb, m = b[i].copy(), cluster & (io >= u)
        if mode == "union":
            nb[:2], nb[2:] = np.minimum(nb[:2], b[m, :2].min(0)), np.maximum(nb[2:], b[m, 2:].max(0))
        elif mode == "down":
            nb[3] = max(nb[3], b[m, 3].max())
        elif mode == "wbf":
            nb = (b[m] * d.score[m, None]).sum(0) / d.score[m].sum()
        out.append(nb)
        scores.append(d.score[i])
    return Detections(np.array(out).reshape(-1, 4), np.array(scores), None, None, "multiscale")


def landmark_boxes(f: Detections, mode: str, k: float, t: float = 0.0, min_px: float = 0.0) -> Detections:
    """Boxes reshaped by their landmarks (lever 5); boxes under ``min_px`` (sqrt of area) are left alone."""
    if not len(f) or f.landmarks is None:
        return f
    b, lm = f.xyxy.astype(np.float64).copy(), f.landmarks.astype(np.float64)
    eye, mouth, nose = lm[:, :2].mean(1), lm[:, 3:5].mean(1), lm[:, 2]
    w, h = b[:, 2] - b[:, 0], b[:, 3] - b[:, 1]
    turn = (nose[:, 0] - eye[:, 0]) / np.maximum(w, 1)
    big = np.sqrt(f.areas) >= min_px
    if mode == "chin":
        b[:, 3] = np.where(big, np.maximum(b[:, 3], mouth[:, 1] + k * (mouth[:, 1] - eye[:, 1])), b[:, 3])
    elif mode == "turned-down":
        b[:, 3] += np.where(big & (np.abs(turn) > t), k * h, 0)
    elif mode == "turned-wide":
        grow = np.where(big, k * w * np.clip(np.abs(turn) - t, 0, None) / 0.5, 0)
        b[:, 0] -= np.where(turn < 0, grow, 0)
        b[:, 2] += np.where(turn > 0, grow, 0)
    return Detections(b, f.score, f.landmarks, None, f.source)


def confirmed_unlabelled(raw: np.ndarray, verified: np.ndarray, labels: Detections, t: float = 0.6) -> Detections:
    """Candidates (>= 0.05) that YuNet confirms at >= t and that overlap no labelled face (IoU < 0.1)."""
    ok = (raw[:, 4] >= 0.05) & (verified >= t) if len(raw) else np.zeros(0, bool)
    d = nms(Detections(raw[ok, :4], verified[ok], None, None, "label"), 0.3)
    return d[iou(d.xyxy, labels.xyxy).max(1) < 0.1] if len(d) and len(labels) else d


def relabelled(setname: str, cached: dict, verified: dict, labels: dict) -> None:
    """Away-from-face area when the unlabelled candidates YuNet confirms count as faces (not as faces to find)."""
    params, region = balanced_before_big()
    print(f"{setname}: away-from-face area with YuNet-confirmed (>= 0.6) unlabelled boxes counted as faces")
    print("| setting | leaked | away | away, confirmed boxes as faces |\n|---|---|---|---|")
    for ms, kw in ((1.25, {}), (1.3, {}), (1.35, {}), (1.25, {"small_grow": 1.5})):
        det = get_detector("multiscale", {**asdict(MultiScale.Params()), **params, **kw})
        comp = Compositor(RegionParams("box", ms, 0.0))
        plain, more = LeakMetric(), LeakMetric()
        for key, parts in cached["passes"].items():
            h, w = cached["shapes"][key]
            mask = anonymized_mask(comp, det.fuse([det.keep(as_detections(a, s)) for s, a in parts], w, h), (h, w))
            lab = labels[key]
            ign = np.zeros(len(lab.faces), bool) if lab.ignore is None else np.asarray(lab.ignore, bool)
            raw = np.concatenate([a[:, :5] for _, a in parts]) if parts else np.zeros((0, 5))
            extra = confirmed_unlabelled(raw, verified[key], lab.faces)
            plain.update(mask, lab.faces, ign, key)
            more.update(mask, Detections.merge([lab.faces, extra], "label"),
                        np.concatenate([ign, np.ones(len(extra), bool)]), key)
        r, r2 = plain.compute(), more.compute()
        setting = ", ".join(f"{k} {v}" for k, v in kw.items())
        print(f"| {setting}{', ' if setting else ''}region box {ms} | {r.leak_rate * 100:.2f} % | "
              f"{r.away_rate * 100:.2f} % | {r2.away_rate * 100:.2f} % |", flush=True)


def run(setname: str, with_big: bool = False) -> None:
    with open(OUT / f"{setname}.pkl", "rb") as fh:
        cached = pickle.load(fh)
    with open(OUT / f"{setname}_levers.pkl", "rb") as fh:
        extra = pickle.load(fh)
    labels = read_labels(SETS[setname][1])
    if with_big:
        _, params, region = resolve("balanced")
    else:
        cached, (params, region) = without_big(cached), balanced_before_big()
    p = {**asdict(MultiScale.Params()), **params}
    det = get_detector("multiscale", p)
    vfile = OUT / f"{setname}_verify.pkl"  # its rows follow the cache without big-face passes
    verified = pickle.loads(vfile.read_bytes()) if vfile.is_file() and not with_big else None

    def verify_keep(key, parts, veto_px):
        kept, off = [], 0
        for s, a in parts:
            v, off = verified[key][off : off + len(a)], off + len(a)
            d = as_detections(a, s)
            veto = (a[:, 4] < 0.3) & (v < 0.1) & (np.sqrt(d.areas) >= veto_px) if veto_px else np.zeros(len(a), bool)
            kept += [det.keep(d[~veto]), d[(a[:, 4] >= 0.05) & (v >= 0.6)]]  # fuse's NMS drops the doubles
        return kept

    def score(lever: str, ms: float = region["mask_scale"], shape: str = "box", **kw) -> None:
        comp = Compositor(RegionParams(shape, ms, 0.0))
        metric = LeakMetric()  # leak_rate: faces >= 10 px
        for key, parts in cached["passes"].items():
            h, w = cached["shapes"][key]
            kept = [det.keep(d) for d in replayed_passes(parts, p)]
            if lever == "verify":
                kept = verify_keep(key, parts, kw["veto_px"])
            if lever == "flip":
                fl, main = extra["flip"][key], parts[0][1]
                agree = lambda a, s: (iou(a[:, :4], fl[fl[:, 4] >= s, :4]) >= 0.5).any(1) if len(fl) and len(a) \
                    else np.zeros(len(a), bool)  # noqa: E731
                k0 = kept[0]
                kept[0] = k0[(k0.score >= 0.3) | agree(_arr(k0), 0.1)]
                low = main[main[:, 4] >= kw["s2"]]
                kept.append(Detections(low[agree(low, kw["s2"]), :4], np.full(agree(low, kw["s2"]).sum(), 0.01),
                                       None, None, "agree"))
            if lever in ("union", "down", "wbf"):
                merged = Detections.merge(kept, "multiscale")
                f = fused_nms(merged, p["nms_iou"], lever) if len(merged) else merged
                f = calibrate(f, p["box_dy"], p["small_grow"], p["small_px"], p["large_px"]).clipped(w, h)
            else:
                f = det.fuse(kept, w, h)
            if lever == "yunet":
                y = extra["yunet"][key]
                y = y[y[:, 4] >= kw["t"]]
                f = Detections.merge([f, Detections(y[:, :4], y[:, 4], None, None, "yunet")], "m").clipped(w, h)
            if lever == "tall" and len(f):
                b = f.xyxy.copy()
                b[:, 3] += kw["k"] * (b[:, 3] - b[:, 1])
                f = Detections(b, f.score, None, None, f.source).clipped(w, h)
            if lever in ("chin", "turned-down", "turned-wide"):
                f = landmark_boxes(f, lever, **kw).clipped(w, h)
            metric.update(anonymized_mask(comp, f, (h, w)), labels[key].faces, labels[key].ignore, key)
        r = metric.compute()
        setting = ", ".join(f"{k} {v}" for k, v in kw.items())
        print(f"| {lever} | {setting}{', ' if setting else ''}region {shape} {ms} | {r.leak_rate * 100:.2f} % | "
              f"{r.away_rate * 100:.2f} % |", flush=True)

    print(f"{setname}: leaked faces >= 10 px and away-from-face area")
    print("| lever | setting | leaked | away |\n|---|---|---|---|")
    score("balanced")
    for s2, ms in ((0.07, 1.25), (0.07, 1.2), (0.07, 1.15)):
        score("flip", ms, s2=s2)
    for t in (0.3, 0.5, 0.7):
        score("yunet", t=t)
    for lever in ("union", "down", "wbf"):
        score(lever)
    for k in (0.1, 0.2):
        score("tall", 1.2, k=k)
    if verified is not None:
        for veto_px in (0, 24, 16):
            score("verify", veto_px=veto_px)
    if cached["passes"] and has_landmarks(next(iter(cached["passes"].values()))[0][1]):
        for k in (1.0, 1.2):
            score("chin", k=k)
        for k, t in ((0.15, 0.1), (0.15, 0.15), (0.3, 0.1)):
            score("turned-down", k=k, t=t, min_px=24)
        for k in (0.4, 0.8):
            score("turned-wide", k=k, t=0.05, min_px=32)
    else:
        print("(landmark levers skipped: the replay cache predates landmarks; rerun replay_recall.py cache)")
    for ms in (1.4, 1.45, 1.5, 1.55):
        score("balanced", ms, shape="ellipse")
    if verified is not None:
        relabelled(setname, cached, verified, labels)


if __name__ == "__main__":
    if len(sys.argv) < 3 or sys.argv[1] not in ("cache", "verify", "run", "runbig"):
        sys.exit(__doc__)
    for s in sys.argv[2:]:
        {"cache": cache, "verify": verify, "run": run, "runbig": lambda s: run(s, with_big=True)}[sys.argv[1]](s)
