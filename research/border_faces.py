"""Faces cut by the image border: how often does the default preset (balanced) leak them, and what cheap pass helps?

An audit cut deepface-unit img22 so 40 % of its ~290 px face shows at the left edge: balanced found nothing. This
probe answers, on one half of faceveil.eval.splits at a time (choose on `tune`, run `held_out` once):
1. `real`: labelled faces >= 10 px touching or within 2 px of an image border (facemask, WIDER): how many, and how
   many balanced leaks (faceveil eval leaks' rule: a face less than 80 % covered, reusing eval.leaks) against the
   faces away from the borders;
2. `synth`: big faces (deepface-unit's largest face per photo, boxed by `thorough` on the original, photos shrunk
   to DF_SIDE; facemask's largest labelled face >= 60 px per photo; --limit 16 photos each) cut so 30/40/50/60 % of the box shows at the left/right/top/bottom
   border; leaked % per visible share and per border;
3. levers (LEVERS below): extra CenterFace passes that look only at the borders (strips padded by reflection or a
   constant, at the main pass's scale or shrunk, optionally only where the main pass has a weak candidate at that
   border); each lever's boxes are kept only where they reach over the border into the padding, cut, merged and
   calibrated by MultiScale's own keep and fuse, and added where no box of the preset covers them (add_lever). Per lever: leaked faces, away-from-face
   area (real sets), extra CPU ms per photo (wall time of its passes, measured beside the preset's own in the
   same process), share of photos where it runs.

Answer (research/README.md has the numbers): border faces leak several times as often as the rest but are few
(16 of 134 leaked faces on the four halves); the best cheap lever (gated reflected strips at 480 px) found fewer
synthetic cuts but no more real border faces held out, for more background hidden and 8-28 % more time.

Every pass is cached per set and half under research/out/border/ (the preset's passes once, each lever's once).

  PYTHONPATH=src nice -n 10 python research/border_faces.py real fm wd --side tune [--levers a,b] [--limit N]
  PYTHONPATH=src nice -n 10 python research/border_faces.py synth df fm --side tune [--levers a,b] [--limit N]
"""
from __future__ import annotations

import argparse
import pickle
import sys
import time
from pathlib import Path

import cv2
import numpy as np

from faceveil.cli.eval_leaks import _upright_faces
from faceveil.detect.presets import resolve
from faceveil.detections import Detections
from faceveil.eval.leaks import LeakMetric, anonymized_mask
from faceveil.eval.splits import side as split_side
from faceveil.io.images import read_rgb
from faceveil.io.labels import find_image, read_eval_labels
from faceveil.pipeline import Anonymizer

from replay_recall import as_array, as_detections  # noqa: E402  (research/ is the folder)

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
REAL = {"fm": (DATA / "facemask" / "images", DATA / "facemask" / "gt.txt"),
        "wd": (DATA / "widerface-val" / "images", DATA / "widerface-val" / "ground_truth" / "wider_face_val_bbx_gt.txt")}
DEEPFACE = DATA / "deepface-unit"
OUT = Path(__file__).resolve().parent / "out" / "border"
NEAR_PX = 2  # a labelled face within this of an image border is a border face
VISIBLE = (0.3, 0.4, 0.5, 0.6)
BORDERS = "lrtb"
BIG_PX = 60
DF_SIDE = 1280  # deepface-unit's photos (up to 4352 px) are shrunk to this longer side first (the run's cost)

# name -> lever settings. kind "strips": a strip `depth` x the side deep along each border in `sides`, padded on the
# border side by `pad` x its depth (cv2 border `mode`, `value` for constant), resized by the main pass's factor x
# `scale`, or so the photo's longer side would be `size` px; `gate`: (score, px) = run a border's strip only where
# the main pass has a candidate from that score, at least px (sqrt of area, photo pixels), within 0.15x its size of
# that border. kind "whole": the whole photo padded `pad` x each side, at `size` px longer side (unpadded).
LEVERS = {
    "reflect_lr_1x": {"kind": "strips", "sides": "lr", "depth": 0.3, "pad": 1.0, "mode": "reflect", "scale": 1.0},
    "reflect_all_1x": {"kind": "strips", "sides": "lrtb", "depth": 0.3, "pad": 1.0, "mode": "reflect", "scale": 1.0},
    "reflect_all_480": {"kind": "strips", "sides": "lrtb", "depth": 0.3, "pad": 1.0, "mode": "reflect", "size": 480},
    "reflect_lr_480": {"kind": "strips", "sides": "lr", "depth": 0.3, "pad": 1.0, "mode": "reflect", "size": 480},
    "const_all_480": {"kind": "strips", "sides": "lrtb", "depth": 0.3, "pad": 0.6, "mode": "constant",
                      "size": 480},
    "reflect_lr_const_tb_480": {"kind": "strips", "sides": "lrtb", "depth": 0.3, "pad": 1.0, "mode": "reflect",
                                "tb_mode": "constant", "size": 480},
    "whole_reflect_480": {"kind": "whole", "pad": 0.3, "mode": "reflect", "size": 480},
    "gated_reflect_all_1x": {"kind": "strips", "sides": "lrtb", "depth": 0.3, "pad": 1.0, "mode": "reflect",
                             "scale": 1.0, "gate": (0.03, 24.0)},
    "gated_reflect_all_480": {"kind": "strips", "sides": "lrtb", "depth": 0.3, "pad": 1.0, "mode": "reflect",
                              "size": 480, "gate": (0.03, 24.0)},
}
MODES = {"reflect": cv2.BORDER_REFLECT, "constant": cv2.BORDER_CONSTANT}


def default_anonymizer() -> Anonymizer:
    name, params, region = resolve(None)
    return Anonymizer(method="blur", detector=name, detector_params=params, region=region)


def timed_passes(det, img: np.ndarray) -> tuple[list[Detections], Detections, float]:
    """(the preset's passes, as detect() runs them; its main pass's raw candidates; seconds) for one photo."""
    seen = []
    orig = det._pass

    def spy(image, factor, floor, flip=False, kind="main"):
        d = orig(image, factor, floor, flip, kind)
        if kind == "main" and not flip and not seen:
            seen.append(d)
        return d

    det._pass = spy
    try:
        t0 = time.perf_counter()
        parts = det.passes(img, min(det.floor, det.params.confirm_floor or 1.0))
        h, w = img.shape[:2]
        det.fuse([det.keep(d) for d in parts], w, h, parts)
        dt = time.perf_counter() - t0
    finally:
        del det._pass
    return parts, seen[0] if seen else Detections.empty("centerface"), dt


def gate_sides(main: Detections, h: int, w: int, sides: str, gate) -> str:
    """The borders where the main pass has a candidate from gate's score and size touching that border."""
    if gate is None:
        return sides
    score, px = gate
    d = main[(main.score >= score) & (np.sqrt(main.areas) >= px)]
    if not len(d):
        return ""
    tol = 0.15 * np.sqrt(d.areas) + NEAR_PX
    b = d.xyxy
    near = {"l": b[:, 0] <= tol, "r": b[:, 2] >= w - tol, "t": b[:, 1] <= tol, "b": b[:, 3] >= h - tol}
    return "".join(s for s in sides if near[s].any())


def over_border(d: Detections, w: int, h: int, sides: str, inner: dict) -> Detections:
    """Boxes (photo pixels) reaching over one of ``sides`` into the padding, at least 30 % inside the photo and not
    cut by a strip's inner edge (``inner``: side -> that edge's coordinate); clipped to the photo."""
    if not len(d):
        return d
    b = d.xyxy.astype(np.float64)
    cross = np.zeros(len(d), bool)
    tol = 0.02 * np.sqrt(d.areas)
    for s in sides:
        cross |= {"l": b[:, 0] < -tol, "r": b[:, 2] > w + tol, "t": b[:, 1] < -tol, "b": b[:, 3] > h + tol}[s]
    ok = cross
    for s, edge in inner.items():
        ok &= {"l": b[:, 2] < edge, "r": b[:, 0] > edge, "t": b[:, 3] < edge, "b": b[:, 1] > edge}[s]
    c = d.clipped(w, h)
    ok &= c.areas >= 0.3 * d.areas
    return c[ok]


def lever_pass(det, img: np.ndarray, main: Detections, lv: dict, floor: float) -> tuple[Detections, str]:
    """One lever's boxes in photo pixels (source centerface: cut as main-pass boxes) and the borders it looked at."""
    h, w = img.shape[:2]
    net = det._net("main")
    f = lv["size"] / max(h, w) if "size" in lv else det.main_factor(img) * lv.get("scale", 1.0)
    out = []
    if lv["kind"] == "whole":
        ph, pw = round(lv["pad"] * h), round(lv["pad"] * w)
        padded = cv2.copyMakeBorder(img, ph, ph, pw, pw, MODES[lv["mode"]], value=(128, 128, 128))
        small = cv2.resize(padded, (max(1, round(padded.shape[1] * f)), max(1, round(padded.shape[0] * f))),
                           interpolation=cv2.INTER_AREA if f < 1 else cv2.INTER_LINEAR)
        d = net.detect_raw(small, floor).scaled(1 / f).translated(-pw, -ph)
        return over_border(d, w, h, "lrtb", {}), "lrtb"
    sides = gate_sides(main, h, w, lv["sides"], lv.get("gate"))
    for s in sides:
        horiz = s in "lr"
        depth = min(w if horiz else h, max(8, round(lv["depth"] * (w if horiz else h))))
        pad = max(1, round(lv["pad"] * depth))
        if s == "l":
            strip, off, pads = img[:, :depth], (0, 0), (0, 0, pad, 0)
        elif s == "r":
            strip, off, pads = img[:, w - depth:], (w - depth, 0), (0, 0, 0, pad)
        elif s == "t":
            strip, off, pads = img[:depth], (0, 0), (pad, 0, 0, 0)
        else:
            strip, off, pads = img[h - depth:], (0, h - depth), (0, pad, 0, 0)
        mode = lv.get("tb_mode", lv["mode"]) if s in "tb" else lv["mode"]
        padded = cv2.copyMakeBorder(np.ascontiguousarray(strip), *pads, MODES[mode], value=(128, 128, 128))
        small = cv2.resize(padded, (max(1, round(padded.shape[1] * f)), max(1, round(padded.shape[0] * f))),
                           interpolation=cv2.INTER_AREA if f < 1 else cv2.INTER_LINEAR)
        d = net.detect_raw(small, floor).scaled(1 / f).translated(off[0] - pads[2], off[1] - pads[0])
        inner = {}
        if depth < (w if horiz else h):
            inner = {"l": {"l": depth}, "r": {"r": w - depth}, "t": {"t": depth}, "b": {"b": h - depth}}[s]
        out.append(over_border(d, w, h, s, inner))
    return Detections.merge(out, "centerface") if out else Detections.empty("centerface"), sides


# --- the photos ---------------------------------------------------------------------------------------------------

def real_items(setname: str, half: str, limit: int):
    """(key, image loader, labelled faces, ignore) of one real set's half."""
    images, path = REAL[setname]
    labels = read_eval_labels(path)
    keys = [k for k in labels if split_side(k) == half]
    if limit:
        keys = keys[:: max(1, len(keys) // limit)][:limit]
    for k in keys:
        p = find_image(images, k)
        if p is None:
            continue

        def load(p=p, k=k):
            img = read_rgb(p)
            return img, _upright_faces(labels[k], p, img.shape, labels.format), labels[k].ignore
        yield k, load


def deepface_refs() -> dict:
    """deepface-unit's faces, boxed by `thorough` on the originals (cached): name -> xyxy, scores."""
    cache = OUT / "deepface_refs.pkl"
    if cache.exists():
        return pickle.loads(cache.read_bytes())
    name, params, region = resolve("thorough")
    det = Anonymizer(method="blur", detector=name, detector_params=params, region=region).detector
    refs = {}
    for p in sorted(DEEPFACE.glob("*.jpg")):
        d = det.detect(read_rgb(p))
        refs[p.name] = (d.xyxy.copy(), d.score.copy())
    OUT.mkdir(parents=True, exist_ok=True)
    cache.write_bytes(pickle.dumps(refs))
    return refs


def load_source(path: Path, setname: str) -> np.ndarray:
    """A synthetic set's source photo: deepface-unit's shrunk to DF_SIDE on its longer side (boxes scaled alike)."""
    img = read_rgb(path)
    if setname == "df" and max(img.shape[:2]) > DF_SIDE:
        f = DF_SIDE / max(img.shape[:2])
        img = cv2.resize(img, (round(img.shape[1] * f), round(img.shape[0] * f)), interpolation=cv2.INTER_AREA)
    return img


def df_factor(path: Path) -> float:
    from PIL import Image

    with Image.open(path) as im:
        return min(1.0, DF_SIDE / max(im.size))


def synth_sources(setname: str, half: str, limit: int) -> list[tuple[str, Path, np.ndarray, np.ndarray]]:
    """(source key, image path, target box, every face box) per photo: its largest face >= BIG_PX (shorter side)."""
    out = []
    if setname == "df":
        for name, (xyxy, score) in deepface_refs().items():
            if split_side(name) != half or not len(xyxy):
                continue
            xyxy = xyxy * df_factor(DEEPFACE / name)
            s = np.minimum(xyxy[:, 2] - xyxy[:, 0], xyxy[:, 3] - xyxy[:, 1]) * (score >= 0.5)
            if s.max() >= BIG_PX:
                out.append((name, DEEPFACE / name, xyxy[int(np.argmax(s))], xyxy))
    else:
        images, path = REAL["fm"]
        labels = read_eval_labels(path)
        for k in labels:
            if split_side(k) != half:
                continue
            xyxy = labels[k].faces.xyxy
            s = np.minimum(xyxy[:, 2] - xyxy[:, 0], xyxy[:, 3] - xyxy[:, 1])
            if len(s) and s.max() >= BIG_PX:
                out.append((k, find_image(images, k), xyxy[int(np.argmax(s))], xyxy))
    if limit and len(out) > limit:
        out = out[:: len(out) // limit][:limit]
    return out


def cut(img: np.ndarray, target: np.ndarray, boxes: np.ndarray, border: str, vis: float):
    """The photo cut so ``vis`` of the target box shows at ``border``: (crop, faces with the target first, ignore)."""
    h, w = img.shape[:2]
    x1, y1, x2, y2 = target
    x0, y0, xe, ye = 0, 0, w, h
    if border == "l":
        x0 = int(round(x2 - vis * (x2 - x1)))
    elif border == "r":
        xe = int(round(x1 + vis * (x2 - x1)))
    elif border == "t":
        y0 = int(round(y2 - vis * (y2 - y1)))
    else:
        ye = int(round(y1 + vis * (y2 - y1)))
    crop = np.ascontiguousarray(img[y0:ye, x0:xe])
    others = [b for b in boxes if not np.allclose(b, target)]
    b = np.array([target, *others], np.float64).reshape(-1, 4) - [x0, y0, x0, y0]
    b[:, 0::2] = np.clip(b[:, 0::2], 0, xe - x0)
    b[:, 1::2] = np.clip(b[:, 1::2], 0, ye - y0)
    keep = np.ones(len(b), bool)
    keep[1:] = (b[1:, 2] > b[1:, 0]) & (b[1:, 3] > b[1:, 1])
    b = b[keep]
    ignore = np.ones(len(b), bool)
    ignore[0] = False
    return crop, Detections.from_boxes(b, source="label"), ignore


def synth_items(setname: str, half: str, limit: int):
    for src, path, target, boxes in synth_sources(setname, half, limit):
        cache = {}

        def load(border, vis, path=path, target=target, boxes=boxes, cache=cache):
            if "img" not in cache:
                cache["img"] = load_source(path, setname)
            return cut(cache["img"], target, boxes, border, vis)
        for border in BORDERS:
            for vis in VISIBLE:
                yield f"{src}|{border}|{vis}", (lambda b=border, v=vis, load=load: load(b, v))


# --- caching and scoring --------------------------------------------------------------------------------------------

def run(kind: str, setname: str, half: str, levers: list[str], limit: int) -> None:
    anon = default_anonymizer()
    det = anon.detector
    floor = min(det.floor, det.params.confirm_floor or 1.0)
    file = OUT / f"{kind}_{setname}_{half}{f'_{limit}' if limit else ''}.pkl"
    store = pickle.loads(file.read_bytes()) if file.exists() else {"base": {}, "levers": {}}
    items = real_items(setname, half, limit) if kind == "real" else synth_items(setname, half, limit)
    rows = {}
    t_start = time.perf_counter()
    for n, (key, load) in enumerate(items):
        todo = [lv for lv in levers if key not in store["levers"].get(lv, {})]
        base = store["base"].get(key)
        if base is None or todo:
            img, faces, ignore = load()
            if base is None:
                parts, main, dt = timed_passes(det, img)
                base = store["base"][key] = ([(d.source, as_array(d)) for d in parts], as_array(main),
                                             img.shape[:2], dt)
            main = as_detections(base[1], "centerface")
            for lv in todo:
                t0 = time.perf_counter()
                d, sides = lever_pass(det, img, main, LEVERS[lv], floor)
                store["levers"].setdefault(lv, {})[key] = (as_array(d), time.perf_counter() - t0, sides)
        else:
            faces = ignore = None
        rows[key] = (faces, ignore)
        if n % 50 == 49:
            print(f"  {n + 1} photos, {time.perf_counter() - t_start:.0f} s", file=sys.stderr, flush=True)
            OUT.mkdir(parents=True, exist_ok=True)
            file.write_bytes(pickle.dumps(store))
    OUT.mkdir(parents=True, exist_ok=True)
    file.write_bytes(pickle.dumps(store))
    # labels for cached photos are rebuilt (cheap for real sets; synthetic crops need their photo)
    if kind == "real":
        images, path = REAL[setname]
        labels = read_eval_labels(path)
        for key, (faces, _) in rows.items():
            if faces is None:
                rows[key] = (labels[key].faces, labels[key].ignore)
    else:
        for key, load in synth_items(setname, half, limit):
            if rows[key][0] is None:
                _, faces, ignore = load()
                rows[key] = (faces, ignore)
    report(kind, setname, half, anon, store, rows, levers)


def add_lever(det, fused: Detections, extra: Detections, w: int, h: int, same: float = 0.5) -> Detections:
    """The preset's boxes plus the lever's (cut, merged and calibrated as the preset's own) that no preset box
    already covers (``same`` of the lever box's area): a clipped lever box never replaces a whole one in NMS."""
    extra = det.fuse([det.keep(extra)], w, h)
    if not len(extra) or not len(fused):
        return Detections.merge([fused, extra], fused.source) if len(extra) else fused
    a, b = fused.xyxy.astype(np.float64), extra.xyxy.astype(np.float64)
    iw = np.clip(np.minimum(a[:, None, 2], b[None, :, 2]) - np.maximum(a[:, None, 0], b[None, :, 0]), 0, None)
    ih = np.clip(np.minimum(a[:, None, 3], b[None, :, 3]) - np.maximum(a[:, None, 1], b[None, :, 1]), 0, None)
    covered = (iw * ih / np.maximum(extra.areas[None, :], 1e-9)).max(0) >= same
    return Detections.merge([fused, extra[~covered]], fused.source)


def score(anon, store, rows, lever: str | None):
    """LeakMetric over the photos, with the lever's boxes added to the preset's passes (None: the preset alone)."""
    det = anon.detector
    metric = LeakMetric()
    for key, (faces, ignore) in rows.items():
        parts_a, _, (h, w), _ = store["base"][key]
        parts = [as_detections(a, s) for s, a in parts_a]
        dets = det.fuse([det.keep(d) for d in parts], w, h, parts)
        if lever is not None:
            dets = add_lever(det, dets, as_detections(store["levers"][lever][key][0], "centerface"), w, h)
        metric.update(anonymized_mask(anon.compositor, dets, (h, w)), faces, ignore, key)
    return metric


def report(kind, setname, half, anon, store, rows, levers) -> None:
    base_ms = 1000 * np.mean([store["base"][k][3] for k in rows])
    print(f"\n{kind} {setname} {half}: {len(rows)} photos, preset passes {base_ms:.0f} ms/photo (wall, this run's load)")
    for lever in [None, *levers]:
        m = score(anon, store, rows, lever)
        r = m.compute()
        name = lever or "balanced"
        extra = ""
        if lever:
            lv = store["levers"][lever]
            ms = 1000 * np.mean([lv[k][1] for k in rows])
            ran = np.mean([bool(lv[k][2]) for k in rows])
            extra = f" +{ms:.0f} ms/photo ({ms / base_ms * 100:.0f} %), runs on {ran * 100:.0f} % of photos"
        if kind == "real":
            bf = [0, 0]
            inner = [0, 0]
            for item, (key, (faces, _)) in zip(m.per_image, rows.items()):
                h, w = store["base"][key][2]
                b = faces.xyxy
                near = (b[:, 0] <= NEAR_PX) | (b[:, 1] <= NEAR_PX) | (b[:, 2] >= w - NEAR_PX) | (b[:, 3] >= h - NEAR_PX)
                sel = item.counted & (item.size >= 10)
                bf[0] += int((sel & near).sum())
                bf[1] += int((sel & near & item.leaked).sum())
                inner[0] += int((sel & ~near).sum())
                inner[1] += int((sel & ~near & item.leaked).sum())
            print(f"  {name:26s} leaked {r.leaked}/{r.faces} ({r.leak_rate * 100:.2f} %), away {r.away_rate * 100:.2f} %; "
                  f"border faces {bf[1]}/{bf[0]} ({bf[1] / max(bf[0], 1) * 100:.1f} %), "
                  f"others {inner[1]}/{inner[0]} ({inner[1] / max(inner[0], 1) * 100:.2f} %){extra}")
        else:
            by = {}
            for item in m.per_image:
                _, border, vis = item.key.split("|")
                for k in (vis, border):
                    n, l = by.get(k, (0, 0))
                    by[k] = (n + 1, l + int(item.leaked[0]))
            cells = " ".join(f"{k}:{l}/{n}" for k, (n, l) in by.items())
            print(f"  {name:26s} leaked {r.leaked}/{r.faces} ({r.leak_rate * 100:.1f} %) [{cells}]{extra}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("kind", choices=("real", "synth"))
    ap.add_argument("sets", nargs="+", help="real: fm wd; synth: df fm")
    ap.add_argument("--side", choices=("tune", "held_out"), default="tune")
    ap.add_argument("--levers", default="", help=f"comma-separated, of: {', '.join(LEVERS)}")
    ap.add_argument("--limit", type=int, default=0, help="at most this many photos (real) or source faces (synth)")
    args = ap.parse_args()
    levers = [x for x in args.levers.split(",") if x]
    for s in args.sets:
        run(args.kind, s, args.side, levers, args.limit)


if __name__ == "__main__":
    main()
